"""Expected annual loss per isolation option (`vmsentry cost`): a small FAIR Monte Carlo over the attack-path
graph (docs/cost.md).

FAIR's terms: a *threat event* is a VM compromised (the attack-path sources); it becomes a *loss event* when
the attacker goes on from it, so the *vulnerability* (the share of threat events that become loss events)
comes from the graph: for each source, the likelihood of its best path times the impact of the target it
reaches (``paths.IMPACT``: host 1.0, VM 0.8, LAN 0.7), the worst target counting; the mean over the sources
is the vulnerability V. Then

    LEF = TEF x V          (loss events a year; TEF from the options file)
    ALE = LEF x LM         (annual loss; LM, one event's loss magnitude, from the options file)

TEF, LM and each option's cost are drawn from PERT (or triangular) distributions over the file's ranges.
An option is a set of `--what-if` changes: its V is recomputed on the graph without their edges, and its
loss avoided is ALE(before) - ALE(after) with the same draws of TEF and LM (common random numbers: the
difference is the option's effect, not sampling noise). Options are ranked by expected loss avoided per
unit of expected cost.

Written on numpy rather than pyfair (MIT): pyfair draws each model's inputs independently (no common random
numbers between "before" and "after"), takes LEF directly rather than TEF x a computed vulnerability, and
would add pandas and matplotlib to a root tool; the whole model here is a few array products.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from fnmatch import fnmatchcase

import numpy as np

from vmsentry.analyse.cost_options import RULE_RE
from vmsentry.analyse.graph.base import ExposureGraph
from vmsentry.analyse.graph.mincut import reaching_sources
from vmsentry.analyse.graph.paths import IMPACT, best_paths, resolve
from vmsentry.model.cost import (
    PERCENTILES,
    CostModel,
    CostResult,
    Estimate,
    GraphCut,
    IsolationOption,
    OptionResult,
    SourceRisk,
    Spread,
)
from vmsentry.model.paths import Path

PERT_SHAPE = 4.0  # the classic PERT weight of the most likely value (mean = (low + 4 ml + high) / 6)


def draw(rng: np.random.Generator, estimate: Estimate, n: int, distribution: str) -> np.ndarray:
    """n draws over low .. high: beta-PERT (shape 4) or triangular; a range of one value is that value."""
    low, ml, high = estimate.low, estimate.most_likely, estimate.high
    if high <= low:
        return np.full(n, low)
    if distribution == "triangular":
        return rng.triangular(low, ml, high, n)
    span = high - low
    alpha = 1 + PERT_SHAPE * (ml - low) / span
    beta = 1 + PERT_SHAPE * (high - ml) / span
    return low + span * rng.beta(alpha, beta, n)


def spread(values: np.ndarray, expected: float | None = None) -> Spread:
    p5, p50, p95 = (float(x) for x in np.percentile(values, PERCENTILES))
    return Spread(float(values.mean()), p5, p50, p95, expected)


def resolve_option(eg: ExposureGraph, option: IsolationOption) -> tuple[list[str], list[str]]:
    """(change ids of this graph the option stands for, entries that match none). Entries were checked when
    the options file was read: a rule id, '*', or a change id / fnmatch pattern of a known kind."""
    ids: dict[str, None] = {}
    unmatched = []
    for entry in option.changes:
        if RULE_RE.fullmatch(entry):
            found = [c.id for c in eg.changes.values() if c.rule_id == entry]
        else:
            found = [cid for cid in eg.changes if fnmatchcase(cid, entry)]
        if not found:
            unmatched.append(entry)
        ids.update(dict.fromkeys(found))
    return list(ids), unmatched


def source_risks(eg: ExposureGraph, paths: list[Path], sources: list[str]) -> list[SourceRisk]:
    """Each source's worst (likelihood x impact) over its paths; 0 for a source with none."""
    worst: dict[str, tuple[float, str]] = {}
    g = eg.g
    for p in paths:
        value = p.probability * IMPACT.get(g.nodes[p.nodes[-1]].get("kind"), 0.7)
        s = p.nodes[0]
        if s not in worst or value > worst[s][0]:
            worst[s] = (value, p.nodes[-1])
    out = [SourceRisk(s, worst[s][1] if s in worst else None, worst[s][0] if s in worst else 0.0) for s in sources]
    out.sort(key=lambda r: (-r.vulnerability, r.source))
    return out


