"""The records of `vmsentry cost`: the isolation options with their ranges (what the options file says),
and the result the reports read (each option's cut of the attack-path graph, its expected annual loss
before and after, the loss it avoids and its cost, as Monte Carlo spreads). Plain data, built by
``analyse/cost.py``; ``CostResult.to_dict`` is the JSON contract (``vmsentry.cost/1``, docs/contracts.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (5, 50, 95)  # the range every spread reports: 5th and 95th percentile, and the median
DISTRIBUTIONS = ("pert", "triangular")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A quantity known as a range: low / most likely / high (low <= most likely <= high)."""

    low: float
    most_likely: float
    high: float

    def mean(self, distribution: str) -> float:
        """The distribution's mean: PERT (lambda 4) (low + 4 most likely + high) / 6, triangular (sum) / 3."""
        if distribution == "triangular":
            return (self.low + self.most_likely + self.high) / 3
        return (self.low + 4 * self.most_likely + self.high) / 6

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "most_likely": self.most_likely, "high": self.high}


@dataclass(frozen=True, slots=True)
class Spread:
    """A simulated quantity: its sample mean and percentiles (PERCENTILES), and ``expected``, the exact
    expectation where the model gives one in closed form (a reader can check it by hand)."""

    mean: float
    p5: float
    p50: float
    p95: float
    expected: float | None = None

    def to_dict(self) -> dict[str, float]:
        out = {"mean": self.mean, "p5": self.p5, "p50": self.p50, "p95": self.p95}
        if self.expected is not None:
            out["expected"] = self.expected
        return out


@dataclass(frozen=True, slots=True)
class IsolationOption:
    """One option: the `--what-if` changes it stands for (change ids, fnmatch patterns over them, or rule
    ids) and its annual cost. ``builtin``: one of the four documented defaults."""

    name: str
    title: str
    changes: tuple[str, ...]
    cost: Estimate
    models: str = ""  # what the changes stand for in the real network, in a sentence
    builtin: bool = False
    line: int = 0  # where it is defined in the options file (0: built in)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "changes": list(self.changes),
            "cost": self.cost.to_dict(),
            "models": self.models,
            "builtin": self.builtin,
        }


@dataclass(frozen=True, slots=True)
class CostModel:
    """What an options file says (or the built-in defaults): the FAIR inputs and the options."""

    threat_event_frequency: Estimate  # compromised VMs a year, across the inventory (FAIR TEF)
    loss_magnitude: Estimate  # one loss event, primary and secondary loss together (FAIR LM)
    options: tuple[IsolationOption, ...]
    currency: str = "EUR"
    samples: int = 20_000
    distribution: str = "pert"
    source: str | None = None  # the options file, None for the built-in defaults
    illustrative: bool = True  # figures are examples, not facts (the defaults always are)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "illustrative": self.illustrative,
            "currency": self.currency,
            "samples": self.samples,
            "distribution": self.distribution,
            "threat_event_frequency": self.threat_event_frequency.to_dict(),
            "loss_magnitude": self.loss_magnitude.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class SourceRisk:
    """One attack source before any option: its worst reachable target and the vulnerability it adds
    (likelihood of the path x impact of the target)."""

    source: str
    target: str | None
    vulnerability: float

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "worst_target": self.target, "vulnerability": self.vulnerability}


@dataclass
class GraphCut:
    """What an option's changes do to the attack-path graph."""

    applied: list[str]  # change ids
    unmatched: list[str]  # entries of the option that match no change of this graph
    edges_removed: int
    reaching_before: int
    reaching_after: int
    paths_before: int
    paths_after: int
    worst_before: float
    worst_after: float
    vulnerability: float  # after the changes (see CostResult.vulnerability)
    sources: list[SourceRisk] = field(default_factory=list)  # each source after the changes

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "unmatched": self.unmatched,
            "edges_removed": self.edges_removed,
            "reaching_before": self.reaching_before,
            "reaching_after": self.reaching_after,
            "paths_before": self.paths_before,
            "paths_after": self.paths_after,
            "worst_score_before": self.worst_before,
            "worst_score_after": self.worst_after,
            "vulnerability": self.vulnerability,
            "sources": [s.to_dict() for s in self.sources],
        }


@dataclass
class OptionResult:
    option: IsolationOption
    cut: GraphCut
    lef: Spread  # loss events a year with the option
    ale: Spread  # annual loss expectancy with the option
    avoided: Spread  # ALE before - ALE after, sample by sample
    cost: Spread
    net: Spread  # avoided - cost
    avoided_per_cost: float | None  # expected avoided / expected cost; None when the option costs nothing
    worth_it: float  # share of samples where the loss avoided exceeds the cost
    rank: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "option": self.option.to_dict(),
            "cut": self.cut.to_dict(),
            "lef": self.lef.to_dict(),
            "ale": self.ale.to_dict(),
            "loss_avoided": self.avoided.to_dict(),
            "cost": self.cost.to_dict(),
            "net_benefit": self.net.to_dict(),
            "loss_avoided_per_cost": self.avoided_per_cost,
            "probability_worth_it": self.worth_it,
        }


@dataclass
class CostResult:
    source: str  # --from
    target: str  # --to
    seed: int
    model: CostModel
    vulnerability: float  # mean over the sources of (best path likelihood x target impact), before any option
    sources: list[SourceRisk]
    tef: Spread
    lm: Spread
    lef: Spread  # before
    ale: Spread  # before
    options: list[OptionResult]  # ranked: loss avoided per unit of cost, best first
    graph_stats: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "vmsentry.cost/1",
            "from": self.source,
            "to": self.target,
            "seed": self.seed,
            "percentiles": list(PERCENTILES),
            "model": self.model.to_dict(),
            "before": {
                "vulnerability": self.vulnerability,
                "threat_event_frequency": self.tef.to_dict(),
                "loss_magnitude": self.lm.to_dict(),
                "lef": self.lef.to_dict(),
                "ale": self.ale.to_dict(),
                "sources": [s.to_dict() for s in self.sources],
            },
            "options": [o.to_dict() for o in self.options],
            "graph": self.graph_stats,
            "notes": self.notes,
        }
