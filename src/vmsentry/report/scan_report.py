"""The scan report a person reads (``vmsentry report PATH...``, ``scan --format html``), after Prowler's HTML
report: an overview (failing by severity, a hardening score per host, VM and network, see ``score.py``),
then every rule that applied, worst first, with every place it was checked (asset, file, locator, what was
found) and how to fix it. HTML (``templates/scan.html.j2``), Markdown and JSON render the same view.

Passing places are many on a fleet and say little: a rule lists at most ``PASSES_SHOWN`` of them on the page
(every failing, unknown, error and waived place is always listed); the JSON keeps them all.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from vmsentry.model.findings import SEVERITIES, SEVERITY_RANK, STATUS_ORDER, STATUSES, Finding
from vmsentry.model.scan import ScanResult
from vmsentry.report.json_report import summarise
from vmsentry.report.markdown import md_code, md_text, table
from vmsentry.report.score import METHOD, WEIGHTS, band, score
from vmsentry.report.templating import render_page

SCHEMA = "vmsentry.scan-report/1"
PASSES_SHOWN = 50
KIND_ORDER = {"host": 0, "vm": 1, "network": 2}
# the statuses a rule or a place can show (not_applicable results are counted, never listed)
LISTED_STATUSES = tuple(s for s in sorted(STATUSES, key=STATUS_ORDER.__getitem__) if s != "not_applicable")


@dataclass(slots=True)
class Place:
    asset: str
    status: str
    file: str | None
    locator: str | None
    detail: str


@dataclass(slots=True)
class RuleGroup:
    rule_id: str
    title: str
    severity: str
    category: str
    platform: str
    status: str  # the worst status of its places: the rule is filtered under it
    counts: dict[str, int]
    places: list[Place]
    remediation: str
    references: list[str]

    @property
    def passes_hidden(self) -> int:
        return max(0, self.counts.get("pass", 0) - PASSES_SHOWN)

    def shown_places(self) -> list[Place]:
        """Every place but passes beyond the first PASSES_SHOWN (the page's list; the JSON has all)."""
        passes = 0
        shown = []
        for place in self.places:
            if place.status == "pass":
                passes += 1
                if passes > PASSES_SHOWN:
                    continue
            shown.append(place)
        return shown


@dataclass(slots=True)
class AssetRow:
    asset: str
    kind: str
    name: str
    score: int | None
    band: str
    failing: dict[str, int]  # by severity
    passed: int
    unknown: int  # unknown + error
    waived: int


@dataclass(slots=True)
class ScanReport:
    generated: str
    tool_version: str
    summary: dict[str, Any]
    score: int | None
    assets: list[AssetRow]
    rules: list[RuleGroup]
    notes: list[str] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "tool": {"name": "vmsentry", "version": self.tool_version},
            "generated": self.generated,
            "run_id": self.run_id,
            "summary": self.summary,
            "score": {"overall": self.score, "method": METHOD, "weights": WEIGHTS},
            "assets": [asdict(a) for a in self.assets],
            "rules": [asdict(r) for r in self.rules],
            "notes": self.notes,
            "errors": self.errors,
        }


def _kind_and_name(asset: str) -> tuple[str, str]:
    kind, _, name = asset.partition(":")
    return (kind, name) if name else ("other", asset)


def _asset_row(asset: str, findings: list[Finding]) -> AssetRow:
    kind, name = _kind_and_name(asset)
    failing = Counter(f.severity for f in findings if f.status == "fail")
    value = score(findings)
    return AssetRow(
        asset=asset,
        kind=kind,
        name=name,
        score=value,
        band=band(value),
        failing={s: failing[s] for s in SEVERITIES},
        passed=sum(f.status == "pass" for f in findings),
        unknown=sum(f.status in ("unknown", "error") for f in findings),
        waived=sum(f.status == "waived" for f in findings),
    )


def _rule_group(findings: list[Finding]) -> RuleGroup:
    first = findings[0]
    ordered = sorted(
        findings,
        key=lambda f: (
            STATUS_ORDER.get(f.status, 9),
            f.asset,
            str(f.evidence.get("file")),
            str(f.evidence.get("locator")),
        ),
    )
    counts = Counter(f.status for f in findings)
    return RuleGroup(
        rule_id=first.rule_id,
        title=first.title,
        severity=first.severity,
        category=first.category,
        platform=first.platform,
        status=ordered[0].status,
        counts={s: counts[s] for s in LISTED_STATUSES if counts[s]},
        places=[
            Place(
                asset=f.asset,
                status=f.status,
                file=_text_or_none(f.evidence.get("file")),
                locator=_text_or_none(f.evidence.get("locator")),
                detail=_detail(f),
            )
            for f in ordered
        ],
        remediation=first.remediation,
        references=list(first.references),
    )


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _detail(finding: Finding) -> str:
    evidence = finding.evidence
    if evidence.get("message"):
        return str(evidence["message"])
    if finding.waiver:
        return f"waived: {finding.waiver.get('reason', '')}"
    if "key" in evidence:
        return f"{evidence['key']} = {evidence.get('value')}"
    return ""


