"""The terminal report: a one-line summary, then what needs attention, grouped by asset, worst first.

Names and values come from VM definitions, which anyone able to define a VM controls: every string is
passed through ``printable`` so that an escape sequence or a newline in a VM name cannot repaint the
terminal or forge report lines.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmsentry.model.findings import Finding, sort_findings
from vmsentry.model.text import printable
from vmsentry.report import ScanResult
from vmsentry.report.json_report import summarise

_ANSI = {
    "critical": "1;31",
    "high": "31",
    "medium": "33",
    "low": "36",
    "info": "2",
    "unknown": "34",
    "error": "35",
    "waived": "2",
    "heading": "1",
}
_TAG_WIDTH = len("[CRITICAL]")
_INDENT = " " * (2 + _TAG_WIDTH + 1)


def evidence_text(evidence: dict[str, Any]) -> str:
    """``file:locator key=value (message)``, leaving out whatever is absent."""
    where = ":".join(printable(p) for p in (evidence.get("file"), evidence.get("locator")) if p)
    what = f"{printable(evidence['key'])}={printable(evidence.get('value'))}" if evidence.get("key") else ""
    text = " ".join(p for p in (where, what) if p)
    if evidence.get("message"):
        text = f"{text} ({printable(evidence['message'])})" if text else printable(evidence["message"])
    return text


def group_by_asset(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    """Findings per asset; assets worst first (by their worst finding), each asset's findings worst first.
    After ``sort_findings`` each asset first appears with its worst finding, so first-seen order is it."""
    groups: dict[str, list[Finding]] = {}
    for finding in sort_findings(list(findings)):
        groups.setdefault(finding.asset, []).append(finding)
    return list(groups.items())


def render(result: ScanResult, *, color: bool = False) -> str:
    paint = _painter(color)
    lines = [_summary_line(result, paint)]
    if result.baseline is not None:
        # --baseline: only what changed since (the summary line still counts the whole scan)
        lines += _baseline_lines(result.baseline, paint)
    else:
        listed = [f for f in result.findings if f.status not in ("pass", "not_applicable")]
        for asset, findings in group_by_asset(listed):
            failing = sum(f.status == "fail" for f in findings)
            lines += ["", paint("heading", printable(asset)) + (f"  ({failing} failing)" if failing else "")]
            for finding in findings:
                lines += _finding_lines(finding, paint)
        if not listed:
            lines += ["", "nothing needs attention"]
    if result.notes:
        lines += ["", paint("heading", "notes")] + [f"  {printable(n)}" for n in result.notes]
    if result.inventory.errors:
        lines += ["", paint("heading", "inputs that could not be read")]
        lines += [f"  {printable(e.file)}: {printable(e.message)}" for e in result.inventory.errors]
    return "\n".join(lines) + "\n"


def _painter(color: bool):
    if not color:
        return lambda _style, text: text
    return lambda style, text: f"\x1b[{_ANSI.get(style, '0')}m{text}\x1b[0m"


def _summary_line(result: ScanResult, paint) -> str:
    s = summarise(result)
    failing = ", ".join(paint(sev, f"{n} {sev}") for sev, n in s["failing_by_severity"].items() if n)
    statuses = s["by_status"]
    parts = [
        f"{_count(s['vms'], 'VM')}, {_count(s['networks'], 'network')}, {_count(s['hosts'], 'host')}",
        f"failing: {failing or 'none'}",
        f"{statuses['unknown']} unknown, {_count(statuses['error'], 'error')}, {statuses['waived']} waived, "
        f"{statuses['pass']} passed, {statuses['not_applicable']} not applicable",
    ]
    if result.baseline is not None:
        parts.append(f"{s['new']} new, {s['fixed']} fixed since baseline")
    if s["errors"] or s["skipped_files"]:
        parts.append(f"{_count(s['errors'], 'unreadable input')}, {_count(s['skipped_files'], 'skipped file')}")
    parts.append(f"{s['seconds']:.1f} s")
    return " | ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def waiver_text(waiver: dict[str, Any]) -> str:
    return (
        f"waived by {printable(waiver.get('owner'))} until {printable(waiver.get('expires'))}: "
        f"{printable(waiver.get('reason'))}"
    )


def _tag(paint, label: str) -> str:
    """``[HIGH]``, ``[UNKNOWN]`` ...: a severity for failures, otherwise the status."""
    return paint(label, f"[{label.upper()}]".ljust(_TAG_WIDTH))


def _finding_lines(finding: Finding, paint, *, show_asset: bool = False) -> list[str]:
    tag = _tag(paint, finding.severity if finding.status == "fail" else finding.status)
    head = f"  {tag} {printable(finding.rule_id)} {printable(finding.title)}"
    if show_asset:
        head += f" on {printable(finding.asset)}"
    evidence = evidence_text(finding.evidence)
    waiver = finding.waiver or {}
    if finding.status == "waived":
        return [f"{head} ({waiver_text(waiver)})"]
    if finding.status != "fail":  # unknown, error: compact, with the reason
        return [f"{head}: {evidence}" if evidence else head]
    lines = [head]
    if evidence:
        lines.append(f"{_INDENT}evidence: {evidence}")
    if finding.remediation:
        lines.append(f"{_INDENT}fix: {printable(finding.remediation)}")
    if waiver.get("expired"):
        lines.append(
            f"{_INDENT}waiver by {printable(waiver.get('owner'))} expired on {printable(waiver.get('expires'))}"
        )
    return lines


def _baseline_lines(baseline: dict[str, Any], paint) -> list[str]:
    new, fixed = sort_findings(list(baseline["new"])), baseline["fixed"]
    lines = ["", paint("heading", f"new since baseline ({len(new)})")]
    for finding in new:
        lines += _finding_lines(finding, paint, show_asset=True)
    lines += ["", paint("heading", f"fixed since baseline ({len(fixed)})")]
    for old in fixed:
        lines.append(
            f"  {_tag(paint, str(old.get('severity', 'info')))} {printable(old.get('rule_id'))} "
            f"{printable(old.get('title', ''))} on {printable(old.get('asset'))}"
        )
    unchanged = baseline.get("unchanged", 0)
    if unchanged:
        lines += ["", f"{_count(unchanged, 'failing finding')} already in the baseline, not listed"]
    return lines
