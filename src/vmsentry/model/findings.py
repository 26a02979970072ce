"""The audit's records: result statuses, the one severity order, and ``Finding`` (CONTRACTS.md "Finding").

Every stage that ranks, counts or prints findings or alerts uses the order here: ``SEVERITIES`` lists
the worst first, and ``SEVERITY_RANK`` maps a severity to its place in that list (0 = worst), so "at or
above high" is ``SEVERITY_RANK[s] <= SEVERITY_RANK["high"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # 0 = worst
# GitHub code scanning ranks SARIF results by this number (>=9 critical, 7-8.9 high, 4-6.9 medium).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}

# VSAT's results, plus "waived" (a failure a waiver file accepts, with its reason and expiry).
STATUSES = ("fail", "pass", "unknown", "not_applicable", "error", "waived")
# Worst first, for reports: failures, then errors, unknowns, waivers, passes.
STATUS_ORDER = {"fail": 0, "error": 1, "unknown": 2, "waived": 3, "pass": 4, "not_applicable": 5}


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
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "status": self.status,
            "category": self.category,
            "platform": self.platform,
            "asset": self.asset,
            "evidence": self.evidence,
            "remediation": self.remediation,
            "references": self.references,
        }
        if self.waiver is not None:
            out["waiver"] = self.waiver
        return out

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """Identity across scans (for baselines): rule, asset, file and locator."""
        return (self.rule_id, self.asset, self.evidence.get("file"), self.evidence.get("locator"))


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Worst first: failures by severity, then errors, unknowns, waivers, passes."""
    return sorted(
        findings, key=lambda f: (STATUS_ORDER.get(f.status, 9), SEVERITY_RANK[f.severity], f.asset, f.rule_id)
    )
