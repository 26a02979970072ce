"""The evidence a compliance report rests on besides the scan (``EvidenceFacts``), gathered from real state:

* ``--audit DIR``: the audit log, verified now (``audit verify``'s check), its entries per kind, the oldest
  and newest kept, the retention its latest prune applied; from its entries, the watcher (its latest
  ``watch`` entry, the latest alert and quarantine) and the policy (the latest ``policy`` action, policy
  violations in the last 24 hours);
* ``--evidence DIR``: the watcher's incident store (incidents, quarantines, response times).

What is not given, or cannot be read, is left out with the reason in ``missing``: the evaluation then makes
the requirements resting on it ``manual`` or ``partial``, never ``pass``.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

from vmsentry.model.compliance import AuditLogFacts, EvidenceFacts, IncidentFacts, PolicyFacts, WatchFacts
from vmsentry.model.text import printable

DAY = 86400.0


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")


def _latest(directory: str, kind: str) -> dict | None:
    from vmsentry.report.audit.read import entries

    found = entries(directory, kinds=[kind], limit=1)
    return found[0] if found and not found[0].get("cleared") else None


def _record(entry: dict | None) -> dict:
    record = (entry or {}).get("record")
    return record if isinstance(record, dict) else {}


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else ()


def audit_facts(directory: str, now: float) -> tuple[AuditLogFacts, WatchFacts | None, PolicyFacts | None]:
    """The log's own facts, and what its entries say about the watcher and the policy (None: no entry)."""
    from vmsentry.report.audit.read import entries, summary
    from vmsentry.report.audit.verify import verify

    report = verify(directory)
    kept = summary(directory)
    prune = _record(_latest(directory, "prune"))
    retention = prune.get("retention_days")
    retention_days = retention.get("entries") if isinstance(retention, dict) else None
    audit = AuditLogFacts(
        path=directory,
        intact=report.ok,
        entries=report.size,
        verified_at=_now_iso(now),
        oldest=kept["oldest"],
        newest=kept["newest"],
        retention_days=None if retention_days is None else int(retention_days),
        problem=None if report.ok else printable(report.first.message),
        signed_checkpoint=report.ok and report.checkpoints > 0,
        kinds=kept["kinds"],
    )
    last_alert, last_hold = _latest(directory, "alert"), _latest(directory, "quarantine")
    watch_entry = _latest(directory, "watch")
    watch = None
    if watch_entry is not None:
        record = _record(watch_entry)
        watch = WatchFacts(
            running=None,
            bridges=_strings(record.get("bridges")),
            detectors=_strings(record.get("detectors")),
            since=watch_entry.get("time"),
            last_seen=watch_entry.get("time"),
            last_alert=(last_alert or {}).get("time"),
            last_quarantine=(last_hold or {}).get("time"),
            source=f"{directory} (watch entries)",
        )
    policy = None
    policy_entry = _latest(directory, "policy")
    if policy_entry is not None:
        record = _record(policy_entry)
        recent = entries(directory, kinds=["alert"], since=now - DAY)
        violations = sum(_record(e).get("type") == "policy_violation" for e in recent)
        policy = PolicyFacts(
            applied=record.get("action") in ("apply", "confirm"),
            name=record.get("policy"),
            applied_at=policy_entry.get("time"),
            violations_24h=violations,
            source=f"{directory} (policy entries)",
        )
    return audit, watch, policy


def incident_facts(directory: str) -> IncidentFacts:
    from vmsentry.report.incident import IncidentStore

    rows = [row for row in IncidentStore(directory).list() if "problem" not in row]
    times = [float(r["response_seconds"]) for r in rows if isinstance(r.get("response_seconds"), (int, float))]
    seen = sorted(r["first_seen"] for r in rows if r.get("first_seen"))
    return IncidentFacts(
        incidents=len(rows),
        quarantined=len(times),
        median_response_s=statistics.median(times) if times else None,
        max_response_s=max(times) if times else None,
        oldest=seen[0] if seen else None,
        newest=seen[-1] if seen else None,
        source=directory,
    )


def gather(audit_dir: str | None, evidence_dir: str | None, now: float | None = None) -> EvidenceFacts:
    """Everything that can be read; each part that cannot is named in ``missing`` with its one-line reason."""
    from vmsentry.report.audit import AuditError
    from vmsentry.report.incident import IncidentError

    now = time.time() if now is None else now
    missing: dict[str, str] = {}
    audit = watch = policy = incidents = None
    if audit_dir is None:
        missing["audit_log"] = "no --audit DIR given"
    else:
        try:
            audit, watch, policy = audit_facts(audit_dir, now)
        except AuditError as exc:
            missing["audit_log"] = printable(str(exc))
        else:
            if watch is None:
                missing["watch"] = f"no watcher entry in the audit log {audit_dir}"
            if policy is None:
                missing["policy"] = f"no policy action in the audit log {audit_dir}"
    if evidence_dir is None:
        missing["incidents"] = "no --evidence DIR given"
    else:
        try:
            incidents = incident_facts(evidence_dir)
        except IncidentError as exc:
            missing["incidents"] = printable(str(exc))
    missing["scan_history"] = "no scan history given"
    return EvidenceFacts(
        audit_log=audit, watch=watch, policy=policy, incidents=incidents, gathered_at=_now_iso(now), missing=missing
    )
