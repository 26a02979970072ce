"""PowerShell DSC configurations that declare Hyper-V switches, VMs and adapters (HyperVDsc / xHyper-V).

A DSC configuration is a PowerShell script; it is never run. The resource blocks are read statically:

    VMSwitch ExternalSwitch { Name = 'LAN'; Type = 'External'; AllowManagementOS = $true }

Only literal values are taken ('text', "text" without ``$``, $true/$false, numbers, ``@(...)`` of
literals); a variable, an expression or a loop's value is "unknown" and the fact keeps its text. A
resource inside a ``foreach`` is read once, as written. No PowerShell parser runs on Linux as a library,
so this is a bounded hand-written reader: comments and strings are skipped, braces matched, one pass.

Resources (HyperVDsc docs, source/DSCResources/*/README and the xHyper-V module of the same names):

- ``VMSwitch``/``xVMSwitch``: ``Type`` External -> ``bridged``, Internal -> ``host-only``, Private ->
  ``private`` (as for the export: hyperv.py); ``AllowManagementOS`` and the type are the facts the
  Hyper-V switch rules read;
- ``VMHyperV``/``xVMHyperV``: a VM with one NIC per ``SwitchName`` (and ``MACAddress``),
  ``EnableGuestService`` ($true: a ``guest-service`` share), ``SecureBoot``, ``Generation``;
- ``VMNetworkAdapter``/``xVMNetworkAdapter``: a NIC of ``VMName`` (``ManagementOS``: the host's own vNIC,
  not a VM) on ``SwitchName``, ``VlanId`` (access VLAN), ``MacAddress``;
- ``VMNetworkAdapterSettings``/``xVMNetworkAdapterSettings``/``cVMNetworkAdapterSettings``:
  ``MacAddressSpoofing``, ``DhcpGuard``, ``RouterGuard``, ``AllowTeaming``, ``PortMirroring``;
- ``VMNetworkAdapterVlan``/``xVMNetworkAdapterVlan``: ``AdapterMode`` and the VLAN ids;
- ``VMProcessor``/``xVMProcessor``: ``ExposeVirtualizationExtensions`` (nested virtualization).
"""

from __future__ import annotations

import re
from typing import Any

from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.hcl_reader import Computed
from vmsentry.collect.iac_node import read_script
from vmsentry.model import VM, InputError, Inventory, Network, Nic, Share, Source

PLATFORM = "hyperv"
SWITCH_MODE = {"external": "bridged", "internal": "host-only", "private": "private"}
_RESOURCES = (
    "VMSwitch",
    "VMHyperV",
    "VMNetworkAdapter",
    "VMNetworkAdapterSettings",
    "VMNetworkAdapterVlan",
    "VMProcessor",
)
_CLAIM = re.compile(rb"^\s*configuration\s+[\w-]+", re.IGNORECASE | re.MULTILINE)
_RESOURCE_USE = re.compile(
    rb"\b[xc]?(?:" + "|".join(_RESOURCES).encode() + rb")\b|Import-DscResource[^\n]*Hyper-?V", re.IGNORECASE
)
_HEADER = re.compile(
    r"^[ \t]*([xc]?(?:" + "|".join(_RESOURCES) + r"))[ \t]+(\"[^\"\n]*\"|'[^'\n]*'|\$?[\w-]+)\s*\{",
    re.IGNORECASE | re.MULTILINE,
)
_STATEMENT = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*(.*)", re.DOTALL)
_MAX_RESOURCES = 10_000  # bounds the work on a hostile file; a real configuration has tens


def claims(path: str, head: bytes) -> bool:
    if not path.lower().endswith((".ps1", ".psm1")):
        return False
    return bool(_CLAIM.search(head)) and bool(_RESOURCE_USE.search(head))