def vulnerability(risks: Iterable[SourceRisk]) -> float:
    values = [r.vulnerability for r in risks]
    return sum(values) / len(values) if values else 0.0


def analyse_cost(
    eg: ExposureGraph, model: CostModel, seed: int, source: str = "any-vm", target: str = "any"
) -> CostResult:
    sources, targets = resolve(eg, source, "from"), resolve(eg, target, "to")
    paths, notes = best_paths(eg, sources, targets)
    risks = source_risks(eg, paths, sources)
    v0 = vulnerability(risks)
    n, dist = model.samples, model.distribution
    rng = np.random.default_rng(seed)
    tef = draw(rng, model.threat_event_frequency, n, dist)
    lm = draw(rng, model.loss_magnitude, n, dist)
    tef_mean, lm_mean = model.threat_event_frequency.mean(dist), model.loss_magnitude.mean(dist)
    loss_per_unit_v = tef * lm  # ALE of a vulnerability of 1
    ale0 = loss_per_unit_v * v0
    reaching0 = reaching_sources(eg, sources, targets)
    results = []
    for option in model.options:
        applied, unmatched = resolve_option(eg, option)
        for entry in unmatched:
            notes.append(f"option {option.name}: {entry!r} matches no change of this graph")
        removed = set(applied)
        after_paths, _ = best_paths(eg.without(removed), sources, targets) if applied else (paths, [])
        risks1 = source_risks(eg, after_paths, sources)
        v1 = vulnerability(risks1)
        cut = GraphCut(
            applied,
            unmatched,
            sum(1 for _, _, c in eg.g.edges(data="change") if c in removed),
            len(reaching0),
            len(reaching_sources(eg, sources, targets, removed)),
            len(paths),
            len(after_paths),
            paths[0].score if paths else 0.0,
            after_paths[0].score if after_paths else 0.0,
            v1,
            risks1,
        )
        # each option's cost from its own stream (seed, name): adding or reordering options changes no figure
        cost = draw(np.random.default_rng([seed, zlib.crc32(option.name.encode())]), option.cost, n, dist)
        ale1 = loss_per_unit_v * v1
        avoided = ale0 - ale1
        cost_mean = option.cost.mean(dist)
        avoided_mean = tef_mean * lm_mean * (v0 - v1)
        results.append(
            OptionResult(
                option,
                cut,
                spread(tef * v1, tef_mean * v1),
                spread(ale1, tef_mean * lm_mean * v1),
                spread(avoided, avoided_mean),
                spread(cost, cost_mean),
                spread(avoided - cost, avoided_mean - cost_mean),
                avoided_mean / cost_mean if cost_mean > 0 else None,
                float((avoided > cost).mean()),
            )
        )
    results.sort(key=_rank_key)
    for i, r in enumerate(results, 1):
        r.rank = i
    return CostResult(
        source,
        target,
        seed,
        model,
        v0,
        risks,
        spread(tef, tef_mean),
        spread(lm, lm_mean),
        spread(tef * v0, tef_mean * v0),
        spread(ale0, tef_mean * lm_mean * v0),
        results,
        eg.stats(),
        eg.notes + notes,
    )


def _rank_key(r: OptionResult) -> tuple:
    """Loss avoided per unit of cost, best first; a free option that avoids loss first of all; then the
    bigger loss avoided, then the name."""
    ratio = r.avoided_per_cost
    if ratio is None:
        ratio = float("inf") if r.avoided.expected else 0.0
    return (-ratio, -(r.avoided.expected or 0.0), r.option.name)
