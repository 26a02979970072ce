"""What the VMware, VirtualBox, Proxmox and Hyper-V fix modules share: the planner's hook (``FUNCTIONS``
and ``resolve`` of act/fix/__init__'s platform-module contract) around each module's
``fix(finding, asset, rule)`` with the rules each module declares unfixable, and finding the asset a finding is
about (two files may define a VM of the same name: the finding's evidence file tells them apart)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vmsentry.model import Inventory
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

NO_SETTING = "no single {platform} setting closes this finding: {remediation}"


def asset_of(finding: Finding, inventory: Inventory) -> Any:
    file = finding.evidence.get("file")
    fallback = None
    for asset in (*inventory.vms, *inventory.networks, *inventory.hosts):
        if asset.asset != finding.asset:
            continue
        source = getattr(asset, "source", None)
        own = source.file if source is not None else asset.facts.get("source_file")
        if file is None or own == file:
            return asset
        fallback = fallback or asset
    return fallback


def hook(platform: str, fix: Callable[[Finding, Any, Rule], Fix | Unfixable | None], unfixable: Mapping[str, str]):
    """The planner function (``fix: {PLATFORM: {function: PLATFORM}}`` in the catalogue) of a module:
    ``unfixable`` maps the rules no script fixes on this platform to the reason, the rest go to ``fix``."""

    def planned(finding: Finding, rule: Rule, spec: dict, inventory: Inventory) -> Fix | Unfixable:
        if finding.rule_id in unfixable:
            return Unfixable(finding.rule_id, finding.asset, platform, unfixable[finding.rule_id])
        result = fix(finding, asset_of(finding, inventory), rule)
        if result is None:
            reason = NO_SETTING.format(platform=platform, remediation=rule.remediation_for(platform))
            return Unfixable(finding.rule_id, finding.asset, platform, reason)
        return result

    return {platform: planned}


def resolve(change: Change, finding: Finding) -> Change:
    """Data changes of these platforms name their target themselves."""
    return change
