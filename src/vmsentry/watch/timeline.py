"""The watcher's own record of what it decided and did, each entry with its time: one line on stderr for a
person (``vmsentry: quarantined vm1 ...``) and, with ``--audit DIR``, one JSON object per line appended to
``DIR/watch.jsonl`` (flushed per entry, reopened on SIGHUP like the alert output). An entry that cannot be
written (a full disk) is said once on stderr; the watcher goes on."""

from __future__ import annotations

import json
import os
import sys
import time

from vmsentry.model.text import printable
from vmsentry.report.alerts import close_quietly
from vmsentry.report.output import OutputError, open_append


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}Z"


class Timeline:
    def __init__(self, audit_dir: str | None = None, stderr=None) -> None:
        self.audit_dir = audit_dir
        self.stderr = stderr or sys.stderr
        self.file = None
        self.failed = False
        if audit_dir:
            self.reopen()

    def say(self, message: str) -> None:
        """One line for a person."""
        try:
            print(f"vmsentry: {printable(message)}", file=self.stderr, flush=True)
        except (OSError, ValueError):
            pass

    def record(self, kind: str, message: str | None = None, **fields) -> dict:
        """An entry (``kind``: detection, decision, action, release, problem, change, start, stop); its
        ``message`` also goes to stderr."""
        now = time.time()
        entry = {"time": iso(now), "epoch": round(now, 6), "kind": kind, **fields}
        if message:
            entry["message"] = message
            self.say(message)
        if self.file is not None:
            try:
                self.file.write((json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode())
                self.failed = False
            except (OSError, ValueError) as exc:
                if not self.failed:
                    self.say(f"{self.audit_dir}: cannot write the audit entry: {getattr(exc, 'strerror', exc)}")
                self.failed = True
        return entry

    def reopen(self) -> None:
        if not self.audit_dir:
            return
        self.close()
        try:
            os.makedirs(self.audit_dir, mode=0o750, exist_ok=True)
            self.file = open_append(os.path.join(self.audit_dir, "watch.jsonl"))  # (unbuffered: a line per write)
        except OSError as exc:
            self.say(f"{self.audit_dir}: cannot open the audit log: {exc.strerror}")
        except OutputError as exc:
            self.say(f"audit log: {exc}")

    def close(self) -> None:
        close_quietly(self.file)
        self.file = None
