"""The watcher's own record of what it decided and did, each entry with its time: one line on stderr for a
person (``vmsentry: quarantined vm1 ...``) and, with ``--audit DIR``, one entry per event in the
tamper-evident audit log (report/audit: an RFC 6962 Merkle log with signed checkpoints, docs/audit.md).

Entries are queued and written to the log in one transaction at the next tick (at least every 0.1 s) and
at exit, never between an alert and the quarantine it leads to: the log's commit must not sit on the
response path. An entry that cannot be written (a full disk) is said once on stderr and kept for the next
try (a bounded queue); the watcher goes on."""

from __future__ import annotations

import sys
import time

from vmsentry.model.text import printable
from vmsentry.report.audit import AuditError, open_audit

# the watcher's entry kinds -> the audit log's kinds (report/audit KINDS; decisions and problems are kinds
# of their own)
AUDIT_KIND = {
    "detection": "alert",
    "decision": "decision",
    "action": "quarantine",
    "release": "release",
    "change": "config_change",
    "problem": "problem",
}
MAX_PENDING = 10_000  # entries kept while the log cannot be written (then the oldest are dropped and counted)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


class Timeline:
    def __init__(self, audit_dir: str | None = None, stderr=None) -> None:
        """``AuditError`` (one line) when ``audit_dir`` cannot be used: the watcher does not start."""
        self.audit_dir = audit_dir
        self.stderr = stderr or sys.stderr
        self.audit = open_audit(audit_dir)
        self.pending: list[tuple[str, dict]] = []
        self.dropped = 0
        self.failed = False

    def say(self, message: str) -> None:
        """One line for a person."""
        try:
            print(f"vmsentry: {printable(message)}", file=self.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def record(self, kind: str, message: str | None = None, **fields) -> dict:
        """An entry (``kind``: detection, decision, action, release, problem, change, start, stop, held,
        reopen); its ``message`` also goes to stderr."""
        now = time.time()
        entry = {"time": iso(now), "epoch": round(now, 6), "kind": kind, **fields}
        if message:
            entry["message"] = message
            self.say(message)
        if self.audit_dir:
            if len(self.pending) >= MAX_PENDING:
                del self.pending[0]
                self.dropped += 1
            self.pending.append((AUDIT_KIND.get(kind, "watch"), entry))
        return entry

    def tick(self) -> None:
        """Write what is queued (one transaction) and sign a checkpoint when one is due."""
        if not self.pending:
            return
        try:
            self.audit.append_many(self.pending)
            self.audit.tick()
        except (AuditError, OSError) as exc:
            if not self.failed:
                self.say(f"{self.audit_dir}: cannot write to the audit log ({exc}); entries kept for the next try")
            self.failed = True
            return
        self.pending.clear()
        if self.failed or self.dropped:
            self.say(
                f"{self.audit_dir}: audit log written again" + (f" ({self.dropped} entries lost)" * bool(self.dropped))
            )
        self.failed, self.dropped = False, 0

    def reopen(self) -> None:
        """SIGHUP: nothing to reopen (the log is a database, not a rotated file); write what is queued."""
        self.tick()

    def close(self) -> None:
        self.tick()
        try:
            self.audit.close()  # signs the final checkpoint
        except (AuditError, OSError) as exc:
            self.say(f"{self.audit_dir}: cannot close the audit log: {exc}")
