"""Proxmox VE: ``/etc/pve/qemu-server/VMID.conf``, the firewall files (``cluster.fw``, ``host.fw``,
``VMID.fw``) and ``/etc/network/interfaces``.

VM configuration (pve-docs ``qm.conf`` / ``generated/qm.conf.5-opts.adoc``): ``key: value`` lines; option
values are property strings ``[model=]MAC,bridge=vmbr0,firewall=1,tag=10``. ``[name]`` starts a snapshot
section with its own settings (``snaptime``, ``vmstate``); ``[PENDING]`` holds changes not yet applied and
``[special:cloudinit]`` cloud-init state - neither is a snapshot and neither describes the running VM.

Mapping to the inventory:

- ``netN`` with ``bridge=`` -> a ``bridged`` NIC on that bridge (``host-only`` once ``/etc/network/interfaces``
  shows the bridge has no ports - done by ``proxmox_link``); without ``bridge=`` -> ``user`` (QEMU user-mode
  NAT: "kvm user (NATed) network device", guest sees the host at 10.0.2.2); ``link_down=1`` -> not connected;
  ``firewall``, ``tag``, ``trunks`` are facts; whether the firewall really filters the NIC needs cluster.fw
  and VMID.fw and is decided by ``proxmox_link``;
- ``hostpciN`` -> pci-passthrough; ``usbN: host=...`` -> usb-passthrough, ``usbN: spice`` -> usb-redirection;
- the VNC console is always ``-vnc unix:/var/run/qemu-server/VMID.vnc,password=on`` (qemu-server; reached
  through pveproxy 8006), so it is recorded as a UNIX-socket listener, not a network one; ``vga: qxl*``
  (SPICE) is reached through the host's spiceproxy (3128) - a host service recorded as the fact
  ``proxmox.spice``, not a per-VM listener; ``serialN: socket`` -> a UNIX socket
  ``/var/run/qemu-server/VMID.serialN``;
- clipboard: ``vga: ...,clipboard=vnc`` -> bidirectional (noVNC via qemu-vdagent); SPICE displays (qxl*)
  get the spice-vdagent channel -> clipboard bidirectional and client-to-guest file transfer;
- ``spice_enhancements: foldersharing=1`` -> a ``spice-folder`` share (the SPICE client's folder via
  WebDAV); ``virtiofsN`` -> a ``virtiofs`` share (``dirid`` names a cluster directory mapping);
- ``args:`` -> parsed with the QEMU command-line parser (``qemu_argv.apply_args``): raw QEMU options
  Proxmox does not manage (hostfwd, -vnc, -monitor ...);
- ``amd-sev: type=std|es|snp`` -> memory encryption sev|sev-es|sev-snp; ``intel-tdx`` -> tdx;
  ``bios: ovmf`` with ``efidisk0 ... pre-enrolled-keys=1`` -> Secure Boot on;
- ``[snapshot]`` sections with ``snaptime`` -> snapshots; ``vmstate`` -> the memory fact.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime

from vmsentry.collect import debian_interfaces, proxmox_fw
from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.source_file import NOT_UTF8, BadInput, decode_text, looks_binary, read_text_file
from vmsentry.model import VM, Device, Host, InputError, Inventory, Listener, Nic, Share, Snapshot, Source

PLATFORM = "proxmox"
# keys only a qemu-server VM config has (at least one must appear, with the 'key: value' shape)
_PVE_KEYS = re.compile(
    rb"^(?:vmgenid|smbios1|scsihw|ostype|bootdisk|net\d+|hostpci\d+|vga|sockets|cores|"
    rb"agent|onboot|numa|machine|meta|boot|args|spice_enhancements|efidisk0|"
    rb"scsi\d+|virtio\d+|sata\d+|ide\d+|memory|name|cpu|bios|snaptime|parent|digest):\s",
    re.MULTILINE,
)
_KEY = re.compile(r"[a-z][a-z0-9_-]*\Z")
_CONF_LINE = re.compile(rb"^\s*(?:#.*|\[[^\]]+\]|[a-z][a-z0-9_-]*:\s.*|)\s*$")
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_FW_SECTION = re.compile(rb"^\s*\[(?:OPTIONS|RULES|ALIASES|IPSET\s|GROUP\s)", re.IGNORECASE | re.MULTILINE)
_VMID = re.compile(r"(?:^|[^0-9])(\d{3,9})\.(?:conf|fw)$")
_NIC_MODELS = (
    "e1000",
    "e1000-82540em",
    "e1000-82544gc",
    "e1000-82545em",
    "e1000e",
    "i82551",
    "i82557b",
    "i82559er",
    "ne2k_isa",
    "ne2k_pci",
    "pcnet",
    "rtl8139",
    "virtio",
    "vmxnet3",
)


def claims(path: str, head: bytes) -> bool:
    base = os.path.basename(path)
    if looks_binary(head):
        return False
    if base.endswith(".fw"):
        return bool(_FW_SECTION.search(head))
    if base.endswith(".conf"):
        if head.lstrip().startswith((b"<", b"{")):
            return False
        found = len(_PVE_KEYS.findall(head))
        # a one-setting file (qemu-server's test configs) must be nothing but 'key: value' lines
        return found >= 2 or (found == 1 and all(_CONF_LINE.match(line) for line in head.splitlines()))
    if base == "interfaces" or os.path.basename(os.path.dirname(path)) == "interfaces.d":
        return debian_interfaces.looks_like(head.decode("utf-8", "replace"))
    return False


def scope_of(path: str) -> str:
    """Files of one cluster: below the nearest folder called ``pve`` (``/etc/pve/qemu-server/100.conf``
    and ``/etc/pve/firewall/100.fw`` share ``/etc/pve``), else the file's own folder."""
    folder = os.path.dirname(os.path.abspath(path))
    probe = folder
    while True:
        if os.path.basename(probe) == "pve":
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return folder
        probe = parent


