"""The compliance report of one framework (``vmsentry report --framework F``): a one-page summary (counts by
status, the worst gaps), then every requirement with its status, the rules and evidence that decide it, its
gaps, and for a ``manual`` one what an auditor must look at. It reads ``ComplianceResult`` records only.

MLPS (GB/T 22239-2019) is read by people who work from the Chinese text: its requirements show the Chinese
wording as the standard has it, with the English rendering under it, and the labels carry both languages.
A requirement whose id or text is not verified against the primary source shows the mark
(``[unverified]``, ``[derived]``...) beside its id, on every rendering.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vmsentry.model.compliance import (
    REQUIREMENT_STATUS_ORDER,
    REQUIREMENT_STATUSES,
    ComplianceResult,
    RequirementResult,
)
from vmsentry.report.markdown import md_code, md_text, table
from vmsentry.report.templating import render_page

SCHEMA = "vmsentry.compliance-report/1"
WORST_GAPS = 10  # requirements on the summary page
ASSETS_SHOWN = 12  # assets named per deciding rule; the JSON has all

# MLPS assessment conclusions are 符合 / 部分符合 / 不符合 / 不适用; "manual" is ours (人工核查: checked by hand)
STATUS_ZH = {"pass": "符合", "fail": "不符合", "partial": "部分符合", "manual": "人工核查", "not_applicable": "不适用"}
LABELS_ZH = {
    "summary": "摘要",
    "requirements": "要求",
    "worst": "主要差距",
    "decided_by": "判定依据",
    "evidence": "证据",
    "gaps": "差距",
    "auditor": "测评人员须核查",
    "status": "结论",
}


@dataclass(frozen=True, slots=True)
class Mark:
    """How sure a requirement's id and text are, as a visible mark (None when verified)."""

    text: str
    title: str


VERIFICATION_TITLES = {
    "secondary": "read in a reputable secondary source, not in the standard itself",
    "weak": "read only in a weak secondary source: check it against the official text",
    "derived": "derived from the numbering of verified items; no source states it",
    "unverified": "no readable source was found: check it against the official text before relying on it",
}


def mark(result: RequirementResult) -> Mark | None:
    level = result.requirement.verified
    if level == "verified":
        return None
    return Mark(f"[{level}]", VERIFICATION_TITLES.get(level, level))


def bilingual(result: ComplianceResult) -> bool:
    """Labels in both languages: MLPS, or any framework whose requirements carry Chinese text."""
    return result.framework.startswith("mlps") or any(r.requirement.text_zh for r in result.results)


def worst(result: ComplianceResult, limit: int = WORST_GAPS) -> list[RequirementResult]:
    """The failing, then partial, requirements with the most gaps first: the summary page's list."""
    open_items = [r for r in result.results if r.status in ("fail", "partial")]
    open_items.sort(key=lambda r: (REQUIREMENT_STATUS_ORDER[r.status], -len(r.gaps)))
    return open_items[:limit]


def sections(result: ComplianceResult) -> list[tuple[str, list[RequirementResult]]]:
    """The requirements by section, in the framework's own order."""
    grouped: dict[str, list[RequirementResult]] = {}
    for item in result.results:
        grouped.setdefault(item.requirement.section, []).append(item)
    return list(grouped.items())


def _summary(result: ComplianceResult) -> dict[str, int]:
    counts = dict.fromkeys(REQUIREMENT_STATUSES, 0)
    for item in result.results:
        counts[item.status] = counts.get(item.status, 0) + 1
    counts["total"] = len(result.results)
    return counts


def _unverified(result: ComplianceResult) -> int:
    return sum(r.requirement.verified != "verified" for r in result.results)


def render_html(result: ComplianceResult, tool_version: str) -> str:
    return render_page(
        "compliance.html.j2",
        c=result,
        tool_version=tool_version,
        generated=result.generated,
        summary=_summary(result),
        statuses=REQUIREMENT_STATUSES,
        worst=worst(result),
        sections=sections(result),
        unverified=_unverified(result),
        zh=bilingual(result),
        status_zh=STATUS_ZH,
        label_zh=LABELS_ZH,
        mark=mark,
        assets_shown=ASSETS_SHOWN,
    )


