"""The tamper-evident audit log (``--audit DIR``): an RFC 6962 Merkle log of canonical JSON entries in SQLite,
with Ed25519-signed checkpoints. See docs/audit.md.

For commands and the watcher::

    from vmsentry.report.audit import open_audit
    with open_audit(args.audit) as audit:          # None -> a log that records nothing
        audit.append("quarantine", {"vm": "vm1", "method": "nft", "reason": "...", "alert_id": "..."})
        audit.append_many([("alert", a) for a in alerts])   # one transaction
        audit.tick()                                # in a long loop: a signed checkpoint every 15 min
    # leaving the block signs the final checkpoint

``open_audit`` raises ``AuditError`` (one line naming the file) when the folder, key or database cannot be
used; a command turns it into its fatal error.
"""

from __future__ import annotations

import os

from vmsentry.report.audit.keys import AuditError
from vmsentry.report.audit.log import AuditLog

__all__ = ["KINDS", "AuditError", "AuditLog", "NullAudit", "open_audit"]

# the kinds of entry vmsentry writes (a caller may add its own; retention treats unknown kinds as entries)
KINDS = (
    "scan",  # one per scan run: counts by status and severity, inventory digest, inputs
    "detect",  # one per detect run: counts, inputs, stats
    "alert",  # one per alert (detect, watch)
    "policy",  # policy apply / confirm / rollback: one per action
    "quarantine",  # a VM held (by hand or by the watcher), with the decision that led to it
    "release",  # a VM released
    "config_change",  # a configuration change the watcher saw (libvirt events)
    "watch",  # the watcher started / stopped
    "prune",  # retention ran: what it removed (written by `audit prune`)
)


class NullAudit:
    """What ``open_audit(None)`` returns: every call does nothing, so callers need no ``if``."""

    directory = None

    def append(self, kind: str, record: object) -> int | None:
        return None

    def append_many(self, items) -> list:
        return []

    def tick(self) -> None:
        pass

    def checkpoint(self) -> None:
        return None

    def close(self) -> None:
        pass

    def __enter__(self) -> NullAudit:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def open_audit(directory: str | os.PathLike | None, **options) -> AuditLog | NullAudit:
    """The audit log in ``directory`` (made with its key on first use), or a no-op when ``directory`` is None.
    ``options``: ``actor``, ``command``, ``host``, ``checkpoint_every`` (see AuditLog)."""
    if directory is None:
        return NullAudit()
    return AuditLog(directory, **options)
