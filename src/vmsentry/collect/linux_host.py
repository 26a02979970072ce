"""The live Linux host (``vmsentry scan --host``): kernel, network, firewall and isolation facts, plus
every QEMU process that libvirt does not manage.

Read-only: files under /proc, /sys and /etc, and the read-only commands ``ip -j -d addr``, ``ss``,
``nft -j list ruleset``, ``ip[6]tables-legacy-save``, ``qemu-system-x86_64 --version`` and
``libvirtd --version``. Each fact group that cannot be read becomes ``None`` plus a line in
``facts["collection_errors"]``; collection itself never fails.

Every source has a small parser that takes text (``parse_ss``, ``parse_nft_json`` ...), so tests can feed
them recorded output; the functions that touch the system are the thin layer around them.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from typing import Any, Callable

from vmsentry.collect import libvirt_conf, qemu_cmdline
from vmsentry.collect.source_file import BadInput, decode_text, read_bytes
from vmsentry.model import Host, Inventory, Source, VM

COMMAND_TIMEOUT = 5.0  # seconds; each of these commands answers in milliseconds on a healthy host

SYSCTL_KEYS = (
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.ipv4.conf.all.rp_filter",
    "net.ipv4.conf.default.rp_filter",
    "net.ipv4.conf.all.arp_ignore",
    "net.ipv4.conf.all.arp_announce",
    "net.ipv4.conf.all.arp_filter",
    "net.ipv4.conf.all.accept_redirects",
    "net.ipv4.conf.default.accept_redirects",
    "net.ipv4.conf.all.send_redirects",
    "net.ipv4.conf.all.accept_source_route",
    "net.ipv6.conf.all.accept_ra",
    "net.ipv6.conf.default.accept_ra",
    "net.ipv6.conf.all.accept_redirects",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
)
# per bridge: (family, setting) read from /proc/sys/net/<family>/conf/<bridge>/<setting>
BRIDGE_SYSCTLS = (("ipv4", "rp_filter"), ("ipv4", "forwarding"), ("ipv6", "accept_ra"),
                  ("ipv6", "forwarding"), ("ipv6", "disable_ipv6"))

INTERFACE_KINDS = {"bridge", "veth", "tun", "macvtap", "macvlan", "vlan", "bond", "dummy"}
LIBVIRT_DAEMONS = ("libvirtd", "virtqemud", "virtproxyd", "virtnetworkd", "virtnwfilterd", "virtstoraged",
                   "virtsecretd", "virtnodedevd", "virtinterfaced", "virtlogd", "virtlockd")
# the daemons that accept management connections (a running virtlogd alone is not libvirt running)
MANAGEMENT_DAEMONS = frozenset({"libvirtd", "virtqemud", "virtproxyd"})
MEMORY_ENCRYPTION_CPU_FLAGS = ("sme", "sev", "sev_es", "sev_snp", "tdx_guest", "tdx_host_platform")
IOMMU_CMDLINE_PREFIXES = ("intel_iommu=", "amd_iommu=", "iommu=", "iommu.")
HOST_GROUPS = ("libvirt", "kvm", "libvirt-qemu")

# iptables built-in chains: the netfilter hook each is attached to
_LEGACY_HOOKS = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
                 "POSTROUTING": "postrouting"}
# iptables tables: netfilter priority of their base chains (NF_IP_PRI_*); nat differs per hook
_LEGACY_PRIORITIES = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
_LEGACY_NAT_PRIORITIES = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}


class CollectionError(Exception):
    """One fact group could not be read; the message says why (without a traceback)."""


# ------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------

def collect_host(root: str = "/") -> Inventory:
    """Facts about the host at ``root`` ("/" = this machine) and its non-libvirt QEMU processes.

    With another ``root`` (a copy of a host's /proc, /sys and /etc) only files are read: the commands
    would describe this machine instead, so the groups that need them are recorded as not collected
    (listening sockets fall back to /proc/net)."""
    host = _HostReader(root)
    return host.collect()


class _HostReader:
    def __init__(self, root: str):
        self.root = root
        self.live = os.path.realpath(root) == "/"
        self.facts: dict[str, Any] = {}
        self.errors: list[str] = []
        self.inv = Inventory()
        self.links: list[dict[str, Any]] = []   # parse_ip_json output, with the details bridges need
        self.cpu_flags: set[str] = set()

    # -- I/O layer -------------------------------------------------------------------------------
    def path(self, relative: str) -> str:
        return os.path.join(self.root, relative.lstrip("/"))

    def read(self, relative: str) -> str | None:
        """A small text file, or None when it does not exist. Other failures raise CollectionError."""
        try:
            with open(self.path(relative), encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CollectionError(f"cannot read {relative}: {exc.strerror}") from None

    def read_value(self, relative: str) -> str | None:
        text = self.read(relative)
        return None if text is None else text.strip()

    def run(self, argv: list[str]) -> str:
        if not self.live:
            raise CollectionError(f"{argv[0]} not run: it would describe this machine, not {self.root}")
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                  env={**os.environ, "LC_ALL": "C"}, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise CollectionError(f"{argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise CollectionError(f"{' '.join(argv)} did not answer within {COMMAND_TIMEOUT:.0f} s") from None
        except OSError as exc:
            raise CollectionError(f"cannot run {argv[0]}: {exc.strerror}") from None
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise CollectionError(f"{' '.join(argv)} failed: {message}")
        return done.stdout

    def group(self, name: str, collect: Callable[[], Any]) -> None:
        """Run one fact group; whatever goes wrong becomes None and one error line, never a crash."""
        try:
            self.facts[name] = collect()
        except CollectionError as exc:
            self.facts[name] = None
            self.errors.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a host oddity must not abort the whole scan
            self.facts[name] = None
            self.errors.append(f"{name}: unexpected {type(exc).__name__}: {exc}")

    # -- collection ------------------------------------------------------------------------------
    def collect(self) -> Inventory:
        hostname = self.hostname()
        self.facts["hostname"] = hostname
        self.group("kernel", self.kernel)
        self.group("os", lambda: parse_os_release(self.read("etc/os-release") or
                                                  self.read("usr/lib/os-release") or ""))
        self.group("interfaces", self.interfaces)
        self.group("bridges", self.bridges)
        self.group("sysctl", self.sysctl)
        self.group("listening", self.listening)
        self.group("firewall", self.firewall)
        self.group("cpu", self.cpu)
        self.group("kvm", self.kvm)
        self.group("iommu", self.iommu)
        self.group("memory_encryption", self.memory_encryption)
        self.group("lsm", self.lsm)
        self.group("versions", self.versions)
        processes: dict[int, str] = {}
        self.group("libvirt", lambda: self.libvirt(processes))
        self.libvirt_configs(processes)
        self.group("groups", lambda: parse_group_file(self.read("etc/group") or "", self.read("etc/passwd") or ""))
        self.qemu_processes(processes, hostname)
        self.facts["collection_errors"] = self.errors
        self.inv.hosts.append(Host(name=hostname, platform="linux", facts=self.facts))
        return self.inv

    def hostname(self) -> str:
        if self.live:
            return socket.gethostname()
        for relative in ("proc/sys/kernel/hostname", "etc/hostname"):
            try:
                value = self.read_value(relative)
            except CollectionError:
                value = None
            if value:
                return value
        return socket.gethostname()

    def kernel(self) -> str:
        release = self.read_value("proc/sys/kernel/osrelease")
        return release or os.uname().release

    def interfaces(self) -> list[dict[str, Any]]:
        physical = self.physical_interface_names()
        self.links = parse_ip_json(self.run(["ip", "-j", "-d", "addr", "show"]), physical)
        return [{key: link[key] for key in _INTERFACE_FIELDS} for link in self.links]

    def bridges(self) -> list[dict[str, Any]]:
        if self.facts["interfaces"] is None:
            raise CollectionError("not read, because the interfaces could not be read")
        return bridges_from_interfaces(self.links)

    def physical_interface_names(self) -> set[str]:
        # a NIC backed by a device (PCI, virtio, USB) has /sys/class/net/NAME/device
        base = self.path("sys/class/net")
        try:
            names = os.listdir(base)
        except OSError:
            return set()
        return {name for name in names if os.path.exists(os.path.join(base, name, "device"))}

    def sysctl(self) -> dict[str, str]:
        paths = [(key, "proc/sys/" + key.replace(".", "/")) for key in SYSCTL_KEYS]
        for bridge in self.facts.get("bridges") or []:
            name = bridge["name"]
            for family, setting in BRIDGE_SYSCTLS:
                paths.append((f"net.{family}.conf.{name}.{setting}", f"proc/sys/net/{family}/conf/{name}/{setting}"))
        values: dict[str, str] = {}
        for key, relative in paths:
            try:
                value = self.read_value(relative)  # an absent file is a setting this kernel does not have
            except CollectionError as exc:
                self.errors.append(f"sysctl: {exc}")
                continue
            if value is not None:
                values[key] = value
        return values

    def listening(self) -> list[dict[str, Any]]:
        try:
            return parse_ss(self.run(["ss", "-H", "-l", "-t", "-u", "-n", "-p"]))
        except CollectionError as exc:
            # /proc/net has the same sockets, without the owning process
            sockets = []
            for proto, ipv6, relative in (("tcp", False, "proc/net/tcp"), ("tcp", True, "proc/net/tcp6"),
                                          ("udp", False, "proc/net/udp"), ("udp", True, "proc/net/udp6")):
                text = self.read(relative)
                if text is not None:
                    sockets.extend(parse_proc_net(text, proto, ipv6))
            self.errors.append(f"listening: {exc}; read /proc/net instead (no process names)")
            return sockets

    def firewall(self) -> dict[str, Any]:
        try:
            nftables = parse_nft_json(self.run(["nft", "-j", "list", "ruleset"]))
        except CollectionError as exc:
            nftables = None
            self.errors.append(f"firewall.nftables: {exc}")
        iptables_legacy = self.iptables_legacy()
        return summarise_firewall(nftables, iptables_legacy)

    def iptables_legacy(self) -> dict[str, Any] | None:
        """IPv4 and IPv6 legacy tables in one ruleset (families ip and ip6)."""
        combined: dict[str, Any] = {"tables": [], "ruleset_rules": 0}
        for family, names_file, command in (("ip", "proc/net/ip_tables_names", "iptables-legacy-save"),
                                            ("ip6", "proc/net/ip6_tables_names", "ip6tables-legacy-save")):
            # Only ask when legacy tables are loaded: otherwise the command could load the ip_tables
            # kernel module, and the host must not change because we looked at it.
            if not self.read_value(names_file):
                continue
            try:
                ruleset = parse_iptables_save(self.run([command]), family)
            except CollectionError as exc:
                self.errors.append(f"firewall.iptables_legacy: {exc}")
                return None
            combined["tables"] += ruleset["tables"]
            combined["ruleset_rules"] += ruleset["ruleset_rules"]
        return combined

    def cpu(self) -> dict[str, Any]:
        text = self.read("proc/cpuinfo")
        if text is None:
            raise CollectionError("/proc/cpuinfo is missing")
        cpu, self.cpu_flags = parse_cpuinfo(text)
        return cpu

    def kvm(self) -> dict[str, Any]:
        nested = None
        for module in ("kvm_intel", "kvm_amd"):
            nested = self.read_value(f"sys/module/{module}/parameters/nested")
            if nested is not None:
                nested = {"1": "Y", "0": "N"}.get(nested, nested)
                break
        return {"dev_kvm": os.path.exists(self.path("dev/kvm")), "nested": nested,
                "ksm_run": self.read_value("sys/kernel/mm/ksm/run")}

    def iommu(self) -> dict[str, Any]:
        try:
            groups = len(os.listdir(self.path("sys/kernel/iommu_groups")))
        except FileNotFoundError:
            groups = 0
        except OSError as exc:
            raise CollectionError(f"cannot list /sys/kernel/iommu_groups: {exc.strerror}") from None
        return {"groups": groups, "cmdline_flags": parse_iommu_flags(self.read("proc/cmdline") or ""),
                "enabled": groups > 0}

    def memory_encryption(self) -> dict[str, Any]:
        def parameter(relative: str) -> bool | None:
            value = self.read_value(relative)
            return None if value is None else value.upper() in ("Y", "1")
        flags = self.cpu_flags
        return {
            "sev": parameter("sys/module/kvm_amd/parameters/sev"),
            "sev_es": parameter("sys/module/kvm_amd/parameters/sev_es"),
            "sev_snp": parameter("sys/module/kvm_amd/parameters/sev_snp"),
            "tdx": parameter("sys/module/kvm_intel/parameters/tdx"),
            "cpu_flags": [flag for flag in MEMORY_ENCRYPTION_CPU_FLAGS if flag in flags],
        }

    def lsm(self) -> dict[str, Any]:
        active_text = self.read_value("sys/kernel/security/lsm")
        active = [name for name in active_text.split(",") if name] if active_text is not None else None
        apparmor_flag = self.read_value("sys/module/apparmor/parameters/enabled")
        if apparmor_flag is None:
            apparmor = "enabled" if active and "apparmor" in active else "absent"
        else:
            apparmor = "enabled" if apparmor_flag.upper() in ("Y", "1") else "disabled"
        enforce = self.read_value("sys/fs/selinux/enforce")
        if enforce is not None:
            selinux = "enforcing" if enforce == "1" else "permissive"
        elif os.path.exists(self.path("etc/selinux/config")):
            selinux = "disabled"  # installed but selinuxfs is not mounted: the kernel runs without it
        else:
            selinux = "absent"
        return {"apparmor": apparmor, "selinux": selinux, "active": active}

    def versions(self) -> dict[str, Any]:
        return {"qemu": self.version_of(("qemu-system-x86_64", "qemu-kvm", "/usr/libexec/qemu-kvm"),
                                        parse_qemu_version),
                "libvirt": self.version_of(("libvirtd", "virtqemud"), parse_libvirt_version),
                "kernel": self.facts.get("kernel")}

    def version_of(self, programs: tuple[str, ...], parse: Callable[[str], str | None]) -> str | None:
        if not self.live:
            return None
        for program in programs:
            if shutil.which(program):  # not installed is an answer (None), not an error
                try:
                    return parse(self.run([program, "--version"]))
                except CollectionError as exc:
                    self.errors.append(f"versions: {exc}")
                    return None
        return None

    def libvirt(self, processes: dict[int, str]) -> dict[str, Any]:
        processes.update(self.process_names())
        running = sorted({name for name in processes.values() if name in LIBVIRT_DAEMONS},
                         key=LIBVIRT_DAEMONS.index)
        return {"daemon_running": any(name in MANAGEMENT_DAEMONS for name in running), "processes": running}

    def process_names(self) -> dict[int, str]:
        names: dict[int, str] = {}
        try:
            entries = os.listdir(self.path("proc"))
        except OSError as exc:
            raise CollectionError(f"cannot list /proc: {exc.strerror}") from None
        for entry in entries:
            if entry.isdigit():
                try:
                    with open(self.path(f"proc/{entry}/comm"), encoding="utf-8", errors="replace") as fh:
                        names[int(entry)] = fh.read().strip()
                except OSError:  # the process ended while we looked
                    continue
        return names

    def libvirt_configs(self, processes: dict[int, str]) -> None:
        """qemu.conf, and the remote-access settings of the daemon that serves them: virtproxyd.conf
        when virtproxyd runs (modular daemons), else libvirtd.conf."""
        remote_candidates = ("libvirtd.conf", "virtproxyd.conf")
        if "virtproxyd" in processes.values():
            remote_candidates = remote_candidates[::-1]
        for group, candidates in (("qemu_conf", ("qemu.conf",)), ("libvirtd_conf", remote_candidates)):
            for name in candidates:
                path = self.path(f"etc/libvirt/{name}")
                if os.path.exists(path):
                    self.group(group, lambda path=path: self.libvirt_config(path))
                    break

    def libvirt_config(self, path: str) -> dict[str, Any]:
        try:
            text, _ = decode_text(read_bytes(path))
        except BadInput as exc:
            raise CollectionError(f"{path}: {exc}") from None
        settings, errors = libvirt_conf.parse_text(path, text)
        self.inv.errors.extend(errors)
        return settings

    def qemu_processes(self, processes: dict[int, str], hostname: str) -> None:
        for pid, name in sorted(processes.items()):
            if not (name.startswith("qemu-system") or name in ("qemu-kvm", "kvm")):
                continue
            cmdline = f"/proc/{pid}/cmdline"
            try:
                with open(self.path(cmdline.lstrip("/")), "rb") as fh:
                    raw = fh.read()
            except OSError:  # ended meanwhile
                continue
            argv = [arg.decode("utf-8", "replace") for arg in raw.split(b"\x00") if arg]
            if not argv or is_libvirt_managed(argv):
                continue  # libvirt's own domains are read through libvirt, with their XML
            try:
                vm, errors = qemu_cmdline.vm_from_argv(argv, f"qemu-{pid}", Source(file=cmdline))
            except Exception as exc:  # noqa: BLE001 - one odd command line must not abort the scan
                self.errors.append(f"qemu process {pid}: unexpected {type(exc).__name__}: {exc}")
                continue
            vm.host, vm.state = hostname, "running"
            vm.facts["qemu.process.pid"] = {"value": pid, "at": cmdline}
            self.process_identity(vm, pid)
            self.inv.vms.append(vm)
            self.inv.errors.extend(errors)

    def process_identity(self, vm: VM, pid: int) -> None:
        """The user QEMU really runs as and its MAC confinement: what an escape from it would get."""
        try:
            status = self.read(f"proc/{pid}/status") or ""
        except CollectionError:  # the process ended meanwhile
            status = ""
        try:
            label = self.read_value(f"proc/{pid}/attr/current")
        except CollectionError:  # EINVAL: no LSM on this kernel
            label = None
        match = re.search(r"^Uid:\s+\d+\s+(\d+)", status, re.MULTILINE)
        if match:
            vm.facts["qemu.process.uid"] = {"value": int(match.group(1)), "at": f"/proc/{pid}/status"}
        if label:
            vm.facts["qemu.process.label"] = {"value": label, "at": f"/proc/{pid}/attr/current"}
            vm.security.confinement = confinement_of_label(label)


# ------------------------------------------------------------------------------------------------
# Parsers (text in, facts out)
# ------------------------------------------------------------------------------------------------

def is_libvirt_managed(argv: list[str]) -> bool:
    """libvirt starts QEMU with ``-name guest=NAME`` and its per-domain state under
    ``/var/lib/libvirt/qemu/`` (system) or ``~/.config/libvirt/qemu/`` (session)."""
    named = any(arg.startswith("guest=") for previous, arg in zip(argv, argv[1:]) if previous == "-name")
    return named and any("/libvirt/qemu/" in arg for arg in argv)


def confinement_of_label(label: str) -> str:
    """'selinux' / 'apparmor' / 'none' from /proc/PID/attr/current."""
    if label == "unconfined" or label.startswith("unconfined"):
        return "none"
    if re.fullmatch(r"[^:\s]+:[^:\s]+:[^:\s]+(:.*)?", label):  # user:role:type[:level]
        return "none" if ":unconfined_t" in label else "selinux"
    return "apparmor"  # "profile (enforce)"


def parse_os_release(text: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'") or None
    return None


_INTERFACE_FIELDS = ("name", "kind", "mac", "mtu", "state", "master", "promiscuity", "addresses")


def parse_ip_json(text: str, physical_names: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Interfaces from ``ip -j -d addr show``. Each has the public fields (name, kind, mac, mtu, state,
    master, promiscuity, addresses) plus private ``_``-prefixed details used to describe bridges."""
    try:
        links = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise CollectionError(f"ip printed malformed JSON: {exc.msg}") from None
    interfaces = []
    for link in links:
        info = link.get("linkinfo") or {}
        kind = info.get("info_kind")
        if link.get("link_type") == "loopback":
            kind = "loopback"
        elif kind in INTERFACE_KINDS:
            pass
        elif kind is None and (link.get("parentbus") or link.get("ifname") in physical_names):
            kind = "physical"
        else:
            kind = "other"
        interfaces.append({
            "name": link.get("ifname"),
            "kind": kind,
            "mac": link.get("address") if link.get("link_type") != "none" else None,
            "mtu": link.get("mtu"),
            "state": (link.get("operstate") or "unknown").lower(),
            "master": link.get("master"),
            "promiscuity": int(link.get("promiscuity") or 0),
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info") or []
                          if "local" in a and "prefixlen" in a],
            "_parent": link.get("link"),
            "_bridge": info.get("info_data") if kind == "bridge" else None,
            "_port": info.get("info_slave_data") if info.get("info_slave_kind") == "bridge" else None,
        })
    return interfaces


