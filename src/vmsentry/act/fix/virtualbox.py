"""VirtualBox fixes: ``VBoxManage modifyvm`` / ``setextradata`` commands and, when the VM was read from its
``.vbox`` file, the same setting as an attribute edit of that file (the patch renderer).

Each change names both: ``key`` is the modifyvm option and ``after`` its value; ``detail`` holds the
.vbox element (its line, from the collector's locator), attribute and value. The option names are
VirtualBox 7's (``VBoxManage modifyvm`` in the user manual); the attributes and their defaults are
VirtualBox-settings.xsd's, as ``collect.virtualbox`` reads them. A .vbox file is rewritten by VirtualBox
while the VM is registered and running: change it with the VM powered off (or use the VBoxManage form).
"""

from __future__ import annotations

import re

from vmsentry.act.fix.platforms import NO_SETTING, hook, resolve  # noqa: F401 (the planner's module contract)
from vmsentry.model import VM, Network
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

PLATFORM = "virtualbox"

_UNFIXABLE = {
    "VMS-VM-020": "moving a NIC off the bridged adapter changes how the guest is reached (a design decision: NAT, NAT network, internal network); vmsentry does not choose it",
    "VMS-VBX-003": "a host-only network is a design choice: moving the NIC elsewhere changes who reaches the guest",
    "VMS-VBX-010": "removing a PCI passthrough device takes hardware away from the guest: decide per device (VBoxManage modifyvm VM --pci-detach HOST@GUEST)",
    "VMS-VBX-011": "a NIC on a generic driver (UDP tunnel, VDE) is part of the network design: replace it by hand",
    "VMS-VBX-012": "NAT network port forwards are the host's (VBoxManage natnetwork modify --port-forward-4 delete NAME): which ones guests need is not in the scan",
    "VMS-VM-082": "encrypting a disk needs a password and its custody (VBoxManage encryptmedium): a key-management decision, not a setting",
    "VMS-VM-091": "deleting a snapshot discards the state it holds: decide which ones (VBoxManage snapshot VM delete NAME)",
}


def _line(at: str | None) -> int | None:
    match = re.match(r"line (\d+), ", at or "")
    return int(match.group(1)) if match else None


def _element(at: str | None) -> str | None:
    """The element's local name from a locator "line 39, /VirtualBox/Machine/Hardware/RemoteDisplay"."""
    match = re.match(r"line \d+, (/\S+)", at or "")
    return re.sub(r"\[.*?\]", "", match.group(1)).rstrip("/").rsplit("/", 1)[-1] if match else None


def _change(vm: VM, fact_key: str, option: str, value: str, attribute: str, xml_value: str) -> Change | None:
    fact = vm.facts.get(fact_key)
    if fact is None:
        return None
    at = fact.get("at")
    return Change(
        kind="vbox_setting",
        target=vm.name,
        key=option,
        before=fact.get("value"),
        after=value,
        locator=at,
        detail={
            "file": vm.source.file if str(vm.source.file or "").lower().endswith((".vbox", ".xml")) else None,
            "line": _line(at),
            "element": _element(at),
            "attribute": attribute,
            "value": xml_value,
        },
    )


def _adapter_slots(vm: VM, suffix: str, bad) -> list[int]:
    out = []
    for key, fact in vm.facts.items():
        match = re.fullmatch(r"vbox\.Adapter(\d+)\." + re.escape(suffix), key)
        if match and bad(fact.get("value")):
            out.append(int(match.group(1)))
    return sorted(out)


# rule -> (the setting as _change takes it: fact, modifyvm option, value, .vbox attribute, its value there),
# summary, what could break
_SETTINGS = {
    "VMS-VBX-007": (
        ("vbox.VRDE.enabled", "--vrde", "off", "enabled", "false"),
        "VRDE remote display off",
        "remote display (RDP) clients of the VM can no longer connect",
    ),
    "VMS-VBX-008": (
        ("vbox.VRDE.allowMultiConnection", "--vrde-multi-con", "off", "allowMultiConnection", "false"),
        "VRDE accepts one connection at a time",
        "a second remote display client is refused while one is connected",
    ),
    "VMS-VBX-006": (
        (
            "vbox.Clipboard.fileTransfersEnabled",
            "--clipboard-file-transfers",
            "disabled",
            "fileTransfersEnabled",
            "false",
        ),
        "clipboard file transfers off",
        "copying files through the shared clipboard stops",
    ),
    "VMS-VM-070": (
        ("vbox.Clipboard.mode", "--clipboard-mode", "disabled", "mode", "Disabled"),
        "shared clipboard off",
        "copy and paste between the host and the guest stops",
    ),
    "VMS-VM-071": (
        ("vbox.DragAndDrop.mode", "--drag-and-drop", "disabled", "mode", "Disabled"),
        "drag and drop off",
        "dragging files between the host and the guest stops",
    ),
    "VMS-VBX-009": (
        ("vbox.Teleporter.enabled", "--teleporter", "off", "enabled", "false"),
        "teleporter (live migration target) off",
        "the VM can no longer be teleported to this host",
    ),
}

