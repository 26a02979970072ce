"""`vmsentry paths --format html`: one self-contained page (inline CSS, SVG and a few lines of static
JavaScript, nothing fetched) drawing the exposure graph in layers with the worst paths highlighted: the smallest fix first, then a
legend and the graph (near-identical nodes and paths grouped, natural order: ``paths_layout``), then the paths.
Every name and value is HTML-escaped; the script reads only data-* attributes, never inventory text."""

from __future__ import annotations

from typing import Any

from vmsentry.model.paths import Path, PathsResult
from vmsentry.report import markup_text as _e
from vmsentry.report.paths_layout import Box, group_nodes, group_paths

LAYERS = {
    "external": 0,
    "lan": 0,
    "vm": 1,
    "channel": 2,
    "network": 2,
    "listener": 2,
    "forward": 2,
    "share": 2,
    "device": 2,
    "hub": 3,
    "service": 4,
    "vuln": 4,
    "host": 5,
}
COLORS = {
    "external": "#8e44ad",
    "lan": "#8e44ad",
    "vm": "#2874a6",
    "network": "#117a65",
    "listener": "#b9770e",
    "forward": "#b9770e",
    "share": "#a04000",
    "device": "#a04000",
    "channel": "#a04000",
    "hub": "#7f8c8d",
    "service": "#922b21",
    "vuln": "#c0392b",
    "host": "#1b2631",
}
MAX_NODES = 400  # boxes drawn at most (after grouping)
WORST = 5
ROW, COL, BOX_W, BOX_H = 34, 215, 185, 24
COLUMN_TITLES = ("outside / LAN", "VMs", "networks, consoles, shares", "host reach", "services, flaws", "host")
LEGEND = (
    ("outside world, physical LAN", ("external", "lan")),
    ("VM", ("vm",)),
    ("network or bridge", ("network",)),
    ("console, monitor, port forward", ("listener", "forward")),
    ("share, passed-through device, host-guest channel", ("share", "device", "channel")),
    ("what guests reach on the host", ("hub",)),
    ("host service", ("service",)),
    ("hypervisor flaw", ("vuln",)),
    ("the host", ("host",)),
)


def _drawn_nodes(result: PathsResult, on_path: set[str]) -> tuple[list[Box], dict[str, str]]:
    """Every node, grouped; if that is still too many boxes, the nodes on the listed paths only."""
    boxes, box_of = group_nodes(result, result.nodes)
    if len(boxes) > MAX_NODES:
        boxes, box_of = group_nodes(result, [n for n in result.nodes if n in on_path])
        boxes = boxes[:MAX_NODES]
        kept = {b.id for b in boxes}
        box_of = {n: b for n, b in box_of.items() if b in kept}
    return boxes, box_of


def _svg(result: PathsResult, paths: list[Path]) -> str:
    on_path = {n for p in paths for n in p.nodes}
    boxes, box_of = _drawn_nodes(result, on_path)
    worst_edges = {(box_of.get(u), box_of.get(v)) for p in paths[:WORST] for u, v in p.edges()}
    columns: dict[int, list[Box]] = {}
    for b in boxes:
        columns.setdefault(LAYERS.get(b.kind, 3), []).append(b)
    pos = {b.id: (30 + layer * COL, 60 + i * ROW) for layer, members in columns.items() for i, b in enumerate(members)}
    height = 100 + ROW * max((len(m) for m in columns.values()), default=1)
    width = 60 + COL * (max(LAYERS.values()) + 1)
    # width 100 %: the page scales the drawing to the window (the host column was cut off at 1,400 px)
    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="100%" viewBox="0 0 {width} {height}" '
        f'preserveAspectRatio="xMinYMin meet" style="max-width:{width}px">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>',
    ]
    svg += [f'<text class="col" x="{30 + j * COL}" y="30">{_e(t)}</text>' for j, t in enumerate(COLUMN_TITLES)]
    drawn: dict[tuple[str, str], list[Any]] = {}
    for e in result.edges:
        u, v = box_of.get(e.source), box_of.get(e.target)
        if u is not None and v is not None and u != v:
            drawn.setdefault((u, v), []).append(e)
    for i, ((u, v), edges) in enumerate(drawn.items()):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        x1 += BOX_W if x2 >= x1 else 0
        x2 += 0 if x2 >= x1 else BOX_W
        mid = (x1 + x2) / 2
        first = edges[0]
        more = f" (and {len(edges) - 1:,} more alike)" if len(edges) > 1 else ""
        svg.append(
            f'<path class="{"edge worst" if (u, v) in worst_edges else "edge"}" data-from="{_e(u)}" '
            f'data-to="{_e(v)}" id="e{i}" d="M {x1} {y1 + BOX_H / 2} C {mid} {y1 + BOX_H / 2}, {mid} '
            f'{y2 + BOX_H / 2}, {x2} {y2 + BOX_H / 2}" marker-end="url(#arrow)"><title>{_e(first.technique)}: '
            f"{_e(first.detail)}{more}</title></path>"
        )
    for b in boxes:
        x, y = pos[b.id]
        label = b.label
        short = label if len(label) <= 28 else label[:27] + "\u2026"
        cls = "node onpath" if any(m in on_path for m in b.members) else "node"
        if len(b.members) > 1:
            cls += " group"
        names = ", ".join(b.labels[:20]) + (", \u2026" if len(b.labels) > 20 else "")
        svg.append(
            f'<g class="{cls}" data-id="{_e(b.id)}" data-kind="{_e(b.kind)}" data-members="{len(b.members)}">'
            f"<title>{_e(b.id)}: {_e(names)}</title>"
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" fill="{COLORS.get(b.kind, "#555")}"/>'
            f'<text x="{x + 6}" y="{y + 16}">{_e(short)}</text></g>'
        )
    svg.append("</svg>")
    return "".join(svg), box_of


