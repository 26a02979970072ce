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


def _enum(value: Any, table: dict[int, str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return table.get(value, str(value))
    if isinstance(value, dict) and "Value" in value:  # PowerShell 5.1 sometimes wraps enums
        return _enum(value.get("Value"), table)
    return str(value)


def _list(value: Any) -> list:
    """ConvertTo-Json writes a one-element collection as the element itself."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _date(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("value") or value.get("DateTime")
    text = str(value)
    m = re.match(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$", text)
    if m:
        return datetime.fromtimestamp(int(m.group(1)) / 1000, UTC).isoformat()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).isoformat()


def read_export(doc: dict[str, Any], source: Source) -> Inventory:
    inv = Inventory()
    where = source.file or "?"
    host_doc = doc.get("host") if isinstance(doc.get("host"), dict) else {}
    host_name = str(host_doc.get("ComputerName") or host_doc.get("Name") or doc.get("ComputerName") or "hyperv-host")
    host = Host(name=host_name, platform=PLATFORM)
    host.facts["source_file"] = where
    _copy_facts(host.facts, "hyperv.host", host_doc, "host", HOST_FACTS)
    if "VirtualMachineMigrationAuthenticationType" in host_doc:
        host.facts["hyperv.host.VirtualMachineMigrationAuthenticationType"] = {
            "value": _enum(host_doc["VirtualMachineMigrationAuthenticationType"], MIGRATION_AUTH),
            "at": "host.VirtualMachineMigrationAuthenticationType",
        }
    inv.hosts.append(host)
    switches: dict[str, Network] = {}
    for index, sw in enumerate(_list(doc.get("switches"))):
        if not isinstance(sw, dict) or not sw.get("Name"):
            inv.errors.append(InputError(where, f"switches[{index}]: a switch without a Name; skipped"))
            continue
        stype = _enum(sw.get("SwitchType"), SWITCH_TYPE)
        net = Network(
            name=str(sw["Name"]),
            platform=PLATFORM,
            mode=SWITCH_MODE.get(stype or "", "unknown"),
            source=source,
            host=host_name,
            locator=f"switches[{index}]",
        )
        net.facts["hyperv.switch.SwitchType"] = {"value": stype, "at": f"switches[{index}].SwitchType"}
        if "AllowManagementOS" in sw:
            net.facts["hyperv.switch.AllowManagementOS"] = {
                "value": sw["AllowManagementOS"],
                "at": f"switches[{index}].AllowManagementOS",
            }
        if sw.get("NetAdapterInterfaceDescription"):
            net.forwards = [str(sw["NetAdapterInterfaceDescription"])]
        extensions = [
            {
                "Name": e.get("Name"),
                "Enabled": e.get("Enabled"),
                "ExtensionType": _enum(
                    e.get("ExtensionType"), {1: "Capture", 2: "Filter", 3: "Forwarding", 4: "Monitoring", 5: "Native"}
                ),
                "Vendor": e.get("Vendor"),
            }
            for e in _list(sw.get("Extensions"))
            if isinstance(e, dict)
        ]
        if extensions:
            net.facts["hyperv.switch.Extensions"] = {"value": extensions, "at": f"switches[{index}].Extensions"}
        switches[net.name] = net
        inv.networks.append(net)
    enhanced = host_doc.get("EnableEnhancedSessionMode")
    for index, vm_doc in enumerate(_list(doc.get("vms"))):
        if not isinstance(vm_doc, dict) or not vm_doc.get("Name"):
            inv.errors.append(InputError(where, f"vms[{index}]: a VM without a Name; skipped"))
            continue
        try:
            inv.vms.append(_read_vm(vm_doc, index, source, host_name, switches, enhanced, inv.errors))
        except (TypeError, ValueError, AttributeError) as exc:
            inv.errors.append(
                InputError(where, f"vms[{index}] ({vm_doc.get('Name')}): unexpected value: {exc}; VM skipped")
            )
    if not (inv.vms or inv.networks):
        inv.errors.append(InputError(where, "the export holds no VMs and no switches"))
    return inv


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
        name=str(d["Name"]),
        platform=PLATFORM,
        uuid=str(d["Id"]) if d.get("Id") else None,
        source=source,
        host=host_name,
    )
    if d.get("State") is not None:
        vm.state = str(d["State"])
    _copy_facts(vm.facts, "hyperv.vm", d, base, VM_FACTS)
    adapters = [a for a in _list(d.get("NetworkAdapters")) if isinstance(a, dict)]
    names = [str(a.get("Name") or "Network Adapter") for a in adapters]
    for n, a in enumerate(adapters):
        nic_id = names[n] if names.count(names[n]) == 1 else f"{names[n]} #{n + 1}"
        _read_adapter(vm, a, nic_id, f"{base}.NetworkAdapters[{n}]", switches)
    if enhanced is None:
        vm.channels.clipboard = vm.channels.drag_and_drop = "unknown"
    elif enhanced is True or str(enhanced).lower() == "true":
        vm.channels.clipboard = vm.channels.drag_and_drop = "bidirectional"
        vm.facts["hyperv.host.EnableEnhancedSessionMode"] = {"value": True, "at": "host.EnableEnhancedSessionMode"}
    else:
        vm.channels.clipboard = vm.channels.drag_and_drop = "disabled"
    services = _list(d.get("IntegrationServices"))
    for n, svc in enumerate(services):
        if not isinstance(svc, dict):
            continue
        name = str(svc.get("Name", ""))
        at = f"{base}.IntegrationServices[{n}]"
        vm.facts[f"hyperv.integration.{name}"] = {"value": bool(svc.get("Enabled")), "at": at}
        if name == "Guest Service Interface" and svc.get("Enabled"):
            vm.shares.append(Share("guest-service", None, "Copy-VMFile", True, at))
    if "IntegrationServices" in d:
        vm.facts["hyperv.integration.collected"] = {"value": True, "at": f"{base}.IntegrationServices"}
    for n, dev in enumerate(_list(d.get("AssignableDevices"))):
        if isinstance(dev, dict):
            vm.devices.append(
                Device(
                    "pci-passthrough",
                    str(dev.get("LocationPath") or dev.get("InstanceID") or ""),
                    f"{base}.AssignableDevices[{n}]",
                )
            )
    for n, port in enumerate(_list(d.get("ComPorts"))):
        if isinstance(port, dict) and port.get("Path"):
            vm.devices.append(Device("serial-pipe", f"{port.get('Name')}: {port.get('Path')}", f"{base}.ComPorts[{n}]"))
    for n, snap in enumerate(_list(d.get("Snapshots"))):
        if isinstance(snap, dict) and snap.get("Name"):
            vm.snapshots.append(Snapshot(str(snap["Name"]), _date(snap.get("CreationTime"))))
            if snap.get("SnapshotType") is not None:
                vm.facts[f"hyperv.snapshot.{snap['Name']}.SnapshotType"] = {
                    "value": snap["SnapshotType"],
                    "at": f"{base}.Snapshots[{n}].SnapshotType",
                }
    sec = d.get("Security")
    if isinstance(sec, dict):
        _copy_facts(vm.facts, "hyperv.security", sec, f"{base}.Security", SECURITY_FACTS)
    fw = d.get("Firmware")
    if isinstance(fw, dict) and "SecureBoot" in fw:
        vm.security.secure_boot = _enum(fw["SecureBoot"], ON_OFF) == "On"
        vm.facts["hyperv.firmware.SecureBoot"] = {
            "value": _enum(fw["SecureBoot"], ON_OFF),
            "at": f"{base}.Firmware.SecureBoot",
        }
    elif d.get("Generation") == 1:
        vm.security.secure_boot = False
    return vm


def _read_adapter(vm: VM, a: dict[str, Any], nic_id: str, at: str, switches: dict[str, Network]) -> None:
    switch = a.get("SwitchName")
    mac = a.get("MacAddress")
    if mac and re.fullmatch(r"[0-9A-Fa-f]{12}", str(mac)):
        mac = ":".join(str(mac)[i : i + 2] for i in range(0, 12, 2))
    nic = Nic(id=nic_id, mac=str(mac).lower() if mac else None, network=switch or None, locator=at, type="vmswitch")
    if not switch:
        nic.mode = "disconnected"
        nic.connected = False
    elif switch in switches:
        nic.mode = switches[switch].mode
    if a.get("Connected") is False:
        nic.connected = False
    ips = [ip for ip in _list(a.get("IPAddresses")) if isinstance(ip, str) and ":" not in ip]
    nic.ip = ips[0] if ips else None
    spoof = _enum(a.get("MacAddressSpoofing"), ON_OFF)
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
            vm.facts[f"{prefix}.{key}"] = {"value": _enum(a[key], table), "at": f"{at}.{key}"}
    vlan = a.get("Vlan")
    if isinstance(vlan, dict):
        vm.facts[f"{prefix}.Vlan.OperationMode"] = {
            "value": _enum(vlan.get("OperationMode"), VLAN_MODE),
            "at": f"{at}.Vlan.OperationMode",
        }
        for key in ("AccessVlanId", "NativeVlanId", "AllowedVlanIdList"):
            if vlan.get(key) not in (None, ""):
                vm.facts[f"{prefix}.Vlan.{key}"] = {"value": vlan[key], "at": f"{at}.Vlan.{key}"}
    if "Acls" in a or "ExtendedAcls" in a:
        acls = [
            {
                "Action": _enum(x.get("Action"), ACL_ACTION),
                "Direction": _enum(x.get("Direction"), ACL_DIRECTION),
                "LocalAddress": x.get("LocalAddress"),
                "RemoteAddress": x.get("RemoteAddress"),
            }
            for x in _list(a.get("Acls"))
            if isinstance(x, dict)
        ]
        ext = [
            {
                k: (
                    _enum(x.get(k), ACL_ACTION)
                    if k == "Action"
                    else _enum(x.get(k), ACL_DIRECTION)
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
            for x in _list(a.get("ExtendedAcls"))
            if isinstance(x, dict)
        ]
        vm.facts[f"{prefix}.Acls"] = {"value": acls, "at": f"{at}.Acls"}
        vm.facts[f"{prefix}.ExtendedAcls"] = {"value": ext, "at": f"{at}.ExtendedAcls"}
    vm.nics.append(nic)


def switch_type(value: Any) -> str | None:
    return _enum(value, SWITCH_TYPE)
