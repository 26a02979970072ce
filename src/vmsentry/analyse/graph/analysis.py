"""One `vmsentry paths` run: build the graph (or take one), apply what-if changes, find each source's best
paths to the targets and the smallest fix found, and hand back the record the reports read
(``model.paths.PathsResult``) together with the graph it was read from."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from vmsentry.analyse.graph.build import ExposureGraph, build_graph
from vmsentry.analyse.graph.mincut import cover_paths, reaching_sources, smallest_fix, sources_through
from vmsentry.analyse.graph.paths import MAX_PAIR_SOURCES, SpecError, best_paths, resolve
from vmsentry.model import Inventory
from vmsentry.model.paths import Fix, GraphEdge, GraphNode, Path, PathsResult

COVER_ROUNDS = 20
PRUNE_AFTER_COVER = 60


@dataclass
class PathsAnalysis(PathsResult):
    """The report record plus the graph it was read from (what-if, cut effects and tests read the graph)."""

    graph: ExposureGraph | None = None


def _record_view(eg: ExposureGraph) -> dict:
    """What the reports show of the graph, copied out of networkx."""
    g = eg.g
    return {
        "vulnerabilities": eg.vulns_matched,
        "graph_stats": eg.stats(),
        "hosts": list(eg.hosts),
        "nodes": {
            n: GraphNode(d.get("kind", "?"), str(d.get("label") or n), d.get("asset")) for n, d in g.nodes(data=True)
        },
        "edges": [GraphEdge(u, v, d["technique"], d["detail"]) for u, v, d in g.edges(data=True)],
    }


def resolve_changes(eg: ExposureGraph, specs: Iterable[str]) -> list[str]:
    """--what-if values: a change id (as printed by `vmsentry paths`) or a rule id (every change of that rule)."""
    out: list[str] = []
    for spec in specs:
        if spec in eg.changes:
            out.append(spec)
            continue
        by_rule = [c.id for c in eg.changes.values() if c.rule_id == spec]
        if by_rule:
            out += by_rule
            continue
        raise SpecError(
            f"--what-if {spec!r}: no such change or rule in this graph (change ids are listed by "
            "`vmsentry paths`, e.g. 'listener:VM:0', or give a rule id like VMS-VM-002)"
        )
    return list(dict.fromkeys(out))


def analyse(
    inv: Inventory,
    source: str = "any-vm",
    target: str = "host",
    vuln_db: str | None = None,
    what_if: Iterable[str] = (),
    graph: ExposureGraph | None = None,
    alternatives: int = 3,
) -> PathsAnalysis:
    t0 = time.perf_counter()
    eg = graph if graph is not None else build_graph(inv, vuln_db)
    t1 = time.perf_counter()
    sources, targets = resolve(eg, source, "from"), resolve(eg, target, "to")
    applied = resolve_changes(eg, what_if)
    what = None
    if applied:
        before, _ = best_paths(eg, sources, targets, alternatives)
        eg = eg.without(set(applied))
        what = {
            "applied": [eg.changes[c].to_dict() for c in applied],
            "before": {
                "paths": len(before),
                "worst_score": before[0].score if before else 0.0,
                "reaching": len({p.nodes[0] for p in before}),
            },
        }
    paths, notes = best_paths(eg, sources, targets, alternatives)
    t2 = time.perf_counter()
    fix = _fix(eg, sources, targets, paths)
    t3 = time.perf_counter()
    listed = dict.fromkeys(fix.changes, 0)
    for p in paths:
        for c in {st.get("change") for st in p.steps} & listed.keys():
            listed[c] += 1
    through = sources_through(eg, fix.changes, sources, targets)
    remediation = []
    for c in sorted(fix.changes, key=lambda c: (-listed[c], -through.get(c, 0), eg.changes[c].cost, c)):
        ch = eg.changes[c]
        remediation.append(
            {
                "change": ch.text,
                "asset": ch.asset,
                "rule_id": ch.rule_id,
                "cuts": listed[c],
                "sources_affected": through.get(c),
                "id": ch.id,
                "cost": ch.cost,
            }
        )
    if what is not None:
        what["after"] = {
            "paths": len(paths),
            "worst_score": paths[0].score if paths else 0.0,
            "reaching": len({p.nodes[0] for p in paths}),
        }
    reaching = {"sources": len(sources), "reaching": len({p.nodes[0] for p in paths})}
    return PathsAnalysis(
        source,
        target,
        paths,
        fix,
        remediation,
        eg.notes + notes,
        what,
        reaching,
        {"build": t1 - t0, "paths": t2 - t1, "fix": t3 - t2},
        **_record_view(eg),
        graph=eg,
    )


def _fix(eg: ExposureGraph, sources: list[str], targets: list[str], paths: list[Path]) -> Fix:
    """Min cut from the sources to the targets that are not sources themselves (host, LAN, a named VM);
    then, for VM-to-VM targets among the sources (``--to any``), greedy cover of the listed paths,
    re-listing until none is left, and pruning of changes the others make redundant."""
    tset, sset = set(targets), set(sources)
    plain_targets = [t for t in targets if t not in sset]
    fix = smallest_fix(eg, sources, plain_targets) if plain_targets else Fix([], 0.0, True)
    if fix.uncuttable:
        return fix
    chosen = set(fix.changes)
    pairs = len(tset & sset) <= MAX_PAIR_SOURCES  # above this VM-to-VM pairs are not enumerated
    remaining = [p for p in paths if not any(st.get("change") in chosen for st in p.steps)] if pairs else []
    rounds = 0
    while remaining and rounds < COVER_ROUNDS:
        rounds += 1
        before = len(chosen)
        chosen = cover_paths(eg, remaining, chosen)
        if len(chosen) == before:
            break
        remaining, _ = best_paths(eg.without(chosen), sources, targets)
    if remaining and not any(st.get("change") for p in remaining for st in p.steps):
        fix.uncuttable = [p.nodes for p in remaining[:5]]
    check_targets = targets if pairs else plain_targets
    if rounds and not remaining and len(chosen) <= PRUNE_AFTER_COVER:
        # greedy cover adds changes one path at a time: drop those the others make redundant
        for c in sorted(chosen, key=lambda c: (-eg.changes[c].cost, c)):
            if not reaching_sources(eg, sources, check_targets, chosen - {c}):
                chosen.discard(c)
    fix.changes = sorted(chosen)
    fix.cost = sum(eg.changes[c].cost for c in chosen)
    fix.verified = not remaining and not reaching_sources(eg, sources, check_targets, chosen)
    return fix
