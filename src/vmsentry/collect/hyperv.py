"""Hyper-V: the JSON document ``scripts/collectors/hyperv-export.ps1`` writes on a Hyper-V host.

The export holds the cmdlets' own objects, property names unchanged (``Get-VMHost``, ``Get-VMSwitch`` with
``Get-VMSwitchExtension``, ``Get-VM``, ``Get-VMNetworkAdapter`` with ``-Vlan``/``-Acl``/``-ExtendedAcl``,
``Get-VMIntegrationService``, ``Get-VMSnapshot``, ``Get-VMSecurity``, ``Get-VMFirmware``,
``Get-VMAssignableDevice``, ``Get-VMComPort``). The script writes enum values as their names
(``"Off"``, ``"External"``); plain ``ConvertTo-Json`` on Windows PowerShell 5.1 writes enums as numbers,
so both are accepted. Numbers follow the Hyper-V module's enums: OnOffState On=0 Off=1; VMSwitchType
Private=0 Internal=1 External=2; VMNetworkAdapterPortMirroringMode None=0 Destination=1 Source=2;
VMNetworkAdapterVlanMode Untagged=0 Access=1 Trunk=2 Private=3; MigrationAuthenticationType CredSSP=0
Kerberos=1. ``DateTime`` values may be ISO strings (PowerShell 7) or ``/Date(ms)/`` (5.1).

Mapping to the inventory (documented in docs/platforms.md):

- switch ``External`` -> NIC ``bridged``, ``Internal`` -> ``host-only`` (the management OS has a vNIC on it),
  ``Private`` -> ``private``; an adapter with no switch -> ``disconnected``; switches become networks with
  ``AllowManagementOS`` as a fact;
- ``spoof_protection`` is True exactly when ``MacAddressSpoofing`` is ``Off``; ``DhcpGuard``,
  ``RouterGuard``, ``PortMirroringMode``, VLAN mode and ACLs are facts for their own rules;
- ``Get-VMHost EnableEnhancedSessionMode`` True -> clipboard and drag-and-drop ``bidirectional`` for every VM
  (RDP over VMBus redirects clipboard and drives; it needs a guest that supports it), False -> ``disabled``;
- integration service "Guest Service Interface" enabled -> a ``guest-service`` share (``Copy-VMFile`` pushes
  host files into the guest);
- ``Get-VMAssignableDevice`` (DDA) -> pci-passthrough; ``Get-VMSnapshot`` -> snapshots;
  ``Get-VMFirmware SecureBoot`` -> secure_boot; ``Get-VMSecurity`` -> facts.

PowerShell DSC configurations and Packer templates are not exports: they declare a desired state with
variables resolved only when compiled, so each is reported in one line ("not a Hyper-V export") and not
guessed at.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from vmsentry.collect.device_cap import MAX_VMS_PER_HOST, DeviceCap, capped
from vmsentry.collect.source_file import BadInput, parse_json, read_bytes
from vmsentry.model import VM, Device, Host, InputError, Inventory, Network, Nic, Share, Snapshot, Source

PLATFORM = "hyperv"
EXPORT_MARK = b"vmsentry.hyperv-export/"
ON_OFF = {0: "On", 1: "Off"}
SWITCH_TYPE = {0: "Private", 1: "Internal", 2: "External"}
MIRROR = {0: "None", 1: "Destination", 2: "Source"}
VLAN_MODE = {0: "Untagged", 1: "Access", 2: "Trunk", 3: "Private"}
MIGRATION_AUTH = {0: "CredSSP", 1: "Kerberos"}
ACL_ACTION = {1: "Allow", 2: "Deny", 3: "Meter"}
ACL_DIRECTION = {1: "Inbound", 2: "Outbound", 3: "Both"}
SWITCH_MODE = {"External": "bridged", "Internal": "host-only", "Private": "private"}
_DSC = re.compile(
    rb"(?:Import-DscResource[^\n]*(?:Hyper-?V|HyperVDsc)|\bx?VMSwitch\b|\bx?VMHyperV\b|"
    rb"\bxVMNetworkAdapter\b|hyperv-iso|--only=hyperv|Get-VMSwitch|New-VMSwitch)",
    re.IGNORECASE,
)


def claims(path: str, head: bytes) -> bool:
    lower = path.lower()
    if EXPORT_MARK in head and head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return True
    if lower.endswith((".ps1", ".psm1")):
        return bool(_DSC.search(head))
    if lower.endswith(".json"):
        return b'"hyperv-iso"' in head
    return False


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    if EXPORT_MARK not in data[:4096] or not data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        raise BadInput(_not_an_export(path, data))
    doc = parse_json(data, "not UTF-8 text: save the export with -Encoding utf8")
    if not isinstance(doc, dict):
        raise BadInput("not a Hyper-V export (top level is not an object)")
    return read_export(doc, Source(file=path))


def _not_an_export(path: str, data: bytes) -> str:
    if path.lower().endswith(".json"):
        what = "a Packer template (hyperv-iso builder)"
    elif re.search(rb"^\s*configuration\s+\w+", data, re.IGNORECASE | re.MULTILINE):
        what = "a PowerShell DSC configuration (desired state, variables resolved only when compiled)"
    else:
        what = "a PowerShell script"
    return (
        f"not a Hyper-V export: {what}; run scripts/collectors/hyperv-export.ps1 on the host and scan "
        "the JSON it writes"
    )


# ------------------------------------------------------------------------------------------ export


# properties copied as they are into facts, for the rules that read them
HOST_FACTS = (
    "EnableEnhancedSessionMode",
    "VirtualMachineMigrationEnabled",
    "UseAnyNetworkForMigration",
    "VirtualMachineMigrationPerformanceOption",
    "MaximumVirtualMachineMigrations",
)
VM_FACTS = ("Generation", "Version", "AutomaticStopAction", "CheckpointType")
SECURITY_FACTS = (
    "EncryptStateAndVmMigrationTraffic",
    "Shielded",
    "TpmEnabled",
    "KsdEnabled",
    "VirtualizationBasedSecurityOptOut",
)


def _copy_facts(facts: dict, prefix: str, obj: dict[str, Any], at: str, keys: tuple[str, ...]) -> None:
    """Each of ``keys`` that ``obj`` has becomes the fact ``prefix.key``, found at ``at.key`` in the export."""
    for key in keys:
        if key in obj:
            facts[f"{prefix}.{key}"] = {"value": obj[key], "at": f"{at}.{key}"}


class WrongType(Exception):
    """A property of the wrong JSON type: ``at`` names it as the export does (``vms[3].Name``)."""

    def __init__(self, at: str, expected: str, value: Any):
        kind = "an object" if isinstance(value, dict) else "a list" if isinstance(value, list) else _json_kind(value)
        super().__init__(f"{at}: expected {expected}, got {kind}")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "a number" if isinstance(value, (int, float)) else "a string"


def _text(obj: dict[str, Any], key: str, at: str) -> str | None:
    """``obj[key]`` as text (None when absent, null or empty); a number is taken as its digits (PowerShell
    writes some ids and versions as numbers); an object or a list is refused, never turned into Python text."""
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise WrongType(f"{at}.{key}" if at else key, "a string", value)


def _enum(value: Any, table: dict[int, str], at: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return table.get(value, str(value))
    if isinstance(value, dict) and "Value" in value:  # PowerShell 5.1 sometimes wraps enums
        return _enum(value.get("Value"), table, at)
    if isinstance(value, str):
        return value
    raise WrongType(at, "a name or a number", value)


def _list(value: Any) -> list:
    """ConvertTo-Json writes a one-element collection as the element itself."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _date(value: Any, at: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("value") or value.get("DateTime")
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise WrongType(at, "a date", value)
    text = str(value)
    m = re.match(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$", text)
    if m:
        try:
            return datetime.fromtimestamp(int(m.group(1)) / 1000, UTC).isoformat()
        except (ValueError, OverflowError, OSError):  # beyond the years a datetime holds
            raise WrongType(at, "a date", value) from None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def read_export(doc: dict[str, Any], source: Source) -> Inventory:
    inv = Inventory()
    where = source.file or "?"
    host_doc = doc.get("host") if isinstance(doc.get("host"), dict) else {}
    try:
        host_name = _text(host_doc, "ComputerName", "host") or _text(host_doc, "Name", "host")
        host_name = host_name or _text(doc, "ComputerName", "") or "hyperv-host"
    except WrongType as exc:
        inv.errors.append(InputError(where, f"{exc}; the host is named hyperv-host"))
        host_name = "hyperv-host"
    host = Host(name=host_name, platform=PLATFORM)
    host.facts["source_file"] = where
    _copy_facts(host.facts, "hyperv.host", host_doc, "host", HOST_FACTS)
    if "VirtualMachineMigrationAuthenticationType" in host_doc:
        at = "host.VirtualMachineMigrationAuthenticationType"
        try:
            value = _enum(host_doc["VirtualMachineMigrationAuthenticationType"], MIGRATION_AUTH, at)
            host.facts["hyperv.host.VirtualMachineMigrationAuthenticationType"] = {"value": value, "at": at}
        except WrongType as exc:
            inv.errors.append(InputError(where, f"{exc}; not read"))
    inv.hosts.append(host)
    switches: dict[str, Network] = {}
    per_export = DeviceCap(where, inv.errors, unit="entries in one export")
    for index, sw in per_export.take(enumerate(_list(doc.get("switches"))), "switch", lambda e: f"switches[{e[0]}]"):
        try:
            net = _read_switch(sw, index, source, host_name, inv.errors)
        except WrongType as exc:
            inv.errors.append(InputError(where, f"{exc}; switch skipped"))
            continue
        if net is None:
            inv.errors.append(InputError(where, f"switches[{index}]: a switch without a Name; skipped"))
            continue
        switches[net.name] = net
        inv.networks.append(net)
    enhanced = host_doc.get("EnableEnhancedSessionMode")
    vm_entries = DeviceCap(where, inv.errors, MAX_VMS_PER_HOST, "entries in one export")
    for index, vm_doc in vm_entries.take(enumerate(_list(doc.get("vms"))), "VM", lambda e: f"vms[{e[0]}]"):
        try:
            name = _text(vm_doc, "Name", f"vms[{index}]") if isinstance(vm_doc, dict) else None
            if not name:
                inv.errors.append(InputError(where, f"vms[{index}]: a VM without a Name; skipped"))
                continue
            inv.vms.append(_read_vm(vm_doc, index, source, host_name, switches, enhanced, inv.errors))
        except WrongType as exc:
            inv.errors.append(InputError(where, f"{exc}; VM skipped"))
    if not (inv.vms or inv.networks):
        inv.errors.append(InputError(where, "the export holds no VMs and no switches"))
    return inv


def _read_switch(sw: Any, index: int, source: Source, host_name: str, errors: list[InputError]) -> Network | None:
    at = f"switches[{index}]"
    name = _text(sw, "Name", at) if isinstance(sw, dict) else None
    if not name:
        return None
    stype = _enum(sw.get("SwitchType"), SWITCH_TYPE, f"{at}.SwitchType")
    net = Network(
        name=name,
        platform=PLATFORM,
        mode=SWITCH_MODE.get(stype or "", "unknown"),
        source=source,
        host=host_name,
        locator=at,
    )
    net.facts["hyperv.switch.SwitchType"] = {"value": stype, "at": f"{at}.SwitchType"}
    if "AllowManagementOS" in sw:
        net.facts["hyperv.switch.AllowManagementOS"] = {
            "value": sw["AllowManagementOS"],
            "at": f"{at}.AllowManagementOS",
        }
    uplink = _text(sw, "NetAdapterInterfaceDescription", at)
    if uplink:
        net.forwards = [uplink]
    extension_types = {1: "Capture", 2: "Filter", 3: "Forwarding", 4: "Monitoring", 5: "Native"}
    extensions = [
        {
            "Name": _text(e, "Name", f"{at}.Extensions[{n}]"),
            "Enabled": e.get("Enabled"),
            "ExtensionType": _enum(e.get("ExtensionType"), extension_types, f"{at}.Extensions[{n}].ExtensionType"),
            "Vendor": _text(e, "Vendor", f"{at}.Extensions[{n}]"),
        }
        for n, e in capped(
            enumerate(_list(sw.get("Extensions"))),
            "Extensions",
            source.file or "?",
            errors,
            lambda e: f"{at}.Extensions[{e[0]}]",
            unit="entries in one switch",
        )
        if isinstance(e, dict)
    ]
    if extensions:
        net.facts["hyperv.switch.Extensions"] = {"value": extensions, "at": f"{at}.Extensions"}
    return net


def _read_vm(
    d: dict[str, Any],
    index: int,
    source: Source,
    host_name: str,
    switches: dict[str, Network],
    enhanced: Any,
    errors: list[InputError],
) -> VM:
    base = f"vms[{index}]"
    vm = VM(
        name=_text(d, "Name", base) or "", platform=PLATFORM, uuid=_text(d, "Id", base), source=source, host=host_name
    )
    vm.state = _enum(d.get("State"), {}, f"{base}.State")
    _copy_facts(vm.facts, "hyperv.vm", d, base, VM_FACTS)
    cap = DeviceCap(source.file or "?", errors)
    adapters = [
        a
        for n, a in cap.take(
            enumerate(_list(d.get("NetworkAdapters"))), "NetworkAdapters", lambda e: f"{base}.NetworkAdapters[{e[0]}]"
        )
        if isinstance(a, dict)
    ]
    names = [_text(a, "Name", f"{base}.NetworkAdapters[{n}]") or "Network Adapter" for n, a in enumerate(adapters)]
    for n, a in enumerate(adapters):
        nic_id = names[n] if names.count(names[n]) == 1 else f"{names[n]} #{n + 1}"
        _read_adapter(vm, a, nic_id, f"{base}.NetworkAdapters[{n}]", switches, cap)
    if enhanced is None:
        vm.channels.clipboard = vm.channels.drag_and_drop = "unknown"
    elif enhanced is True or str(enhanced).lower() == "true":
        vm.channels.clipboard = vm.channels.drag_and_drop = "bidirectional"
        vm.facts["hyperv.host.EnableEnhancedSessionMode"] = {"value": True, "at": "host.EnableEnhancedSessionMode"}
    else:
        vm.channels.clipboard = vm.channels.drag_and_drop = "disabled"
    services = _list(d.get("IntegrationServices"))
    for n, svc in cap.take(enumerate(services), "IntegrationServices", lambda e: f"{base}.IntegrationServices[{e[0]}]"):
        if not isinstance(svc, dict):
            continue
        at = f"{base}.IntegrationServices[{n}]"
        name = _text(svc, "Name", at) or ""
        vm.facts[f"hyperv.integration.{name}"] = {"value": bool(svc.get("Enabled")), "at": at}
        if name == "Guest Service Interface" and svc.get("Enabled"):
            vm.shares.append(Share("guest-service", None, "Copy-VMFile", True, at))
    if "IntegrationServices" in d:
        vm.facts["hyperv.integration.collected"] = {"value": True, "at": f"{base}.IntegrationServices"}
    assignable = enumerate(_list(d.get("AssignableDevices")))
    for n, dev in cap.take(assignable, "AssignableDevices", lambda e: f"{base}.AssignableDevices[{e[0]}]"):
        if isinstance(dev, dict):
            at = f"{base}.AssignableDevices[{n}]"
            vm.devices.append(
                Device("pci-passthrough", _text(dev, "LocationPath", at) or _text(dev, "InstanceID", at) or "", at)
            )
    for n, port in cap.take(enumerate(_list(d.get("ComPorts"))), "ComPorts", lambda e: f"{base}.ComPorts[{e[0]}]"):
        at = f"{base}.ComPorts[{n}]"
        if isinstance(port, dict) and _text(port, "Path", at):
            vm.devices.append(Device("serial-pipe", f"{_text(port, 'Name', at)}: {_text(port, 'Path', at)}", at))
    for n, snap in cap.take(enumerate(_list(d.get("Snapshots"))), "Snapshots", lambda e: f"{base}.Snapshots[{e[0]}]"):
        at = f"{base}.Snapshots[{n}]"
        snap_name = _text(snap, "Name", at) if isinstance(snap, dict) else None
        if snap_name:
            vm.snapshots.append(Snapshot(snap_name, _date(snap.get("CreationTime"), f"{at}.CreationTime")))
            if snap.get("SnapshotType") is not None:
                vm.facts[f"hyperv.snapshot.{snap_name}.SnapshotType"] = {
                    "value": snap["SnapshotType"],
                    "at": f"{base}.Snapshots[{n}].SnapshotType",
                }
    sec = d.get("Security")
    if isinstance(sec, dict):
        _copy_facts(vm.facts, "hyperv.security", sec, f"{base}.Security", SECURITY_FACTS)
    fw = d.get("Firmware")
    if isinstance(fw, dict) and "SecureBoot" in fw:
        secure_boot = _enum(fw["SecureBoot"], ON_OFF, f"{base}.Firmware.SecureBoot")
        vm.security.secure_boot = secure_boot == "On"
        vm.facts["hyperv.firmware.SecureBoot"] = {"value": secure_boot, "at": f"{base}.Firmware.SecureBoot"}
    elif d.get("Generation") == 1:
        vm.security.secure_boot = False
    return vm


def _read_adapter(
    vm: VM, a: dict[str, Any], nic_id: str, at: str, switches: dict[str, Network], cap: DeviceCap
) -> None:
    switch = _text(a, "SwitchName", at)
    mac = _text(a, "MacAddress", at)
    if mac and re.fullmatch(r"[0-9A-Fa-f]{12}", mac):
        mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    nic = Nic(id=nic_id, mac=mac.lower() if mac else None, network=switch, locator=at, type="vmswitch")
    if not switch:
        nic.mode = "disconnected"
        nic.connected = False
    elif switch in switches:
        nic.mode = switches[switch].mode
    if a.get("Connected") is False:
        nic.connected = False
    ips = [ip for ip in _list(a.get("IPAddresses")) if isinstance(ip, str) and ":" not in ip]
    nic.ip = ips[0] if ips else None
    spoof = _enum(a.get("MacAddressSpoofing"), ON_OFF, f"{at}.MacAddressSpoofing")
    nic.spoof_protection = None if spoof is None else spoof == "Off"
    if spoof is not None:
        nic.filter = f"MacAddressSpoofing={spoof}"
    prefix = f"hyperv.nic.{nic_id}"
    for key, table in (
        ("MacAddressSpoofing", ON_OFF),
        ("DhcpGuard", ON_OFF),
        ("RouterGuard", ON_OFF),
        ("PortMirroringMode", MIRROR),
        ("IeeePriorityTag", ON_OFF),
        ("AllowTeaming", ON_OFF),
    ):
        if key in a:
            vm.facts[f"{prefix}.{key}"] = {"value": _enum(a[key], table, f"{at}.{key}"), "at": f"{at}.{key}"}
    vlan = a.get("Vlan")
    if isinstance(vlan, dict):
        vm.facts[f"{prefix}.Vlan.OperationMode"] = {
            "value": _enum(vlan.get("OperationMode"), VLAN_MODE, f"{at}.Vlan.OperationMode"),
            "at": f"{at}.Vlan.OperationMode",
        }
        for key in ("AccessVlanId", "NativeVlanId", "AllowedVlanIdList"):
            if vlan.get(key) not in (None, ""):
                vm.facts[f"{prefix}.Vlan.{key}"] = {"value": vlan[key], "at": f"{at}.Vlan.{key}"}
    if "Acls" in a or "ExtendedAcls" in a:
        acls = [
            {
                "Action": _enum(x.get("Action"), ACL_ACTION, f"{at}.Acls[{n}].Action"),
                "Direction": _enum(x.get("Direction"), ACL_DIRECTION, f"{at}.Acls[{n}].Direction"),
                "LocalAddress": x.get("LocalAddress"),
                "RemoteAddress": x.get("RemoteAddress"),
            }
            for n, x in cap.take(enumerate(_list(a.get("Acls"))), "Acls", lambda e: f"{at}.Acls[{e[0]}]")
            if isinstance(x, dict)
        ]
        ext = [
            {
                k: (
                    _enum(x.get(k), ACL_ACTION, f"{at}.ExtendedAcls[{n}].{k}")
                    if k == "Action"
                    else _enum(x.get(k), ACL_DIRECTION, f"{at}.ExtendedAcls[{n}].{k}")
                    if k == "Direction"
                    else x.get(k)
                )
                for k in (
                    "Action",
                    "Direction",
                    "LocalIPAddress",
                    "RemoteIPAddress",
                    "LocalPort",
                    "RemotePort",
                    "Protocol",
                    "Weight",
                    "Stateful",
                )
            }
            for n, x in cap.take(
                enumerate(_list(a.get("ExtendedAcls"))), "ExtendedAcls", lambda e: f"{at}.ExtendedAcls[{e[0]}]"
            )
            if isinstance(x, dict)
        ]
        vm.facts[f"{prefix}.Acls"] = {"value": acls, "at": f"{at}.Acls"}
        vm.facts[f"{prefix}.ExtendedAcls"] = {"value": ext, "at": f"{at}.ExtendedAcls"}
    vm.nics.append(nic)


def switch_type(value: Any) -> str | None:
    return _enum(value, SWITCH_TYPE, "SwitchType")
