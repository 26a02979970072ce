"""Evaluate the catalogue against an inventory: every rule, every asset of its type and platform."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from vmsentry.analyse.checks import Outcome, as_outcomes, load_checks
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.rules import SEVERITY_RANK, Rule, load_catalogue
from vmsentry.model import Inventory


@dataclass(slots=True)
class Finding:
    rule_id: str
    title: str
    severity: str
    status: str
    category: str
    platform: str
    asset: str
    evidence: dict[str, Any]
    remediation: str
    references: list[str]
    waiver: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "rule_id": self.rule_id, "title": self.title, "severity": self.severity, "status": self.status,
            "category": self.category, "platform": self.platform, "asset": self.asset,
            "evidence": self.evidence, "remediation": self.remediation, "references": self.references,
        }
        if self.waiver is not None:
            out["waiver"] = self.waiver
        return out

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """Identity across scans (for baselines): rule, asset, file and locator."""
        return (self.rule_id, self.asset, self.evidence.get("file"), self.evidence.get("locator"))


def _assets(inventory: Inventory, rule: Rule) -> Iterable[Any]:
    pool = {"vm": inventory.vms, "network": inventory.networks, "host": inventory.hosts}[rule.asset]
    platforms = rule.platforms
    if "all" in platforms:
        return pool
    return [a for a in pool if a.platform in platforms]


def evaluate(inventory: Inventory, rules: Iterable[Rule] | None = None) -> list[Finding]:
    rules = tuple(rules) if rules is not None else load_catalogue()
    checks = load_checks()
    ctx = ScanContext.of(inventory)
    findings: list[Finding] = []
    append = findings.append
    for rule in rules:
        predicate = checks.get(rule.check)
        for asset in _assets(inventory, rule):
            try:
                outcomes = as_outcomes(predicate(asset, ctx)) if predicate else [
                    Outcome("error", message=f"no predicate named {rule.check}")]
            except Exception as exc:  # a predicate bug must not hide every other result
                outcomes = [Outcome("error", message=f"{type(exc).__name__}: {exc}")]
            if not outcomes:
                outcomes = [Outcome("pass")]
            default_file = asset.source.file if hasattr(asset, "source") else None
            for oc in outcomes:
                ev = oc.evidence()
                if ev["file"] is None:
                    ev["file"] = default_file or (asset.facts.get("source_file") if rule.asset == "host" else None)
                append(Finding(rule.id, rule.title, rule.severity, oc.status, rule.category, asset.platform,
                               asset.asset, ev, rule.remediation_for(asset.platform), list(rule.references)))
    return findings


STATUS_ORDER = {"fail": 0, "error": 1, "unknown": 2, "waived": 3, "pass": 4, "not_applicable": 5}


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first: failures by severity, then errors, unknowns, waivers, passes."""
    return sorted(findings, key=lambda f: (STATUS_ORDER.get(f.status, 9), SEVERITY_RANK[f.severity], f.asset, f.rule_id))
