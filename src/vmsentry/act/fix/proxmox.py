"""Proxmox VE fixes: ``qm set`` options of a VM (``/etc/pve/qemu-server/VMID.conf``) and ``[OPTIONS]``
lines of the firewall files (``cluster.fw``, ``host.fw``, ``VMID.fw``).

A change of kind ``proxmox_key`` (target: the file edited; ``detail["vmid"]`` for qm set) says which: ``detail["scope"]`` is "conf" (key = the qm option, e.g.
``net0`` or ``vga``; ``detail["suboption"]`` when only one ``name=value`` inside it changes, as
``firewall=1`` of a NIC) or "fw" (key = the [OPTIONS] key of the file ``detail["file"]``). ``after`` None
removes the option (``qm set VMID --delete KEY``). Option names and defaults are pve-firewall's and
qemu-server's, as ``collect.proxmox`` and ``collect.proxmox_fw`` read them. Firewall options apply when
pve-firewall next compiles its rules (within seconds); VM options at the VM's next start.
"""

from __future__ import annotations

import re

from vmsentry.act.fix.platforms import hook, resolve  # noqa: F401 (the planner's module contract)
from vmsentry.model import VM, Host, Network
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

PLATFORM = "proxmox"

# firewall-file options: rule -> (file kind, key, wanted value, what could break)
_FW = {
    "VMS-PVE-001": (
        "cluster",
        "enable",
        "1",
        "the cluster firewall starts filtering: traffic no rule accepts is dropped by policy_in",
    ),
    "VMS-PVE-002": (
        "cluster",
        "policy_in",
        "DROP",
        "inbound traffic to the nodes that no rule accepts is dropped (add rules for what must reach them first)",
    ),
    "VMS-PVE-003": (
        "host",
        "enable",
        "1",
        "the node's firewall filters its own traffic: management access must be allowed by a rule (pve-firewall keeps 8006/22 open from the cluster's management_ipset)",
    ),
    "VMS-PVE-004": ("host", "tcpflags", "1", "packets with illegal TCP flag combinations are dropped"),
    "VMS-PVE-005": ("host", "nosmurfs", "1", "broadcast-sourced packets (smurf attacks) are dropped"),
    "VMS-PVE-006": (
        "host",
        "nf_conntrack_allow_invalid",
        "0",
        "packets conntrack considers invalid (asymmetric routing) are dropped",
    ),
    "VMS-PVE-011": (
        "vm",
        "enable",
        "1",
        "the VM's firewall rules and policy start to apply: traffic no rule accepts is dropped",
    ),
    "VMS-PVE-012": ("vm", "macfilter", "1", "the guest can no longer send from a MAC address other than its NIC's"),
    "VMS-PVE-014": ("vm", "policy_in", "DROP", "inbound traffic to the VM that no rule accepts is dropped"),
}
_VM_FW_DISABLE = {"VMS-PVE-015": ("dhcp", "radv")}  # options to set 0 (the one the evidence names)

_UNFIXABLE = {
    "VMS-PVE-013": "ipfilter needs the VM's own addresses in [IPSET ipfilter-netN]: they are not in the scan",
    "VMS-PVE-016": "which admin hosts may reach the service (the rule's -source) is not in the scan",
    "VMS-PVE-020": "which VLANs the NIC's trunks should carry is a network design decision",
    "VMS-PVE-021": "which VLAN tag the NIC should get on the VLAN-aware bridge is a network design decision",
    "VMS-PVE-030": "removing a PCI passthrough device takes hardware away from the guest: decide per device (qm set VMID --delete hostpciN)",
    "VMS-PVE-031": "args: passes raw QEMU options; which of them the guest needs must be reviewed by hand",
    "VMS-PVE-032": "removing a shared folder takes data access away from the guest: decide per share",
    "VMS-PVE-034": "memory encryption needs a host with AMD SEV or Intel TDX, OVMF and a supported guest",
    "VMS-PVE-035": "deleting a snapshot with RAM state discards it: decide which ones (qm delsnapshot VMID NAME)",
    "VMS-PVE-037": "the guest agent serves backups (fs-freeze) and IP reporting: whether this VM needs it is a judgement; restrict VM.GuestAgent.* privileges instead",
    "VMS-VM-020": "moving a NIC off the bridge changes how the guest is reached (a design decision)",
    "VMS-VM-030": "anti-spoofing on Proxmox is firewall=1 on the NIC with macfilter and ipfilter (VMS-PVE-010/012/013); ipfilter needs the VM's addresses",
    "VMS-VM-091": "deleting a snapshot discards the state it holds: decide which ones (qm delsnapshot VMID NAME)",
}


def _line(at: str | None) -> int | None:
    match = re.search(r"line (\d+)", at or "")
    return int(match.group(1)) if match else None


def _vmid(vm: VM) -> str:
    return str((vm.facts.get("proxmox.vmid") or {}).get("value") or vm.name)


def _fw_file(asset, scope: str) -> tuple[str | None, dict]:
    """(path, options) of the firewall file a rule of this scope edits."""
    if scope == "vm":
        fact = asset.facts.get("proxmox.vm_fw") if isinstance(asset, VM) else None
        return (fact["at"], fact["value"]["options"]) if fact else (None, {})
    facts = asset.facts if isinstance(asset, Host) else {}
    fw = facts.get(f"proxmox.{scope}_fw") or {}
    return facts.get("source_file"), fw.get("options", {})


