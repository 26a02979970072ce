"""``VBoxManage showvminfo VM --machinereadable`` output (one ``key="value"`` or ``key=value`` per line).

Keys used (VBoxManage's own names): ``name``, ``UUID``, ``CfgFile``, ``VMState``; per NIC N ``nicN``
(``none|null|nat|bridged|intnet|hostonly|hostonlynet|natnetwork|generic|cloud``), ``macaddressN``,
``cableconnectedN``, ``nicpromiscN`` (``deny|allow-vms|allow-all``), ``bridgeadapterN``,
``hostonlyadapterN``, ``intnetN``, ``nat-networkN``, ``Forwarding(i)="name,proto,hostip,hostport,guestip,
guestport"`` (after the NAT NIC it belongs to); ``vrde``, ``vrdeport``/``vrdeports``, ``vrdeaddress``,
``vrdeauthtype``, ``vrdemulticon``; ``clipboard``, ``draganddrop``; ``uartmodeN`` (``tcpserver,PORT``);
``SharedFolderNameMachineMappingN`` / ``SharedFolderPathMachineMappingN``; ``teleporterenabled``,
``teleporterport``, ``teleporteraddress``, ``teleporterpassword`` (a secret: presence only).
The output does not show a shared folder's read-only flag or NAT ``localhost-reachable``: those stay
unknown (shares are assumed writable, the VirtualBox default).
"""

from __future__ import annotations

from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND, capped
from vmsentry.collect.source_file import NOT_UTF8, BadInput, decode_text, looks_binary, read_bytes
from vmsentry.collect.virtualbox import CLIPBOARD_MODES, PLATFORM, VRDE_AUTH
from vmsentry.model import VM, Forward, InputError, Inventory, Listener, Nic, Share, Source