def _legend(result: PathsResult) -> str:
    kinds = {n.kind for n in result.nodes.values()}
    items = [
        f'<li><span class="swatch" style="background:{COLORS[k[0]]}"></span>{_e(text)}</li>'
        for text, k in LEGEND
        if kinds & set(k)
    ]
    items += [
        '<li><span class="line worst"></span>one of the 5 worst paths</li>',
        '<li><span class="line"></span>another step an attacker can take</li>',
        '<li><span class="swatch group"></span>a box with a count: alike nodes drawn once (first \u2026 last)</li>',
    ]
    return '<ul id="legend">' + "".join(items) + "</ul>"


def _fix(result: PathsResult) -> str:
    verified = "verified on the graph" if result.fix.verified else "not verified"
    rows = "".join(
        f'<tr class="fix"><td>{i}</td><td>{_e(r["change"])}</td><td>{_e(r["asset"])}</td>'
        f"<td>{_e(r['rule_id'] or '-')}</td><td>{r['cuts']}</td><td><code>{_e(r['id'])}</code></td></tr>"
        for i, r in enumerate(result.remediation, 1)
    )
    preview = " ".join(f"--what-if '{r['id']}'" for r in result.remediation)
    return (
        f"<h2>Smallest fix found ({len(result.remediation)} changes, cost {result.fix.cost:g}, {verified})</h2>"
        '<table id="fix"><tr><th>#</th><th>change</th><th>asset</th><th>rule</th><th>cuts</th><th>what-if id</th></tr>'
        f"{rows}</table>"
        + (f'<p id="preview">Preview it: <code>vmsentry paths ... {_e(preview)}</code></p>' if preview else "")
    )


def _step_items(p: Path, box_of: dict[str, str]) -> str:
    # data-from/data-to name the drawn boxes (a group's first member), which the script highlights
    return "".join(
        f'<li data-from="{_e(box_of.get(s["from"], s["from"]))}" data-to="{_e(box_of.get(s["to"], s["to"]))}">'
        f"<b>{_e(s['technique'])}</b>"
        f"{' (' + _e(s['attack_id']) + ')' if s.get('attack_id') else ''}: {_e(s['explanation'])}"
        f"{' <i>possible</i>' if s.get('possible') else ''}"
        f"<br><small>{_e(s['evidence'].get('file') or '')} {_e(s['evidence'].get('locator') or '')}</small></li>"
        for s in p.steps
    )


