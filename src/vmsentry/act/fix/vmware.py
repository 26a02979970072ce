"""VMware fixes: .vmx keys (a patch of the file, and PowerCLI ``New-AdvancedSetting`` /
``Set-AdvancedSetting`` for a VM on ESXi) and ESXi port-group security policies (PowerCLI
``Set-SecurityPolicy``).

A rule whose ``test:`` compares one .vmx key (``fact: vmx.KEY``) gives its fix by itself: ``truthy`` wants
"TRUE", ``falsy`` "FALSE", ``eq``/``in`` the (first) value, ``unset`` the key removed. The predicates'
rules (devices, consoles, HGFS, the generic clipboard and drag-and-drop rules) name their key in the
finding's evidence or locator ("line 13, usb.present"); ``_BY_RULE`` says which key and value close each.
A .vmx is read when the VM powers on: every change here takes effect at the next power cycle.
"""

from __future__ import annotations

import re

from vmsentry.act.fix.platforms import hook, resolve  # noqa: F401 (the planner's module contract)
from vmsentry.model import VM, Network
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

PLATFORM = "vmware"

# What could break when a key takes the wanted value (by key, lower case; prefix match on the device keys).
_BREAKS = {
    "isolation.tools.copy.disable": "console users can no longer copy text out of the guest",
    "isolation.tools.paste.disable": "console users can no longer paste into the guest",
    "isolation.tools.dnd.disable": "drag and drop of files between the console and the guest stops",
    "isolation.tools.setguioptions.enable": "VMware Tools can no longer switch copy and paste on",
    "isolation.tools.hgfsserverset.disable": "VMware Tools can no longer register HGFS shared folders",
    "isolation.tools.hgfs.disable": "shared folders (HGFS) stop working in the guest",
    "remotedisplay.vnc.enabled": "VNC clients of the VM's built-in VNC server can no longer connect",
    "remotedisplay.maxconnections": "a second remote-console session is refused while one is open",
    "mks.enable3d": "3D acceleration in the guest stops (desktops may fall back to software rendering)",
    "tools.guestlib.enablehostinfo": "guest tools that read host performance counters get nothing",
    "sched.mem.pshare.salt": "memory page sharing between VMs returns to the host default",
    ".present": "the guest loses the device (anything using it: a licence dongle, a serial console, a USB disk)",
    ".startconnected": "the drive is no longer connected at power on (connect it by hand when needed)",
    ".mode": "the disk keeps the guest's changes across power cycles (it was independent-nonpersistent)",
    ".autoconnect.device": "the USB device is no longer connected to the guest at power on",
    ".name": "the dvFilter (a security or monitoring appliance) no longer sees this NIC's traffic",
}
_DEFAULT_BREAKS = "a guest feature that relied on the old value"

# Predicate rules: which keys (name -> wanted value, None = remove) close them. "{key}" is the evidence
# key, "{device}" the device named by the locator ("line 13, usb.present" -> usb).
_BY_RULE: dict[str, dict[str, str | None]] = {
    "VMS-VMX-012": {"{key}": None},
    "VMS-VMX-020": {"{key_base}.mode": "persistent"},
    "VMS-VMX-021": {"{device}.present": "FALSE"},
    "VMS-VMX-022": {"{key}": "FALSE"},
    "VMS-VMX-023": {"{device}.present": "FALSE"},
    "VMS-VMX-024": {"{device}.present": "FALSE"},
    "VMS-VMX-025": {"{device}.present": "FALSE"},
    "VMS-VMX-027": {"isolation.tools.hgfsServerSet.disable": "TRUE", "isolation.tools.hgfs.disable": "TRUE"},
    "VMS-VMX-028": {"RemoteDisplay.vnc.enabled": "FALSE"},
    "VMS-VM-070": {"isolation.tools.copy.disable": "TRUE", "isolation.tools.paste.disable": "TRUE"},
    "VMS-VM-071": {"isolation.tools.dnd.disable": "TRUE"},
}
_USB_RULES = ("VMS-VMX-025", "VMS-VM-041")
# Generic console/listener rules: the listener's key names what to switch off.
_LISTENER_RULES = ("VMS-VM-001", "VMS-VM-002", "VMS-VM-003", "VMS-VM-004")
# Declarative tests whose op (ne) does not say the wanted value: the secure one, from the rule's sources.
_WANTED = {"VMS-VMX-015": "opportunistic"}

# ESXi port-group security policy (PowerCLI Set-SecurityPolicy parameters): rule -> parameter.
_PORTGROUP = {
    "VMS-ESX-001": (
        "ForgedTransmits",
        "guests that send from a MAC they do not own (nested hypervisors, some clusters, NLB) lose traffic",
    ),
    "VMS-ESX-002": ("MacChanges", "guests that change their MAC address (some clusters, NLB) lose traffic"),
    "VMS-ESX-003": (
        "AllowPromiscuous",
        "guests that sniff the port group (IDS, monitoring appliances) see only their own traffic",
    ),
}

_UNFIXABLE = {
    "VMS-VM-020": "moving a NIC off the bridged network changes how the guest is reached (a design decision: NAT, host-only or a segmented port group); vmsentry does not choose it",
    "VMS-VM-030": "Workstation/Fusion virtual switches have no anti-spoofing; on ESXi the port group's policy (VMS-ESX-001..003, from the PowerCLI export) is the fix",
    "VMS-VBX-003": "a host-only network is a design choice: moving the NIC elsewhere changes who reaches the guest",
    "VMS-ESX-004": "which VLAN the port group should carry instead of 4095 (all VLANs) is a network design decision",
    "VMS-VMW-001": "the NAT port forwards live in the host's nat.conf, not in a VM definition: remove the [incomingtcp]/[incomingudp] lines the guests do not need",
    "VMS-VMW-002": "the host's virtual adapter on vmnetN is set with the Virtual Network Editor (vmware-netcfg), not in a .vmx",
}