def _fw_change(asset, scope: str, key: str, value: str | None) -> Change | None:
    path, options = _fw_file(asset, scope)
    if path is None:
        return None
    current = options.get(key) or {}
    return Change(
        kind="proxmox_key",
        target=path,
        key=key,
        before=current.get("value"),
        after=value,
        locator=current.get("at"),
        detail={"scope": "fw", "file": path, "section": "OPTIONS"},
    )


def _conf_change(
    vm: VM, key: str, value: str | None, at: str | None, suboption: str | None = None, before=None
) -> Change:
    detail = {"scope": "conf", "file": vm.source.file, "line": _line(at), "vmid": _vmid(vm)}
    if suboption:
        detail["suboption"] = suboption
    return Change(
        kind="proxmox_key",
        target=vm.source.file or f"vm:{_vmid(vm)}",
        key=key,
        before=before,
        after=value,
        locator=at,
        detail=detail,
    )


def _conf_fix(finding: Finding, vm: VM) -> tuple[list[Change], str, str] | None:
    rid, evidence = finding.rule_id, finding.evidence
    at = evidence.get("locator")
    if rid == "VMS-PVE-010":
        nic = (at or "").rsplit(", ", 1)[-1]
        fact = vm.facts.get(f"proxmox.{nic}.firewall") or {}
        change = _conf_change(vm, nic, "1", at, suboption="firewall", before=fact.get("value"))
        return (
            [change],
            f"{nic}: firewall=1",
            "the VM's firewall rules (and an enabled VMID.fw's policy) start to apply to this NIC",
        )
    if rid in ("VMS-PVE-036", "VMS-VM-070", "VMS-VM-071"):
        fact = vm.facts.get("proxmox.vga") or {}
        if rid != "VMS-PVE-036" and fact.get("value", "").split(",")[0] != "qxl":
            if "clipboard=vnc" in str(fact.get("value", "")):
                return (
                    [
                        _conf_change(
                            vm,
                            "vga",
                            fact["value"].replace(",clipboard=vnc", ""),
                            fact.get("at"),
                            before=fact.get("value"),
                        )
                    ],
                    "vga without clipboard=vnc",
                    "copy and paste through the noVNC console stops",
                )
            return None
        return (
            [_conf_change(vm, "vga", "std", fact.get("at") or at, before=fact.get("value"))],
            "vga std (no SPICE)",
            "SPICE clients (virt-viewer, remote-viewer), SPICE clipboard, file transfer and USB redirection stop; the noVNC console still works",
        )
    if rid == "VMS-VM-041" and re.fullmatch(r"line \d+, usb\d+", at or ""):
        key = at.rsplit(", ", 1)[-1]
        return (
            [_conf_change(vm, key, None, at, before=evidence.get("value"))],
            f"remove {key}",
            "the guest loses the redirected USB device",
        )
    if rid == "VMS-PVE-033":
        fact = vm.facts.get("proxmox.ivshmem") or {}
        return (
            [_conf_change(vm, "ivshmem", None, fact.get("at"), before=fact.get("value"))],
            "remove ivshmem",
            "software sharing memory with the host through ivshmem (Looking Glass) stops",
        )
    return None


def fix(finding: Finding, asset: VM | Network | Host | None, rule: Rule) -> Fix | Unfixable | None:
    """The fix of one failing Proxmox finding, an Unfixable with the reason, or None (not this module's)."""
    rid = finding.rule_id
    restart, breaks = "none", ""
    if rid in _FW:
        scope, key, value, breaks = _FW[rid]
        changes = [_fw_change(asset, scope, key, value)]
        summary = f"{scope}.fw [OPTIONS] {key}: {value}" if scope != "vm" else f"VMID.fw [OPTIONS] {key}: {value}"
    elif rid in _VM_FW_DISABLE:
        key = str(finding.evidence.get("key"))
        if key not in _VM_FW_DISABLE[rid]:
            return Unfixable(
                rid, finding.asset, PLATFORM, f"the finding names no option of {', '.join(_VM_FW_DISABLE[rid])}"
            )
        changes = [_fw_change(asset, "vm", key, "0")]
        summary, breaks = (
            f"VMID.fw [OPTIONS] {key}: 0",
            f"the VM can no longer act as the segment's {'DHCP server' if key == 'dhcp' else 'IPv6 router'}",
        )
    elif isinstance(asset, VM):
        found = _conf_fix(finding, asset)
        if found is None:
            return Unfixable(
                rid,
                finding.asset,
                PLATFORM,
                f"no single qm option closes this finding: {rule.remediation_for(PLATFORM)}",
            )
        changes, summary, breaks = found
        restart = "vm"
    else:
        return None
    real = tuple(c for c in changes if c is not None)
    if not real:
        return Unfixable(
            rid, finding.asset, PLATFORM, "the firewall file the fix edits was not read (add it to the inputs)"
        )
    return Fix(
        rule_id=rid,
        asset=finding.asset,
        platform=PLATFORM,
        changes=real,
        summary=summary,
        breaks=breaks,
        restart=restart,
        service="pve-firewall" if restart == "none" and real[0].detail.get("scope") == "fw" else None,
        check="the option already has the wanted value",
    )


FUNCTIONS = hook(PLATFORM, fix, _UNFIXABLE)
