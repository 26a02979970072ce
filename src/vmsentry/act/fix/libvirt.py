"""Fixes for libvirt definitions (findings of platform ``libvirt``): edits of a domain's or network's XML,
applied with ``virsh dumpxml | xmlstarlet ed | virsh define`` or as a patch of the files the scan read.

Data changes (``fix:`` blocks) edit the element the finding's XPath names; the functions here are the
fixes that need logic: a console moved to loopback (the ``listen`` attribute and its ``<listen>`` child
agree), a console password, a NIC filter that needs the guest's address, a security label.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vmsentry.model import Inventory
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

LOOPBACK = "127.0.0.1"


def target_of(finding: Finding) -> str:
    """The libvirt object a finding is about: ``domain:NAME`` or ``network:NAME``."""
    kind, _, name = finding.asset.partition(":")
    return f"{'network' if kind == 'network' else 'domain'}:{name}"


def _xpath(finding: Finding) -> str | None:
    from vmsentry.act.fix import xpath_of

    return xpath_of(finding.evidence.get("locator"))


def resolve(change: Change, finding: Finding) -> Change | Unfixable:
    if change.kind != "xml_edit":
        return change
    if not change.locator:
        return Unfixable(finding.rule_id, finding.asset, finding.platform, "the finding names no XML element")
    detail = dict(change.detail)
    if finding.evidence.get("file"):
        detail["file"] = finding.evidence["file"]
    return replace(change, target=target_of(finding), detail=detail)


def _edit(finding: Finding, element: str, op: str, key: str, after: Any = None, **detail: Any) -> Change:
    extra = {"op": op, **detail}
    if finding.evidence.get("file"):
        extra["file"] = finding.evidence["file"]
    secret = extra.pop("secret", None)
    return Change("xml_edit", target_of(finding), key, finding.evidence.get("value"), after, element, secret, extra)


def _fix(finding: Finding, rule: Rule, changes: list[Change], summary: str, breaks: str) -> Fix:
    return Fix(
        rule.id,
        finding.asset,
        finding.platform,
        tuple(changes),
        summary,
        breaks,
        restart="vm",
        check="each edit is made only when the domain's XML does not already hold it",
    )


def _loopback(finding: Finding, graphics: str) -> list[Change]:
    return [
        _edit(finding, graphics, "set", "listen", LOOPBACK),
        _edit(finding, f"{graphics}/listen[@type='address']", "set", "address", LOOPBACK),
    ]


def console_loopback(finding: Finding, rule: Rule, spec: dict, inventory: Inventory) -> Fix | Unfixable:
    graphics = _xpath(finding)
    if not graphics or "/graphics" not in graphics:
        return Unfixable(rule.id, finding.asset, finding.platform, "the console is not a <graphics> element")
    return _fix(
        finding,
        rule,
        _loopback(finding, graphics),
        "the console listens on loopback only",
        "remote viewers must connect through SSH (virt-viewer --connect qemu+ssh://...)",
    )


def console_password(finding: Finding, rule: Rule, spec: dict, inventory: Inventory) -> Fix | Unfixable:
    graphics = _xpath(finding)
    if not graphics or "/graphics" not in graphics:
        return Unfixable(rule.id, finding.asset, finding.platform, "the console is not a <graphics> element")
    changes = [*_loopback(finding, graphics), _edit(finding, graphics, "set", "passwd", secret="vnc-password")]
    return _fix(
        finding,
        rule,
        changes,
        "the console listens on loopback only and asks for a password (generated when the script is written)",
        "viewers must tunnel over SSH and give the password (VNC uses at most 8 characters)",
    )


_index: list = [None, {}]  # the inventory last indexed, and its VMs by name (a plan asks once per finding)


def _vm_named(inventory: Inventory, name: str) -> Any:
    if _index[0] is not inventory:
        _index[:] = [inventory, {vm.name: vm for vm in inventory.vms}]
    return _index[1].get(name)


def _nic(inventory: Inventory, finding: Finding) -> Any:
    vm = _vm_named(inventory, finding.asset.partition(":")[2])
    locator = finding.evidence.get("locator")
    return next((n for n in vm.nics if n.locator == locator), None) if vm is not None else None


def nic_spoof_filter(finding: Finding, rule: Rule, spec: dict, inventory: Inventory) -> Fix | Unfixable:
    nic = _nic(inventory, finding)
    element = _xpath(finding)
    if nic is None or not element:
        return Unfixable(rule.id, finding.asset, finding.platform, "the NIC was not found in the inventory")
    if nic.filter:
        return Unfixable(
            rule.id, finding.asset, finding.platform, f"the NIC has filter {nic.filter}: replacing it is a decision"
        )
    if not nic.ip:
        return Unfixable(
            rule.id,
            finding.asset,
            finding.platform,
            "the guest's IP address is not in the definition: clean-traffic without it learns the address "
            "from the guest's first packet (VMS-VM-031); add <filterref filter='clean-traffic'> with "
            "<parameter name='IP' value='...'/>",
        )
    change = _edit(
        finding,
        element,
        "ensure",
        "filterref",
        attrs={"filter": "clean-traffic"},
        children=[["parameter", {"name": "IP", "value": nic.ip}]],
    )
    return _fix(
        finding,
        rule,
        [change],
        f"NIC {nic.id} gets the clean-traffic filter pinned to {nic.ip}",
        "the guest can no longer change its MAC or IP address, nor run a bridge or router inside",
    )


def seclabel_dynamic(finding: Finding, rule: Rule, spec: dict, inventory: Inventory) -> Fix | Unfixable:
    element = _xpath(finding)
    if not element:
        return Unfixable(
            rule.id,
            finding.asset,
            finding.platform,
            "the VM has no <seclabel>: it is unconfined because the host's security_driver is none (VMS-LVD-006)",
        )
    change = _edit(finding, element, "remove", "seclabel")
    return _fix(
        finding,
        rule,
        [change],
        "the explicit <seclabel type='none'/> is removed: libvirt gives the VM a dynamic label",
        "a guest whose files are not labelled for the host's LSM may fail to start until they are",
    )


FUNCTIONS = {
    "console_loopback": console_loopback,
    "console_password": console_password,
    "nic_spoof_filter": nic_spoof_filter,
    "seclabel_dynamic": seclabel_dynamic,
}
