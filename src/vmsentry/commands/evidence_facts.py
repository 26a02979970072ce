"""Gathering ``EvidenceFacts`` from real state for a compliance report (``vmsentry report --framework F``).

Where each part comes from:

* ``audit_log``: ``--audit DIR`` verified with ``report.audit.verify`` (and an auditor's ``--checkpoint``),
  the entries counted per kind in one query, the retention from the latest ``prune`` entry;
* ``watch``: the same log's ``watch`` entries (the watcher's start/stop record: ``event``, ``bridges``,
  ``detectors``; a watcher that last wrote ``stopped`` is not running) and its newest ``alert`` and
  ``quarantine`` entries. The watcher's lock files say only that some process holds a bridge, and taking
  a lock to test it would race a starting watcher, so they are not read;
* ``policy``: act/policy's state folder (``applied.nft`` present, ``pending.json`` = waiting for confirm) or,
  without one, the log's newest ``policy`` entry; violations = ``policy_violation`` alerts in the last 24 h;
* ``incidents``: ``--evidence DIR`` (``IncidentStore``): incidents and their response times;
* ``scan_history``: the log's ``scan`` entries (one per ``scan --audit`` run).

A part that cannot be read is left None with the reason in ``missing``: evaluation then shows it as absent
evidence, never as a pass.
"""

from __future__ import annotations

import json
import os
import sqlite3
import statistics
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from vmsentry.model.compliance import (
    AuditLogFacts,
    EvidenceFacts,
    IncidentFacts,
    PolicyFacts,
    ScanHistoryFacts,
    WatchFacts,
)

WATCH_STOPPED = ("stopped", "stop", "exit", "exited")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _summary_query(directory: Path) -> tuple[dict[str, int], str | None, str | None]:
    """Entries kept per kind, and the oldest and newest entry time (a cleared entry still counts)."""
    from vmsentry.report.audit.log import DB_FILE, connect

    db = connect(directory / DB_FILE)
    try:
        kinds = dict(db.execute("SELECT kind, count(*) FROM entries GROUP BY kind"))
        oldest, newest = db.execute("SELECT min(time), max(time) FROM entries WHERE entry IS NOT NULL").fetchone()
    finally:
        db.close()
    return kinds, oldest, newest


def _latest(directory: Path, kind: str, limit: int = 1) -> list[dict]:
    from vmsentry.report.audit.read import entries

    return [e for e in entries(directory, kinds=[kind], limit=limit) if not e.get("cleared")]


def _retention(directory: Path) -> int | None:
    """The retention the latest prune applied to entries and alerts (the shorter); None = never pruned."""
    prunes = _latest(directory, "prune")
    if not prunes:
        return None
    days = (prunes[-1].get("record") or {}).get("retention_days") or {}
    values = [days[k] for k in ("entries", "alerts") if isinstance(days.get(k), int | float)]
    return int(min(values)) if values else None


def audit_log_facts(directory: str, checkpoint: str | None, now: datetime) -> AuditLogFacts:
    from vmsentry.report.audit.verify import verify

    path = Path(directory)
    report = verify(path, checkpoint)
    kinds, oldest, newest = _summary_query(path) if report.ok else ({}, None, None)
    return AuditLogFacts(
        path=str(path),
        intact=report.ok,
        entries=report.size,
        verified_at=_iso(now),
        oldest=oldest,
        newest=newest,
        retention_days=_retention(path) if report.ok else None,
        problem=report.first.message if report.first else None,
        signed_checkpoint=report.checkpoints > 0,
        kinds=kinds,
    )


def watch_facts(directory: str) -> WatchFacts | None:
    path = Path(directory)
    starts = _latest(path, "watch", limit=20)
    if not starts:
        return None
    last = starts[-1]
    record = last.get("record") or {}
    event = str(record.get("event") or record.get("action") or record.get("state") or "")
    started = next((e for e in reversed(starts) if (e.get("record") or {}).get("bridges")), last)
    srec = started.get("record") or {}
    alerts = _latest(path, "alert")
    quarantines = _latest(path, "quarantine")
    return WatchFacts(
        running=False if event in WATCH_STOPPED else None,
        bridges=tuple(str(b) for b in srec.get("bridges") or ()),
        detectors=tuple(str(d) for d in srec.get("detectors") or ()),
        since=started.get("time"),
        last_seen=last.get("time"),
        last_alert=alerts[-1].get("time") if alerts else None,
        last_quarantine=quarantines[-1].get("time") if quarantines else None,
        source=f"{directory} (watch entries)",
    )