def build(result: ScanResult, generated: str, run_id: str | None = None) -> ScanReport:
    """The report's view of a scan: per-asset rows (every asset of the inventory, with or without findings)
    and per-rule groups, both worst first."""
    listed = [f for f in result.findings if f.status != "not_applicable"]
    by_asset: dict[str, list[Finding]] = defaultdict(list)
    by_rule: dict[str, list[Finding]] = defaultdict(list)
    for finding in listed:
        by_asset[finding.asset].append(finding)
        by_rule[finding.rule_id].append(finding)
    inventory = result.inventory
    for record in (*inventory.hosts, *inventory.vms, *inventory.networks):
        by_asset.setdefault(record.asset, [])
    assets = sorted(
        (_asset_row(asset, found) for asset, found in by_asset.items()),
        key=lambda a: (KIND_ORDER.get(a.kind, 3), 101 if a.score is None else a.score, a.name),
    )
    rules = sorted(
        (_rule_group(found) for found in by_rule.values()),
        key=lambda g: (STATUS_ORDER.get(g.status, 9), SEVERITY_RANK[g.severity], g.rule_id),
    )
    return ScanReport(
        generated=generated,
        tool_version=result.tool_version,
        summary=summarise(result),
        score=score(listed),
        assets=assets,
        rules=rules,
        notes=list(result.notes),
        errors=[{"file": e.file, "message": e.message} for e in inventory.errors],
        run_id=run_id,
    )


# ------------------------------------------------------------------------------------------ renderings
def render(result: ScanResult) -> str:
    """``scan --format html``: the page, generated now."""
    from datetime import UTC, datetime

    return render_html(build(result, datetime.now(UTC).isoformat(timespec="seconds")))


def render_html(report: ScanReport) -> str:
    return render_page(
        "scan.html.j2",
        r=report,
        tool_version=report.tool_version,
        generated=report.generated,
        severities=SEVERITIES,
        statuses=LISTED_STATUSES,
        method=METHOD,
        passes_shown=PASSES_SHOWN,
    )


def render_json(report: ScanReport) -> str:
    return json.dumps(report.to_dict(), indent=1, ensure_ascii=True, default=str) + "\n"


def _score_text(value: int | None) -> str:
    return "n/a" if value is None else f"{value}/100"


def render_markdown(report: ScanReport) -> str:
    s = report.summary
    failing = s["failing_by_severity"]
    lines = [
        "# vmsentry scan report",
        "",
        f"Generated {md_text(report.generated)} by vmsentry {md_text(report.tool_version)}. "
        f"{s['hosts']} host(s), {s['vms']} VM(s), {s['networks']} network(s); overall score "
        f"**{_score_text(report.score)}**.",
        "",
        "## Failing by severity",
        "",
        *table(list(SEVERITIES), [[str(failing[sev]) for sev in SEVERITIES]]),
        "",
        "## Score per asset",
        "",
        *table(
            ["Asset", "Kind", "Score", *SEVERITIES, "passed", "unknown", "waived"],
            [
                [md_text(a.name), a.kind, _score_text(a.score)]
                + [str(a.failing[sev]) for sev in SEVERITIES]
                + [str(a.passed), str(a.unknown), str(a.waived)]
                for a in report.assets
            ],
        ),
        "",
        f"How the score is computed: {md_text(METHOD)}",
        "",
    ]
    if report.errors:
        lines += ["## Inputs not read", ""]
        lines += [f"- {md_code(e['file'])}: {md_text(e['message'])}" for e in report.errors]
        lines.append("")
    lines += ["## Findings by rule", ""]
    for group in report.rules:
        counts = ", ".join(f"{n} {status}" for status, n in group.counts.items())
        lines += [
            f"### {md_text(group.rule_id)}: {md_text(group.title)}",
            "",
            f"Severity **{group.severity}**, status **{group.status}** ({counts}); {md_text(group.category)}, "
            f"{md_text(group.platform)}.",
            "",
            *table(
                ["Asset", "Status", "File", "Locator", "Detail"],
                [
                    [md_text(p.asset), p.status, md_code(p.file or ""), md_code(p.locator or ""), md_text(p.detail)]
                    for p in group.shown_places()
                ],
            ),
        ]
        if group.passes_hidden:
            lines.append(f"\nand {group.passes_hidden} more passed (listed in `--format json`).")
        if group.remediation:
            lines += ["", f"Fix: {md_text(group.remediation)}"]
        lines.append("")
    return "\n".join(lines)