def vmid_of(path: str) -> str | None:
    m = _VMID.search(os.path.basename(path))
    return m.group(1) if m else None


def read(path: str, data: bytes | None = None) -> Inventory:
    text, lossy = decode_text(read_text_file(path, data, "a Proxmox VE configuration file"))
    base = os.path.basename(path)
    if base.endswith(".fw"):
        inv = _read_fw(path, text)
    elif base.endswith(".conf"):
        inv = _read_vm_conf(path, text)
    else:
        inv = debian_interfaces.parse(path, text)
        for net in inv.networks:
            net.facts["proxmox.scope"] = {"value": scope_of(path), "at": path}
    if lossy:
        inv.errors.append(InputError(path, NOT_UTF8))
    return inv


# ------------------------------------------------------------------------------------------ firewall


def _read_fw(path: str, text: str) -> Inventory:
    base = os.path.basename(path)
    kind = "cluster" if base.endswith("cluster.fw") else "host" if base.endswith("host.fw") else "vm"
    vmid = vmid_of(path) if kind == "vm" else None
    if kind == "vm" and vmid is None:
        raise BadInput("a Proxmox firewall file that is neither cluster.fw, host.fw nor VMID.fw; not read")
    fw, errors = proxmox_fw.parse(path, text, kind)
    inv = Inventory(errors=errors)
    scope = scope_of(path)
    summary = fw.fact_dict(path)
    if kind == "vm":
        vm = VM(name=f"vmid-{vmid}", platform=PLATFORM, source=Source(file=path))
        vm.facts["proxmox.vmid"] = {"value": vmid, "at": path}
        vm.facts["proxmox.scope"] = {"value": scope, "at": path}
        vm.facts["proxmox.fw_only"] = {"value": True, "at": path}
        vm.facts["proxmox.vm_fw"] = {"value": summary, "at": path}
        inv.vms.append(vm)
    else:
        node = os.path.basename(os.path.dirname(os.path.abspath(path))) if kind == "host" else None
        name = f"pve-{kind}:{scope}" if kind == "cluster" else f"pve-node:{node}@{scope}"
        host = Host(name=name, platform=PLATFORM)
        host.facts.update(
            {"source_file": path, "proxmox.kind": kind, "proxmox.scope": scope, f"proxmox.{kind}_fw": summary}
        )
        inv.hosts.append(host)
    return inv