def read(path: str, data: bytes | None = None) -> Inventory:
    text, inv = read_script(path, data, "a PowerShell DSC configuration")
    code = _blank_comments(text)
    resources = []
    for match in _HEADER.finditer(code):
        if len(resources) >= _MAX_RESOURCES:
            inv.errors.append(InputError(path, f"more than {_MAX_RESOURCES} resources; the rest not read"))
            break
        end = _matching_brace(code, match.end() - 1)
        if end is None:
            line = code.count("\n", 0, match.start()) + 1
            inv.errors.append(InputError(path, f"line {line}: {match.group(1)} block has no closing brace; not read"))
            continue
        kind = match.group(1).lower()
        kind = kind[1:] if kind[0] in "xc" else kind  # xVMSwitch (xHyper-V), cVMNetworkAdapterSettings
        line = code.count("\n", 0, match.start()) + 1
        settings = _settings(code, match.end(), end)
        resources.append((kind, line, settings))
    _build(path, resources, inv)
    return inv


# ------------------------------------------------------------------------------------------- reading


def _blank_comments(text: str) -> str:
    """The script with comments turned to spaces (newlines kept, so lines still count)."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            end = _string_end(text, i)
            out.append(text[i:end])
            i = end
        elif text.startswith("<#", i):
            end = text.find("#>", i + 2)
            end = n if end < 0 else end + 2
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif ch == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
            out.append(" " * (end - i))
            i = end
        else:
            j = i
            while j < n and text[j] not in "'\"#<":
                j += 1
            if j == i:
                j += 1
            out.append(text[i:j])
            i = j
    return "".join(out)


def _string_end(text: str, start: int) -> int:
    """Index after the string opening at ``start`` ('' and "" and `" escape a quote); the end of the
    text when it is unterminated."""
    quote, i, n = text[start], start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "`" and quote == '"':
            i += 2
            continue
        if ch == quote:
            if i + 1 < n and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _matching_brace(code: str, start: int) -> int | None:
    depth, i, n = 0, start, len(code)
    while i < n:
        ch = code[i]
        if ch in "'\"":
            i = _string_end(code, i)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _settings(code: str, start: int, end: int) -> dict[str, tuple[Any, int]]:
    """``Key = value`` statements at the top level of a resource body, each with its line."""
    out: dict[str, tuple[Any, int]] = {}
    statements: list[tuple[int, str]] = []
    for offset, piece in _pieces(code[start:end], "\n;"):
        if statements and statements[-1][1].rstrip().endswith(","):  # a list continued on the next line
            statements[-1] = (statements[-1][0], statements[-1][1] + "\n" + piece)
        else:
            statements.append((start + offset, piece))
    for begin, statement in statements:
        match = _STATEMENT.fullmatch(statement)
        if match:
            line = code.count("\n", 0, begin + match.start(1)) + 1
            out[match.group(1).lower()] = (_value(match.group(2).strip()), line)
    return out


def _pieces(text: str, separators: str) -> list[tuple[int, str]]:
    """``text`` cut at ``separators`` outside strings and brackets: (offset, piece) pairs."""
    pieces, depth, begin, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            i = _string_end(text, i)
            continue
        if ch in "({[":
            depth += 1
        elif ch in ")}]":
            depth -= 1
        elif ch in separators and depth <= 0:
            pieces.append((begin, text[begin:i]))
            begin = i + 1
        i += 1
    pieces.append((begin, text[begin:]))
    return pieces


def _value(text: str) -> Any:
    lower = text.lower()
    if lower in ("$true", "$false"):
        return lower == "$true"
    if lower == "$null":
        return None
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"'(?:[^']|'')*'", text, re.DOTALL):
        return text[1:-1].replace("''", "'")
    if re.fullmatch(r'"[^"$`]*"', text):
        return text[1:-1]
    inner = re.fullmatch(r"@\((.*)\)", text, re.DOTALL)
    items = _split_list(inner.group(1) if inner else text)
    if inner or len(items) > 1:
        values = [_value(item) for item in items if item]
        return values if not any(isinstance(v, Computed) for v in values) else Computed(text)
    return Computed(text)


def _split_list(text: str) -> list[str]:
    return [piece.strip() for _, piece in _pieces(text, ",\n;")]


