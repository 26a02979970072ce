"""`vmsentry cost` as text (a table, then each option's arithmetic, a line at a time) and JSON
(``vmsentry.cost/1``, docs/contracts.md)."""

from __future__ import annotations

import json

from vmsentry.model.cost import CostResult, Estimate, OptionResult, Spread
from vmsentry.model.text import printable

SOURCES_SHOWN = 10


def render_json(result: CostResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def money(value: float) -> str:
    return f"{value:,.0f}"


def rate(value: float) -> str:
    """A frequency or a share (0.383, 0.0125): three significant digits, no exponent."""
    return f"{value:.3g}" if value >= 0.001 or value == 0 else f"{value:.6f}".rstrip("0")


def span(s: Spread, fmt=money) -> str:
    return f"{fmt(s.p5)} .. {fmt(s.p95)}"


def estimate(e: Estimate, fmt=money) -> str:
    return f"low {fmt(e.low)} / most likely {fmt(e.most_likely)} / high {fmt(e.high)}"


def ratio(r: OptionResult) -> str:
    return "free" if r.avoided_per_cost is None else f"{r.avoided_per_cost:.2f}"


def header(result: CostResult) -> list[str]:
    m = result.model
    where = printable(m.source) if m.source else "built-in defaults"
    tag = " (ILLUSTRATIVE: examples, not facts about your losses or prices)" if m.illustrative else ""
    st = result.graph_stats
    return [
        f"vmsentry cost: {printable(result.source)} -> {printable(result.target)}; {m.samples:,} draws "
        f"({m.distribution.upper() if m.distribution == 'pert' else m.distribution}), seed {result.seed}; "
        f"amounts in {printable(m.currency)} a year",
        f"Figures: {where}{tag}.",
        f"{st.get('vms', 0)} VMs, exposure graph of {st.get('nodes', 0)} nodes and {st.get('edges', 0)} edges.",
    ]


def render_text(result: CostResult) -> str:
    m = result.model
    dist = m.distribution
    out = header(result)
    out += ["", "Before any option (FAIR: ALE = TEF x V x LM):"]
    out.append(
        f"  TEF, compromised VMs a year: {estimate(m.threat_event_frequency, rate)} -> expected "
        f"{rate(result.tef.expected or 0)}"
    )
    out.append(
        f"  V, share of compromises that become a loss: mean over {len(result.sources)} source(s) of "
        "(best path likelihood x target impact) ="
        f" {result.vulnerability:.3f}"
    )
    for r in result.sources[:SOURCES_SHOWN]:
        target = printable(r.target) if r.target else "(no path)"
        out.append(f"      {printable(r.source):<30} -> {target:<30} {r.vulnerability:.3f}")
    if len(result.sources) > SOURCES_SHOWN:
        out.append(f"      ... {len(result.sources) - SOURCES_SHOWN:,} more (JSON lists every source)")
    out.append(
        f"  LEF = TEF x V = {rate(result.tef.expected or 0)} x {result.vulnerability:.3f} = "
        f"{rate(result.lef.expected or 0)} loss events a year"
    )
    out.append(f"  LM, one loss event: {estimate(m.loss_magnitude)} -> expected {money(m.loss_magnitude.mean(dist))}")
    out.append(
        f"  ALE = LEF x LM = {rate(result.lef.expected or 0)} x {money(result.lm.expected or 0)} = "
        f"{money(result.ale.expected or 0)} a year (Monte Carlo mean {money(result.ale.mean)}, "
        f"5%..95% {span(result.ale)})"
    )
    out += ["", "Options, ranked by loss avoided per unit of cost (expected values; 5%..95% in brackets):"]
    rows = [("#", "option", "V after", "ALE after", "loss avoided", "cost", "avoided/cost", "worth it")]
    for r in result.options:
        rows.append(
            (
                str(r.rank),
                printable(r.option.name),
                f"{r.cut.vulnerability:.3f}",
                money(r.ale.expected or 0),
                f"{money(r.avoided.expected or 0)} [{span(r.avoided)}]",
                f"{money(r.cost.expected or 0)} [{span(r.cost)}]",
                ratio(r),
                f"{r.worth_it:.0%}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.append(
            "  "
            + "  ".join(
                cell.ljust(w) if i == 1 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )
    out.append("  ('worth it': share of draws where the loss avoided exceeds the cost)")
    for r in result.options:
        out += [""] + option_lines(result, r)
    if result.notes:
        out.append("")
    for note in result.notes:
        out.append(f"note: {printable(note)}")
    return "\n".join(out).rstrip() + "\n"


def option_lines(result: CostResult, r: OptionResult) -> list[str]:
    o, c, dist = r.option, r.cut, result.model.distribution
    tef, lm = result.tef.expected or 0, result.lm.expected or 0
    out = [f"{r.rank}. {printable(o.name)}: {printable(o.title)}"]
    if o.models:
        out.append(f"   models: {printable(o.models)}")
    out.append(f"   changes: {', '.join(printable(x) for x in o.changes)}")
    out.append(f"   on this graph: {len(c.applied)} change(s), {c.edges_removed} edge(s) removed")
    if c.unmatched:
        out.append(f"   matching nothing here: {', '.join(printable(x) for x in c.unmatched)}")
    out.append(
        f"   sources reaching a target {c.reaching_before} -> {c.reaching_after}, paths {c.paths_before} -> "
        f"{c.paths_after}, worst score {c.worst_before} -> {c.worst_after}"
    )
    each = ""
    if 1 < len(c.sources) <= SOURCES_SHOWN:
        each = f" (mean of {', '.join(f'{s.vulnerability:.3f}' for s in c.sources)})"
    out.append(f"   V {result.vulnerability:.3f} -> {c.vulnerability:.3f}{each}")
    out.append(
        f"   ALE after = {rate(tef)} x {c.vulnerability:.3f} x {money(lm)} = {money(r.ale.expected or 0)} "
        f"(5%..95% {span(r.ale)})"
    )
    out.append(
        f"   loss avoided = {money(result.ale.expected or 0)} - {money(r.ale.expected or 0)} = "
        f"{money(r.avoided.expected or 0)} (5%..95% {span(r.avoided)})"
    )
    out.append(f"   cost: {estimate(o.cost)} -> expected {money(o.cost.mean(dist))} (5%..95% {span(r.cost)})")
    out.append(
        f"   loss avoided per unit of cost {money(r.avoided.expected or 0)} / {money(r.cost.expected or 0)} = "
        f"{ratio(r)}; net benefit {money(r.net.expected or 0)} (5%..95% {span(r.net)}); worth it in "
        f"{r.worth_it:.0%} of draws"
    )
    return out