# ------------------------------------------------------------------------------------------ VM config


def parse_property_string(text: str, implied: str | None = None) -> dict[str, str]:
    """``virtio=AA:BB,bridge=vmbr0,firewall=1`` -> dict; a bare first item is the implied key's value."""
    out: dict[str, str] = {}
    first = True  # the first non-blank item
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if eq:
            out[key.strip()] = value.strip()
        elif not key.strip():
            continue
        elif first and implied:
            out[implied] = key.strip()
        else:
            out[key.strip()] = "1"
        first = False
    return out


def _sections(
    path: str, text: str, errors: list[InputError]
) -> list[tuple[str | None, int, list[tuple[str, str, int]]]]:
    """[(section name or None for the main config, header line, [(key, value, line)])]."""
    sections: list[tuple[str | None, int, list[tuple[str, str, int]]]] = [(None, 0, [])]
    settings = sections[0][2]  # of the section being read
    valid_key = _KEY.match
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        first = line[0]
        if first == "#":
            continue
        if first == "[":
            sm = _SECTION.match(line)
            if sm:
                settings = []
                sections.append((sm.group(1).strip(), number, settings))
                continue
        key, sep, value = line.partition(":")
        key = key.rstrip()
        if not sep or not valid_key(key):
            errors.append(InputError(path, f"line {number}: not a 'key: value' setting; skipped"))
            continue
        settings.append((key, value.strip(), number))
    return sections


def _read_vm_conf(path: str, text: str) -> Inventory:
    inv = Inventory()
    sections = _sections(path, text, inv.errors)
    main = sections[0][2]
    if not main and not any(s[0] for s in sections):
        raise BadInput("empty Proxmox VE VM configuration")
    settings = {k: (v, n) for k, v, n in main}
    vmid = vmid_of(path)
    name = settings.get("name", (None,))[0] or (f"vmid-{vmid}" if vmid else os.path.splitext(os.path.basename(path))[0])
    vm = VM(name=name, platform=PLATFORM, source=Source(file=path))
    scope = scope_of(path)
    vm.facts["proxmox.scope"] = {"value": scope, "at": path}
    if vmid:
        vm.facts["proxmox.vmid"] = {"value": vmid, "at": path}
    smbios = settings.get("smbios1")
    if smbios:
        vm.uuid = parse_property_string(smbios[0]).get("uuid")
    cap = DeviceCap(path, inv.errors)
    _apply_settings(vm, main, vmid, inv.errors, cap)
    for section, header, items in cap.take(sections[1:], "snapshot", lambda s: f"line {s[1]}, [{s[0]}]"):
        if section.upper() == "PENDING":
            vm.facts["proxmox.pending"] = {"value": [k for k, _, _ in items], "at": f"line {header}, [PENDING]"}
            continue
        if section.startswith("special:"):
            continue
        sect = {k: (v, n) for k, v, n in items}
        created = None
        if "snaptime" in sect:
            try:
                created = datetime.fromtimestamp(int(sect["snaptime"][0]), UTC).isoformat()
            except (ValueError, OverflowError, OSError):
                inv.errors.append(
                    InputError(path, f"line {sect['snaptime'][1]}: snaptime {sect['snaptime'][0]!r} is not a Unix time")
                )
        vm.snapshots.append(Snapshot(section, created))
        if "vmstate" in sect:
            vm.facts[f"proxmox.snapshot.{section}.vmstate"] = {
                "value": sect["vmstate"][0],
                "at": f"line {sect['vmstate'][1]}, [{section}] vmstate",
            }
    inv.vms.append(vm)
    return inv


# settings _apply_settings reads: numbered devices (by name without the number), then named settings
_DEVICE_SETTINGS = frozenset(("net", "hostpci", "usb", "serial", "parallel", "virtiofs"))
_FACT_SETTINGS = frozenset(
    (
        "agent",
        "protection",
        "bios",
        "machine",
        "tpmstate0",
        "hookscript",
        "lock",
        "template",
        "ostype",
        "efidisk0",
        "cpu",
    )
)
_NAMED_SETTINGS = _FACT_SETTINGS | {"spice_enhancements", "ivshmem", "amd-sev", "intel-tdx", "args"}


