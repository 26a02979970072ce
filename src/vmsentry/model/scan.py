"""A scan's result as it goes to a report: the findings, the inventory they were found in, the catalogue used."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsentry.model.findings import Finding
from vmsentry.model.inventory import Inventory
from vmsentry.model.rule import Rule


@dataclass(slots=True)
class ScanResult:
    findings: list[Finding]
    inventory: Inventory
    rules: tuple[Rule, ...] = ()  # the catalogue the scan used (SARIF lists every rule of it)
    skipped_files: int = 0
    seconds: float = 0.0
    tool_version: str = ""
    fail_on: str = "high"  # a severity, or "none"
    # {"new": [Finding], "fixed": [finding dict], "unchanged": int, "file": path} with --baseline
    baseline: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    not_applicable: int = 0  # not-applicable results counted by the engine but not listed
    # when the scan started (ISO 8601 UTC) and its run id (model/history.py); the scan command sets both
    timestamp: str | None = None
    run_id: str | None = None
