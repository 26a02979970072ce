"""VMware ``.vmx`` machine files (ESXi, Workstation, Fusion, Player, GSX/Server).

Format: one ``key = "value"`` per line; keys are case-insensitive; ``#`` starts a comment; a value may
be unquoted; VMware escapes special bytes in values as ``|XX`` (hex, e.g. ``|22`` for ``"``); the file's
``.encoding`` key names its character set (``windows-1252``, ``windows-949-2000``, ``UTF-8``...). A
broken line is reported by number and skipped; every other line is still read. A key written twice
keeps its last value (the file is read top to bottom); the duplicates are recorded in
``vmx.duplicate_keys``.

Defaults this module applies (each noted where it is used):

* ``ethernetN.present`` absent = no NIC (libvirt ``src/vmx/vmx.c`` reads it with default false);
* ``ethernetN.connectionType`` absent = ``bridged`` (libvirt ``src/vmx/vmx.c``; on ESXi the NIC is then
  on the port group ``ethernetN.networkName``, or a distributed port group with ``ethernetN.dvs.*``);
* ``custom`` + ``ethernetN.vnet`` needs the host's vmnet set-up; without it the Workstation defaults are
  used: vmnet0 bridged, vmnet1 host-only, vmnet8 NAT (VMware Workstation Pro documentation, "Virtual
  Network Editor": the three default virtual networks). ``vmware_link`` replaces them when the host's
  ``netmap.conf`` / ``networking`` file was read in the same scan;
* ``ethernetN.startConnected`` absent = connected;
* ``sharedFolderN.writeAccess`` absent = read-only (libvirt ``src/vmx/vmx.c``), ``.enabled`` absent =
  enabled; ``isolation.tools.hgfs.disable = TRUE`` switches every shared folder off;
* clipboard and drag-and-drop: on ESXi off unless ``isolation.tools.{copy,paste,dnd}.disable`` is FALSE
  (DISA VMCH-80-000189/191/192: "Copy and paste operations are disabled by default"); on the hosted
  products (Workstation/Fusion, ``virtualHW.productCompatibility = "hosted"``) on unless those keys are TRUE.

Secrets (``RemoteDisplay.vnc.password``/``.key``, ``encryption.keySafe``/``encryption.data``,
``guest.commands.sharedSecretLogin.*``) are recorded as present only, never their value.
"""

from __future__ import annotations

import os
import re

from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND, capped_message
from vmsentry.collect.source_file import BadInput, read_text_file
from vmsentry.collect.vmware_product import product_of
from vmsentry.collect.vmware_vmx_text import as_bool, decode_vmx, locator, parse_vmx
from vmsentry.model import VM, Device, InputError, Inventory, Listener, Nic, Share, Source

PLATFORM = "vmware"
SECRET = "<set>"

_INDEXED = re.compile(
    r"(ethernet|serial|parallel|sharedfolder|pcipassthru|floppy|usb\.autoconnect\.device)(\d+)(?:\.|$)"
)
_DISK_MODE = re.compile(r"((?:scsi|ide|sata|nvme)\d+:\d+)\.mode$")
_CDROM = re.compile(r"((?:scsi|ide|sata)\d+:\d+)\.devicetype$")
_UUID_HEX = re.compile(r"[0-9a-f]{32}\Z")  # uuid.bios without its spaces and dashes

# keys whose values are secrets: presence only
_SECRET_KEYS = (
    "remotedisplay.vnc.password",
    "remotedisplay.vnc.key",
    "encryption.keysafe",
    "encryption.data",
    "guest.commands.sharedsecretlogin",
    "dataFileKey".lower(),
    "vmx.encryptiontype.key",
)

