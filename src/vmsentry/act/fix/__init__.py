"""The fix planner (``vmsentry fix``): from failing findings to a ``FixPlan`` of changes a renderer
(report/fix) writes as shell, Ansible, PowerShell or a patch.

Where a fix comes from, in order: the rule's ``fix:`` block for the finding's platform (changes as data, a
planner function, or the reason it cannot be fixed; analyse/rules/fix_block.py), else the rule's
declarative ``test:`` when it names one setting and its wanted value (a sysctl test: the sysctl set to the
value). A failing finding with neither is ``Unfixable`` ("no fix known").

Platforms: ``PLATFORM_MODULES`` maps a finding's platform to the module that resolves its changes (the
targets, the planner functions). Adding a platform is one line there: a module with ``FUNCTIONS`` (name ->
function(finding, rule, spec, inventory) -> Fix | Unfixable) and ``resolve(change, finding, inventory) ->
Change`` (turns a data change into a concrete one: the file or object it edits).
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

from vmsentry.model import Inventory
from vmsentry.model.findings import Finding, sort_findings
from vmsentry.model.fix import Change, Fix, FixPlan, Unfixable
from vmsentry.model.rule import Rule

PLATFORM_MODULES = {
    "linux": "vmsentry.act.fix.linux_host",
    "libvirt": "vmsentry.act.fix.libvirt",
    "vmware": "vmsentry.act.fix.vmware",
    "virtualbox": "vmsentry.act.fix.virtualbox",
    "proxmox": "vmsentry.act.fix.proxmox",
    "hyperv": "vmsentry.act.fix.hyperv",
}
NO_FIX = "no fix known: follow the rule's remediation (vmsentry rules --explain {rule})"


def platform_module(platform: str) -> ModuleType | None:
    name = PLATFORM_MODULES.get(platform)
    return importlib.import_module(name) if name else None


def fill(template: Any, finding: Finding) -> Any:
    """A text of a ``fix:`` block with the finding's ``{key}``, ``{value}``, ``{file}``, ``{name}``, ``{locator}``."""
    if not isinstance(template, str) or "{" not in template:
        return template
    ev = finding.evidence
    return template.format(
        key=ev.get("key", ""),
        value=ev.get("value", ""),
        file=ev.get("file", ""),
        locator=xpath_of(ev.get("locator")) or "",
        name=finding.asset.split(":", 1)[-1],
    )


def xpath_of(locator: str | None) -> str | None:
    """The XPath in a finding's locator ("line 16, /domain/devices/interface[1]" -> the XPath)."""
    if not locator:
        return None
    for part in str(locator).split(", "):
        if part.startswith("/"):
            return part
    return None


def data_fix(finding: Finding, rule: Rule, spec: dict[str, Any], module: ModuleType) -> Fix | Unfixable:
    changes = []
    for entry in spec["changes"]:
        if entry.get("only_key") and entry["only_key"] != finding.evidence.get("key"):
            continue
        change = Change(
            kind=entry["kind"],
            target=fill(entry.get("target", ""), finding),
            key=fill(entry.get("key", ""), finding),
            before=finding.evidence.get("value"),
            after=fill(entry.get("after"), finding),
            locator=fill(entry.get("element"), finding) or xpath_of(finding.evidence.get("locator")),
            secret=entry.get("secret"),
            detail={k: entry[k] for k in ("op", "attrs") if k in entry},
        )
        resolved = module.resolve(change, finding)
        if isinstance(resolved, Unfixable):
            return resolved
        changes.append(resolved)
    return Fix(
        rule_id=rule.id,
        asset=finding.asset,
        platform=finding.platform,
        changes=tuple(changes),
        summary=fill(spec["summary"], finding),
        breaks=fill(spec["breaks"], finding),
        restart=spec.get("restart", "none"),
        service=spec.get("service"),
        check="each change is compared with the current value first; nothing is written when it already holds",
    )


def from_test(finding: Finding, rule: Rule) -> dict[str, Any] | None:
    """A ``fix:`` spec derived from a sysctl ``test:`` (one setting, one wanted value), or None."""
    test = rule.test or {}
    if "sysctl" not in test or test.get("op") not in ("eq", "in", "gte", "lte"):
        return None
    wanted = test["value"][0] if test["op"] == "in" else test["value"]
    return {
        "summary": f"{test['sysctl']} = {wanted} ({rule.title.lower()})",
        "breaks": "traffic that relied on the old kernel behaviour; see the rule's rationale",
        "changes": [{"kind": "sysctl", "key": test["sysctl"], "after": wanted}],
    }


def fix_for(finding: Finding, rule: Rule | None, inventory: Inventory) -> Fix | Unfixable:
    platform = finding.platform
    if rule is None:
        return Unfixable(finding.rule_id, finding.asset, platform, "rule not in this catalogue")
    spec = rule.fix.get(platform) or rule.fix.get("all") or from_test(finding, rule)
    module = platform_module(platform)
    if spec is None:
        return Unfixable(rule.id, finding.asset, platform, NO_FIX.format(rule=rule.id))
    if "unfixable" in spec:
        return Unfixable(rule.id, finding.asset, platform, " ".join(spec["unfixable"].split()))
    if module is None:
        return Unfixable(rule.id, finding.asset, platform, f"no fixes are written for platform {platform} yet")
    if "function" in spec:
        function = getattr(module, "FUNCTIONS", {}).get(spec["function"])
        if function is None:
            return Unfixable(rule.id, finding.asset, platform, f"no fix for platform {platform} yet")
        return function(finding, rule, spec, inventory)
    return data_fix(finding, rule, spec, module)


def plan(
    findings: list[Finding], inventory: Inventory, rules: tuple[Rule, ...] | None = None, inputs: list[str] = ()
) -> FixPlan:
    """The fixes for the failing findings (one per finding; a fix whose changes an earlier one already
    makes is dropped), and the failing findings no fix covers, with the reason."""
    if rules is None:
        from vmsentry.analyse.rules import load_catalogue

        rules = load_catalogue()
    by_id = {r.id: r for r in rules}
    fixes: list[Fix] = []
    unfixable: list[Unfixable] = []
    made: set[tuple] = set()
    for finding in sort_findings(findings):  # worst first, and the same order from a saved scan
        if finding.status != "fail":
            continue
        result = fix_for(finding, by_id.get(finding.rule_id), inventory)
        if isinstance(result, Unfixable):
            unfixable.append(result)
            continue
        identity = tuple((c.kind, c.target, c.key, c.locator, repr(c.after)) for c in result.changes)
        if identity in made:
            continue
        made.add(identity)
        fixes.append(result)
    return FixPlan(
        fixes=fixes,
        unfixable=unfixable,
        inputs=list(inputs),
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
