"""Which rule results open which edges: one meaning of exposure for `vmsentry scan` and `vmsentry paths`.

A rule with ``exposes: [technique, ...]`` in the catalogue says that its failing result *is* that edge: a
console channel, a writable share, an unrestricted user-mode NIC... The graph builder does not decide
those again from the inventory; it asks ``RuleResults`` whether the rule failed for the asset (and for
which item: a NIC, a share, found by the finding's locator) and only derives from the inventory where the
edge points and what it says.

The rules are evaluated with the scan's own engine and predicates. A rule that covers fewer platforms than
the graph models (clipboard on plain QEMU, a writable share on Hyper-V...) is evaluated here on every
platform: the same predicate, so the same meaning; the scan reports only the platforms the rule names.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import replace
from functools import lru_cache

from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.rules import Rule, load_catalogue
from vmsentry.model import Inventory
from vmsentry.model.findings import Finding

DECIDING = ("fail", "unknown")  # results that open an edge (unknown: a 'possible' one, where asked for)


@lru_cache(maxsize=1)
def exposing_rules() -> tuple[Rule, ...]:
    """The rules with ``exposes:``, widened to every platform (see the module docstring)."""
    return tuple(replace(r, platforms=("all",)) for r in load_catalogue() if r.exposes)


class RuleResults:
    """Failing (and unknown) results of the exposing rules on one inventory, by technique and asset."""

    def __init__(self, inv: Inventory, rules: tuple[Rule, ...] | None = None) -> None:
        rules = exposing_rules() if rules is None else rules
        techniques = {r.id: r.exposes for r in rules}
        self._by_asset: dict[tuple[str, str], list[Finding]] = defaultdict(list)
        self._by_item: dict[tuple[str, str, str | None], deque[Finding]] = defaultdict(deque)
        for f in evaluate(inv, rules):
            if f.status not in DECIDING:
                continue
            for tech in techniques[f.rule_id]:
                self._by_asset[(tech, f.asset)].append(f)
                self._by_item[(tech, f.asset, f.evidence.get("locator"))].append(f)

    def for_asset(self, technique: str, asset: str) -> Finding | None:
        """The rule result that opens ``technique`` for a whole asset (a VM's clipboard, a network's mode):
        its failing finding, else an unknown one, else None."""
        found = self._by_asset.get((technique, asset), ())
        return next((f for f in found if f.status == "fail"), None) or next(iter(found), None)

    def for_item(self, technique: str, asset: str, locator: str | None) -> Finding | None:
        """The result for one item of an asset (a NIC, a share), matched by the finding's locator. Each
        finding is handed out once, in inventory order, so two items at one locator get one finding each."""
        queue = self._by_item.get((technique, asset, locator))
        return queue.popleft() if queue else None
