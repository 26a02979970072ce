"""The rule catalogue as ``vmsentry rules`` prints it: text, JSON, Markdown or HTML, one row per rule.
(``--matrix``, the platform comparison, is ``report.matrix``.)"""

from __future__ import annotations

import json
from collections.abc import Sequence

from vmsentry.model.rule import Rule
from vmsentry.report import markup_text as escape

FORMATS = ("text", "json", "md", "html")


def render(fmt: str, rules: Sequence[Rule]) -> str:
    if fmt == "json":
        return json.dumps({"rules": [r.to_dict() for r in rules]}, indent=2) + "\n"
    if fmt == "md":
        lines = ["| id | severity | category | platforms | title |", "|---|---|---|---|---|"]
        lines += [f"| {r.id} | {r.severity} | {r.category} | {', '.join(r.platforms)} | {r.title} |" for r in rules]
        return "\n".join(lines) + "\n"
    if fmt == "html":
        rows = "".join(
            f"<tr><td>{escape(r.id)}</td><td>{escape(r.severity)}</td><td>{escape(r.category)}</td>"
            f"<td>{escape(', '.join(r.platforms))}</td><td>{escape(r.title)}</td></tr>"
            for r in rules
        )
        return (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>vmsentry rules</title></head>'
            "<body><table><tr><th>id</th><th>severity</th><th>category</th><th>platforms</th><th>title</th></tr>"
            f"{rows}</table></body></html>\n"
        )
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    width = max((len(r.id) for r in rules), default=10)
    out = [f"{r.id:<{width}}  {r.severity:<8}  {r.category:<18}  {r.title}" for r in rules]
    out.append(f"{len(rules)} rules")
    return "\n".join(out) + "\n"