# ----------------------------------------------------------------------------------------- inventory


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def _fact(facts: dict, key: str, settings: dict, name: str, line: int) -> None:
    if name.lower() in settings:
        value, at = settings[name.lower()]
        facts[key] = {"value": str(value) if isinstance(value, Computed) else value, "at": f"line {at}, {name}"}


def _build(path: str, resources: list, inv: Inventory) -> None:
    source = Source(file=path)
    switches: dict[str, Network] = {}
    vms: dict[str, VM] = {}
    caps: dict[str, DeviceCap] = {}  # per VM: its network adapters, however declared

    def vm_named(name: str, line: int) -> VM:
        if name not in vms:
            vms[name] = VM(name=name, platform=PLATFORM, source=source)
            vms[name].facts["dsc.declared_at"] = {"value": "VMNetworkAdapter only", "at": f"line {line}"}
        return vms[name]

    for kind, line, s in resources:
        if kind == "vmswitch":
            _switch(s, line, source, switches)
        elif kind == "vmhyperv":
            name = _str(s.get("name", (None, line))[0]) or f"line {line}"
            vm = vms[name] = VM(name=name, platform=PLATFORM, source=source)
            _vm(vm, s, line, caps.setdefault(name, DeviceCap(path, inv.errors)))
    for kind, line, s in resources:
        vm_name = _str(s.get("vmname", (None, line))[0])
        if kind in ("vmswitch", "vmhyperv") or vm_name is None:
            continue
        if vm_name.lower() == "managementos":
            inv.notes.append(f"{path}: line {line}: a management-OS adapter (the host's own vNIC); not a VM")
            continue
        vm = vm_named(vm_name, line)
        cap = caps.setdefault(vm.name, DeviceCap(path, inv.errors))
        if kind == "vmnetworkadapter":
            _adapter(vm, s, line, cap)
        elif kind in ("vmnetworkadaptersettings", "vmnetworkadaptervlan"):
            _adapter_settings(vm, kind, s, line, cap)
        elif kind == "vmprocessor":
            _fact(
                vm.facts, "hyperv.processor.ExposeVirtualizationExtensions", s, "ExposeVirtualizationExtensions", line
            )
    for vm in vms.values():
        for nic in vm.nics:
            if nic.network in switches:
                nic.mode = switches[nic.network].mode
    inv.networks.extend(switches.values())
    inv.vms.extend(vms.values())


def _switch(s: dict, line: int, source: Source, switches: dict[str, Network]) -> None:
    name = _str(s.get("name", (None, line))[0]) or f"line {line}"
    stype = s.get("type", (None, line))[0]
    mode = SWITCH_MODE.get(str(stype).lower(), "unknown") if isinstance(stype, str) else "unknown"
    net = Network(name=name, platform=PLATFORM, mode=mode, source=source, locator=f"line {line}")
    _fact(net.facts, "hyperv.switch.SwitchType", s, "Type", line)
    _fact(net.facts, "hyperv.switch.AllowManagementOS", s, "AllowManagementOS", line)
    _fact(net.facts, "hyperv.switch.NetAdapterName", s, "NetAdapterName", line)
    adapters = s.get("netadaptername", (None, line))[0]
    if isinstance(adapters, str | list):
        net.forwards = [str(a) for a in (adapters if isinstance(adapters, list) else [adapters])]
    switches[name] = net


