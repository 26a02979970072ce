"""`vmsentry paths --format html`: one self-contained page (inline CSS, SVG and a few lines of static
JavaScript, nothing fetched) drawing the exposure graph in layers with the worst paths highlighted.
Every name and value is HTML-escaped; the script reads only data-* attributes, never inventory text."""

from __future__ import annotations

from vmsentry.model.paths import PathsResult
from vmsentry.report import markup_text as _e

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
MAX_NODES = 400
WORST = 5
ROW, COL, BOX_W, BOX_H = 34, 250, 200, 24


def render_html(result: PathsResult, limit: int = 50) -> str:
    graph = result.nodes
    paths = result.paths[:limit]
    worst = paths[:WORST]
    worst_edges = {e for p in worst for e in p.edges()}
    on_path = {n for p in paths for n in p.nodes}
    if len(graph) <= MAX_NODES:
        nodes = list(graph)
    else:
        nodes = [n for n in graph if n in on_path][:MAX_NODES]
    drawn = set(nodes)
    columns: dict[int, list[str]] = {}
    for n in sorted(nodes, key=lambda n: (graph[n].kind, graph[n].label)):
        columns.setdefault(LAYERS.get(graph[n].kind, 3), []).append(n)
    pos: dict[str, tuple[int, int]] = {}
    for layer, members in columns.items():
        for i, n in enumerate(members):
            pos[n] = (30 + layer * COL, 60 + i * ROW)
    height = 100 + ROW * max((len(m) for m in columns.values()), default=1)
    width = 60 + COL * (max(columns, default=0) + 1)
    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="graph" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>',
    ]
    for j, title in enumerate(
        ("outside / LAN", "VMs", "networks, listeners, shares, devices", "host reach", "host services, flaws", "host")
    ):
        svg.append(f'<text class="col" x="{30 + j * COL}" y="30">{_e(title)}</text>')
    edge_index = 0
    for e in result.edges:
        u, v = e.source, e.target
        if u not in drawn or v not in drawn:
            continue
        x1, y1 = pos[u]
        x2, y2 = pos[v]
        x1 += BOX_W if x2 >= x1 else 0
        x2 += 0 if x2 >= x1 else BOX_W
        cls = "edge worst" if (u, v) in worst_edges else "edge"
        mid = (x1 + x2) / 2
        svg.append(
            f'<path class="{cls}" data-from="{_e(u)}" data-to="{_e(v)}" id="e{edge_index}" '
            f'd="M {x1} {y1 + BOX_H / 2} C {mid} {y1 + BOX_H / 2}, {mid} {y2 + BOX_H / 2}, {x2} {y2 + BOX_H / 2}" '
            f'marker-end="url(#arrow)"><title>{_e(e.technique)}: {_e(e.detail)}</title></path>'
        )
        edge_index += 1
    for n in nodes:
        x, y = pos[n]
        kind, label = graph[n].kind, graph[n].label
        short = label if len(label) <= 30 else label[:29] + "\u2026"
        cls = "node onpath" if n in on_path else "node"
        svg.append(
            f'<g class="{cls}" data-id="{_e(n)}" data-kind="{_e(kind)}"><title>{_e(n)}: {_e(label)}</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="5" '
            f'fill="{COLORS.get(kind, "#555")}"/><text x="{x + 6}" y="{y + 16}">{_e(short)}</text></g>'
        )
    svg.append("</svg>")
    rows: list[str] = []
    for i, p in enumerate(paths, 1):
        steps = "".join(
            f'<li data-from="{_e(s["from"])}" data-to="{_e(s["to"])}"><b>{_e(s["technique"])}</b>'
            f"{' (' + _e(s['attack_id']) + ')' if s.get('attack_id') else ''}: {_e(s['explanation'])}"
            f"{' <i>possible</i>' if s.get('possible') else ''}"
            f"<br><small>{_e(s['evidence'].get('file') or '')} {_e(s['evidence'].get('locator') or '')}</small></li>"
            for s in p.steps
        )
        rows.append(
            f'<tr class="path{" worst" if i <= WORST else ""}" data-path="{i}"><td>{i}</td>'
            f'<td class="score">{p.score}</td><td>{_e(p.source)}</td><td>{_e(p.target)}</td>'
            f"<td><ol>{steps}</ol></td></tr>"
        )
    fixes = "".join(
        f'<tr class="fix"><td>{i}</td><td>{_e(r["change"])}</td><td>{_e(r["asset"])}</td>'
        f"<td>{_e(r['rule_id'] or '-')}</td><td>{r['cuts']}</td><td><code>{_e(r['id'])}</code></td></tr>"
        for i, r in enumerate(result.remediation, 1)
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in result.notes)
    verified = "verified on the graph" if result.fix.verified else "not verified"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'">
<title>vmsentry attack paths: {_e(result.source)} to {_e(result.target)}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1b2631; }}
#graph {{ border: 1px solid #ccc; background: #fbfcfc; }}
.node text {{ fill: #fff; font-size: 11px; }}
.node.dim {{ opacity: .25; }}
.edge {{ fill: none; stroke: #aab7b8; stroke-width: 1; opacity: .6; }}
.edge.worst, .edge.hl {{ stroke: #e74c3c; stroke-width: 3; opacity: 1; }}
.col {{ font-weight: bold; font-size: 12px; fill: #555; }}
table {{ border-collapse: collapse; margin-top: 1em; }} td, th {{ border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; }}
tr.worst td.score {{ color: #c0392b; font-weight: bold; }} tr.path {{ cursor: pointer; }}
</style></head>
<body>
<h1>Attack paths: {_e(result.source)} &rarr; {_e(result.target)}</h1>
<p id="summary">{result.reaching.get("reaching", 0)} of {result.reaching.get("sources", 0)} sources have a path;
{len(result.paths)} paths found ({len(paths)} listed). The {min(WORST, len(paths))} worst are drawn in red; click a row to highlight a path.</p>
{"".join(svg)}
<h2>Paths</h2>
<table id="paths"><tr><th>#</th><th>score</th><th>from</th><th>to</th><th>steps</th></tr>{"".join(rows)}</table>
<h2>Smallest fix found ({len(result.remediation)} changes, cost {result.fix.cost:g}, {verified})</h2>
<table id="fix"><tr><th>#</th><th>change</th><th>asset</th><th>rule</th><th>cuts</th><th>what-if id</th></tr>{fixes}</table>
<ul id="notes">{notes}</ul>
<script>{_SCRIPT}</script>
</body></html>
"""


_SCRIPT = """
document.body.setAttribute('data-rendered', '1');
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
