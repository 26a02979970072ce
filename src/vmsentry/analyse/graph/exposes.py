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
from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache
from typing import NamedTuple

from vmsentry.analyse.checks import Outcome, as_outcomes, load_checks
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.engine import predicate_for
from vmsentry.analyse.rules import Rule, load_catalogue
from vmsentry.model import Inventory

DECIDING = ("fail", "unknown")  # results that open an edge (unknown: a 'possible' one, where asked for)


@lru_cache(maxsize=1)
def exposing_rules() -> tuple[Rule, ...]:
    """The rules with ``exposes:``, widened to every platform (see the module docstring)."""
    return tuple(replace(r, platforms=("all",)) for r in load_catalogue() if r.exposes)


class Decision(NamedTuple):
    """What the builder needs of a rule result: which rule, fail or unknown, and the item it is about."""

    rule_id: str
    status: str
    locator: str | None


class RuleResults:
    """Failing (and unknown) results of the exposing rules on one inventory, by technique and asset.

    Evaluated with the scan's predicates, a technique at its first use (a technique the builder never asks
    about is never evaluated); building a finding for every result of every VM, as a scan does, cost a
    third of the graph's build time on a 10,000-VM fleet. A decision is only what the builder needs: the
    rule, fail or unknown, and the item it is about."""

    def __init__(self, inv: Inventory, rules: tuple[Rule, ...] | None = None) -> None:
        rules = exposing_rules() if rules is None else rules
        checks = load_checks()
        self._ctx = ScanContext.of(inv)
        self._pools = {"vm": inv.vms, "network": inv.networks, "host": inv.hosts}
        # technique -> asset kind -> [(rule id, predicate)], in catalogue order
        self._rules: dict[str, dict[str, list[tuple[str, Callable]]]] = defaultdict(lambda: defaultdict(list))
        for rule in rules:
            predicate = predicate_for(rule, checks)
            if predicate is None:
                continue  # the scan reports the missing predicate as an error; an error opens no edge
            for technique in rule.exposes:
                self._rules[technique][rule.asset].append((rule.id, predicate))
        self._by_asset: dict[str, dict[str, list[Decision]]] = {}
        self._by_item: dict[str, dict[tuple[str, str | None], deque[Decision]]] = {}

    def _results(self, technique: str, asset_id: str) -> list[Decision]:
        table = self._by_asset.get(technique)
        if table is None:
            table = self._evaluate(technique)
        return table.get(asset_id, ())

    def _evaluate(self, technique: str) -> dict[str, list[Decision]]:
        """Every asset's deciding results for ``technique``, at its first use, in one tight loop (asking
        asset by asset cost more in bookkeeping than the predicates themselves)."""
        table = self._by_asset[technique] = {}
        ctx = self._ctx
        for kind, rules in self._rules.get(technique, {}).items():
            for rule_id, predicate in rules:
                for asset in self._pools[kind]:
                    try:
                        result = predicate(asset, ctx)
                    except Exception:  # the scan reports it as an error; an error opens no edge
                        continue
                    for oc in (result,) if type(result) is Outcome else as_outcomes(result):
                        if oc.status in DECIDING:
                            table.setdefault(asset.asset, []).append(Decision(rule_id, oc.status, oc.locator))
        return table

    def for_asset(self, technique: str, asset: str) -> Decision | None:
        """The rule result that opens ``technique`` for a whole asset (a VM's clipboard, a network's mode):
        its failing decision, else an unknown one, else None."""
        found = self._results(technique, asset)
        if not found:
            return None
        return next((f for f in found if f.status == "fail"), found[0])

    def for_item(self, technique: str, asset: str, locator: str | None) -> Decision | None:
        """The result for one item of an asset (a NIC, a share), matched by the result's locator. Each
        result is handed out once, in inventory order, so two items at one locator get one each."""
        items = self._by_item.get(technique)
        if items is None:
            items = self._by_item[technique] = {}
            table = self._by_asset.get(technique)
            for asset_id, found in (self._evaluate(technique) if table is None else table).items():
                for decision in found:
                    items.setdefault((asset_id, decision.locator), deque()).append(decision)
        queue = items.get((asset, locator))
        return queue.popleft() if queue else None
