"""One rule in full for ``vmsentry rules --explain ID``: what it checks (its declarative ``test:`` said in
words, or the predicate it names), why, how to fix it per platform, its sources, what ``vmsentry fix`` does
about a failure (the ``fix:`` block, or the sysctl its ``test:`` names, or the reason no script can), and the
compliance requirements that cite it (analyse/compliance/frameworks/*.yaml). Plain data: report/rules.py
writes it as text, JSON or Markdown."""

from __future__ import annotations

from typing import Any

from vmsentry.model.rule import Rule

# how a ``test:`` operator reads in a sentence (analyse/checks/declarative.py OPS)
_OP_WORDS = {
    "eq": "equal to {value}",
    "ne": "anything but {value}",
    "in": "one of {value}",
    "not_in": "none of {value}",
    "gte": "at least {value}",
    "lte": "at most {value}",
    "truthy": "on (true/1/yes)",
    "falsy": "off (false/0/no)",
    "unset": "absent",
}
NO_FIX = "no fix known: follow the remediation above"


def _value(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def checks(rule: Rule) -> str:
    """What the rule checks, in words."""
    test = rule.test
    if not test:
        return f"{rule.title} (judged by the predicate {rule.check} in vmsentry.analyse.checks)"
    wanted = _OP_WORDS.get(test.get("op", ""), "").format(value=_value(test.get("value")))
    if "sysctl" in test:
        return f"the kernel setting {test['sysctl']} of the host must be {wanted}"
    if "devices" in test:
        absent = (test.get("absent") or {}).get("status", "pass")
        return f"the VM must have no device of kind {', '.join(test['devices'])} (none at all: {absent})"
    said = f"the setting {test.get('key') or test.get('fact')} (fact {test.get('fact')}) must be {wanted}"
    absent = test.get("absent")
    if absent:
        said += f"; when it is absent: {absent.get('status')}"
        if absent.get("value") or absent.get("message"):
            said += f" ({absent.get('value') or absent.get('message')})"
    for pre in test.get("not_applicable_when") or []:
        op = _OP_WORDS.get(pre.get("op", ""), "").format(value=_value(pre.get("value")))
        said += f"; not applicable when {pre.get('fact')} is {op}"
    return said


def _change_words(change: dict[str, Any]) -> str:
    kind, key = change.get("kind"), change.get("key", "")
    value = f"a generated {change['secret']}" if change.get("secret") else _value(change.get("after"))
    if kind == "xml_edit":
        element = change.get("element") or "the element the finding names"
        if change.get("op") == "remove":
            return f"xml_edit: remove {element}"
        if change.get("op") == "ensure":
            return f"xml_edit: ensure <{key}> in {element}" + (
                f" with {change['attrs']}" if change.get("attrs") else ""
            )
        return f"xml_edit: {element} @{key} = {value}"
    target = f" in {change['target']}" if change.get("target") else ""
    if kind == "file_line":
        return f"file_line: the line {value}{target}"
    key = key.replace("{key}", "the key the finding names")
    return f"{kind}: {key} = {value}{target}"


def fixes(rule: Rule) -> dict[str, dict[str, Any]]:
    """Per platform of the rule: what ``vmsentry fix`` changes, or why it cannot."""
    out: dict[str, dict[str, Any]] = {}
    for platform, spec in rule.fix.items():
        if "unfixable" in spec:
            out[platform] = {"fixable": False, "reason": " ".join(spec["unfixable"].split())}
            continue
        entry: dict[str, Any] = {"fixable": True, "restart": spec.get("restart", "none")}
        if spec.get("service"):
            entry["service"] = spec["service"]
        if "function" in spec:
            entry["summary"] = f"written per finding by the planner function {spec['function']}"
            entry["changes"] = []
        else:
            entry["summary"] = spec["summary"].replace("{key}", "the key the finding names")
            entry["breaks"] = spec["breaks"].replace("{key}", "the key the finding names")
            entry["changes"] = [_change_words(c) for c in spec["changes"]]
        if spec.get("baseline"):
            entry["baseline"] = list(spec["baseline"])
        out[platform] = entry
    test = rule.test or {}
    if not out and "sysctl" in test and test.get("op") in ("eq", "in", "gte", "lte"):
        wanted = test["value"][0] if test["op"] == "in" else test["value"]
        out["linux"] = {
            "fixable": True,
            "restart": "none",
            "summary": f"{test['sysctl']} set to {wanted}, now and in /etc/sysctl.d/90-vmsentry.conf (from the test)",
            "breaks": "traffic that relied on the old kernel behaviour; see the rationale",
            "changes": [f"sysctl: {test['sysctl']} = {wanted}"],
        }
    return out


def mappings(rule_id: str) -> list[dict[str, str]]:
    """The compliance requirements that cite the rule: deciding (``rules``) or for reference (``related``)."""
    from vmsentry.analyse.compliance import framework, frameworks

    out = []
    for framework_id in frameworks():
        for req in framework(framework_id).requirements:
            role = "decides" if rule_id in req.rules else "related" if rule_id in req.related_rules else None
            if role:
                out.append({"framework": framework_id, "requirement": req.id, "title": req.title, "role": role})
    return out


def explain(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "severity": rule.severity,
        "category": rule.category,
        "platforms": list(rule.platforms),
        "asset": rule.asset,
        "checks": checks(rule),
        "default": rule.default,
        "rationale": rule.rationale,
        "remediation": dict(rule.remediation),
        "references": list(rule.references),
        "compliance": dict(rule.compliance),
        "verified": rule.verified,
        "fix": fixes(rule),
        "mappings": mappings(rule.id),
    }
