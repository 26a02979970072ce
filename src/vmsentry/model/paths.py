"""The result of `vmsentry paths` as the reports read it: the attack paths with their steps, the smallest
fix found and its remediation list, and the part of the exposure graph a report shows (each node's kind,
label and asset; each edge's technique and explanation). Plain data, built by ``analyse/graph``;
``to_dict`` is the JSON contract (``vmsentry.paths/1``, docs/CONTRACTS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# what ``analyse/graph/mincut.py`` does (the JSON's fix.method)
FIX_METHOD = (
    "weighted minimum cut (networkx Boykov-Kolmogorov max-flow) over change costs, pruned; greedy "
    "cover for VM-to-VM targets. 'Smallest found', not proven minimal when a change removes several "
    "edges."
)


@dataclass
class Path:
    """One attack path: its nodes, the likelihood of taking every step, a 0-10 score, and the steps
    (from, to, technique, attack_id, evidence, likelihood, explanation, possible, change[, cve])."""

    source: str
    target: str
    nodes: list[str]
    probability: float
    score: float
    steps: list[dict[str, Any]] = field(default_factory=list)

    def edges(self) -> list[tuple[str, str]]:
        return list(zip(self.nodes, self.nodes[1:]))

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "score": self.score,
            "probability": round(self.probability, 4),
            "steps": self.steps,
        }


@dataclass
class Fix:
    """The smallest set of changes found that cuts the paths (ids into the graph's change list)."""

    changes: list[str]
    cost: float
    verified: bool  # no source reaches a target once the changes are applied
    uncuttable: list[list[str]] = field(default_factory=list)  # paths no known change removes
    pruned: int = 0


@dataclass(frozen=True, slots=True)
class GraphNode:
    kind: str  # external, lan, host, vm, network, listener, forward, share, device, channel, hub...
    label: str
    asset: str | None = None


@dataclass(frozen=True, slots=True)
class GraphEdge:
    source: str
    target: str
    technique: str
    detail: str


@dataclass
class PathsResult:
    source: str
    target: str
    paths: list[Path]
    fix: Fix
    remediation: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    what_if: dict[str, Any] | None = None
    reaching: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    vulnerabilities: list[dict[str, Any]] = field(default_factory=list)  # hypervisor flaws matched
    graph_stats: dict[str, int] = field(default_factory=dict)  # nodes, edges, vms, hosts, changes
    hosts: list[str] = field(default_factory=list)  # host node ids
    nodes: dict[str, GraphNode] = field(default_factory=dict)  # every node, in graph order
    edges: list[GraphEdge] = field(default_factory=list)  # every edge, in graph order

    def label(self, node: str) -> str:
        found = self.nodes.get(node)
        return found.label if found is not None and found.label else node

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": "vmsentry.paths/1",
            "from": self.source,
            "to": self.target,
            "paths": [p.to_dict() for p in self.paths],
            "remediation": self.remediation,
            "fix": {
                "method": FIX_METHOD,
                "changes": len(self.fix.changes),
                "cost": self.fix.cost,
                "verified": self.fix.verified,
                "uncuttable": self.fix.uncuttable,
            },
            "reaching": self.reaching,
            "vulnerabilities": self.vulnerabilities,
            "graph": self.graph_stats,
            "notes": self.notes,
        }
        if self.what_if is not None:
            out["what_if"] = self.what_if
        return out