def _apply_settings(
    vm: VM, items: list[tuple[str, str, int]], vmid: str | None, errors: list[InputError], cap: DeviceCap
) -> None:
    settings = {k: (v, n) for k, v, n in items}
    sock_id = vmid or "VMID"
    # the VNC console qemu-server always starts (reached through pveproxy's authenticated vncproxy)
    vm.listeners.append(
        Listener(
            "vnc",
            "unix",
            f"/var/run/qemu-server/{sock_id}.vnc",
            None,
            "password",
            "qemu-server default (-vnc unix:/var/run/qemu-server/VMID.vnc,password=on)",
        )
    )
    vga_raw, vga_line = settings.get("vga", ("std", None))
    vga = parse_property_string(vga_raw, implied="type")
    vga_type = vga.get("type", "std")
    vga_at = f"line {vga_line}, vga" if vga_line else "vga (absent: std)"
    spice = vga_type.startswith("qxl")
    if spice:
        vm.facts["proxmox.spice"] = {
            "value": f"vga {vga_type}: SPICE console through the host's spiceproxy (port 3128)",
            "at": vga_at,
        }
    if vga.get("clipboard") == "vnc":
        vm.channels.clipboard = "bidirectional"
        vm.facts["proxmox.vga.clipboard"] = {"value": "vnc", "at": vga_at}
    elif spice:
        vm.channels.clipboard = "bidirectional"
        vm.facts["proxmox.vga.clipboard"] = {"value": "spice (default for qxl)", "at": vga_at}
    else:
        vm.channels.clipboard = "disabled"
    vm.channels.drag_and_drop = "host-to-guest" if spice else "disabled"
    for key, value, line in items:
        # most settings (memory, cores, scsi0, boot...) are none of these: skip them before building a locator
        base = key.rstrip("0123456789")
        if base == key or base not in _DEVICE_SETTINGS:
            if key not in _NAMED_SETTINGS:
                continue
            base = None
        elif not cap.admit(f"{base}N", f"line {line}, {key}"):
            continue  # the per-VM cap: net0..netN, hostpciN ... past it are not read
        at = f"line {line}, {key}"
        if base == "net":
            _read_net(vm, key, value, at)
        elif base == "hostpci":
            props = parse_property_string(value, implied="host")
            vm.devices.append(Device("pci-passthrough", props.get("host") or props.get("mapping", value), at))
        elif base == "usb":
            props = parse_property_string(value, implied="host")
            host = props.get("host") or props.get("mapping")
            if host == "spice":
                vm.devices.append(Device("usb-redirection", "spice", at))
            else:
                vm.devices.append(Device("usb-passthrough", host or value, at))
        elif base == "serial":
            if value.strip() == "socket":
                vm.listeners.append(
                    Listener("serial", "unix", f"/var/run/qemu-server/{sock_id}.{key}", None, "none", at)
                )
            else:
                vm.devices.append(Device("serial-host", value, at))
        elif base == "parallel":
            vm.devices.append(Device("parallel-host", value, at))
        elif base == "virtiofs":
            props = parse_property_string(value, implied="dirid")
            vm.shares.append(
                Share(
                    "virtiofs",
                    f"directory mapping {props.get('dirid')}",
                    key,
                    writable=props.get("ro") not in ("1", "on", "true"),
                    locator=at,
                )
            )
        elif key == "spice_enhancements":
            props = parse_property_string(value)
            vm.facts["proxmox.spice_enhancements"] = {"value": value, "at": at}
            if props.get("foldersharing") in ("1", "on", "true"):
                vm.shares.append(Share("spice-folder", None, "spice-webdav", True, at))
        elif key == "ivshmem":
            vm.devices.append(Device("ivshmem", value, at))
            vm.facts["proxmox.ivshmem"] = {"value": value, "at": at}
        elif key == "amd-sev":
            props = parse_property_string(value, implied="type")
            vm.security.memory_encryption = {"std": "sev", "es": "sev-es", "snp": "sev-snp"}.get(
                props.get("type"), "sev"
            )
            vm.facts["proxmox.amd-sev"] = {"value": value, "at": at}
        elif key == "intel-tdx":
            vm.security.memory_encryption = "tdx"
            vm.facts["proxmox.intel-tdx"] = {"value": value, "at": at}
        elif key == "args":
            _read_args(vm, value, at, errors)
        elif key in _FACT_SETTINGS:
            vm.facts[f"proxmox.{key}"] = {"value": value, "at": at}
    bios = settings.get("bios", ("seabios", None))[0]
    efidisk = settings.get("efidisk0")
    vm.security.secure_boot = bool(
        bios == "ovmf" and efidisk and parse_property_string(efidisk[0], "file").get("pre-enrolled-keys") == "1"
    )
    vm.facts["proxmox.vga"] = {"value": vga_raw, "at": vga_at}


