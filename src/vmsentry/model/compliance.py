"""Compliance records: a framework's requirements, what decides each, and the result of deciding them.

Written by ``analyse/compliance`` (the mappings are data: ``analyse/compliance/frameworks/<id>.yaml``), read by
reports (``vmsentry report --framework F``), so they are model records. ``EvidenceFacts`` is what the command
layer gathered from real state (the audit log, the watcher, the applied policy, the incident store, the scan
history): a requirement that such evidence decides is never ``pass`` without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# A requirement's result. "partial": some of what decides it passes and nothing fails, but part is unknown or
# missing; "manual": no tool can decide it (or its evidence is absent), an auditor must look.
REQUIREMENT_STATUSES = ("pass", "fail", "partial", "manual", "not_applicable")
# Worst first, for reports.
REQUIREMENT_STATUS_ORDER = {"fail": 0, "partial": 1, "manual": 2, "pass": 3, "not_applicable": 4}
# The evidence a requirement may rest on, besides rules: the audit log (report/audit), the watcher (its
# detectors on bridges), the applied policy (act/policy), the scan history (the store) and the incident store.
EVIDENCE_KINDS = ("audit_log", "watch", "policy", "scan_history", "incidents")
# How sure the requirement's id and text are (compliance-anchors.md §0): read in the primary text, in a
# reputable secondary source, a weak secondary one, derived from numbering, or not verified at all.
VERIFICATION = ("verified", "secondary", "weak", "derived", "unverified")
# How a requirement's rules decide it: "all" = every rule must pass (any failure fails it); "any" = one
# passing rule is enough (alternatives, e.g. one rule per platform of the same control).
DECISIONS = ("all", "any")


def plain(record: Any) -> dict[str, Any]:
    """A record's fields as JSON values (tuples as lists), in declaration order."""
    return {f.name: list(v) if isinstance(v, tuple) else v for f in fields(record) for v in [getattr(record, f.name)]}


@dataclass(frozen=True, slots=True)
class Requirement:
    framework: str
    id: str
    section: str
    title: str
    title_zh: str | None
    text: str
    text_zh: str | None
    source: str
    verified: str  # one of VERIFICATION; reports show anything but "verified" as such
    rules: tuple[str, ...] = ()  # catalogue rule ids that decide it
    evidence: tuple[str, ...] = ()  # EVIDENCE_KINDS that decide it
    manual: str | None = None  # what an auditor must look at (the part no tool decides)
    decision: str = "all"  # one of DECISIONS
    clause: str | None = None  # e.g. "8.2.3.2 c)", kept apart from the id (most clause numbers are unverified)
    related_rules: tuple[str, ...] = ()  # cited for reference only, never deciding (ComplianceAsCode's related_rules)
    note: str | None = None  # why the mapping is what it is, or what it leaves out
    not_applicable: str | None = None  # why the requirement does not apply to a hypervisor tool's scope

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True, slots=True)
class RuleDecision:
    """One rule's say in a requirement: its combined status over the scanned assets (fail if any asset fails,
    unknown if any is unknown or in error and none fails, waived, pass, or not_applicable when it applied to
    no asset) and the assets that gave that status."""

    rule_id: str
    status: str  # fail | unknown | waived | pass | not_applicable
    assets: tuple[str, ...] = ()
    title: str = ""

    def to_dict(self) -> dict[str, Any]:
        return plain(self)


@dataclass(frozen=True, slots=True)
class RequirementResult:
    requirement: Requirement
    status: str  # one of REQUIREMENT_STATUSES
    decided_by: tuple[RuleDecision, ...] = ()
    evidence: tuple[str, ...] = ()  # one sentence per fact that supports it
    gaps: tuple[str, ...] = ()  # one sentence per thing that fails, is unknown or is missing

    def to_dict(self) -> dict[str, Any]:
        return {
            "requirement": self.requirement.to_dict(),
            "status": self.status,
            "decided_by": [d.to_dict() for d in self.decided_by],
            "evidence": list(self.evidence),
            "gaps": list(self.gaps),
        }