# Settings whose raw value rules read (DISA vSphere 8 STIG VMCH-80-*, VMware SCG, 6.x hardening guide).
# Stored in vm.facts as vmx.<key as written in the STIG>.
FACT_KEYS = (
    "isolation.tools.copy.disable",
    "isolation.tools.paste.disable",
    "isolation.tools.dnd.disable",
    "isolation.tools.setGUIOptions.enable",
    "isolation.tools.diskShrink.disable",
    "isolation.tools.diskWiper.disable",
    "RemoteDisplay.maxConnections",
    "tools.setInfo.sizeLimit",
    "isolation.device.connectable.disable",
    "isolation.device.edit.disable",
    "tools.guestlib.enableHostInfo",
    "sched.mem.pshare.salt",
    "tools.guest.desktop.autolock",
    "mks.enable3d",
    "migrate.encryptionMode",
    "ftcpt.ftEncryptionMode",
    "isolation.tools.hgfs.disable",
    "isolation.tools.hgfsServerSet.disable",
    "sharedFolder.maxNum",
    "hgfs.mapRootShare",
    "hgfs.linkRootShare",
    "RemoteDisplay.vnc.enabled",
    "RemoteDisplay.vnc.port",
    "RemoteDisplay.vnc.ip",
    "virtualHW.productCompatibility",
    "virtualHW.version",
    "log.rotateSize",
    "log.keepOld",
    "logging",
    "isolation.tools.vixMessage.disable",
    "isolation.tools.autoInstall.disable",
    "isolation.tools.unity.disable",
    "isolation.tools.ghi.autologon.disable",
    "isolation.tools.getCreds.disable",
    "bios.bootDeviceClasses",
    "usb.present",
    "ehci.present",
    "usb_xhci.present",
    "vmci0.unrestricted",
    "ethernet.allowGuestConnectionControl",
)
_FACT_BY_LOWER = {k.lower(): k for k in FACT_KEYS}

# Workstation/Fusion default virtual networks (VMware Workstation Pro docs, Virtual Network Editor)
DEFAULT_VMNET_MODE = {"vmnet0": "bridged", "vmnet1": "host-only", "vmnet8": "nat"}
_CONNECTION_MODE = {"bridged": "bridged", "nat": "nat", "hostonly": "host-only", "pvn": "private"}
_CONNECTION_VMNET = {"bridged": "vmnet0", "nat": "vmnet8", "hostonly": "vmnet1"}


def claims(path: str, head: bytes) -> bool:
    lower = path.lower()
    if lower.endswith((".vmx", ".vmtx")):
        return True
    if head[:1] == b"<" or b"\x00" in head:
        return False
    return b"config.version" in head and b"virtualHW.version" in head


_SECRET_SUFFIXES = (".password", ".passwd")


def is_secret(lower_key: str) -> bool:
    return lower_key.startswith(_SECRET_KEYS) or lower_key.endswith(_SECRET_SUFFIXES)


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip(), 0)
    except (TypeError, ValueError):
        return None


def _uuid(value: str | None) -> str | None:
    if not value:
        return None
    hexdigits = value.replace(" ", "").replace("-", "").lower()
    if not _UUID_HEX.match(hexdigits):
        return None
    return f"{hexdigits[:8]}-{hexdigits[8:12]}-{hexdigits[12:16]}-{hexdigits[16:20]}-{hexdigits[20:]}"


def read(path: str, data: bytes | None = None) -> Inventory:
    text, problem = decode_vmx(read_text_file(path, data, "a VMware .vmx file"))
    entries, problems, dups = parse_vmx(text)
    inv = Inventory()
    if problem:
        inv.errors.append(InputError(path, problem))
    inv.errors.extend(InputError(path, p) for p in problems)
    if not entries:
        raise BadInput("no 'key = \"value\"' settings: not a VMware .vmx file")
    inv.vms.append(build_vm(entries, path, dups, inv.errors))
    return inv


# What build_vm does with a key depends on the (lower-case) key alone, and a fleet's files repeat the same
# few hundred keys: each key is classified once and the role kept (bounded, as a fleet may also carry
# per-VM keys such as guestinfo.*).
_PLAIN, _FACT, _INDEXED_KEY, _SECRET_KEY, _DISK_MODE_KEY, _DEVICE_TYPE_KEY = (
    "plain",
    "fact",
    "indexed",
    "secret",
    "disk mode",
    "device type",
)
_KEY_ROLES: dict[str, tuple] = {}
_KEY_ROLES_MAX = 8192


def _key_role(lower: str) -> tuple:
    """(_FACT, fact name) | (_INDEXED_KEY, group, index, sub-key, is a secret) | (_SECRET_KEY,) |
    (_DISK_MODE_KEY,) | (_DEVICE_TYPE_KEY,) | (_PLAIN,), remembered in _KEY_ROLES."""
    role: tuple = (_PLAIN,)
    canonical = _FACT_BY_LOWER.get(lower)
    first = lower[0]
    m = _INDEXED.match(lower) if canonical is None and first in "espfu" else None
    if canonical is not None:
        role = (_FACT, f"vmx.{canonical}")
    elif m is not None:
        role = (
            _INDEXED_KEY,
            m.group(1),
            int(m.group(2)),
            lower[m.end() :],
            first == "s" and lower.endswith(_SECRET_SUFFIXES),
        )
    elif is_secret(lower):
        role = (_SECRET_KEY,)
    elif first in "sin":
        if lower.endswith(".mode") and _DISK_MODE.match(lower):
            role = (_DISK_MODE_KEY,)
        elif lower.endswith(".devicetype") and _CDROM.match(lower):
            role = (_DEVICE_TYPE_KEY,)
    if len(_KEY_ROLES) < _KEY_ROLES_MAX:
        _KEY_ROLES[lower] = role
    return role