def to_dict(result: ComplianceResult, tool_version: str) -> dict[str, Any]:
    out = {"schema": SCHEMA, "tool": {"name": "vmsentry", "version": tool_version}}
    out.update(result.to_dict())
    out["summary"] = _summary(result)
    return out


def render_json(result: ComplianceResult, tool_version: str) -> str:
    # ensure_ascii=False: the Chinese texts stay readable in the file (UTF-8, as every report is written)
    return json.dumps(to_dict(result, tool_version), indent=1, ensure_ascii=False) + "\n"


def _label(english: str, key: str, zh: bool) -> str:
    return f"{english} {LABELS_ZH[key]}" if zh else english


def _status(status: str, zh: bool) -> str:
    return f"{status} {STATUS_ZH[status]}" if zh and status in STATUS_ZH else status


def _assets(assets: tuple[str, ...]) -> str:
    shown = ", ".join(md_text(a) for a in assets[:ASSETS_SHOWN])
    more = len(assets) - ASSETS_SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def render_markdown(result: ComplianceResult, tool_version: str) -> str:
    zh = bilingual(result)
    counts = _summary(result)
    lines = [
        f"# {md_text(result.name)} {md_text(result.version)}: compliance report",
        "",
        f"Framework `{md_text(result.framework)}`, source: {md_text(result.source)}. "
        f"Generated {md_text(result.generated)} by vmsentry {md_text(tool_version)}.",
        "",
        f"## {_label('Summary', 'summary', zh)}",
        "",
        *table(
            [md_text(_status(s, zh)) for s in REQUIREMENT_STATUSES] + ["total"],
            [[str(counts[s]) for s in REQUIREMENT_STATUSES] + [str(counts["total"])]],
        ),
        "",
    ]
    if _unverified(result):
        lines += [
            f"{_unverified(result)} requirement(s) carry a mark such as \\[unverified\\]: their id or text was not "
            "read in the primary source; check them against the official text.",
            "",
        ]
    lines += [f"### {_label('Worst gaps', 'worst', zh)}", ""]
    worst_items = worst(result)
    lines += [
        f"- **{md_text(r.requirement.id)}** ({md_text(_status(r.status, zh))}): "
        f"{md_text(r.gaps[0] if r.gaps else r.requirement.title)}"
        for r in worst_items
    ] or ["None: no requirement fails or is partial."]
    lines += ["", f"## {_label('Requirements', 'requirements', zh)}", ""]
    for section, items in sections(result):
        lines += [f"### {md_text(section)}", ""]
        for r in items:
            lines += _requirement_markdown(r, zh)
    return "\n".join(lines)


def _requirement_markdown(r: RequirementResult, zh: bool) -> list[str]:
    req = r.requirement
    flag = mark(r)
    head = f"#### {md_text(req.id)}"
    if req.clause:
        head += f" ({md_text(req.clause)})"
    if flag:
        head += f" {md_text(flag.text)}"
    lines = [head, "", f"**{md_text(_status(r.status, zh))}**: {md_text(req.title)}"]
    if zh and req.title_zh:
        lines[-1] += f" / {md_text(req.title_zh)}"
    lines.append("")
    if req.text_zh:
        lines += [f"> {md_text(req.text_zh)}", ">"]
    lines += [f"> {md_text(req.text)}", ""]
    if r.decided_by:
        lines += [
            f"{_label('Decided by', 'decided_by', zh)}:",
            "",
            *table(
                ["Rule", "Status", "Assets"], [[md_code(d.rule_id), d.status, _assets(d.assets)] for d in r.decided_by]
            ),
            "",
        ]
    for key, english, values in (("evidence", "Evidence", r.evidence), ("gaps", "Gaps", r.gaps)):
        if values:
            lines += [f"{_label(english, key, zh)}:", "", *(f"- {md_text(v)}" for v in values), ""]
    if req.manual and r.status != "not_applicable":
        lines += [f"{_label('For the auditor', 'auditor', zh)}: {md_text(req.manual)}", ""]
    if r.status == "not_applicable" and req.not_applicable:
        lines += [f"Not applicable: {md_text(req.not_applicable)}", ""]
    return lines