def bridges_from_interfaces(interfaces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bridges with their ports. A port counts as physical when it is a NIC, or a bond or VLAN over one:
    that is what puts the bridge's guests on the LAN."""
    by_name = {interface["name"]: interface for interface in interfaces}

    def physical(name: str | None, depth: int = 0) -> bool:
        interface = by_name.get(name or "")
        if interface is None or depth > 4:
            return False
        if interface["kind"] == "physical":
            return True
        if interface["kind"] == "vlan":
            return physical(interface["_parent"], depth + 1)
        if interface["kind"] == "bond":
            return any(physical(i["name"], depth + 1) for i in interfaces if i["master"] == name)
        return False

    bridges = []
    for interface in interfaces:
        if interface["kind"] != "bridge":
            continue
        data = interface["_bridge"] or {}
        ports = [i for i in interfaces if i["master"] == interface["name"]]
        bridges.append({
            "name": interface["name"],
            "addresses": list(interface["addresses"]),
            "ports": [port["name"] for port in ports],
            "physical_ports": [port["name"] for port in ports if physical(port["name"])],
            "stp": bool(data.get("stp_state")),
            "vlan_filtering": bool(data.get("vlan_filtering")),
            # extension: ports isolated from each other (bridge_slave isolated on; libvirt <port isolated='yes'/>)
            "isolated_ports": [port["name"] for port in ports if (port["_port"] or {}).get("isolated")],
        })
    return bridges


_SS_PROCESS = re.compile(r'users:\(\("((?:[^"\\]|\\.)*)",pid=(\d+)')


def parse_ss(text: str) -> list[dict[str, Any]]:
    """Listening sockets from ``ss -H -l -t -u -n -p``: TCP in LISTEN, UDP unconnected (UNCONN)."""
    sockets = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, state, local = fields[0], fields[1], fields[4]
        if not ((proto == "tcp" and state == "LISTEN") or (proto == "udp" and state == "UNCONN")):
            continue
        address, interface, port = _split_ss_address(local)
        if port is None:
            continue
        match = _SS_PROCESS.search(line)
        sockets.append({"proto": proto, "address": address, "port": port,
                        "process": match.group(1) if match else None,
                        "pid": int(match.group(2)) if match else None,
                        "interface": interface})
    return sockets


def _split_ss_address(local: str) -> tuple[str, str | None, int | None]:
    """``0.0.0.0:22``, ``[::]:22``, ``*:22`` (IPv6 any, also accepting IPv4), ``10.0.0.1%virbr0:53``."""
    host, _, port = local.rpartition(":")
    host, _, interface = host.partition("%")
    if host == "*":
        host = "::"
    host = host.strip("[]")
    return host, interface or None, int(port) if port.isdigit() else None


def parse_proc_net(text: str, proto: str, ipv6: bool) -> list[dict[str, Any]]:
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6} (the fallback without ``ss``)."""
    wanted_state = "0A" if proto == "tcp" else "07"  # TCP_LISTEN / TCP_CLOSE (an unconnected UDP socket)
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != wanted_state:
            continue
        address_hex, _, port_hex = fields[1].partition(":")
        if proto == "udp" and fields[2].split(":")[0].strip("0"):
            continue  # connected to a peer
        sockets.append({"proto": proto, "address": _proc_net_address(address_hex, ipv6),
                        "port": int(port_hex, 16), "process": None, "pid": None, "interface": None})
    return sockets


def _proc_net_address(hex_text: str, ipv6: bool) -> str:
    raw = bytes.fromhex(hex_text)
    # the kernel prints each 32-bit word in host (little-endian) byte order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET, words)


def parse_nft_json(text: str) -> dict[str, Any]:
    """``nft -j list ruleset`` summarised: tables with their chains (hook, type, priority, policy, rule
    count), jump targets kept privately for the forward-rule count."""
    try:
        items = json.loads(text or "{}").get("nftables", [])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise CollectionError(f"nft printed malformed JSON: {exc}") from None
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    total = 0
    for item in items:
        if "table" in item:
            table = item["table"]
            tables[(table["family"], table["name"])] = {"family": table["family"], "name": table["name"],
                                                        "chains": []}
        elif "chain" in item:
            chain = item["chain"]
            entry = {"name": chain["name"], "hook": chain.get("hook"), "type": chain.get("type"),
                     "priority": chain.get("prio"), "policy": chain.get("policy"), "rules": 0, "_jumps": set()}
            chains[(chain["family"], chain["table"], chain["name"])] = entry
            tables.setdefault((chain["family"], chain["table"]),
                              {"family": chain["family"], "name": chain["table"], "chains": []})["chains"].append(entry)
        elif "rule" in item:
            rule = item["rule"]
            total += 1
            entry = chains.get((rule["family"], rule["table"], rule["chain"]))
            if entry is not None:
                entry["rules"] += 1
                entry["_jumps"].update(_jump_targets(rule.get("expr")))
    return {"tables": list(tables.values()), "ruleset_rules": total}


def _jump_targets(expression: Any) -> set[str]:
    """Chains a rule jumps or goes to, including through verdict maps."""
    found: set[str] = set()
    if isinstance(expression, dict):
        for key, value in expression.items():
            if key in ("jump", "goto") and isinstance(value, dict) and "target" in value:
                found.add(value["target"])
            else:
                found |= _jump_targets(value)
    elif isinstance(expression, list):
        for item in expression:
            found |= _jump_targets(item)
    return found


def parse_iptables_save(text: str, family: str = "ip") -> dict[str, Any]:
    """``iptables-legacy-save`` (family ``ip``) or ``ip6tables-legacy-save`` (``ip6``) in the same shape
    as ``parse_nft_json``."""
    tables: list[dict[str, Any]] = []
    table: dict[str, Any] | None = None
    chains: dict[str, dict[str, Any]] = {}
    total = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = {"family": family, "name": line[1:], "chains": []}
            chains = {}
            tables.append(table)
        elif line.startswith(":") and table is not None:
            name, policy = (line[1:].split() + ["-"])[:2]
            hook = _LEGACY_HOOKS.get(name)
            priority = None
            if hook:
                priority = (_LEGACY_NAT_PRIORITIES.get(hook) if table["name"] == "nat"
                            else _LEGACY_PRIORITIES.get(table["name"]))
            chains[name] = {"name": name, "hook": hook, "type": table["name"] if hook else None,
                            "priority": priority, "policy": policy.lower() if policy != "-" else None,
                            "rules": 0, "_jumps": set()}
            table["chains"].append(chains[name])
        elif line.startswith("-A ") and table is not None:
            parts = line.split()
            chain = chains.get(parts[1]) if len(parts) > 1 else None
            total += 1
            if chain is not None:
                chain["rules"] += 1
                for flag, target in zip(parts, parts[1:]):
                    if flag in ("-j", "-g", "--jump", "--goto") and target in chains:
                        chain["_jumps"].add(target)
    return {"tables": tables, "ruleset_rules": total}


def summarise_firewall(nftables: dict[str, Any] | None, iptables_legacy: dict[str, Any] | None) -> dict[str, Any]:
    """The ``firewall`` fact group: both rulesets plus the effective forward/input policy.

    Netfilter runs every base chain on a hook and a packet passes only if none drops it, so one
    ``policy drop`` chain on the forward hook (family ip or inet) makes IPv4 forwarding default-deny.
    With no such chain at all nothing filters the hook, which is "accept". When a ruleset could not be
    read (None) and the other has no drop chain, the policy is "unknown". The ``_v6`` keys are the same
    for IPv6 (families ip6 and inet), which an IPv4-only ruleset leaves wide open."""
    rulesets = [ruleset for ruleset in (nftables, iptables_legacy) if ruleset is not None]
    complete = len(rulesets) == 2
    summary: dict[str, Any] = {
        "nftables": _public(nftables),
        "iptables_legacy": _public(iptables_legacy),
        "libvirt_chains": sorted({chain["name"] for ruleset in rulesets for table in ruleset["tables"]
                                  for chain in table["chains"] if chain["name"].startswith("LIBVIRT_")}),
    }
    for suffix, families in (("", _IPV4_FAMILIES), ("_v6", _IPV6_FAMILIES)):
        summary["forward_policy" + suffix] = _hook_policy(rulesets, "forward", families, complete)
        summary["forward_rules" + suffix] = sum(_hook_rule_count(ruleset, "forward", families) for ruleset in rulesets)
        summary["input_policy" + suffix] = _hook_policy(rulesets, "input", families, complete)
    return summary


_IPV4_FAMILIES = ("ip", "inet")
_IPV6_FAMILIES = ("ip6", "inet")


def _hook_policy(rulesets: list[dict[str, Any]], hook: str, families: tuple[str, ...], complete: bool) -> str:
    policies = [chain["policy"] for ruleset in rulesets for table in ruleset["tables"]
                if table["family"] in families for chain in table["chains"] if chain["hook"] == hook]
    if "drop" in policies:
        return "drop"
    return "accept" if complete else "unknown"


def _hook_rule_count(ruleset: dict[str, Any], hook: str, families: tuple[str, ...]) -> int:
    count = 0
    for table in ruleset["tables"]:
        if table["family"] not in families:
            continue
        by_name = {chain["name"]: chain for chain in table["chains"]}
        pending = [chain["name"] for chain in table["chains"] if chain["hook"] == hook]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            count += by_name[name]["rules"]
            pending.extend(by_name[name]["_jumps"])
    return count


def _public(ruleset: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ruleset without the private jump sets (the fact layout is plain JSON)."""
    if ruleset is None:
        return None
    return {"tables": [{"family": table["family"], "name": table["name"],
                        "chains": [{key: value for key, value in chain.items() if not key.startswith("_")}
                                   for chain in table["chains"]]} for table in ruleset["tables"]],
            "ruleset_rules": ruleset["ruleset_rules"]}


