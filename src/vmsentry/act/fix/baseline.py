"""Host baseline templates (``vmsentry fix --template``): every host rule of a platform with a fix, as one
``FixPlan`` a renderer writes as one idempotent script, without a scan; and ``check``, which tells from a
scan which items of a template the host fails or cannot be told.

- ``linux-kvm``: the Linux host rules (``asset: host``, platform ``linux``): sysctls, qemu.conf and
  libvirtd.conf keys. A ``fix:`` block whose change is written for one finding (``{key}``: the interface the
  finding named) says which keys the baseline sets with ``baseline:`` (e.g. ``net.ipv4.conf.all.rp_filter``;
  ``{bridge}`` in a key = every Linux bridge present when the script runs).
- ``windows-hyperv``: the Hyper-V rules, host (``Set-VMHost``), virtual switches and every VM's adapters,
  firmware, checkpoints and integration services (``act/fix/hyperv.py``'s settings with the name ``*``:
  the PowerShell renderer loops over every VM or switch).

Every rule of the template that no change expresses is an ``Unfixable`` with the reason, so the script
lists it. The template's items are the rules; ``check`` marks an item "fail" when any finding of its rule
fails, "unknown" when one is unknown or the input has no finding of it (unknown is never pass).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

from vmsentry.act.fix import NO_FIX, fix_for, from_test
from vmsentry.act.fix import hyperv as hyperv_fix
from vmsentry.model import Inventory
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Fix, FixPlan, Unfixable
from vmsentry.model.rule import Rule

TEMPLATES = {"linux-kvm": "linux", "windows-hyperv": "hyperv"}  # template -> the platform of its rules
EVERY = "*"  # the object name of a template change: every VM, adapter or switch on the host
ASSET = {"linux": "host:baseline", "hyperv": "host:baseline"}
# Hyper-V rules a fix exists for on one VM, left out of the template: applied to every VM blindly they fail
# or break guests, so they stay per-VM decisions (``vmsentry fix`` on a scan writes them for the VMs named).
_NOT_IN_TEMPLATE = {
    "VMS-HV-011": "encrypting state and migration traffic needs a key protector on each VM (Set-VMKeyProtector): "
    "a per-VM decision, fixed by `vmsentry fix` on a scan",
    "VMS-HV-012": "a virtual TPM needs a key protector and a generation 2 VM: a per-VM decision, fixed by "
    "`vmsentry fix` on a scan",
}
# how a template's summary names the objects a Hyper-V change loops over (report/fix/powershell.py)
_EVERY_WHAT = {
    "Get-VMNetworkAdapter": "every VM network adapter",
    "Get-VMFirmware": "every generation 2 VM",
    "Get-VMSwitch": "every External switch",
    "Get-VMHost": "the host",
}
STATES = ("fail", "unknown", "pass")  # what ``check`` says of an item, worst first


def source_of(rule: Rule) -> str:
    """Where a setting comes from: the compliance ids (STIG, NIST, CIS), then the references."""
    ids = [f"{name} {', '.join(map(str, v)) if isinstance(v, list) else v}" for name, v in rule.compliance.items()]
    return "; ".join([*ids, *rule.references[:3]])


def rules_of(template: str, rules: tuple[Rule, ...]) -> list[Rule]:
    platform = TEMPLATES[template]
    if platform == "linux":
        return [r for r in rules if "linux" in r.platforms and r.asset == "host"]
    return [r for r in rules if platform in r.platforms]


def _finding(rule: Rule, platform: str, key: str | None) -> Finding:
    """The failure a template item fixes, as the planner reads it (only the key a ``{key}`` text names)."""
    return Finding(
        rule_id=rule.id,
        title=rule.title,
        severity=rule.severity,
        status="fail",
        category=rule.category,
        platform=platform,
        asset=ASSET[platform],
        evidence={"key": key} if key else {},
        remediation=rule.remediation_for(platform),
        references=list(rule.references),
    )


def _linux_item(rule: Rule) -> Fix | Unfixable:
    spec = rule.fix.get("linux") or from_test(_finding(rule, "linux", None), rule)
    if spec is None:
        return Unfixable(rule.id, ASSET["linux"], "linux", NO_FIX.format(rule=rule.id))
    keys = spec.get("baseline") or [None]
    empty = Inventory()
    made = [fix_for(_finding(rule, "linux", key), rule, empty) for key in keys]
    first = made[0]
    if isinstance(first, Unfixable):
        return first
    changes = tuple(c for fix in made if isinstance(fix, Fix) for c in fix.changes)
    summary = first.summary if len(keys) == 1 else fill_keys(spec["summary"], keys)
    return replace(first, changes=changes, summary=summary)


def fill_keys(text: str, keys: list[str]) -> str:
    return text.replace("{key}", " and ".join(keys))


def _hyperv_item(rule: Rule) -> Fix | Unfixable:
    if rule.id in _NOT_IN_TEMPLATE:
        return Unfixable(rule.id, ASSET["hyperv"], "hyperv", _NOT_IN_TEMPLATE[rule.id])
    every = SimpleNamespace(name=EVERY)  # hyperv.fix reads only the object's name
    made = hyperv_fix.fix(_finding(rule, "hyperv", None), every, rule)
    if made is None:
        return Unfixable(rule.id, ASSET["hyperv"], "hyperv", f"no Hyper-V setting: {rule.remediation_for('hyperv')}")
    if isinstance(made, Unfixable):
        return made
    every_what = _EVERY_WHAT.get(made.changes[0].detail.get("get"), "every VM")
    return replace(made, summary=made.summary.replace(f"{EVERY}: ", f"{every_what}: ", 1))


def template_plan(template: str, rules: tuple[Rule, ...] | None = None) -> FixPlan:
    """The baseline of ``template`` (a key of TEMPLATES): one fix per rule that a change expresses (its
    title and source filled in for the script's comments), the other rules with the reason."""
    if rules is None:
        from vmsentry.analyse.rules import load_catalogue

        rules = load_catalogue()
    item = _linux_item if TEMPLATES[template] == "linux" else _hyperv_item
    fixes: list[Fix] = []
    unfixable: list[Unfixable] = []
    for rule in rules_of(template, rules):
        made = item(rule)
        if isinstance(made, Unfixable):
            unfixable.append(made)
        else:
            fixes.append(replace(made, title=rule.title, source=source_of(rule)))
    return FixPlan(
        fixes=fixes,
        unfixable=unfixable,
        inputs=[f"template {template}"],
        generated=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        template=template,
    )


def check(template: str, findings: list[Finding], plan: FixPlan) -> list[dict]:
    """Each item of the template with what the scanned findings say of it: ``state`` fail / unknown / pass
    (the worst of its rule's findings on the template's platform; none at all = unknown), ``in_template``
    (False: listed with the reason, the script does not change it), the assets that fail or cannot be told."""
    platform = TEMPLATES[template]
    by_rule: dict[str, list[Finding]] = {}
    for finding in findings:
        if finding.platform == platform:
            by_rule.setdefault(finding.rule_id, []).append(finding)
    items = [(f.rule_id, f.title, True, "") for f in plan.fixes]
    items += [(u.rule_id, "", False, u.reason) for u in plan.unfixable]
    out = []
    for rule_id, title, in_template, reason in items:
        seen = by_rule.get(rule_id, [])
        if not seen:
            state, assets = "unknown", ["(no finding of this rule in the input)"]
        elif any(f.status == "fail" for f in seen):
            state, assets = "fail", sorted({f.asset for f in seen if f.status == "fail"})
        elif any(f.status == "unknown" for f in seen):
            state, assets = "unknown", sorted({f.asset for f in seen if f.status == "unknown"})
        else:
            state, assets = "pass", []
        out.append(
            {
                "rule_id": rule_id,
                "title": title or (seen[0].title if seen else ""),
                "state": state,
                "in_template": in_template,
                "assets": assets,
                "reason": reason,
            }
        )
    out.sort(key=lambda i: (not i["in_template"], STATES.index(i["state"]), i["rule_id"]))
    return out