def build_vm(
    entries: dict[str, tuple[str, int, str]],
    path: str,
    dups: dict[str, list[int]] | None = None,
    errors: list[InputError] | None = None,
) -> VM:
    get = entries.get

    def val(key: str) -> str | None:
        e = get(key)
        return e[0] if e is not None else None

    def at(key: str) -> str | None:
        e = get(key)
        return locator(e)

    name = val("displayname") or os.path.splitext(os.path.basename(path))[0] or "?"
    vm = VM(name=name, platform=PLATFORM, uuid=_uuid(val("uuid.bios")), source=Source(file=path))
    facts = vm.facts
    product, evidence = product_of(entries)
    facts["vmx.product"] = {"value": product, "at": evidence}
    if dups:
        facts["vmx.duplicate_keys"] = {
            "value": sorted(f"{entries[k][2]} (lines {', '.join(map(str, v))})" for k, v in dups.items()),
            "at": "whole file; the last value of each is used",
        }

    groups: dict[str, dict[int, dict[str, tuple[str, int, str]]]] = {}
    overflow: dict[str, int | str] = {}  # group -> where the first device past the cap was written
    disk_modes: list[tuple[str, int, str]] = []  # the (value, line, key) entries of disk modes
    role_of = _KEY_ROLES.get
    for lower, entry in entries.items():
        role = role_of(lower)
        if role is None:
            role = _key_role(lower)
        kind = role[0]
        if kind is _PLAIN:
            continue
        if kind is _FACT:
            facts[role[1]] = {"value": entry[0], "at": locator(entry)}
        elif kind is _INDEXED_KEY:
            _, group, index, sub, secret = role
            bucket = groups.setdefault(group, {})
            keys = bucket.get(index)
            if keys is None:
                if len(bucket) >= MAX_DEVICES_PER_KIND:  # the per-VM cap: later indexes are not read
                    overflow.setdefault(group, entry[1])
                    continue
                keys = bucket[index] = {}
            keys[sub] = entry
            if secret:
                facts[f"vmx.{entry[2]}"] = {"value": SECRET, "at": locator(entry)}
        elif kind is _SECRET_KEY:
            facts[f"vmx.{entry[2]}"] = {"value": SECRET, "at": locator(entry)}
        elif kind is _DISK_MODE_KEY:
            disk_modes.append(entry)
        elif "cdrom" in entry[0].lower():  # a _DEVICE_TYPE_KEY: whether it is a CD-ROM is in its value
            dev = lower[: -len(".devicetype")]
            present = as_bool(val(dev + ".present"))
            connected = as_bool(val(dev + ".startconnected"))
            if present is not False:
                facts[f"vmx.{entry[2][: -len('.deviceType')]}.cdrom"] = {
                    "value": "connected" if connected is not False else "not connected at power on",
                    "at": locator(entry),
                }
    for entry in disk_modes:
        if entry[0].strip().lower() == "independent-nonpersistent":
            facts[f"vmx.{entry[2]}"] = {"value": entry[0], "at": locator(entry)}

    for index, keys in _capped(groups, "ethernet", overflow, path, errors):
        _read_ethernet(vm, index, keys)
    for index, keys in _capped(groups, "serial", overflow, path, errors):
        _read_serial(vm, index, keys)
    for index, keys in _capped(groups, "parallel", overflow, path, errors):
        present = keys.get("present")
        if present is not None and as_bool(present[0]):
            vm.devices.append(
                Device("parallel-port", f"parallel{index} {keys.get('filetype', ('?',))[0]}", locator(present))
            )
    for index, keys in _capped(groups, "floppy", overflow, path, errors):
        present = keys.get("present")
        if present is not None and as_bool(present[0]):
            connected = keys.get("startconnected")
            state = "connected" if connected is None or as_bool(connected[0]) is not False else "not connected"
            vm.devices.append(Device("floppy", f"floppy{index} {state}", locator(present)))
    for index, keys in _capped(groups, "pcipassthru", overflow, path, errors):
        present = keys.get("present")
        if present is not None and as_bool(present[0]):
            ident = (keys.get("id") or keys.get("deviceid") or ("?",))[0]
            vm.devices.append(Device("pci-passthrough", f"pciPassthru{index} {ident}", locator(present)))
    for index, keys in _capped(groups, "usb.autoconnect.device", overflow, path, errors):
        entry = next(iter(keys.values()))
        vm.devices.append(Device("usb-passthrough", f"usb.autoConnect.device{index} {entry[0]}", locator(entry)))
    for ctrl in ("usb.present", "ehci.present", "usb_xhci.present"):
        e = get(ctrl)
        if e is not None and as_bool(e[0]):
            vm.devices.append(Device("usb-controller", e[2].split(".")[0], locator(e)))
    _read_vnc(vm, val, at)
    _read_shares(vm, dict(_capped(groups, "sharedfolder", overflow, path, errors)), val, at)
    _read_channels(vm, product, val, at)
    encrypted = get("encryption.keysafe") is not None or get("encryption.data") is not None
    vm.security.disk_encryption = True if encrypted else None
    return vm