_MODES = {
    "nat": "user",
    "natnetwork": "nat",
    "bridged": "bridged",
    "intnet": "internal",
    "hostonly": "host-only",
    "hostonlynet": "host-only",
    "generic": "unknown",
    "cloud": "unknown",
    "null": "disconnected",
}
_PROMISC = {"deny": "Deny", "allow-vms": "AllowNetwork", "allow-all": "AllowAll"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Windows PowerShell 5.1 '>' writes UTF-16LE


def _utf16(data: bytes) -> str | None:
    if data[:2] in _UTF16_BOMS:
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            return data[: len(data) // 2 * 2].decode("utf-16", "replace")
    return None


def claims(path: str, head: bytes) -> bool:
    wide = _utf16(head[: len(head) // 2 * 2])
    if wide is not None:
        head = wide.encode("utf-8", "replace")
    if head[:1] == b"<" or b"\x00" in head:
        return False
    return head.startswith(b'name="') and (b'\nUUID="' in head or b'\nostype="' in head)


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    wide = _utf16(data)
    if wide is None and looks_binary(data):
        raise BadInput("binary data, not VBoxManage showvminfo output")
    text, lossy = (wide, False) if wide is not None else decode_text(data)
    inv = Inventory()
    if lossy:
        inv.errors.append(InputError(path, NOT_UTF8))
    kv: dict[str, tuple[str, int]] = {}
    forwards: list[tuple[str, str, int]] = []
    last_nat = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            inv.errors.append(InputError(path, f"line {lineno}: not key=value; ignored"))
            continue
        key = key.strip().strip('"')
        value = value.strip()
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            value = value[1:-1]
        if key.startswith("nic") and key[3:].isdigit() and value == "nat":
            last_nat = key[3:]
        if key.startswith("Forwarding("):
            if len(forwards) <= MAX_DEVICES_PER_KIND:  # one past the cap, for the cap's error to name
                forwards.append((last_nat or "1", value, lineno))
            continue
        kv[key] = (value, lineno)
    if "name" not in kv:
        raise BadInput('no name="..." line: not VBoxManage showvminfo --machinereadable output')
    vm = VM(
        name=kv["name"][0],
        platform=PLATFORM,
        uuid=(kv.get("UUID") or ("",))[0].lower() or None,
        source=Source(file=path),
    )
    get = lambda k: kv.get(k, (None, 0))[0]
    at = lambda k: f"line {kv[k][1]}, {k}" if k in kv else None
    if get("VMState"):
        vm.state = get("VMState")
    for n in range(1, 37):
        mode = get(f"nic{n}")
        if mode is None:
            continue
        if mode == "none":
            continue
        nic = Nic(id=f"nic{n}", mode=_MODES.get(mode, "unknown"), type=mode, locator=at(f"nic{n}"))
        mac = get(f"macaddress{n}")
        if mac and len(mac) == 12:
            nic.mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2)).lower()
        nic.connected = get(f"cableconnected{n}") != "off"
        nic.bridge = get(f"bridgeadapter{n}")
        nic.network = (
            get(f"hostonlyadapter{n}") or get(f"intnet{n}") or get(f"nat-network{n}") or get(f"hostonly-network{n}")
        )
        if mode == "generic":
            nic.detail = f"generic driver {get(f'generic{n}') or '?'}"
        promisc = get(f"nicpromisc{n}")
        if promisc:
            vm.facts[f"vbox.Adapter{n - 1}.promiscuousModePolicy"] = {
                "value": _PROMISC.get(promisc, promisc),
                "at": at(f"nicpromisc{n}"),
            }
        vm.nics.append(nic)
    for nic_n, value, lineno in capped(forwards, "Forwarding", path, inv.errors, lambda f: f"line {f[2]}"):
        parts = value.split(",")
        if len(parts) != 6 or not parts[3].isdigit() or not parts[5].isdigit():
            inv.errors.append(
                InputError(
                    path,
                    f"line {lineno}: Forwarding entry is not name,proto,hostip,hostport,guestip,guestport; ignored",
                )
            )
            continue
        name, proto, hostip, hport, _gip, gport = parts
        vm.forwards.append(
            Forward(
                proto.lower() if proto.lower() in ("tcp", "udp") else "tcp",
                [int(hport)] * 2,
                [int(gport)] * 2,
                hostip.strip() or None,
                f"nic{nic_n}",
                f"line {lineno}, Forwarding ({name})",
            )
        )
    if get("vrde") == "on":
        port_s = (get("vrdeports") or get("vrdeport") or "3389").replace("-", ",").split(",")[0]
        address = (get("vrdeaddress") or "").strip()
        auth = (get("vrdeauthtype") or "null").lower()
        vm.listeners.append(
            Listener(
                "vrde",
                "tcp",
                None if address in ("", "0.0.0.0") else address,
                int(port_s) if port_s.isdigit() else None,
                VRDE_AUTH.get(auth, "unknown"),
                at("vrde"),
            )
        )
    if get("vrde") is not None:
        vm.facts["vbox.VRDE.enabled"] = {"value": get("vrde") == "on", "at": at("vrde")}
    if get("vrdeauthtype") is not None:
        vm.facts["vbox.VRDE.authType"] = {"value": get("vrdeauthtype").capitalize(), "at": at("vrdeauthtype")}
    if get("vrdemulticon") is not None:
        vm.facts["vbox.VRDE.allowMultiConnection"] = {"value": get("vrdemulticon") == "on", "at": at("vrdemulticon")}
    clip = get("clipboard") or get("clipboard-mode")
    vm.channels.clipboard = CLIPBOARD_MODES.get((clip or "").lower(), "unknown")
    dnd = get("draganddrop") or get("drag-and-drop")
    vm.channels.drag_and_drop = CLIPBOARD_MODES.get((dnd or "").lower(), "unknown")
    for n in range(1, 5):
        mode = get(f"uartmode{n}")
        if mode and mode.startswith("tcpserver,"):
            port = mode.split(",", 1)[1]
            vm.listeners.append(
                Listener("serial", "tcp", None, int(port) if port.isdigit() else None, "none", at(f"uartmode{n}"))
            )
    for n in range(1, 65):
        name = get(f"SharedFolderNameMachineMapping{n}")
        if name is None:
            break
        vm.shares.append(
            Share(
                "vboxsf",
                get(f"SharedFolderPathMachineMapping{n}"),
                name,
                True,
                at(f"SharedFolderNameMachineMapping{n}"),
            )
        )
    if get("teleporterenabled") == "on":
        has_pw = bool(get("teleporterpassword"))
        vm.facts["vbox.Teleporter.enabled"] = {"value": True, "at": at("teleporterenabled")}
        vm.facts["vbox.Teleporter.password"] = {"value": "<set>" if has_pw else "", "at": at("teleporterenabled")}
        port = get("teleporterport") or ""
        address = (get("teleporteraddress") or "").strip() or None
        vm.listeners.append(
            Listener(
                "migration",
                "tcp",
                address,
                int(port) if port.isdigit() else None,
                "password" if has_pw else "none",
                at("teleporterenabled"),
            )
        )
    inv.vms.append(vm)
    return inv
