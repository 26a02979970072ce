"""Reading and checking a framework file (``frameworks/<id>.yaml``; the format is described at the top of
``mlps2-l3.yaml``). Rule selectors (``category:NAME``, ``control:NAME``) are resolved against the catalogue
here, and two frameworks are generated from it: ``stig`` (the DISA ids the rules cite) and ``checklist``
(items naming selectors), so both stay true when the catalogue changes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from vmsentry.analyse.rules import load_catalogue
from vmsentry.model.compliance import DECISIONS, EVIDENCE_KINDS, VERIFICATION, Requirement
from vmsentry.model.rule import CATEGORIES, CONTROLS, Rule
from vmsentry.model.yaml_lines import YamlError, safe_load

FRAMEWORK_KEYS = {"id", "name", "version", "source", "description", "requirements", "generate"}
REQUIREMENT_KEYS = {
    "id",
    "section",
    "clause",
    "title",
    "title_zh",
    "text",
    "text_zh",
    "source",
    "verified",
    "rules",
    "related_rules",
    "decision",
    "evidence",
    "manual",
    "not_applicable",
    "note",
    "retention_days",
    "response_within_s",
}
REQUIRED = ("id", "section", "title", "text", "source", "verified")


class FrameworkError(Exception):
    """A framework file that does not load: one line naming the file and the requirement."""


@dataclass(frozen=True, slots=True)
class Framework:
    id: str
    name: str
    version: str
    source: str
    description: str
    requirements: tuple[Requirement, ...]
    # thresholds the evidence must meet, by requirement id (retention_days, response_within_s)
    extras: dict[str, dict[str, Any]]


def framework_ids() -> list[str]:
    folder = resources.files("vmsentry.analyse.compliance") / "frameworks"
    return sorted(item.name[: -len(".yaml")] for item in folder.iterdir() if item.name.endswith(".yaml"))


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def resolve(selectors: list[Any], where: str, rules: tuple[Rule, ...]) -> tuple[str, ...]:
    """Rule ids for a list of ids and selectors, in catalogue order, each once. An unknown id, category or
    control, or a selector that matches no rule, is an error."""
    known = {r.id for r in rules}
    wanted: set[str] = set()
    for sel in selectors:
        if not isinstance(sel, str):
            raise FrameworkError(f"{where}: rule selector {sel!r} is not text")
        kind, _, name = sel.partition(":")
        if not name:
            if sel not in known:
                raise FrameworkError(f"{where}: unknown rule id {sel}")
            wanted.add(sel)
            continue
        if kind == "category":
            if name not in CATEGORIES:
                raise FrameworkError(f"{where}: unknown rule category {name}")
            matched = {r.id for r in rules if r.category == name}
        elif kind == "control":
            if name not in CONTROLS:
                raise FrameworkError(f"{where}: unknown rule control {name}")
            matched = {r.id for r in rules if r.control == name}
        else:
            raise FrameworkError(f"{where}: unknown selector {sel} (use a rule id, category:NAME or control:NAME)")
        if not matched:
            raise FrameworkError(f"{where}: selector {sel} matches no rule")
        wanted |= matched
    return tuple(r.id for r in rules if r.id in wanted)


def _requirement(framework: str, entry: Any, where: str, rules: tuple[Rule, ...]) -> tuple[Requirement, dict]:
    if not isinstance(entry, dict):
        raise FrameworkError(f"{where}: a requirement must be a mapping")
    where = f"{where} {entry.get('id', '?')}"
    unknown = set(entry) - REQUIREMENT_KEYS
    if unknown:
        raise FrameworkError(f"{where}: unknown field {sorted(unknown)[0]}")
    for key in REQUIRED:
        if not _text(entry.get(key)):
            raise FrameworkError(f"{where}: missing {key}")
    if entry["verified"] not in VERIFICATION:
        raise FrameworkError(f"{where}: verified {entry['verified']!r} is not one of {', '.join(VERIFICATION)}")
    evidence = entry.get("evidence") or []
    for kind in evidence:
        if kind not in EVIDENCE_KINDS:
            raise FrameworkError(f"{where}: unknown evidence kind {kind!r} (one of {', '.join(EVIDENCE_KINDS)})")
    decision = entry.get("decision", "all")
    if decision not in DECISIONS:
        raise FrameworkError(f"{where}: decision {decision!r} is not one of {', '.join(DECISIONS)}")
    rule_ids = resolve(entry.get("rules") or [], where, rules)
    related = tuple(r for r in resolve(entry.get("related_rules") or [], where, rules) if r not in rule_ids)
    manual = _text(entry.get("manual")) or None
    not_applicable = _text(entry.get("not_applicable")) or None
    if not (rule_ids or evidence or manual or not_applicable):
        raise FrameworkError(f"{where}: names no rule, no evidence and no manual check")
    extras = {}
    for key in ("retention_days", "response_within_s"):
        if key in entry:
            value = entry[key]
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise FrameworkError(f"{where}: {key} must be a whole number above 0")
            extras[key] = value
    if "retention_days" in extras and "audit_log" not in evidence:
        raise FrameworkError(f"{where}: retention_days needs the audit_log evidence")
    if "response_within_s" in extras and "incidents" not in evidence:
        raise FrameworkError(f"{where}: response_within_s needs the incidents evidence")
    return (
        Requirement(
            framework=framework,
            id=str(entry["id"]),
            section=_text(entry["section"]),
            title=_text(entry["title"]),
            title_zh=_text(entry.get("title_zh")) or None,
            text=_text(entry["text"]),
            text_zh=_text(entry.get("text_zh")) or None,
            source=_text(entry["source"]),
            verified=entry["verified"],
            rules=rule_ids,
            evidence=tuple(evidence),
            manual=manual,
            decision=decision,
            clause=_text(entry.get("clause")) or None,
            related_rules=related,
            note=_text(entry.get("note")) or None,
            not_applicable=not_applicable,
        ),
        extras,
    )


# ---------------------------------------------------------------- the STIG ids the catalogue cites
STIG_ID = re.compile(r"\b((?:VMCH|ESXI|VCSA)-\d{2}-\d{6})((?:/\d{6})*)")
V_ID = re.compile(r"\bV-\d{6}\b")


def _stig_entries(spec: dict[str, Any], where: str, rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    """One requirement per DISA rule id the catalogue cites: rules naming it under ``compliance.disa_stig``
    decide it; rules citing it only in their references as an analogue on another platform are related."""
    benchmarks = spec.get("benchmarks") or {}
    deciding: dict[str, list[Rule]] = {}
    related: dict[str, list[Rule]] = {}
    vuln: dict[str, str] = {}
    cited: dict[str, str] = {}
    for rule in rules:
        stig = [str(s) for s in rule.compliance.get("disa_stig", [])]
        ids = [s for s in stig if STIG_ID.fullmatch(s)]
        for sid in ids:
            deciding.setdefault(sid, []).append(rule)
            vs = [s for s in stig if V_ID.fullmatch(s)]
            if vs:
                vuln[sid] = vs[0]
        for ref in rule.references:
            for match in STIG_ID.finditer(ref):
                prefix = match.group(1)[:-6]
                for sid in [match.group(1), *(prefix + tail for tail in match.group(2).split("/")[1:])]:
                    if sid in ids:
                        cited[sid] = ref  # the deciding rule's own citation is the source
                    elif rule not in deciding.get(sid, []):
                        cited.setdefault(f"analogue:{sid}", ref)
                        related.setdefault(sid, []).append(rule)
    entries = []
    for sid in sorted(set(deciding) | set(related)):
        bench = benchmarks.get(sid[:7])
        if not bench:
            raise FrameworkError(f"{where}: no benchmark named for the STIG prefix {sid[:7]} (benchmarks:)")
        own = deciding.get(sid, [])
        others = related.get(sid, [])
        first = (own or others)[0]
        vid = f" ({vuln[sid]})" if sid in vuln else ""
        entry = {
            "id": sid,
            "section": bench,
            "title": first.title,
            "text": f"{bench} rule {sid}{vid}, as vmsentry's rule {first.id} checks it: {first.title}.",
            "source": cited.get(sid)
            or cited.get(f"analogue:{sid}")
            or f"vmsentry catalogue: {', '.join(r.id for r in own)} (compliance.disa_stig)",
            "verified": "verified" if all(r.verified == "yes" for r in own or others) else "secondary",
            "rules": [r.id for r in own],
            "related_rules": [r.id for r in others],
        }
        if not own:
            entry["manual"] = (
                f"No vmsentry rule checks {sid} itself on VMware; rules "
                f"{', '.join(r.id for r in others)} check its analogue on other platforms. Check the setting on "
                "the VMware hosts."
            )
        entries.append(entry)
    if not entries:
        raise FrameworkError(f"{where}: the catalogue cites no DISA STIG id")
    return entries


@cache
def load_framework(framework_id: str) -> Framework:
    """The framework, validated; ``FrameworkError`` names the file and the requirement when it is not."""
    if framework_id not in framework_ids():
        raise FrameworkError(f"unknown framework {framework_id!r} (one of {', '.join(framework_ids())})")
    name = f"{framework_id}.yaml"
    item = resources.files("vmsentry.analyse.compliance") / "frameworks" / name
    try:
        doc = safe_load(item.read_text(encoding="utf-8"))
    except YamlError as exc:
        raise FrameworkError(f"{name}:{exc.line or ''} {exc.problem}") from None
    if not isinstance(doc, dict):
        raise FrameworkError(f"{name}: not a mapping")
    unknown = set(doc) - FRAMEWORK_KEYS
    if unknown:
        raise FrameworkError(f"{name}: unknown field {sorted(unknown)[0]}")
    for key in ("id", "name", "version", "source"):
        if not _text(doc.get(key)):
            raise FrameworkError(f"{name}: missing {key}")
    if doc["id"] != framework_id:
        raise FrameworkError(f"{name}: id {doc['id']!r} is not the file's name")
    rules = load_catalogue()
    entries = list(doc.get("requirements") or [])
    generate = doc.get("generate")
    if generate is not None:
        if not isinstance(generate, dict) or generate.get("from") != "catalogue-stig":
            raise FrameworkError(f"{name}: generate: must be {{from: catalogue-stig, benchmarks: ...}}")
        entries += _stig_entries(generate, name, rules)
    if not entries:
        raise FrameworkError(f"{name}: no requirements")
    requirements, extras, seen = [], {}, set()
    for entry in entries:
        requirement, extra = _requirement(framework_id, entry, name, rules)
        if requirement.id in seen:
            raise FrameworkError(f"{name}: duplicate requirement id {requirement.id}")
        seen.add(requirement.id)
        requirements.append(requirement)
        if extra:
            extras[requirement.id] = extra
    return Framework(
        id=framework_id,
        name=_text(doc["name"]),
        version=_text(doc["version"]),
        source=_text(doc["source"]),
        description=_text(doc.get("description")),
        requirements=tuple(requirements),
        extras=extras,
    )