def _capped(groups: dict, group: str, overflow: dict, path: str, errors: list[InputError] | None) -> list:
    """The group's devices by index; says once when the per-VM cap left some unread."""
    if group in overflow and errors is not None:
        where = overflow[group]
        errors.append(InputError(path, capped_message(f"line {where}" if type(where) is int else where, f"{group}N")))
    return sorted(groups.get(group, {}).items())


def _read_ethernet(vm: VM, index: int, keys: dict[str, tuple[str, int, str]]) -> None:
    present = keys.get("present")
    if present is None or not as_bool(present[0]):
        return  # absent or FALSE: no such NIC
    nic_id = f"ethernet{index}"
    ctype_e = keys.get("connectiontype")
    ctype = ctype_e[0].strip().lower() if ctype_e is not None else None
    nic = Nic(id=nic_id, locator=locator(ctype_e) or locator(present), type=ctype or "bridged (default)")
    network = keys.get("networkname")
    vnet = keys.get("vnet")
    dvs = keys.get("dvs.portgroupid")
    if ctype is None or ctype == "bridged":
        nic.mode = "bridged"
        if dvs is not None:
            nic.network = dvs[0]
            nic.type = "dvs"
            nic.detail = f"distributed switch {keys.get('dvs.switchid', ('?',))[0]} port group {dvs[0]}"
        elif network is not None:
            nic.network = network[0]  # ESXi port group, or Workstation's VMnet0
        else:
            nic.network = "vmnet0"
        if ctype is None and dvs is None and network is not None:
            nic.detail = f"port group {network[0]}"
    elif ctype in ("nat", "hostonly"):
        nic.mode = _CONNECTION_MODE[ctype]
        nic.network = _CONNECTION_VMNET[ctype]
    elif ctype == "custom":
        target = vnet[0].strip() if vnet is not None else ""
        base = os.path.basename(target).lower() if target else ""
        nic.network = base or None
        nic.bridge = base or None
        nic.mode = DEFAULT_VMNET_MODE.get(base, "unknown")
        nic.detail = (
            f"custom {target}: Workstation default for {base}; host vmnet configuration not read"
            if base in DEFAULT_VMNET_MODE
            else f"custom {target or '(no vnet)'}: depends on the host's vmnet configuration (netmap.conf / networking)"
        )
        if vnet is not None:
            nic.locator = locator(vnet)
    elif ctype == "pvn":
        nic.mode = "private"
        pvn = keys.get("pvnid")
        nic.network = f"pvn:{pvn[0]}" if pvn is not None else "pvn"
        nic.detail = "LAN segment"
    else:
        nic.mode = "unknown"
        nic.detail = f"connectionType {ctype}"
    addr_type = (keys.get("addresstype") or ("generated",))[0].strip().lower()
    mac = keys.get("address") if addr_type == "static" else keys.get("generatedaddress")
    if mac is None:
        mac = keys.get("address") or keys.get("generatedaddress")
    nic.mac = mac[0].strip().lower() if mac is not None else None
    model = keys.get("virtualdev")
    nic.model = model[0] if model is not None else None
    start = keys.get("startconnected")
    if start is not None and as_bool(start[0]) is False:
        nic.connected = False
    for sub, entry in keys.items():
        if sub.startswith("filter") and sub.endswith(".name"):
            nic.filter = entry[0]
            vm.facts[f"vmx.{entry[2]}"] = {"value": entry[0], "at": locator(entry)}
    allow = keys.get("allowguestconnectioncontrol")
    if allow is not None:
        vm.facts[f"vmx.{allow[2]}"] = {"value": allow[0], "at": locator(allow)}
    vm.nics.append(nic)