def _path_rows(result: PathsResult, limit: int, box_of: dict[str, str]) -> str:
    """Groups of near-identical paths over every path found (so a group's members are in natural order,
    not the first ``limit`` the analysis happened to list), worst group first; at most ``limit`` rows."""
    bodies, budget = [], limit
    for g, group in enumerate(group_paths(result.paths)):
        if budget <= 0:
            break
        listed = group.paths[: max(budget, 1)]
        budget -= len(listed)
        rows = [
            f'<tr class="path{" worst" if rank <= WORST else ""}" data-path="{rank}"{" hidden" if k else ""}>'
            f'<td>{rank}</td><td class="score">{p.score}</td><td>{_e(p.source)}</td><td>{_e(p.target)}</td>'
            f"<td><ol>{_step_items(p, box_of)}</ol></td></tr>"
            for k, (rank, p) in enumerate(listed)
        ]
        if len(group.paths) > 1:
            others = [p.source for _, p in group.paths[1:]]
            names = ", ".join(others[:8]) + (", \u2026" if len(others) > 8 else "")
            shown = f" (click to show {len(listed) - 1:,} of them)" if len(listed) > 1 else ""
            rows.insert(
                1,
                f'<tr class="more"><td colspan="5">+ {len(others):,} more path(s) with the same steps and score, '
                f"from {_e(names)}{shown}</td></tr>",
            )
        bodies.append(f'<tbody class="pgroup" data-group="{g}">{"".join(rows)}</tbody>')
    return "".join(bodies)


def render_html(result: PathsResult, limit: int = 50) -> str:
    paths = result.paths[:limit]
    svg, box_of = _svg(result, paths)
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'">
<title>vmsentry attack paths: {_e(result.source)} to {_e(result.target)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b2631; }}
#graph {{ border: 1px solid #ccc; background: #fbfcfc; height: auto; }}
.node text {{ fill: #fff; font-size: 11px; }}
.node.group rect {{ stroke: #f4d03f; stroke-width: 2; }}
.edge {{ fill: none; stroke: #aab7b8; stroke-width: 1; opacity: .6; }}
.edge.worst, .edge.hl {{ stroke: #e74c3c; stroke-width: 3; opacity: 1; }}
.col {{ font-weight: bold; font-size: 12px; fill: #555; }}
#legend {{ list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: .4em 1.4em; font-size: 12px; }}
#legend li {{ display: flex; align-items: center; gap: .4em; }}
.swatch {{ display: inline-block; width: 14px; height: 14px; border-radius: 3px; }}
.swatch.group {{ background: #2874a6; outline: 2px solid #f4d03f; }}
.line {{ display: inline-block; width: 24px; border-top: 2px solid #aab7b8; }}
.line.worst {{ border-top: 3px solid #e74c3c; }}
table {{ border-collapse: collapse; margin-top: 1em; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }}
tr.worst td.score {{ color: #c0392b; font-weight: bold; }} tr.path, tr.more {{ cursor: pointer; }}
tr.more td {{ font-style: italic; color: #555; background: #f4f6f6; }}
</style></head>
<body>
<h1>Attack paths: {_e(result.source)} &rarr; {_e(result.target)}</h1>
<p id="summary">{result.reaching.get("reaching", 0):,} of {result.reaching.get("sources", 0):,} sources have a path;
{len(result.paths):,} paths found ({len(paths)} listed). The {min(WORST, len(paths))} worst are drawn in red; click a row to highlight a path.</p>
{_fix(result)}
<h2>Exposure graph</h2>
{_legend(result)}
{svg}
<h2>Paths</h2>
<table id="paths"><thead><tr><th>#</th><th>score</th><th>from</th><th>to</th><th>steps</th></tr></thead>{_path_rows(result, limit, box_of)}</table>
<ul id="notes">{notes}</ul>
<script>{_SCRIPT}</script>
</body></html>
"""


_SCRIPT = """
document.body.setAttribute('data-rendered', '1');
document.querySelectorAll('tr.more').forEach(function (row) {
  row.addEventListener('click', function () {
    row.parentNode.querySelectorAll('tr.path[hidden]').forEach(function (r) { r.hidden = false; });
    row.hidden = true;
  });
});
document.querySelectorAll('tr.path').forEach(function (row) {
  row.addEventListener('click', function () {
    document.querySelectorAll('.edge.hl').forEach(function (e) { e.classList.remove('hl'); });
    row.querySelectorAll('li').forEach(function (li) {
      document.querySelectorAll('.edge').forEach(function (e) {
        if (e.getAttribute('data-from') === li.getAttribute('data-from') &&
            e.getAttribute('data-to') === li.getAttribute('data-to')) { e.classList.add('hl'); }
      });
    });
  });
});
"""


def _hash(script: str) -> str:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


_SCRIPT_HASH = _hash(_SCRIPT)