def _vm(vm: VM, s: dict, line: int, cap: DeviceCap) -> None:
    vm.facts["dsc.declared_at"] = {"value": "VMHyperV", "at": f"line {line}"}
    switch_value, switch_line = s.get("switchname", (None, line))
    macs = s.get("macaddress", (None, line))[0]
    names = switch_value if isinstance(switch_value, list) else [switch_value] if switch_value is not None else []
    mac_list = macs if isinstance(macs, list) else [macs] if isinstance(macs, str) else []
    at_switch = f"line {switch_line}, SwitchName"
    for index, switch in cap.take(enumerate(names), "network adapter", lambda _: at_switch):
        nic = Nic(id=f"nic{index}", network=_str(switch), locator=f"line {switch_line}, SwitchName", type="vmswitch")
        nic.mac = _mac(mac_list[index]) if index < len(mac_list) else None
        vm.nics.append(nic)
    for key, name in (("hyperv.vm.Generation", "Generation"), ("hyperv.firmware.SecureBoot", "SecureBoot")):
        _fact(vm.facts, key, s, name, line)
    secure = s.get("secureboot", (None, line))[0]
    if isinstance(secure, bool):
        vm.security.secure_boot = secure
        vm.facts["hyperv.firmware.SecureBoot"]["value"] = "On" if secure else "Off"
    guest_service, at = s.get("enableguestservice", (None, line))
    if isinstance(guest_service, bool):
        vm.facts["hyperv.integration.Guest Service Interface"] = {"value": guest_service, "at": f"line {at}"}
        vm.facts["hyperv.integration.collected"] = {"value": True, "at": f"line {at}"}
        if guest_service:
            vm.shares.append(Share("guest-service", None, "Copy-VMFile", True, f"line {at}, EnableGuestService"))


def _mac(value: Any) -> str | None:
    text = _str(value)
    if text and re.fullmatch(r"[0-9A-Fa-f]{12}", text):
        return ":".join(text[i : i + 2] for i in range(0, 12, 2)).lower()
    return None


def _nic_for(vm: VM, s: dict, line: int, cap: DeviceCap) -> Nic | None:
    """The VM's adapter ``s`` names, added when new; None past the per-VM cap."""
    name = _str(s.get("name", (None, line))[0]) or _str(s.get("id", (None, line))[0])
    for nic in vm.nics:
        if name and nic.id == name:
            return nic
    if not cap.admit("network adapter", f"line {line}"):
        return None
    nic = Nic(id=name or f"nic{len(vm.nics)}", locator=f"line {line}", type="vmswitch")
    vm.nics.append(nic)
    return nic


def _adapter(vm: VM, s: dict, line: int, cap: DeviceCap) -> None:
    nic = _nic_for(vm, s, line, cap)
    if nic is None:
        return
    switch, at = s.get("switchname", (None, line))
    nic.network = _str(switch)
    nic.locator = f"line {at}, SwitchName"
    nic.mac = _mac(s.get("macaddress", (None, line))[0]) or nic.mac
    vlan, at = s.get("vlanid", (None, line))
    if vlan is not None:
        vm.facts[f"hyperv.nic.{nic.id}.Vlan.OperationMode"] = {"value": "Access", "at": f"line {at}, VlanId"}
        vm.facts[f"hyperv.nic.{nic.id}.Vlan.AccessVlanId"] = {"value": str(vlan), "at": f"line {at}, VlanId"}


def _adapter_settings(vm: VM, kind: str, s: dict, line: int, cap: DeviceCap) -> None:
    nic = _nic_for(vm, s, line, cap)
    if nic is None:
        return
    prefix = f"hyperv.nic.{nic.id}"
    if kind == "vmnetworkadaptervlan":
        _fact(vm.facts, f"{prefix}.Vlan.OperationMode", s, "AdapterMode", line)
        for key in ("VlanId", "NativeVlanId", "AllowedVlanIdList"):
            _fact(vm.facts, f"{prefix}.Vlan.{'AccessVlanId' if key == 'VlanId' else key}", s, key, line)
        return
    for key in ("MacAddressSpoofing", "DhcpGuard", "RouterGuard", "AllowTeaming"):
        if key.lower() in s:
            value, at = s[key.lower()]
            value = str(value).capitalize() if isinstance(value, str) else str(value)
            vm.facts[f"{prefix}.{key}"] = {"value": value, "at": f"line {at}, {key}"}
    _fact(vm.facts, f"{prefix}.PortMirroringMode", s, "PortMirroring", line)
    spoof = vm.facts.get(f"{prefix}.MacAddressSpoofing", {}).get("value")
    if spoof in ("On", "Off"):
        nic.spoof_protection = spoof == "Off"
        nic.filter = f"MacAddressSpoofing={spoof}"
