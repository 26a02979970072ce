"""Evaluate the catalogue against an inventory: every rule, every asset of its type and platform."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from vmsentry.analyse.checks import Outcome, as_outcomes, declarative, load_checks
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.rules import Rule, load_catalogue
from vmsentry.model import Inventory
from vmsentry.model.findings import Finding, sort_findings  # noqa: F401  (sort_findings: callers' one import)


def _assets_by_rule_scope(inventory: Inventory) -> dict[tuple[str, str], list[Any]]:
    """Assets grouped once by (asset type, platform), so each rule picks its own without filtering."""
    groups: dict[tuple[str, str], list[Any]] = {}
    for kind, pool in (("vm", inventory.vms), ("network", inventory.networks), ("host", inventory.hosts)):
        for asset in pool:
            groups.setdefault((kind, asset.platform), []).append(asset)
    return groups


def predicate_for(rule: Rule, checks: dict[str, Callable[..., Any]]) -> Callable[..., Any] | None:
    """The predicate a rule stands for: its declarative ``test:``, else the named ``check``; None when no
    predicate has that name (the engine reports it as an error result)."""
    return declarative.predicate(rule.test) if rule.test is not None else checks.get(rule.check)


def evaluate(
    inventory: Inventory, rules: Iterable[Rule] | None = None, *, not_applicable_counts: dict[str, int] | None = None
) -> list[Finding]:
    """Every rule on every asset of its type and platform. With ``not_applicable_counts`` given,
    not-applicable outcomes are counted there per rule instead of listed (on a fleet they are over half
    of all results and say nothing; the scan reports only their number)."""
    rules = tuple(rules) if rules is not None else load_catalogue()
    checks = load_checks()
    ctx = ScanContext.of(inventory)
    findings: list[Finding] = []
    append = findings.append
    count_na = not_applicable_counts is not None
    for (kind, platform), assets in _assets_by_rule_scope(inventory).items():
        # per scope, what each rule needs, computed once (a fleet scan runs this loop ~400k times)
        plan = [
            (
                rule.id,
                rule.title,
                rule.severity,
                rule.category,
                rule.check,
                predicate_for(rule, checks),
                rule.remediation_for(platform),
                list(rule.references),
            )
            for rule in rules
            if rule.asset == kind and ("all" in rule.platforms or platform in rule.platforms)
        ]
        for asset in assets:
            asset_id = asset.asset
            default_file = asset.source.file if kind != "host" else asset.facts.get("source_file")
            for rule_id, title, severity, category, check_name, predicate, remediation, references in plan:
                try:
                    result = (
                        predicate(asset, ctx)
                        if predicate
                        else Outcome("error", message=f"no predicate named {check_name}")
                    )
                except Exception as exc:  # a predicate bug must not hide every other result
                    result = Outcome("error", message=f"{type(exc).__name__}: {exc}")
                outcomes = (result,) if type(result) is Outcome else (as_outcomes(result) or (Outcome("pass"),))
                if count_na and outcomes[0].status == "not_applicable":
                    not_applicable_counts[rule_id] = not_applicable_counts.get(rule_id, 0) + 1
                    continue
                for oc in outcomes:
                    ev = {"file": oc.file or default_file, "locator": oc.locator, "key": oc.key, "value": oc.value}
                    if oc.message:
                        ev["message"] = oc.message
                    append(
                        Finding(
                            rule_id,
                            title,
                            severity,
                            oc.status,
                            category,
                            platform,
                            asset_id,
                            ev,
                            remediation,
                            references,
                        )
                    )
    return findings
