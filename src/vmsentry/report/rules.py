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


EXPLAIN_FORMATS = ("text", "json", "md")


def _fix_lines(fix: dict[str, dict]) -> list[str]:
    if not fix:
        return ["no fix known: follow the remediation"]
    out = []
    for platform, entry in fix.items():
        if not entry["fixable"]:
            out.append(f"{platform}: not fixed by a script: {entry['reason']}")
            continue
        restart = entry["restart"] + (f" ({entry['service']})" if entry.get("service") else "")
        out.append(f"{platform}: {entry['summary']}; restart: {restart}")
        out += [f"  change {c}" for c in entry["changes"]]
        if entry.get("baseline"):
            out.append(f"  in the host baseline template: {', '.join(entry['baseline'])}")
        if entry.get("breaks"):
            out.append(f"  could break: {entry['breaks']}")
    return out


def _sections(rule: dict) -> list[tuple[str, list[str]]]:
    """(heading, lines) in the order a reader needs them: what, why, how to fix, sources, mappings."""
    compliance = [f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in rule["compliance"].items()]
    mapped = [f"{m['framework']} {m['requirement']} ({m['role']}): {m['title']}" for m in rule["mappings"]]
    return [
        ("checks", [rule["checks"]]),
        ("default", [rule["default"]]),
        ("why", [rule["rationale"]]),
        ("remediation", [f"{p}: {text}" for p, text in rule["remediation"].items()]),
        ("fix (vmsentry fix)", _fix_lines(rule["fix"])),
        ("sources", compliance + rule["references"]),
        ("verified", [rule["verified"]]),
        ("compliance mappings", mapped or ["none"]),
    ]


def _md_item(line: str, listed: bool) -> str:
    if line.startswith("  "):  # a detail of the line above
        return f"  - {line.strip()}"
    return f"- {line}" if listed else line


def render_explain(fmt: str, rules: Sequence[dict]) -> str:
    """Each rule of ``analyse.rules.explain.explain`` in full."""
    if fmt == "json":
        return json.dumps({"rules": list(rules)}, indent=2) + "\n"
    blocks = []
    for rule in rules:
        head = f"{rule['severity']} | {rule['category']} | {', '.join(rule['platforms'])} | asset {rule['asset']}"
        if fmt == "md":
            lines = [f"## {rule['id']}: {rule['title']}", "", head, ""]
            for heading, body in _sections(rule):
                lines += [f"### {heading}", ""] + [_md_item(line, len(body) > 1) for line in body] + [""]
        elif fmt == "text":
            lines = [f"{rule['id']}  {rule['title']}", f"  {head}"]
            for heading, body in _sections(rule):
                lines.append(f"{heading}:")
                lines += [f"  {line}" for line in body]
        else:
            raise ValueError(f"--explain writes {', '.join(EXPLAIN_FORMATS)}, not {fmt}")
        blocks.append("\n".join(lines).rstrip("\n"))
    return "\n\n".join(blocks) + "\n"
