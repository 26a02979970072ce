"""Compliance mappings as data: one file per framework (``frameworks/<id>.yaml``), each requirement naming
the catalogue rules and the kinds of evidence that decide it, or what an auditor must look at.

    frameworks()                          -> the framework ids
    load(id)                              -> its requirements, validated (FrameworkError otherwise)
    evaluate(id, findings, facts)         -> ComplianceResult

How a requirement is decided: its rules' results over every scanned asset (a rule fails when it fails on any
asset; unknown or in error on any asset, or waived, is not a pass) combined by ``decision`` (all / any), and
each evidence kind's verdict from the gathered ``EvidenceFacts``. Any failure fails the requirement. Then:
everything decided and nothing left to an auditor = pass; something passes but something is unknown, absent
or manual = partial; nothing passes because evidence is absent or results unknown = manual; no rule applied
to a scanned asset and nothing else decides it = not_applicable. Unknown never counts as a pass.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from vmsentry.analyse.compliance import evidence as _evidence
from vmsentry.analyse.compliance.load import Framework, FrameworkError, framework_ids, load_framework
from vmsentry.analyse.rules import load_catalogue
from vmsentry.model.compliance import (
    ComplianceResult,
    EvidenceFacts,
    Requirement,
    RequirementResult,
    RuleDecision,
    summarise,
)
from vmsentry.model.findings import Finding

__all__ = ["Framework", "FrameworkError", "evaluate", "framework", "frameworks", "load"]


def frameworks() -> list[str]:
    """The framework ids (``mlps2-l3``, ``nist-800-125b``, ``nist-800-207``, ``gdpr``, ``stig``, ``checklist``)."""
    return framework_ids()


def framework(framework_id: str) -> Framework:
    """The framework with its name, version, source and requirements."""
    return load_framework(framework_id)


def load(framework_id: str) -> list[Requirement]:
    return list(load_framework(framework_id).requirements)


def _rule_decision(rule_id: str, title: str, findings: list[Finding]) -> RuleDecision:
    by_status: dict[str, list[str]] = {}
    for f in findings:
        status = "unknown" if f.status == "error" else f.status
        by_status.setdefault(status, []).append(f.asset)
    for status in ("fail", "unknown", "waived", "pass"):
        if status in by_status:
            assets = tuple(dict.fromkeys(by_status[status]))
            return RuleDecision(rule_id, status, assets, title)
    return RuleDecision(rule_id, "not_applicable", (), title)


def _assets(decision: RuleDecision, most: int = 5) -> str:
    shown = ", ".join(decision.assets[:most])
    more = len(decision.assets) - most
    return shown + (f" and {more} more" if more > 0 else "")


def _rules_part(req: Requirement, decisions: list[RuleDecision]) -> tuple[str | None, list[str], list[str]]:
    """(pass | fail | unknown | not_applicable, or None without rules), evidence sentences, gaps."""
    if not req.rules:
        return None, [], []
    applicable = [d for d in decisions if d.status != "not_applicable"]
    if not applicable:
        return "not_applicable", [], [f"none of its {len(decisions)} rules applied to a scanned asset"]
    gaps = []
    for d in applicable:
        if d.status == "fail":
            gaps.append(f"{d.rule_id} fails on {_assets(d)}: {d.title}")
        elif d.status == "unknown":
            gaps.append(f"{d.rule_id} could not be decided on {_assets(d)}: {d.title}")
        elif d.status == "waived":
            gaps.append(f"{d.rule_id} fails but is waived on {_assets(d)}: {d.title}")
    passing = [d for d in applicable if d.status == "pass"]
    said = []
    if passing:
        assets = {a for d in passing for a in d.assets}
        said.append(
            f"{len(passing)} of {len(applicable)} applicable rule{'s' if len(applicable) != 1 else ''} "
            f"pass on {len(assets)} asset{'s' if len(assets) != 1 else ''}"
        )
    statuses = {d.status for d in applicable}
    if req.decision == "any":
        status = "pass" if "pass" in statuses else "fail" if statuses == {"fail"} else "unknown"
        if status == "pass":
            gaps = []  # one passing alternative decides it; the others are not gaps
    else:
        status = "fail" if "fail" in statuses else "pass" if statuses == {"pass"} else "unknown"
    return status, said, gaps


def decide(
    req: Requirement, findings_by_rule: dict[str, list[Finding]], facts: EvidenceFacts | None, thresholds: dict
) -> RequirementResult:
    """One requirement's result (the module's docstring says how)."""
    if req.not_applicable:
        return RequirementResult(req, "not_applicable", evidence=(req.not_applicable,))
    titles = {r.id: r.title for r in load_catalogue()}
    decisions = [_rule_decision(rid, titles.get(rid, ""), findings_by_rule.get(rid, [])) for rid in req.rules]
    rules_status, said, gaps = _rules_part(req, decisions)
    if rules_status == "not_applicable" and req.evidence:
        said, gaps = gaps, []  # the evidence decides; that no rule applied is said, not a gap
    verdicts = []
    for kind in req.evidence:
        verdict, sentence = _evidence.check(kind, facts, thresholds)
        verdicts.append(verdict)
        (said if verdict else gaps).append(sentence)
    decided = ([rules_status] if rules_status not in (None, "not_applicable") else []) + [
        "pass" if v else "fail" if v is False else "unknown" for v in verdicts
    ]
    if "fail" in decided:
        status = "fail"
    elif not decided:
        status = "manual" if req.manual else "not_applicable"
    elif "unknown" not in decided and not req.manual:
        status = "pass"
    elif "pass" in decided:
        status = "partial"
    else:
        status = "manual"
    if req.manual and status in ("partial", "manual", "pass"):
        gaps.append(f"for an auditor: {req.manual}")
    return RequirementResult(req, status, tuple(decisions), tuple(said), tuple(gaps))


def evaluate(
    framework_id: str, findings: Iterable[Finding], facts: EvidenceFacts | None = None, *, now: datetime | None = None
) -> ComplianceResult:
    """Every requirement of the framework decided from a scan's findings and the gathered evidence (None:
    nothing gathered, so every evidence-based part is absent)."""
    fw = load_framework(framework_id)
    by_rule: dict[str, list[Finding]] = {}
    for f in findings:
        by_rule.setdefault(f.rule_id, []).append(f)
    results = tuple(decide(req, by_rule, facts, fw.extras.get(req.id, {})) for req in fw.requirements)
    generated = (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
    return ComplianceResult(
        framework=fw.id,
        name=fw.name,
        version=fw.version,
        source=fw.source,
        generated=generated,
        results=results,
        description=fw.description,
        summary=summarise(results),
    )