def _parse_uri(uri: str) -> tuple[str, str | None, int | None]:
    """telnet://host:port -> ('telnet', host or None, port)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        scheme, rest = "tcp", uri
    rest = rest.split("/", 1)[0]
    host, port = rest, None
    if rest.startswith("["):
        close = rest.find("]")
        host, _, port_s = rest[1:close], None, rest[close + 2 :]
        port = _int(port_s)
    elif ":" in rest:
        host, _, port_s = rest.rpartition(":")
        port = _int(port_s)
    return scheme.lower(), (host or None), port


def _read_serial(vm: VM, index: int, keys: dict[str, tuple[str, int, str]]) -> None:
    present = keys.get("present")
    if present is None or not as_bool(present[0]):
        return
    ftype = (keys.get("filetype") or ("device",))[0].strip().lower()
    fname = keys.get("filename")
    where = locator(present)
    vm.devices.append(Device("serial-port", f"serial{index} {ftype} {fname[0] if fname else ''}".rstrip(), where))
    if ftype != "network" or fname is None:
        return
    endpoint = (keys.get("network.endpoint") or ("server",))[0].strip().lower()
    scheme, host, port = _parse_uri(fname[0].strip())
    vm.facts[f"vmx.serial{index}.network"] = {"value": f"{fname[0]} endPoint={endpoint}", "at": locator(fname)}
    if endpoint != "server" or keys.get("vspc") is not None:
        return  # the VM connects out (or to a vSPC concentrator): no listener
    address = None if host in (None, "", "0.0.0.0", "*") else host
    # telnets/ssl encrypt the stream but VMware's network serial port authenticates no client
    tls = scheme in ("telnets", "ssl", "tls", "tcp+ssl", "tcp+tls")
    vm.listeners.append(Listener("serial", "tcp", address, port, "none", locator(fname), tls=tls))


def _read_vnc(vm: VM, val, at) -> None:
    if not as_bool(val("remotedisplay.vnc.enabled")):
        return
    ip = val("remotedisplay.vnc.ip")
    address = None if ip in (None, "", "0.0.0.0") else ip.strip()
    port = _int(val("remotedisplay.vnc.port"))
    has_secret = val("remotedisplay.vnc.password") is not None or val("remotedisplay.vnc.key") is not None
    vm.listeners.append(
        Listener(
            "vnc",
            "tcp",
            address,
            port if port is not None else 5900,
            "password" if has_secret else "none",
            at("remotedisplay.vnc.enabled"),
        )
    )


def _read_shares(vm: VM, folders: dict[int, dict], val, at) -> None:
    if not folders:
        return
    off = as_bool(val("isolation.tools.hgfs.disable"))
    for index, keys in sorted(folders.items()):
        present = keys.get("present")
        if present is None or not as_bool(present[0]):
            continue
        enabled = keys.get("enabled")
        if enabled is not None and as_bool(enabled[0]) is False:
            continue
        host = keys.get("hostpath")
        guest = keys.get("guestname")
        write = keys.get("writeaccess")
        share = Share(
            "hgfs",
            host[0] if host else None,
            guest[0] if guest else None,
            writable=bool(write is not None and as_bool(write[0])),
            locator=locator(host) or locator(present),
        )
        if off:
            vm.facts[f"vmx.sharedFolder{index}.suppressed"] = {
                "value": f"{share.host_path} (isolation.tools.hgfs.disable = TRUE)",
                "at": share.locator,
            }
            continue
        vm.shares.append(share)
        exp = keys.get("expiration")
        if exp is not None:
            vm.facts[f"vmx.sharedFolder{index}.expiration"] = {"value": exp[0], "at": locator(exp)}


def _read_channels(vm: VM, product: str, val, at) -> None:
    def off(key: str) -> bool | None:
        value = as_bool(val(key))
        if value is None and product != "unknown":
            return product == "esxi"  # ESXi: off by default; hosted products: on by default
        return value

    copy_off, paste_off, dnd_off = (
        off("isolation.tools.copy.disable"),
        off("isolation.tools.paste.disable"),
        off("isolation.tools.dnd.disable"),
    )
    if copy_off is None or paste_off is None:
        vm.channels.clipboard = "unknown"
    else:
        vm.channels.clipboard = (
            "disabled"
            if copy_off and paste_off
            else "host-to-guest"
            if copy_off
            else "guest-to-host"
            if paste_off
            else "bidirectional"
        )
    vm.channels.drag_and_drop = "unknown" if dnd_off is None else ("disabled" if dnd_off else "bidirectional")