def _read_net(vm: VM, key: str, value: str, at: str) -> None:
    props = parse_property_string(value)
    model, mac = None, None
    for candidate in _NIC_MODELS:
        if candidate in props:
            model, mac = candidate, props[candidate]
            break
    model = model or props.get("model")
    mac = mac or props.get("macaddr")
    bridge = props.get("bridge")
    nic = Nic(
        id=key,
        mode="bridged" if bridge else "user",
        mac=mac.lower() if mac else None,
        bridge=bridge,
        model=model,
        locator=at,
        type="bridge" if bridge else "user",
    )
    nic.connected = props.get("link_down") not in ("1", "on", "true")
    nic.target = f"tap{vm.facts.get('proxmox.vmid', {}).get('value', 'VMID')}i{key[3:]}"
    if not bridge:
        nic.detail = "QEMU user-mode NAT (host at 10.0.2.2, DNS 10.0.2.3, SMB 10.0.2.4)"
        nic.spoof_protection = None
    firewall = props.get("firewall", "0")
    vm.facts[f"proxmox.{key}.firewall"] = {"value": firewall, "at": at}
    for opt in ("tag", "trunks", "rate", "queues", "mtu"):
        if opt in props:
            vm.facts[f"proxmox.{key}.{opt}"] = {"value": props[opt], "at": at}
    vm.nics.append(nic)


def _read_args(vm: VM, value: str, at: str, errors: list[InputError]) -> None:
    from vmsentry.collect.qemu_argv import apply_args
    from vmsentry.collect.qemu_redact import redacted

    try:
        argv = split_args(value)
    except ValueError as exc:
        errors.append(InputError(vm.source.file or "?", f"{at}: cannot split args into arguments: {exc}"))
        return
    vm.facts["proxmox.args"] = {"value": redacted(argv), "at": at}
    errors.extend(apply_args(vm, argv, at))


_ARG = re.compile(r"""(?:[^\s'"\\]|'[^']*'|"(?:[^"\\]|\\.)*"|\\.)+""", re.S)
_ARG_PART = re.compile(r"""[^'"\\]+|'([^']*)'|"((?:[^"\\]|\\.)*)"|\\(.)""", re.S)
_DQ_ESCAPE = re.compile(r'\\([\\"$`\n])')


def split_args(text: str) -> list[str]:
    """POSIX shell word splitting as ``shlex.split`` does it (quotes, backslashes, no comments), with
    regular expressions instead of shlex's character loop: ``args:`` lines are long and there are
    thousands. Raises ValueError on an unbalanced quote."""
    if not any(c in text for c in "'\"\\"):
        return text.split()
    words, pos = [], 0
    for m in _ARG.finditer(text):
        if text[pos : m.start()].strip():
            raise ValueError("No closing quotation")
        words.append(
            "".join(
                p.group(1)
                if p.group(1) is not None
                else _DQ_ESCAPE.sub(r"\1", p.group(2))
                if p.group(2) is not None
                else p.group(3)
                if p.group(3) is not None
                else p.group(0)
                for p in _ARG_PART.finditer(m.group(0))
            )
        )
        pos = m.end()
    if text[pos:].strip():
        raise ValueError("No closing quotation")
    return words
