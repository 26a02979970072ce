"""Where the paths page draws what: near-identical nodes and paths grouped, everything in natural order.

At 5,000 VMs the page drew 50 boxes picked in text order (build-0, build-1, build-10, ...) and listed 15 rows
that differ only in a number. Here nodes of one kind whose labels differ only in their numbers (``build-0`` ..
``build-4999``, ``vnc of build-7 (0.0.0.0:5907)``) become one box "build-0 ... build-4999 (5,000)", edges between
groups are drawn once, and paths with the same score and steps from sources named alike become one group,
each sorted naturally (build-2 before build-10).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from vmsentry.model.paths import Path, PathsResult

# Kinds whose near-identical nodes are grouped; a flaw (CVE-2021-3748 vs CVE-2020-14364) or a host service is
# never merged with another: each is a different fix.
GROUPED_KINDS = frozenset(("vm", "listener", "forward", "share", "device", "channel", "network"))
GROUP_FROM = 3  # fewer alike nodes are drawn one by one
_NUMBER = re.compile(r"\d+")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders the numbers inside names by value: build-2 before build-10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.casefold()) for part in re.split(r"(\d+)", text))


def _shape(text: str) -> str:
    return _NUMBER.sub("#", text)


@dataclass
class Box:
    """One drawn node: a single graph node or a group of near-identical ones."""

    id: str  # the first member's node id (natural order): edges and path steps point at it
    kind: str
    members: list[str] = field(default_factory=list)  # node ids, natural order
    labels: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if len(self.members) == 1:
            return self.labels[0]
        return f"{self.labels[0]} \u2026 {self.labels[-1]} ({len(self.members):,})"


def group_nodes(result: PathsResult, node_ids: Iterable[str]) -> tuple[list[Box], dict[str, str]]:
    """The boxes to draw for ``node_ids`` (natural order within each kind) and node id -> box id."""
    by_shape: dict[tuple[str, str], list[str]] = {}
    for n in node_ids:
        node = result.nodes[n]
        key = (node.kind, _shape(node.label)) if node.kind in GROUPED_KINDS else (node.kind, "\0" + n)
        by_shape.setdefault(key, []).append(n)
    boxes: list[Box] = []
    for (kind, _), members in by_shape.items():
        members.sort(key=lambda n: natural_key(result.nodes[n].label))
        chunks = [members] if len(members) >= GROUP_FROM else [[m] for m in members]
        for chunk in chunks:
            boxes.append(Box(chunk[0], kind, chunk, [result.nodes[m].label for m in chunk]))
    boxes.sort(key=lambda b: (b.kind, natural_key(b.labels[0])))
    return boxes, {m: b.id for b in boxes for m in b.members}


@dataclass
class PathGroup:
    """Paths with the same score, steps and target whose sources are named alike: one table entry."""

    paths: list[tuple[int, Path]]  # (rank in the result, path), natural order of the source

    @property
    def first(self) -> tuple[int, Path]:
        return self.paths[0]


def group_paths(paths: list[Path]) -> list[PathGroup]:
    """Near-identical paths together, groups in the order of their best rank (worst score first)."""
    groups: dict[tuple[Any, ...], list[tuple[int, Path]]] = {}
    for rank, p in enumerate(paths, 1):
        key = (p.score, _shape(p.source), _shape(p.target), tuple(s["technique"] for s in p.steps))
        groups.setdefault(key, []).append((rank, p))
    out = []
    for members in groups.values():
        members.sort(key=lambda rp: natural_key(rp[1].source))
        out.append(PathGroup(members))
    out.sort(key=lambda g: min(rank for rank, _ in g.paths))
    return out
