"""`vmsentry cost --format html`: one self-contained page (inline CSS and SVG, no script, nothing fetched):
the figures' source, the state before any option, the ranking, a chart of loss avoided against cost (each
option a point at its expected values with its 5%..95% ranges as bars, and the break-even line), then each
option's arithmetic as the text report gives it.

Option names and titles come from an options file and VM names from definition files (a VM may be called
``<script>alert(1)</script>``): jinja2 escapes every value (autoescape), ``printable`` makes control
characters visible first, and the Content-Security-Policy refuses any script.
"""

from __future__ import annotations

import math

from jinja2 import Environment

from vmsentry.model.cost import CostResult
from vmsentry.model.text import printable
from vmsentry.report.cost import SOURCES_SHOWN, estimate, header, money, option_lines, rate, ratio, span

WIDTH, HEIGHT = 720, 440
LEFT, RIGHT, TOP, BOTTOM = 90, 30, 20, 60
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>vmsentry cost: {{ r.source | p }} -> {{ r.target | p }}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; max-width: 64em; margin: 1.5em auto; padding: 0 1em; color: #1c1c1c; }
h1 { font-size: 1.4em; margin-bottom: .2em; } h2 { font-size: 1.1em; margin: 1.4em 0 .4em; border-bottom: 1px solid #ddd; }
.sub { color: #555; margin-top: 0; } .warn { background: #fff4d6; border: 1px solid #e0c060; padding: .4em .7em; }
table { border-collapse: collapse; } th, td { text-align: right; padding: .25em .7em; border-bottom: 1px solid #eee; }
th:nth-child(2), td:nth-child(2) { text-align: left; } td.l, th.l { text-align: left; } #rank td { white-space: nowrap; }
pre { font: 13px ui-monospace, monospace; background: #f4f4f4; padding: .6em; white-space: pre-wrap; }
svg text { font: 12px system-ui, sans-serif; fill: #222; } svg .axis { stroke: #444; } svg .grid { stroke: #e6e6e6; }
svg .even { stroke: #999; stroke-dasharray: 5 4; }
</style>
</head>
<body>
<h1>Isolation options: expected annual loss avoided against cost</h1>
<p class="sub">{% for line in head %}{{ line | p }}<br>{% endfor %}</p>
{% if r.model.illustrative %}<p class="warn" id="illustrative">These figures are <b>illustrative</b>: examples of
the method, not facts about anyone's losses or prices. Give your own ranges with <code>--options FILE</code>.</p>{% endif %}

<h2 id="before">Before any option (FAIR: ALE = TEF &times; V &times; LM)</h2>
<table>
<tr><td class="l">TEF, compromised VMs a year</td><td class="l">{{ tef_range }}</td><td>expected {{ tef }}</td></tr>
<tr><td class="l">V, share of compromises that become a loss</td><td class="l">mean over {{ r.sources | length }} source(s)
of path likelihood &times; target impact</td><td>{{ "%.3f" | format(r.vulnerability) }}</td></tr>
<tr><td class="l">LEF = TEF &times; V</td><td class="l">loss events a year</td><td>{{ lef }}</td></tr>
<tr><td class="l">LM, one loss event</td><td class="l">{{ lm_range }}</td><td>expected {{ lm }}</td></tr>
<tr><td class="l">ALE = LEF &times; LM</td><td class="l">5%..95%: {{ ale_span }}</td><td><b>{{ ale }}</b></td></tr>
</table>
<table id="sources">
<tr><th class="l">source</th><th class="l">worst target</th><th>likelihood &times; impact</th></tr>
{% for s in sources %}<tr><td class="l">{{ s.source | p }}</td><td class="l">{{ (s.target or "(no path)") | p }}</td>
<td>{{ "%.3f" | format(s.vulnerability) }}</td></tr>
{% endfor %}{% if more_sources %}<tr><td class="l" colspan="3">... {{ more_sources }} more (the JSON lists every source)</td></tr>{% endif %}
</table>

<h2 id="ranking">Ranking: loss avoided per unit of cost ({{ r.model.currency | p }} a year)</h2>
<table id="rank">
<tr><th>#</th><th>option</th><th>V after</th><th>ALE after</th><th>loss avoided</th><th>5%..95%</th><th>cost</th>
<th>5%..95%</th><th>avoided / cost</th><th>worth it</th></tr>
{% for o in rows %}<tr class="option" data-name="{{ o.name | p }}"><td>{{ o.rank }}</td><td><span style="color:{{ o.colour }}">&#9679;</span>
{{ o.name | p }}</td><td>{{ o.v }}</td><td>{{ o.ale }}</td><td>{{ o.avoided }}</td><td>{{ o.avoided_span }}</td>
<td>{{ o.cost }}</td><td>{{ o.cost_span }}</td><td>{{ o.ratio }}</td><td>{{ o.worth }}</td></tr>
{% endfor %}</table>
<p class="sub">"Worth it": the share of Monte Carlo draws in which the loss avoided exceeds the cost.</p>

<h2 id="chart-title">Loss avoided against cost</h2>
<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{{ c.width }}" height="{{ c.height }}"
 viewBox="0 0 {{ c.width }} {{ c.height }}" role="img" aria-labelledby="chart-title">
<rect x="0" y="0" width="{{ c.width }}" height="{{ c.height }}" fill="#ffffff"/>
{% for t in c.xticks %}<line class="grid" x1="{{ t.at }}" y1="{{ c.top }}" x2="{{ t.at }}" y2="{{ c.bottom }}"/>
<text x="{{ t.at }}" y="{{ c.bottom + 18 }}" text-anchor="middle">{{ t.label }}</text>
{% endfor %}{% for t in c.yticks %}<line class="grid" x1="{{ c.left }}" y1="{{ t.at }}" x2="{{ c.right }}" y2="{{ t.at }}"/>
<text x="{{ c.left - 8 }}" y="{{ t.at + 4 }}" text-anchor="end">{{ t.label }}</text>
{% endfor %}<line class="axis" x1="{{ c.left }}" y1="{{ c.bottom }}" x2="{{ c.right }}" y2="{{ c.bottom }}"/>
<line class="axis" x1="{{ c.left }}" y1="{{ c.top }}" x2="{{ c.left }}" y2="{{ c.bottom }}"/>
<line class="even" x1="{{ c.left }}" y1="{{ c.bottom }}" x2="{{ c.even_x }}" y2="{{ c.even_y }}"/>
<text x="{{ c.even_x - 4 }}" y="{{ c.even_y + 14 }}" text-anchor="end" fill="#777">break-even</text>
<text x="{{ (c.left + c.right) / 2 }}" y="{{ c.height - 12 }}" text-anchor="middle">cost ({{ r.model.currency | p }} a year)</text>
<text transform="translate(16 {{ (c.top + c.bottom) / 2 }}) rotate(-90)" text-anchor="middle">loss avoided ({{ r.model.currency | p }} a year)</text>
{% for o in c.points %}<g class="point" data-name="{{ o.name | p }}" stroke="{{ o.colour }}">
<line x1="{{ o.x_low }}" y1="{{ o.y }}" x2="{{ o.x_high }}" y2="{{ o.y }}" stroke-width="2"/>
<line x1="{{ o.x }}" y1="{{ o.y_low }}" x2="{{ o.x }}" y2="{{ o.y_high }}" stroke-width="2"/>
<circle cx="{{ o.x }}" cy="{{ o.y }}" r="6" fill="{{ o.colour }}"/>
<text x="{{ o.x + 9 }}" y="{{ o.y - 8 }}" stroke="none">{{ o.rank }}. {{ o.name | p }}</text>
</g>
{% endfor %}</svg>
<p class="sub">Each point is an option at its expected cost and loss avoided; the bars span the 5th to the 95th
percentile of each. Above the dashed line an option avoids more loss than it costs.</p>

<h2 id="options">Each option</h2>
{% for block in blocks %}<pre class="option-detail">{{ block }}</pre>
{% endfor %}{% if r.notes %}<h2 id="notes">Notes</h2><ul>{% for n in r.notes %}<li>{{ n | p }}</li>{% endfor %}</ul>{% endif %}
</body>
</html>
"""


def _printable(value: object) -> str:
    return printable(str(value)) if value is not None else ""


_ENV = Environment(autoescape=True)
_ENV.filters["p"] = _printable
_PAGE = _ENV.from_string(TEMPLATE)


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (1, 2 or 5 times a power of ten apart)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def short_money(value: float) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def chart(result: CostResult) -> dict:
    opts = result.options
    xmax = max([o.cost.p95 for o in opts] + [o.cost.expected or 0 for o in opts] + [1.0])
    ymax = max([o.avoided.p95 for o in opts] + [o.avoided.expected or 0 for o in opts] + [1.0])
    xt, yt = nice_ticks(xmax), nice_ticks(ymax)
    left, right, top, bottom = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def x(v: float) -> float:
        return round(left + (right - left) * v / xt[-1], 1)

    def y(v: float) -> float:
        return round(bottom - (bottom - top) * v / yt[-1], 1)

    even = min(xt[-1], yt[-1])  # the break-even line avoided = cost, to where it leaves the plot
    points = []
    for i, o in enumerate(opts):
        points.append(
            {
                "name": o.option.name,
                "rank": o.rank,
                "colour": COLOURS[i % len(COLOURS)],
                "x": x(o.cost.expected or 0),
                "y": y(o.avoided.expected or 0),
                "x_low": x(o.cost.p5),
                "x_high": x(o.cost.p95),
                "y_low": y(o.avoided.p5),
                "y_high": y(o.avoided.p95),
            }
        )
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "left": left,
        "right": right,
        "top": top,
        "bottom": bottom,
        "xticks": [{"at": x(t), "label": short_money(t)} for t in xt],
        "yticks": [{"at": y(t), "label": short_money(t)} for t in yt],
        "even_x": x(even),
        "even_y": y(even),
        "points": points,
    }


def render_html(result: CostResult) -> str:
    m = result.model
    c = chart(result)
    rows = []
    for point, o in zip(c["points"], result.options):
        rows.append(
            {
                "rank": o.rank,
                "name": o.option.name,
                "colour": point["colour"],
                "v": f"{o.cut.vulnerability:.3f}",
                "ale": money(o.ale.expected or 0),
                "avoided": money(o.avoided.expected or 0),
                "avoided_span": span(o.avoided),
                "cost": money(o.cost.expected or 0),
                "cost_span": span(o.cost),
                "ratio": ratio(o),
                "worth": f"{o.worth_it:.0%}",
            }
        )
    return _PAGE.render(
        r=result,
        head=header(result),
        tef_range=estimate(m.threat_event_frequency, rate),
        tef=rate(result.tef.expected or 0),
        lef=rate(result.lef.expected or 0),
        lm_range=estimate(m.loss_magnitude),
        lm=money(result.lm.expected or 0),
        ale=money(result.ale.expected or 0),
        ale_span=span(result.ale),
        sources=result.sources[:SOURCES_SHOWN],
        more_sources=max(len(result.sources) - SOURCES_SHOWN, 0),
        rows=rows,
        c=c,
        blocks=["\n".join(option_lines(result, o)) for o in result.options],  # each line made printable there
    )
