"""Attack paths over the exposure graph.

"All paths" from 10,000 VMs cannot mean every simple path (there are exponentially many). For each
source we compute its *best* path to the target set: the most likely one, i.e. the shortest path with
edge weight -log(likelihood). With few targets (``host``) that is one Dijkstra on the reversed graph
per target, which gives every source's best path at once (O(E log V)). With many targets and many
sources (``any-vm`` to ``any``) VM-to-VM pairs are computed per source only up to ``MAX_PAIR_SOURCES``
sources; above that the host and the LAN are the targets and a note says so.
"""

from __future__ import annotations

import math
from typing import Any

import networkx as nx

from vmsentry.analyse.graph.base import EXTERNAL, LAN, ExposureGraph
from vmsentry.analyse.graph.techniques import TECHNIQUES
from vmsentry.model.paths import Path

IMPACT = {"host": 1.0, "vm": 0.8, "lan": 0.7}
MAX_PAIR_SOURCES = 300
ALTERNATIVES_PAIRS = 200  # up to this many (source, target) pairs, list k alternative paths per pair


class SpecError(ValueError):
    pass


def resolve(eg: ExposureGraph, spec: str, role: str) -> list[str]:
    """Node ids for a --from/--to spec."""
    g = eg.g
    if spec.startswith("vm:"):
        if spec not in g or g.nodes[spec].get("kind") != "vm":
            raise SpecError(f"no VM named {spec[3:]!r} in the inventory")
        return [spec]
    if spec.startswith("host:"):
        if spec not in g:
            raise SpecError(f"no host named {spec[5:]!r} in the inventory")
        return [spec]
    if spec == "any-vm":
        return list(eg.vms)
    if spec == "host":
        return list(eg.hosts)
    if spec == "external":
        return [EXTERNAL]
    if spec == "lan":
        return [LAN]
    if spec == "any":
        return (list(eg.vms) + [EXTERNAL]) if role == "from" else (list(eg.hosts) + list(eg.vms) + [LAN])
    raise SpecError(f"{spec!r}: expected vm:NAME, any-vm, host, external or any")


def _kind(g: nx.DiGraph, node: str) -> str:
    return g.nodes[node].get("kind", "?")


def _asset(g: nx.DiGraph, node: str) -> str:
    return g.nodes[node].get("asset") or node


def step_dict(g: nx.DiGraph, u: str, v: str) -> dict[str, Any]:
    d = g.edges[u, v]
    t = TECHNIQUES[d["technique"]]
    out = {
        "from": u,
        "to": v,
        "technique": d["technique"],
        "attack_id": t.attack_id,
        "evidence": d["evidence"],
        "likelihood": round(d["likelihood"], 3),
        "explanation": d["detail"],
        "possible": d.get("possible", False),
        "change": d.get("change"),
    }
    if d.get("cve"):
        out["cve"] = d["cve"]
    return out


def _make(g: nx.DiGraph, nodes: list[str], dist: float) -> Path:
    src, dst = nodes[0], nodes[-1]
    p = math.exp(-dist)
    score = round(10 * p * IMPACT.get(_kind(g, dst), 0.7), 1)
    return Path(_asset(g, src), _asset(g, dst), nodes, p, score, [step_dict(g, u, v) for u, v in zip(nodes, nodes[1:])])


def best_paths(eg: ExposureGraph, sources: list[str], targets: list[str], k: int = 1) -> tuple[list[Path], list[str]]:
    """The most likely path from each source to each target it reaches (a source never 'reaches' itself),
    sorted worst (highest score) first."""
    g = eg.g
    notes: list[str] = []
    out: list[Path] = []
    srcset = set(sources)
    vm_targets = [t for t in targets if _kind(g, t) == "vm"]
    few_targets = [t for t in targets if _kind(g, t) != "vm"]
    if vm_targets and len(srcset) > MAX_PAIR_SOURCES and len(vm_targets) > MAX_PAIR_SOURCES:
        notes.append(
            f"{len(srcset)} sources x {len(vm_targets)} VM targets: VM-to-VM paths were not enumerated; "
            "ask for one VM with --from vm:NAME or --to vm:NAME"
        )
        vm_targets = []
    per_target = few_targets + (vm_targets if len(vm_targets) <= len(srcset) else [])
    per_source = vm_targets if len(vm_targets) > len(srcset) else []
    if per_target:
        rev = g.reverse(copy=False)
        for t in per_target:
            dist, paths = nx.single_source_dijkstra(rev, t, weight="w")
            for s in srcset:
                if s == t or s not in dist:
                    continue
                out.append(_make(g, paths[s][::-1], dist[s]))
    if per_source:
        tset = set(per_source)
        for s in srcset:
            dist, paths = nx.single_source_dijkstra(g, s, weight="w")
            for t in tset:
                if t != s and t in dist:
                    out.append(_make(g, paths[t], dist[t]))
    if k > 1 and len(out) <= ALTERNATIVES_PAIRS:
        out += _alternatives(eg, out, set(targets), k)
    out.sort(key=lambda p: (-p.score, -p.probability, p.source, p.target, len(p.nodes)))
    return out, notes


ALTERNATIVES_BUDGET = 2_000_000  # sources x edges: one Dijkstra per source within this budget


def _alternatives(eg: ExposureGraph, best: list[Path], targets: set[str], k: int) -> list[Path]:
    """Up to k-1 more paths per (source, target), each entering the target by a different last step
    (another service, a share, a device, a flaw...): the distinct ways in, not near-copies of the best.
    One forward Dijkstra per source (skipped above ALTERNATIVES_BUDGET)."""
    g = eg.g
    want: dict[str, set[str]] = {}
    for p in best:
        want.setdefault(p.nodes[0], set()).add(p.nodes[-1])
    if len(want) * max(g.number_of_edges(), 1) > ALTERNATIVES_BUDGET:
        return []
    firsts = {(p.nodes[0], p.nodes[-1]): p for p in best}
    more: list[Path] = []
    for s, ts in want.items():
        blocked = targets - {s}
        view = nx.subgraph_view(g, filter_node=lambda n, b=blocked: n not in b)
        dist, paths = nx.single_source_dijkstra(view, s, weight="w")
        for t in ts:
            cands = []
            for u in g.predecessors(t):
                if u in dist:
                    cands.append(_make(g, paths[u] + [t], dist[u] + g.edges[u, t]["w"]))
            first = firsts[(s, t)]
            taken = {first.steps[-1]["technique"]}
            got = 1
            for p in sorted(cands, key=lambda p: (-p.probability, len(p.nodes))):
                tech = p.steps[-1]["technique"]
                if tech in taken:
                    continue
                taken.add(tech)
                more.append(p)
                got += 1
                if got >= k:
                    break
    return more