def parse_cpuinfo(text: str) -> tuple[dict[str, Any], set[str]]:
    """The first CPU's vendor, model and virtualisation flags, and all its flags."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor block is enough: all CPUs of a host are alike
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    cpu = {"vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
           "vmx": "vmx" in flags, "svm": "svm" in flags,
           "model": fields.get("model name") or fields.get("Model") or fields.get("cpu model")}
    return cpu, flags


def parse_iommu_flags(cmdline: str) -> list[str]:
    # arguments after "--" belong to init, not the kernel
    kernel_part = cmdline.split(" -- ", 1)[0]
    return [token for token in kernel_part.split() if token.startswith(IOMMU_CMDLINE_PREFIXES)]


def parse_group_file(group_text: str, passwd_text: str = "") -> dict[str, list[str] | None]:
    """Members of the groups that control VMs: listed members plus users whose primary group it is.
    A group that does not exist is None."""
    gids: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for line in group_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] in HOST_GROUPS:
            gids[parts[0]] = parts[2]
            members[parts[0]] = [name for name in parts[3].split(",") if name]
    for line in passwd_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            for group, gid in gids.items():
                if parts[3] == gid and parts[0] not in members[group]:
                    members[group].append(parts[0])
    return {group: members.get(group) for group in HOST_GROUPS}


def parse_qemu_version(text: str) -> str | None:
    match = re.search(r"version (\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def parse_libvirt_version(text: str) -> str | None:
    match = re.search(r"\(libvirt\) (\d+(?:\.\d+)+)", text) or re.search(r"(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None