@dataclass(frozen=True, slots=True)
class ComplianceResult:
    framework: str  # the id, e.g. "mlps2-l3"
    name: str
    version: str
    source: str
    generated: str  # ISO 8601 UTC
    results: tuple[RequirementResult, ...]
    description: str = ""
    summary: dict[str, int] = field(default_factory=dict)  # per REQUIREMENT_STATUSES, plus "total"

    def to_dict(self) -> dict[str, Any]:
        return {**plain(self), "results": [r.to_dict() for r in self.results]}


def summarise(results: tuple[RequirementResult, ...] | list[RequirementResult]) -> dict[str, int]:
    """Counts per status (every status present, zero or not) and the total."""
    counts = dict.fromkeys(REQUIREMENT_STATUSES, 0)
    for r in results:
        counts[r.status] += 1
    counts["total"] = len(results)
    return counts


# ---------------------------------------------------------------- evidence gathered from real state
@dataclass(frozen=True, slots=True)
class AuditLogFacts:
    """The audit log as ``audit verify`` found it."""

    path: str
    intact: bool
    entries: int
    verified_at: str  # ISO 8601 UTC, when the verification ran
    oldest: str | None = None  # time of the oldest kept entry
    newest: str | None = None
    retention_days: int | None = None  # the configured retention
    problem: str | None = None  # verify's one line when not intact
    signed_checkpoint: bool = False  # the latest checkpoint's signature checked out
    kinds: dict[str, int] = field(default_factory=dict)  # entries per kind (scan, detect, policy, quarantine...)

    @property
    def days_kept(self) -> int | None:
        """Whole days between the oldest and the newest entry (None without both)."""
        from datetime import datetime

        if not self.oldest or not self.newest:
            return None
        try:
            span = datetime.fromisoformat(self.newest) - datetime.fromisoformat(self.oldest)
        except ValueError:
            return None
        return max(0, span.days)


@dataclass(frozen=True, slots=True)
class WatchFacts:
    """The watcher, as its records show it (the audit log's watch entries, its incident store)."""

    running: bool | None  # None = not known (e.g. read from records only)
    bridges: tuple[str, ...] = ()
    detectors: tuple[str, ...] = ()
    since: str | None = None  # when it last started
    last_seen: str | None = None  # its latest record
    last_alert: str | None = None
    last_quarantine: str | None = None
    source: str = ""  # where this was read


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    """The enforced policy, as its state file and the audit log show it."""

    applied: bool
    name: str | None = None
    applied_at: str | None = None
    bridges: tuple[str, ...] = ()
    violations_24h: int | None = None  # policy-violation alerts in the last 24 h (None = not counted)
    source: str = ""


@dataclass(frozen=True, slots=True)
class IncidentFacts:
    """The incident store (``--evidence DIR``): how many incidents and how fast they were answered."""

    incidents: int
    quarantined: int = 0
    median_response_s: float | None = None  # alert to first response action
    max_response_s: float | None = None
    oldest: str | None = None
    newest: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class ScanHistoryFacts:
    runs: int
    first: str | None = None
    last: str | None = None
    source: str = ""


@dataclass(frozen=True, slots=True)
class EvidenceFacts:
    """Everything gathered; a part left None was not given or could not be read (``missing`` says why)."""

    audit_log: AuditLogFacts | None = None  # --audit DIR, verified
    watch: WatchFacts | None = None  # the watcher's audit entries
    policy: PolicyFacts | None = None  # act/policy's state folder, or the log's policy entries
    scan_history: ScanHistoryFacts | None = None  # the log's scan entries
    incidents: IncidentFacts | None = None  # --evidence DIR
    gathered_at: str | None = None  # ISO 8601 UTC
    missing: dict[str, str] = field(default_factory=dict)  # evidence kind -> why it is absent

    def get(self, kind: str) -> Any:
        return getattr(self, kind) if kind in EVIDENCE_KINDS else None