def _violations_24h(directory: str | None, now: datetime) -> int | None:
    if directory is None:
        return None
    from vmsentry.report.audit.read import entries

    since = (now - timedelta(hours=24)).timestamp()
    return sum(
        1
        for e in entries(directory, kinds=["alert"], since=since)
        if (e.get("record") or {}).get("type") == "policy_violation"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8")[: 1 << 20])
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def policy_facts(state_dir: str | None, audit_dir: str | None, now: datetime) -> PolicyFacts | None:
    violations = _violations_24h(audit_dir, now)
    if state_dir is not None:
        sd = Path(state_dir)
        if not sd.is_dir():
            raise OSError(f"policy state {state_dir}: no such folder")
        applied = sd / "applied.nft"
        if not applied.is_file():
            return PolicyFacts(applied=False, violations_24h=violations, source=f"{state_dir} (no applied.nft)")
        pending = _read_json(sd / "pending.json")
        when = datetime.fromtimestamp(applied.stat().st_mtime, UTC)
        name = pending.get("policy") or None
        if pending:
            return PolicyFacts(
                applied=False,
                name=name,
                applied_at=_iso(when),
                violations_24h=violations,
                source=f"{state_dir} (applied, waiting for confirm: a rollback is armed)",
            )
        return PolicyFacts(True, name, _iso(when), (), violations, f"{state_dir}")
    if audit_dir is None:
        return None
    actions = _latest(Path(audit_dir), "policy", limit=20)
    if not actions:
        return None
    last = actions[-1]
    record = last.get("record") or {}
    outcome = str(record.get("outcome") or "")
    applied = outcome in ("applied", "unchanged", "confirmed")
    return PolicyFacts(
        applied=applied,
        name=record.get("policy"),
        applied_at=last.get("time"),
        violations_24h=violations,
        source=f"{audit_dir} (latest policy entry: {record.get('action', '?')} {outcome or '?'})",
    )


def incident_facts(directory: str) -> IncidentFacts:
    from vmsentry.report.incident import IncidentStore

    rows = [r for r in IncidentStore(directory).list() if "problem" not in r]
    times = [float(r["response_seconds"]) for r in rows if isinstance(r.get("response_seconds"), int | float)]
    seen = sorted(str(r["first_seen"]) for r in rows if r.get("first_seen"))
    return IncidentFacts(
        incidents=len(rows),
        quarantined=len(times),
        median_response_s=statistics.median(times) if times else None,
        max_response_s=max(times) if times else None,
        oldest=seen[0] if seen else None,
        newest=seen[-1] if seen else None,
        source=directory,
    )


def scan_history_facts(directory: str) -> ScanHistoryFacts | None:
    from vmsentry.report.audit.log import DB_FILE, connect

    db = connect(Path(directory) / DB_FILE)
    try:
        runs, first, last = db.execute(
            "SELECT count(*), min(time), max(time) FROM entries WHERE kind = 'scan' AND entry IS NOT NULL"
        ).fetchone()
    finally:
        db.close()
    if not runs:
        return None
    return ScanHistoryFacts(runs=runs, first=first, last=last, source=f"{directory} (scan entries)")


def gather(
    audit: str | None = None,
    evidence: str | None = None,
    policy_state: str | None = None,
    checkpoint: str | None = None,
    now: datetime | None = None,
) -> EvidenceFacts:
    """Everything that can be read; what cannot is absent with its reason (never an exception)."""
    from vmsentry.report.audit import AuditError
    from vmsentry.report.incident import IncidentError

    now = now or datetime.now(UTC)
    parts: dict[str, Any] = {}
    missing: dict[str, str] = {}
    unreadable = (AuditError, IncidentError, OSError, ValueError, sqlite3.Error)
    log_ok = False
    if audit is None:
        for kind in ("audit_log", "watch", "scan_history"):
            missing[kind] = "no audit log was given (--audit DIR)"
    else:
        try:
            parts["audit_log"] = audit_log_facts(audit, checkpoint, now)
            log_ok = parts["audit_log"].intact
        except unreadable as exc:
            missing["audit_log"] = str(exc)
        if not log_ok:
            why = missing.get("audit_log") or "the audit log does not verify, so its records are not evidence"
            missing["watch"] = missing["scan_history"] = why
        else:
            for kind, read in (("watch", watch_facts), ("scan_history", scan_history_facts)):
                try:
                    parts[kind] = read(audit)
                except unreadable as exc:
                    missing[kind] = str(exc)
                    continue
                if parts[kind] is None:
                    del parts[kind]
                    entry = "watch" if kind == "watch" else "scan"
                    verb = "watch --audit" if kind == "watch" else "scan --audit"
                    missing[kind] = f"the audit log {audit} holds no {entry} entry (run `vmsentry {verb} {audit}`)"
    try:
        policy = policy_facts(policy_state, audit if log_ok else None, now)
    except unreadable as exc:
        policy, missing["policy"] = None, str(exc)
    if policy is not None:
        parts["policy"] = policy
    elif "policy" not in missing:
        missing["policy"] = "no policy state was given and the audit log holds no policy entry"
    if evidence is None:
        missing["incidents"] = "no evidence folder was given (--evidence DIR)"
    else:
        try:
            parts["incidents"] = incident_facts(evidence)
        except unreadable as exc:
            missing["incidents"] = str(exc)
    return EvidenceFacts(gathered_at=_iso(now), missing=missing, **parts)


def default_policy_state() -> str | None:
    """act/policy's default state folder for the host's namespace, when it exists."""
    from vmsentry.act.policy.apply import state_dir_for

    path = state_dir_for(None)
    return str(path) if os.path.isdir(path) else None
