"""Smallest fix: a weighted minimum cut between the sources and the targets.

Every cuttable edge carries the id of the change that removes it; the change's cost is the capacity
(an edge no change removes has infinite capacity). A super-source feeds every source node, every target
feeds a super-sink, and networkx's min cut (Boykov-Kolmogorov max-flow) gives the cheapest edge set that
disconnects them. That is exactly minimal when each change removes one edge. When a change removes
several edges (a host-wide upgrade, a firewall rule on a port) the cut may count it more than once, so
the capacity of such an edge is the change's cost divided by the number of its edges in play (which
favours shared changes) and the result is then pruned: any change whose removal still leaves every
source disconnected is dropped, most expensive first. The result is reported as "smallest found", and
verified by a reachability check on the graph with the changes applied.

``cut_effect`` (what a set of changes does to the reachability of sources) is kept separate so that the
cost-benefit model (ROADMAP item 4) can score isolation options by how much of the graph they cut.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import networkx as nx
from networkx.algorithms.flow import boykov_kolmogorov

from vmsentry.analyse.graph.base import ExposureGraph
from vmsentry.model.paths import Fix

_S, _T = "__source__", "__sink__"
PRUNE_LIMIT = 200


def reaching_sources(
    eg: ExposureGraph, sources: Iterable[str], targets: Iterable[str], removed: set[str] | frozenset[str] = frozenset()
) -> set[str]:
    """Sources that still reach a target when the edges of the ``removed`` changes are gone (reverse BFS)."""
    g = eg.g
    targets = list(targets)
    seen = _spread(g._pred, [t for t in targets if t in g], removed)
    tset, srcs = set(targets), set(sources)
    out = {s for s in srcs - tset if s in seen}
    out |= {s for s in srcs & tset if _reaches_other(g, s, tset, removed)}
    return out


def _reaches_other(g: nx.DiGraph, s: str, targets: set[str], removed: set[str] | frozenset[str]) -> bool:
    seen, queue = {s}, deque([s])
    while queue:
        u = queue.popleft()
        for v, d in g._succ[u].items():  # private adjacency: see _spread
            if d.get("change") in removed or v in seen:
                continue
            if v in targets:
                return True
            seen.add(v)
            queue.append(v)
    return False


def cut_effect(
    eg: ExposureGraph, change_ids: Iterable[str], sources: Iterable[str], targets: Iterable[str]
) -> dict[str, Any]:
    """How many sources reach a target before and after applying the changes, and how many edges go."""
    ids = set(change_ids)
    sources, targets = list(sources), list(targets)
    before = reaching_sources(eg, sources, targets)
    after = reaching_sources(eg, sources, targets, ids)
    edges = sum(1 for _, _, c in eg.g.edges(data="change") if c in ids)
    return {
        "sources": len(sources),
        "reaching_before": len(before),
        "reaching_after": len(after),
        "cut_sources": sorted(before - after),
        "edges_removed": edges,
    }


def _spread(
    adj: dict[str, dict[str, dict[str, Any]]],
    start: Iterable[str],
    removed: set[str] | frozenset[str] = frozenset(),
    inside: set[str] | None = None,
    outside: set[str] | frozenset[str] = frozenset(),
) -> set[str]:
    """The nodes reached from ``start`` (included) over ``adj``: ``g._succ`` forward, ``g._pred`` backward;
    not over edges of the ``removed`` changes, only into nodes ``inside`` (when given), never into ``outside``.

    networkx's private adjacency dicts, not the public ``g.succ``/``g.pred`` views: on the three example
    labs together a reverse BFS through the views takes 3-4x as long (about 100 vs 25 us), and the pruning
    runs one per candidate change."""
    seen = set(start)
    queue = deque(seen)
    while queue:
        u = queue.popleft()
        for v, d in adj[u].items():
            if v in seen or v in outside or (inside is not None and v not in inside) or d.get("change") in removed:
                continue
            seen.add(v)
            queue.append(v)
    return seen


def _relevant(eg: ExposureGraph, sources: list[str], targets: list[str]) -> set[str]:
    """Nodes on some path from a source to a target."""
    g = eg.g
    fwd = _spread(g._succ, sources)
    return _spread(g._pred, [t for t in targets if t in fwd], inside=fwd)


def smallest_fix(eg: ExposureGraph, sources: list[str], targets: list[str]) -> Fix:
    g = eg.g
    tset = set(targets)
    srcs = [s for s in sources if s not in tset]
    nodes = _relevant(eg, srcs, targets)
    if not any(s in nodes for s in srcs):
        return Fix([], 0.0, True)
    in_play = Counter()
    edges = []
    sset = set(srcs)
    for u in nodes:
        if u in tset:
            continue  # paths end at the first target
        for v, d in g._succ[u].items():  # private adjacency: see _spread
            if v in nodes and v not in sset:  # edges into a source never matter (see below)
                edges.append((u, v, d.get("change")))
                if d.get("change"):
                    in_play[d["change"]] += 1
    # Every source is fed by the super-source with infinite capacity, so the sources are contracted into
    # it: an edge into a source never matters, and the parallel edges source->x become one edge S->x whose
    # capacity is their sum (cutting it cuts all of them). This keeps the flow network small at 10,000 VMs.
    f = nx.DiGraph()
    from_s: dict[str, list[str | None]] = {}
    for u, v, c in edges:
        if u in tset or v in sset:
            continue  # paths end at the first target; edges into a source never matter
        if u in sset:
            from_s.setdefault(v, []).append(c)
            continue
        if c:
            f.add_edge(u, v, capacity=eg.changes[c].cost / in_play[c], change=c)
        else:
            f.add_edge(u, v)
    for v, cs in from_s.items():
        if any(c is None for c in cs):
            f.add_edge(_S, v)
        else:
            f.add_edge(_S, v, capacity=sum(eg.changes[c].cost / in_play[c] for c in cs), changes=cs)
    for t in targets:
        if t in nodes:
            f.add_edge(t, _T)
    if _S not in f:
        return Fix([], 0.0, True)
    try:
        _value, (reach, _non) = nx.minimum_cut(f, _S, _T, capacity="capacity", flow_func=boykov_kolmogorov)
    except nx.NetworkXUnbounded:
        return Fix([], float("inf"), False, uncuttable=_uncuttable_paths(f))
    chosen: set[str] = set()
    for u, v, d in f.edges(data=True):
        if u in reach and v not in reach:
            if d.get("change"):
                chosen.add(d["change"])
            chosen.update(c for c in d.get("changes", ()) if c)
    # prune changes the others make redundant (most expensive first). Only a change with several edges in
    # play can be redundant: its capacity was divided among them; a one-edge change in a minimum cut is
    # needed (removing it reconnects the cut's two sides, as every capacity is positive).
    pruned = 0
    order = sorted((c for c in chosen if in_play[c] > 1), key=lambda c: (-eg.changes[c].cost, c))
    if len(order) <= PRUNE_LIMIT:
        for c in order:
            trial = chosen - {c}
            if not reaching_sources(eg, srcs, targets, trial):
                chosen = trial
                pruned += 1
    ok = not reaching_sources(eg, srcs, targets, chosen)
    return Fix(sorted(chosen), sum(eg.changes[c].cost for c in chosen), ok, pruned=pruned)


def _uncuttable_paths(f: nx.DiGraph) -> list[list[str]]:
    inf = nx.DiGraph((u, v) for u, v, d in f.edges(data=True) if "capacity" not in d)
    try:
        path = nx.shortest_path(inf, _S, _T)
        return [path[1:-1]]
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return []


def cover_paths(eg: ExposureGraph, paths: list[Any], chosen: set[str]) -> set[str]:
    """Greedy weighted set cover: add changes until every listed path has one, each time the change that
    breaks the most still-open paths per unit of cost (a heap with lazy gain updates: O(P log C))."""
    import heapq

    chosen = set(chosen)
    per_path = [{st.get("change") for st in p.steps if st.get("change")} for p in paths]
    index: dict[str, list[int]] = {}
    gain: Counter = Counter()
    open_ = [not (cs & chosen) for cs in per_path]
    for i, cs in enumerate(per_path):
        if open_[i]:
            for c in cs:
                index.setdefault(c, []).append(i)
                gain[c] += 1
    heap = [(-gain[c] / eg.changes[c].cost, eg.changes[c].cost, c) for c in gain]
    heapq.heapify(heap)
    while heap:
        neg, cost, c = heapq.heappop(heap)
        if c in chosen or gain[c] == 0:
            continue
        if -neg != gain[c] / cost:  # stale entry: push back with the current gain
            heapq.heappush(heap, (-gain[c] / cost, cost, c))
            continue
        chosen.add(c)
        for i in index[c]:
            if open_[i]:
                open_[i] = False
                for other in per_path[i]:
                    gain[other] -= 1
    return chosen


THROUGH_LIMIT = 40


def sources_through(
    eg: ExposureGraph, change_ids: list[str], sources: Iterable[str], targets: Iterable[str]
) -> dict[str, int]:
    """For each change: how many sources have at least one path to a target through one of its edges
    (the 'cuts' figure of the remediation list). Skipped above THROUGH_LIMIT changes."""
    if len(change_ids) > THROUGH_LIMIT:
        return {}
    g = eg.g
    tset, srcs = set(targets), set(sources)
    to_target = _spread(g._pred, tset)
    by_change: dict[str, list[tuple[str, str]]] = {c: [] for c in change_ids}
    for u, v, c in g.edges(data="change"):
        if c in by_change and v in to_target:
            by_change[c].append((u, v))
    out = {}
    for c, edges in by_change.items():
        starts = {u for u, _ in edges}
        out[c] = len((_spread(g._pred, starts, outside=tset) & srcs) | (starts & srcs))
    return out
