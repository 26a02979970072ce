"""Retention (``audit prune``).

Pruning never breaks verification:

* an entry past its kind's retention has its content cleared (``entry`` NULL) while its leaf hash stays,
  so every root is still recomputed from the stored leaves; the prune entry appended at the end lists
  every cleared range (carrying the earlier ones forward), so a row emptied outside a prune is caught;
* when a whole prefix is cleared it is dropped, and summarised by its compact edge (the hashes of the
  perfect subtrees covering it, log2(n) of them) in a record signed with the log's key, which also lists the
  roots of the checkpoints it drops (an auditor's old checkpoint is still checked against them);
* the log must verify before anything is removed: a prune never launders a tampered log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vmsentry.report.audit import keys
from vmsentry.report.audit.keys import AuditError, AuditTampered
from vmsentry.report.audit.log import DB_FILE, AuditLog, edge_from, iso
from vmsentry.report.audit.merkle import Compact
from vmsentry.report.audit.verify import BASE_TYPE, verify

DAY = 86400.0
# the contract's defaults: audit entries and alerts 184 days (six months and more: China's Cybersecurity
# Law Art. 21(3)), scan snapshots 30 days (the scan store keeps them; the same key names its retention)
DEFAULT_RETENTION = {"entries": 184.0, "alerts": 184.0, "snapshots": 30.0}
RETENTION_CLASS = {"alert": "alerts", "snapshot": "snapshots"}  # an entry kind -> its class; others: entries


def parse_keep_days(values: list[str]) -> dict[str, float]:
    """``--keep-days``: ``N`` (every class) or ``CLASS=N`` (entries, alerts, snapshots, or an entry kind)."""
    retention = dict(DEFAULT_RETENTION)
    for value in values:
        name, _, days = value.rpartition("=")
        try:
            number = float(days)
        except ValueError:
            raise ValueError(f"--keep-days {value!r}: give DAYS or CLASS=DAYS") from None
        if not number >= 0 or number == float("inf"):
            raise ValueError(f"--keep-days {value!r}: days must be a finite number, 0 or more")
        if name:
            retention[name] = number
        else:
            retention.update(dict.fromkeys(DEFAULT_RETENTION, number))
    return retention


def _keep_days(kind: str, retention: dict[str, float]) -> float:
    if kind in retention:
        return retention[kind]
    return retention.get(RETENTION_CLASS.get(kind, "entries"), DEFAULT_RETENTION["entries"])


def require_log(directory: Path) -> None:
    if not (directory / DB_FILE).is_file():
        raise AuditError(f"{directory}: no audit log here ({DB_FILE} missing)")


def prune(directory: str | os.PathLike, retention: dict[str, float], **options) -> dict:
    """Applies ``retention`` (days per class or kind); returns the prune entry's record."""
    directory = Path(directory)
    require_log(directory)
    report = verify(directory)
    if not report.ok:
        raise AuditTampered(f"{directory}: the log does not verify ({report.first.message}): nothing pruned")
    with AuditLog(directory, **options) as log, log.transaction():
        record = _prune(log, retention)
        log._append_rows([("prune", record)])
        log._checkpoint()
    return record


def _prune(log: AuditLog, retention: dict[str, float]) -> dict:
    db, now = log.db, log.clock()
    oldest = iso(now - min(_keep_days(k, retention) for k in {*retention, "entries"}) * DAY)
    cleared: dict[str, int] = {}
    gone = []
    for seq, kind, time in db.execute(
        "SELECT seq, kind, time FROM entries WHERE entry IS NOT NULL AND time < ?", (oldest,)
    ):
        if time < iso(now - _keep_days(kind, retention) * DAY):
            gone.append((seq,))
            cleared[kind] = cleared.get(kind, 0) + 1
    db.executemany("UPDATE entries SET entry = NULL WHERE seq = ?", gone)
    size = log._state().size
    first_kept = db.execute("SELECT min(seq) FROM entries WHERE entry IS NOT NULL").fetchone()[0]
    boundary = size if first_kept is None else first_kept
    base, dropped = old_base(db)
    leaves = [bytes(r[0]) for r in db.execute("SELECT leaf FROM entries WHERE seq < ? ORDER BY seq", (boundary,))]
    edge = base.copy()
    edge.extend(leaves)
    for cp_size, body in db.execute("SELECT size, body FROM checkpoints WHERE size <= ?", (boundary,)):
        dropped[cp_size] = json.loads(body)["root"]
    if leaves:
        signed = keys.sign(
            log.key,
            BASE_TYPE,
            size=edge.size,
            root=keys.b64(edge.root()),
            edge=[keys.b64(h) for h in edge.nodes],
            checkpoints=sorted([s, r] for s, r in dropped.items()),
            time=iso(now),
        )
        db.execute("INSERT OR REPLACE INTO base VALUES (1, ?, ?)", (signed.body, signed.signature))
        db.execute("DELETE FROM entries WHERE seq < ?", (boundary,))
        db.execute("DELETE FROM checkpoints WHERE size < ?", (boundary,))
    return {
        "retention_days": retention,
        "cleared": _ranges(db, boundary),
        "cleared_now": cleared,
        "dropped_before": edge.size,
        "dropped_now": len(leaves),
        "time": iso(now),
    }


def old_base(db) -> tuple[Compact, dict[int, str]]:
    row = db.execute("SELECT body FROM base WHERE id = 1").fetchone()
    if row is None:
        return Compact(), {}
    fields = json.loads(row[0])
    edge = edge_from(int(fields["size"]), b"".join(keys.unb64(h) for h in fields["edge"]))
    return edge, {int(s): r for s, r in fields["checkpoints"]}


def _ranges(db, start: int) -> list[list[int]]:
    """Every cleared entry from ``start`` on, as [first, end) ranges."""
    out: list[list[int]] = []
    for (seq,) in db.execute("SELECT seq FROM entries WHERE entry IS NULL AND seq >= ? ORDER BY seq", (start,)):
        if out and out[-1][1] == seq:
            out[-1][1] = seq + 1
        else:
            out.append([seq, seq + 1])
    return out
