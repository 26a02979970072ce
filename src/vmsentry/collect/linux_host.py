"""The live Linux host (``vmsentry scan --host``): kernel, network, firewall and isolation facts, plus
every QEMU process that libvirt does not manage.

Read-only: files under /proc, /sys and /etc, and the read-only commands ``ip -j -d addr``, ``ss``,
``nft -j list ruleset``, ``ip[6]tables-legacy-save``, ``qemu-system-x86_64 --version`` and
``libvirtd --version``. Each fact group that cannot be read becomes ``None`` plus a line in
``facts["collection_errors"]``; collection itself never fails.

Every source has a small parser that takes text (``parse_ss``, ``parse_nft_json`` ... in
``linux_host_parsers.py``), so tests can feed them recorded output; this module is the thin layer that
touches the system. The facts it gathers become the typed groups of ``model.Host``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any

from vmsentry.collect import libvirt_conf, qemu_cmdline
from vmsentry.collect.linux_host_parsers import (
    CollectionError,
    bridges_from_interfaces,
    confinement_of_label,
    is_libvirt_managed,
    parse_cpuinfo,
    parse_group_file,
    parse_iommu_flags,
    parse_ip_json,
    parse_iptables_save,
    parse_libvirt_version,
    parse_nft_json,
    parse_os_release,
    parse_proc_net,
    parse_qemu_version,
    parse_ss,
    public_interface,
    summarise_firewall,
)
from vmsentry.collect.source_file import BadInput, decode_text, read_bytes
from vmsentry.model import VM, Host, Inventory, Source

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
BRIDGE_SYSCTLS = (
    ("ipv4", "rp_filter"),
    ("ipv4", "forwarding"),
    ("ipv6", "accept_ra"),
    ("ipv6", "forwarding"),
    ("ipv6", "disable_ipv6"),
)

LIBVIRT_DAEMONS = (
    "libvirtd",
    "virtqemud",
    "virtproxyd",
    "virtnetworkd",
    "virtnwfilterd",
    "virtstoraged",
    "virtsecretd",
    "virtnodedevd",
    "virtinterfaced",
    "virtlogd",
    "virtlockd",
)
# the daemons that accept management connections (a running virtlogd alone is not libvirt running)
MANAGEMENT_DAEMONS = frozenset({"libvirtd", "virtqemud", "virtproxyd"})
MEMORY_ENCRYPTION_CPU_FLAGS = ("sme", "sev", "sev_es", "sev_snp", "tdx_guest", "tdx_host_platform")


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
        self.links: list[dict[str, Any]] = []  # parse_ip_json output, with the details bridges need
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
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                env={**os.environ, "LC_ALL": "C"},
                stdin=subprocess.DEVNULL,
            )
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
        except Exception as exc:
            self.facts[name] = None
            self.errors.append(f"{name}: unexpected {type(exc).__name__}: {exc}")

    # -- collection ------------------------------------------------------------------------------
    def collect(self) -> Inventory:
        hostname = self.hostname()
        self.facts["hostname"] = hostname
        self.group("kernel", self.kernel)
        self.group("os", lambda: parse_os_release(self.read("etc/os-release") or self.read("usr/lib/os-release") or ""))
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
        return [public_interface(link) for link in self.links]

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
            for proto, ipv6, relative in (
                ("tcp", False, "proc/net/tcp"),
                ("tcp", True, "proc/net/tcp6"),
                ("udp", False, "proc/net/udp"),
                ("udp", True, "proc/net/udp6"),
            ):
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
        for family, names_file, command in (
            ("ip", "proc/net/ip_tables_names", "iptables-legacy-save"),
            ("ip6", "proc/net/ip6_tables_names", "ip6tables-legacy-save"),
        ):
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
        return {
            "dev_kvm": os.path.exists(self.path("dev/kvm")),
            "nested": nested,
            "ksm_run": self.read_value("sys/kernel/mm/ksm/run"),
        }

    def iommu(self) -> dict[str, Any]:
        try:
            groups = len(os.listdir(self.path("sys/kernel/iommu_groups")))
        except FileNotFoundError:
            groups = 0
        except OSError as exc:
            raise CollectionError(f"cannot list /sys/kernel/iommu_groups: {exc.strerror}") from None
        return {
            "groups": groups,
            "cmdline_flags": parse_iommu_flags(self.read("proc/cmdline") or ""),
            "enabled": groups > 0,
        }

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
        return {
            "qemu": self.version_of(("qemu-system-x86_64", "qemu-kvm", "/usr/libexec/qemu-kvm"), parse_qemu_version),
            "libvirt": self.version_of(("libvirtd", "virtqemud"), parse_libvirt_version),
            "kernel": self.facts.get("kernel"),
        }

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
        running = sorted({name for name in processes.values() if name in LIBVIRT_DAEMONS}, key=LIBVIRT_DAEMONS.index)
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
            except Exception as exc:
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