def _norm_key(key: str) -> str:
    return key.strip().lower()


def _breaks_for(key: str) -> str:
    lower = re.sub(r"\d+$", "", _norm_key(key))
    if lower in _BREAKS:
        return _BREAKS[lower]
    return next(
        (text for suffix, text in _BREAKS.items() if suffix.startswith(".") and lower.endswith(suffix)), _DEFAULT_BREAKS
    )


def _wanted_from_test(rule: Rule) -> tuple[str, str | None] | None:
    """(key, wanted value or None = remove) from a one-.vmx-key test, or None when the test does not say."""
    test = rule.test or {}
    fact = test.get("fact", "")
    if not fact.startswith("vmx.") or fact == "vmx.product":
        return None
    key, op = fact[4:], test.get("op")
    if rule.id in _WANTED:
        return key, _WANTED[rule.id]
    if op == "truthy":
        return key, "TRUE"
    if op == "falsy":
        return key, "FALSE"
    if op == "unset":
        return key, None
    if op == "eq":
        return key, str(test["value"])
    if op == "in":
        return key, str(test["value"][0])
    return None


def _locator_key(locator: str | None) -> str | None:
    """The .vmx key a collector locator names: "line 13, usb.present" -> "usb.present"."""
    match = re.match(r"line \d+, (\S+)", locator or "")
    return match.group(1) if match else None


def _keys_for(finding: Finding, vm: VM, rule: Rule) -> dict[str, str | None] | None:
    derived = _wanted_from_test(rule)
    if derived is not None:
        return {derived[0]: derived[1]}
    evidence = finding.evidence
    located = _locator_key(evidence.get("locator"))
    if finding.rule_id in _LISTENER_RULES:
        if located and located.lower().startswith("remotedisplay.vnc"):
            return {"RemoteDisplay.vnc.enabled": "FALSE"}
        if located and re.match(r"serial\d+\.", located):
            return {located.split(".")[0] + ".present": "FALSE"}
        return None
    if located and re.fullmatch(r"usb\.autoConnect\.device\d+", located, re.I) and finding.rule_id in _USB_RULES:
        return {located: None}  # a USB device passed through at power on: its auto-connect entry goes
    template = _BY_RULE.get(finding.rule_id)
    if template is None:
        return None
    key = str(evidence.get("key") or "")
    fill = {"{key}": key, "{key_base}": key.rsplit(".", 1)[0], "{device}": (located or "").rsplit(".", 1)[0]}
    out: dict[str, str | None] = {}
    for name, value in template.items():
        for placeholder, text in fill.items():
            name = name.replace(placeholder, text)
        if not name or name.startswith("."):
            return None  # the evidence does not name the key
        out[name] = value
    return out


def _fact_value(vm: VM, key: str):
    lower = f"vmx.{_norm_key(key)}"
    return next((v.get("value") for k, v in vm.facts.items() if k.lower() == lower), None)


def fix(finding: Finding, asset: VM | Network | None, rule: Rule) -> Fix | Unfixable | None:
    """The fix of one failing VMware finding, an Unfixable with the reason, or None (not this module's)."""
    if finding.rule_id in _PORTGROUP:
        return _portgroup_fix(finding, asset, rule)
    if not isinstance(asset, VM):
        return None
    keys = _keys_for(finding, asset, rule)
    if keys is None:
        return Unfixable(
            finding.rule_id,
            finding.asset,
            PLATFORM,
            f"no .vmx key closes this finding by itself: {rule.remediation_for(PLATFORM)}",
        )
    path = asset.source.file
    if not path:
        return Unfixable(
            finding.rule_id, finding.asset, PLATFORM, "the VM was not read from a .vmx file: nothing to patch"
        )
    product = (asset.facts.get("vmx.product") or {}).get("value", "unknown")
    changes = tuple(
        Change(
            kind="vmx_key",
            target=path,
            key=key,
            before=_fact_value(asset, key),
            after=value,
            locator=finding.evidence.get("locator"),
            detail={"vm": asset.name, "product": product},
        )
        for key, value in keys.items()
    )
    summary = "; ".join(f'{c.key} = "{c.after}"' if c.after is not None else f"remove {c.key}" for c in changes)
    return Fix(
        rule_id=finding.rule_id,
        asset=finding.asset,
        platform=PLATFORM,
        changes=changes,
        summary=f"{asset.name}.vmx: {summary}",
        breaks="; ".join(dict.fromkeys(_breaks_for(c.key) for c in changes)),
        restart="vm",
        check="each key already has the wanted value (or is absent when it must be removed)",
    )


def _portgroup_fix(finding: Finding, net, rule: Rule) -> Fix | Unfixable:
    parameter, breaks = _PORTGROUP[finding.rule_id]
    if not isinstance(net, Network):
        return Unfixable(finding.rule_id, finding.asset, PLATFORM, "the port group is not in the inventory")
    change = Change(
        kind="esxi_setting",
        target=f"portgroup:{net.name}",
        key=parameter,
        before=True,
        after=False,
        locator=finding.evidence.get("locator"),
        detail={"portgroup": net.name},
    )
    return Fix(
        rule_id=finding.rule_id,
        asset=finding.asset,
        platform=PLATFORM,
        changes=(change,),
        summary=f"port group {net.name}: {parameter} Reject",
        breaks=breaks,
        restart="none",
        check=f"the port group's security policy already rejects {parameter}",
    )


FUNCTIONS = hook(PLATFORM, fix, _UNFIXABLE)