# rule -> a setting of each NIC (fact vbox.AdapterN.SUFFIX; option OPTION<N+1>) whose value fails the rule:
# (suffix, which values fail, option, value, .vbox attribute, its value there), summary, what could break
_NIC_SETTINGS = {
    "VMS-VBX-001": (
        (
            "NAT.localhost-reachable",
            lambda v: v is True,
            "--nat-localhostreachable",
            "off",
            "localhost-reachable",
            "false",
        ),
        "NAT: the host's loopback no longer reachable from the guest",
        "guest software that used a service on the host's 127.0.0.1 through 10.0.2.2",
    ),
    "VMS-VBX-002": (
        (
            "promiscuousModePolicy",
            lambda v: str(v) in ("AllowNetwork", "AllowAll"),
            "--nic-promisc",
            "deny",
            "promiscuousModePolicy",
            "Deny",
        ),
        "NIC promiscuous mode denied",
        "a sniffer or IDS in the guest sees only its own traffic",
    ),
}


def _changes_for(finding: Finding, vm: VM) -> tuple[list[Change | None], str, str] | None:
    """(changes, summary, breaks) for a rule, or None when no setting closes it."""
    rid = finding.rule_id
    if rid in ("VMS-VM-001", "VMS-VM-002") and "vrde" in str(finding.evidence.get("value", "")):
        rid = "VMS-VBX-007"  # the console listener is VRDE's: turning VRDE off closes it
    if rid in _SETTINGS:
        setting, summary, breaks = _SETTINGS[rid]
        return [_change(vm, *setting)], summary, breaks
    if rid in _NIC_SETTINGS:
        (suffix, bad, option, value, attribute, xml_value), summary, breaks = _NIC_SETTINGS[rid]
        changes = [
            _change(vm, f"vbox.Adapter{s}.{suffix}", f"{option}{s + 1}", value, attribute, xml_value)
            for s in _adapter_slots(vm, suffix, bad)
        ]
        return changes, summary, breaks
    if rid == "VMS-VBX-004":
        names = [
            k.split(".")[2]
            for k, v in vm.facts.items()
            if k.startswith("vbox.SharedFolder.")
            and k.endswith(".symlinkPolicy")
            and v.get("value") in ("any", "relative")
        ]
        changes = [
            _setextradata(
                vm,
                f"vbox.SharedFolder.{n}.symlinkPolicy",
                f"VBoxInternal2/SharedFoldersEnableSymlinksCreate/{n}",
                "0",
                "symlinkPolicy",
                "forbidden",
            )
            for n in names
        ]
        return (
            changes,
            "shared folders: the guest may not create symlinks",
            "guest software that creates symbolic links in the share fails",
        )
    return None


def _setextradata(vm: VM, fact_key: str, name: str, value: str, attribute: str, xml_value: str) -> Change | None:
    change = _change(vm, fact_key, name, value, attribute, xml_value)
    if change is None:
        return None
    return Change(
        change.kind,
        change.target,
        change.key,
        change.before,
        change.after,
        change.locator,
        detail={**change.detail, "via": "setextradata"},
    )


def fix(finding: Finding, asset: VM | Network | None, rule: Rule) -> Fix | Unfixable | None:
    """The fix of one failing VirtualBox finding, an Unfixable with the reason, or None (not this module's)."""
    if not isinstance(asset, VM):
        return None
    found = _changes_for(finding, asset)
    if found is None:
        return Unfixable(
            finding.rule_id,
            finding.asset,
            PLATFORM,
            NO_SETTING.format(platform="VirtualBox", remediation=rule.remediation_for(PLATFORM)),
        )
    changes, summary, breaks = found
    real = tuple(c for c in changes if c is not None)
    if not real:
        return Unfixable(
            finding.rule_id,
            finding.asset,
            PLATFORM,
            "the setting the fix needs is not in this input (read the .vbox file)",
        )
    return Fix(
        rule_id=finding.rule_id,
        asset=finding.asset,
        platform=PLATFORM,
        changes=real,
        summary=f"{asset.name}: {summary}",
        breaks=breaks,
        restart="vm",
        check="VBoxManage showvminfo --machinereadable (or the .vbox attribute) already shows the wanted value",
    )


FUNCTIONS = hook(PLATFORM, fix, _UNFIXABLE)
