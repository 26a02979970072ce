"""What each kind of gathered evidence says about a requirement: a verdict (True supports it, False
contradicts it, None = absent or not enough) and one sentence an auditor reads."""

from __future__ import annotations

from typing import Any

from vmsentry.model.compliance import EvidenceFacts

WHERE = {
    "audit_log": "--audit DIR",
    "watch": "the watcher's audit entries (--audit DIR)",
    "policy": "a policy state (--policy-state DIR) or the audit log's policy entries",
    "scan_history": "--store",
    "incidents": "--evidence DIR",
}
NAME = {
    "audit_log": "audit log",
    "watch": "watcher",
    "policy": "applied policy",
    "scan_history": "scan history",
    "incidents": "incident store",
}


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


def _names(items: tuple[str, ...], most: int = 4) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def check(kind: str, facts: EvidenceFacts | None, thresholds: dict[str, Any]) -> tuple[bool | None, str]:
    part = facts.get(kind) if facts is not None else None
    if part is None:
        why = (facts.missing.get(kind) if facts is not None else None) or f"none was given ({WHERE[kind]})"
        return None, f"no {NAME[kind]} evidence: {why}"
    return _CHECKS[kind](part, thresholds)


def _audit_log(a, thresholds) -> tuple[bool | None, str]:
    if not a.intact:
        return False, f"audit log NOT intact ({a.problem or 'verify failed'}), verified at {a.verified_at}"
    kept = a.days_kept
    sentence = f"audit log intact, {a.entries} entries" + (f", {kept} days kept" if kept is not None else "")
    sentence += f", verified at {a.verified_at}"
    if a.signed_checkpoint:
        sentence += " against its signed checkpoint"
    need = thresholds.get("retention_days")
    if need is None:
        return True, sentence
    if a.retention_days is not None and a.retention_days < need:
        return False, f"{sentence}; retention set to {a.retention_days} days, under the {need} days required"
    if a.retention_days is None:
        sentence += "; never pruned (everything kept)"
    else:
        sentence += f"; retention {a.retention_days} days (at least {need} required)"
    if kept is None or kept < need:
        # the setting keeps enough, but the log does not yet show the required span
        return None, f"{sentence}; the log holds {kept or 0} days so far, under the {need} days required"
    return True, sentence


def _watch(w, thresholds) -> tuple[bool | None, str]:
    if not w.bridges or not w.detectors:
        return None, f"the watcher's records ({w.source}) name no watched bridge or detector"
    bridges = len(w.bridges)
    sentence = (
        f"{_names(w.detectors, 6)} detection active on {bridges} bridge{'s' if bridges != 1 else ''} "
        f"({_names(w.bridges)})"
    )
    if w.since:
        sentence += f" since {w.since}"
    if w.last_alert:
        sentence += f", last alert at {w.last_alert}"
    if w.last_quarantine:
        sentence += f", last quarantine at {w.last_quarantine}"
    if w.running is False:
        return None, f"{sentence}; the watcher is not running now (last record at {w.last_seen or '?'})"
    return True, sentence


def _policy(p, thresholds) -> tuple[bool | None, str]:
    if not p.applied:
        return None, f"no policy is applied ({p.source})"
    sentence = "policy" + (f" {p.name}" if p.name else "") + " applied"
    if p.applied_at:
        sentence += f" at {p.applied_at}"
    if p.bridges:
        sentence += f" on {len(p.bridges)} bridge{'s' if len(p.bridges) != 1 else ''}"
    if p.violations_24h is not None:
        sentence += f", {p.violations_24h} violation{'s' if p.violations_24h != 1 else ''} in 24 h"
    return True, sentence


def _incidents(i, thresholds) -> tuple[bool | None, str]:
    if i.incidents == 0:
        return None, f"the incident store ({i.source}) holds no incident: no response time to show"
    sentence = f"{i.incidents} incident{'s' if i.incidents != 1 else ''} recorded"
    if i.quarantined:
        sentence += f", {i.quarantined} answered by a quarantine"
    if i.median_response_s is not None:
        sentence += f"; response median {_seconds(i.median_response_s)}, slowest {_seconds(i.max_response_s or 0)}"
    need = thresholds.get("response_within_s")
    if need is None:
        return True, sentence
    if i.max_response_s is None:
        return None, f"{sentence}; no response time recorded (required within {_seconds(need)})"
    if i.max_response_s > need:
        return False, f"{sentence}: over the {_seconds(need)} required"
    return True, f"{sentence} (within the {_seconds(need)} required)"


def _scan_history(h, thresholds) -> tuple[bool | None, str]:
    if h.runs == 0:
        return None, f"the scan history ({h.source}) holds no scan"
    span = f" from {h.first} to {h.last}" if h.first and h.last and h.first != h.last else ""
    return True, f"{h.runs} scan{'s' if h.runs != 1 else ''} kept{span}"


_CHECKS = {
    "audit_log": _audit_log,
    "watch": _watch,
    "policy": _policy,
    "incidents": _incidents,
    "scan_history": _scan_history,
}
