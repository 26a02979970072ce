"""The exposure graph record (``ExposureGraph``, its ``Change`` list) and the three writes every edge builder
uses: a node, a change, an edge with its likelihood. What the nodes and edges mean: build.py."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from vmsentry.analyse.graph.techniques import TECHNIQUES

EXTERNAL, LAN = "external", "lan"
POSSIBLE_FACTOR = 0.5  # a step that rests on an uncollected fact counts half


@dataclass(slots=True)
class Change:
    id: str
    text: str
    asset: str
    rule_id: str | None
    cost: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "change": self.text, "asset": self.asset, "rule_id": self.rule_id, "cost": self.cost}


@dataclass
class ExposureGraph:
    g: nx.DiGraph
    changes: dict[str, Change] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)  # host node ids
    vms: list[str] = field(default_factory=list)  # vm node ids
    notes: list[str] = field(default_factory=list)
    vulns_matched: list[dict[str, Any]] = field(default_factory=list)

    def without(self, change_ids: set[str]) -> ExposureGraph:
        """A copy with every edge removed that one of these changes removes (the what-if graph)."""
        g = self.g.copy()
        g.remove_edges_from([(u, v) for u, v, c in self.g.edges(data="change") if c in change_ids])
        return ExposureGraph(g, self.changes, self.hosts, self.vms, list(self.notes), self.vulns_matched)

    def stats(self) -> dict[str, int]:
        return {
            "nodes": self.g.number_of_nodes(),
            "edges": self.g.number_of_edges(),
            "vms": len(self.vms),
            "hosts": len(self.hosts),
            "changes": len(self.changes),
        }


class GraphWriter:
    """Adds nodes, changes and edges to ``self.g`` / ``self.eg`` (set by the builder)."""

    g: nx.DiGraph
    eg: ExposureGraph

    def node(self, nid: str, kind: str, label: str, **attrs: Any) -> str:
        if nid not in self.g:
            self.g.add_node(nid, kind=kind, label=label, **attrs)
        return nid

    def change(self, cid: str, text: str, asset: str, rule_id: str | None, cost: float, kind: str) -> str:
        if cid not in self.eg.changes:
            self.eg.changes[cid] = Change(cid, text, asset, rule_id, cost, kind)
        return cid

    def edge(
        self,
        u: str,
        v: str,
        technique: str,
        file: str | None,
        locator: str | None,
        detail: str,
        likelihood: float | None = None,
        change: str | None = None,
        possible: bool = False,
        **extra: Any,
    ) -> None:
        p = TECHNIQUES[technique].likelihood if likelihood is None else likelihood
        if possible:
            p *= POSSIBLE_FACTOR
        p = max(min(p, 1.0), 1e-6)
        old = self.g.get_edge_data(u, v)
        if old is not None and old["likelihood"] >= p:
            return
        self.g.add_edge(
            u,
            v,
            technique=technique,
            likelihood=p,
            w=-math.log(p),
            evidence={"file": file, "locator": locator},
            detail=detail,
            change=change,
            possible=possible,
            **extra,
        )
