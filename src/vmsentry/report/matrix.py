"""The platform comparison table (``vmsentry rules --matrix``): for each control, how KVM/libvirt,
VMware, Hyper-V, VirtualBox and Proxmox VE set it, the platform default and the recommended value.

Built only from the rule catalogue (each rule's ``control``, ``setting``, ``recommended`` and ``default``),
so it cannot drift from what vmsentry checks. A cell without a rule says "no rule yet" instead of
inventing a value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from vmsentry.model.rule import CONTROLS, Rule
from vmsentry.report import markup_text

# column -> the rule platforms that belong to it (host rules of a KVM host are platform "linux")
COLUMNS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("kvm", "KVM/libvirt", ("libvirt", "qemu", "linux")),
    ("vmware", "VMware", ("vmware", "esxi", "vmware-workstation")),
    ("hyperv", "Hyper-V", ("hyperv",)),
    ("virtualbox", "VirtualBox", ("virtualbox",)),
    ("proxmox", "Proxmox VE", ("proxmox",)),
)
NO_RULE = "no rule yet"
_VMWARE = ("VMware", "ESXi", "Workstation", "Fusion", "Workstation/Fusion")
_LABELS = {
    "libvirt": ("libvirt",),
    "qemu": ("QEMU",),
    "linux": ("libvirt",),
    "hyperv": ("Hyper-V",),
    "proxmox": ("Proxmox",),
    "vmware": _VMWARE,
    "esxi": _VMWARE,
    "vmware-workstation": _VMWARE,
    "virtualbox": ("VirtualBox",),
}
_LABEL_RE = re.compile(
    r"(?:(?<=^)|(?<=[.;] ))(libvirt|QEMU|Hyper-V|Proxmox|VMware|ESXi|Workstation/Fusion|Workstation|"
    r"Fusion|VirtualBox)\b[^:.;]{0,40}?:"
)


def default_for(rule: Rule, platform: str) -> str:
    """The part of a rule's ``default`` text about ``platform`` ("libvirt: ... QEMU: ..."), else all of it."""
    text = rule.default
    marks = list(_LABEL_RE.finditer(text))
    if not marks:
        return text
    labels = _LABELS.get(platform, (platform,))
    parts = []
    for index, m in enumerate(marks):
        if m.group(1) in labels:
            end = marks[index + 1].start() if index + 1 < len(marks) else len(text)
            body = text[m.end() : end].strip()
            parts.append(body if len(labels) == 1 else f"{m.group(0)} {body}")
    if parts:
        return " ".join(parts)
    # an unlabelled lead ("No <filterref> = ...; Hyper-V: ...") speaks for the KVM/libvirt platforms the
    # shared rules were first written for; other platforms without their own label get no borrowed text
    lead = text[: marks[0].start()].strip()
    if platform in ("libvirt", "qemu", "linux"):
        return lead or text
    return "not stated in the rule"


def _per_platform(values: dict[str, str], platforms: Iterable[str]) -> str | None:
    for p in platforms:
        if p in values:
            return values[p]
    return values.get("all")


def build(rules: Iterable[Rule]) -> dict[str, Any]:
    rules = [r for r in rules if r.control]
    rows = []
    for control in CONTROLS:
        cells: dict[str, list[dict[str, Any]]] = {}
        for key, _, platforms in COLUMNS:
            entries = []
            for rule in rules:
                if rule.control != control:
                    continue
                hit = [p for p in rule.platforms if p in platforms]
                if not hit:
                    continue
                order = [p for p in platforms if p in hit]
                entries.append(
                    {
                        "rule_id": rule.id,
                        "severity": rule.severity,
                        "title": rule.title,
                        "setting": _per_platform(rule.setting, order) or "",
                        "default": default_for(rule, order[0]),
                        "recommended": _per_platform(rule.recommended, order) or "",
                    }
                )
            cells[key] = entries
        rows.append({"control": control, "cells": cells})
    return {"columns": [{"key": k, "title": t, "platforms": list(p)} for k, t, p in COLUMNS], "rows": rows}


def _cell_text(entries: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return [NO_RULE]
    return [
        f"{e['setting'] or '(see rule)'} - default: {e['default']} - recommended: {e['recommended'] or '(see rule)'} "
        f"[{e['rule_id']}]"
        for e in entries
    ]


def render_json(rules: Iterable[Rule]) -> str:
    return json.dumps({"matrix": build(rules)}, indent=2) + "\n"


def render_md(rules: Iterable[Rule]) -> str:
    data = build(rules)
    head = "| control | " + " | ".join(c["title"] for c in data["columns"]) + " |"
    lines = [
        "# Platform comparison (generated from the rule catalogue)",
        "",
        "Each cell: setting - platform default - recommended value [rule].",
        "",
        head,
        "|" + "---|" * (len(data["columns"]) + 1),
    ]
    for row in data["rows"]:
        cells = [" <br> ".join(_md_escape(t) for t in _cell_text(row["cells"][c["key"]])) for c in data["columns"]]
        lines.append(f"| {row['control']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def render_html(rules: Iterable[Rule]) -> str:
    data = build(rules)
    esc = markup_text
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>vmsentry platform comparison</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #999;"
        "padding:4px;vertical-align:top;font-size:90%}td.none{color:#888;font-style:italic}"
        "span.id{font-family:monospace;color:#555}</style></head><body>",
        "<h1>Platform comparison</h1><p>Generated from the vmsentry rule catalogue: setting, platform default "
        "and recommended value of each control.</p>",
        "<table><thead><tr><th>control</th>",
    ]
    out += [f"<th>{esc(c['title'])}</th>" for c in data["columns"]]
    out.append("</tr></thead><tbody>")
    for row in data["rows"]:
        out.append(f"<tr><th>{esc(row['control'])}</th>")
        for c in data["columns"]:
            entries = row["cells"][c["key"]]
            if not entries:
                out.append(f'<td class="none">{NO_RULE}</td>')
                continue
            parts = [
                f"<div><b>{esc(e['setting'] or '(see rule)')}</b><br>default: {esc(e['default'])}<br>"
                f"recommended: {esc(e['recommended'] or '(see rule)')}<br>"
                f'<span class="id">{esc(e["rule_id"])} ({esc(e["severity"])})</span></div>'
                for e in entries
            ]
            out.append("<td>" + "<hr>".join(parts) + "</td>")
        out.append("</tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out) + "\n"


def render(fmt: str, rules: Iterable[Rule]) -> str:
    rules = list(rules)
    if fmt == "json":
        return render_json(rules)
    if fmt == "html":
        return render_html(rules)
    return render_md(rules)
