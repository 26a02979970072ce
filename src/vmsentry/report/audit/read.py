"""Reading the audit log: ``entries`` (``audit show``) and ``export`` (``audit export``: JSONL with an
inclusion proof per entry against a freshly signed checkpoint)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TextIO

from vmsentry.report.audit import keys
from vmsentry.report.audit.keys import AuditError, AuditTampered
from vmsentry.report.audit.log import DB_FILE, AuditLog, connect, iso
from vmsentry.report.audit.merkle import Tree
from vmsentry.report.audit.prune import old_base, require_log
from vmsentry.report.audit.verify import verify


def entries(
    directory: str | os.PathLike, kinds: list[str] = (), since: float | None = None, limit: int | None = None
) -> list[dict]:
    """The stored entries, oldest first, parsed (a cleared one as ``{seq, time, kind, cleared: true}``)."""
    directory = Path(directory)
    require_log(directory)
    where, params = ["1"], []
    if kinds:
        where.append(f"kind IN ({','.join('?' * len(kinds))})")
        params += kinds
    if since is not None:
        where.append("time >= ?")
        params.append(iso(since))
    query = f"SELECT seq, time, kind, entry FROM entries WHERE {' AND '.join(where)} ORDER BY seq"
    if limit is not None:
        query = f"SELECT * FROM ({query[: -len(' ORDER BY seq')]} ORDER BY seq DESC LIMIT {int(limit)}) ORDER BY seq"
    db = connect(directory / DB_FILE)
    try:
        out = []
        for seq, time, kind, entry in db.execute(query, params):
            if entry is None:
                out.append({"seq": seq, "time": time, "kind": kind, "cleared": True})
                continue
            try:
                out.append(json.loads(entry))
            except ValueError:
                raise AuditError(
                    f"{directory / DB_FILE}: entry {seq} is not JSON: run `vmsentry audit verify`"
                ) from None
        return out
    finally:
        db.close()


def export(directory: str | os.PathLike, out: TextIO, **options) -> int:
    """JSONL: the signed checkpoint first, then every stored entry with its leaf hash and its inclusion proof
    against that checkpoint's root (``entry`` is the exact text the leaf hashes; null once cleared).
    Returns the number of entries written."""
    directory = Path(directory)
    require_log(directory)
    report = verify(directory)
    if not report.ok:
        raise AuditTampered(f"{directory}: the log does not verify ({report.first.message}): not exported")
    with AuditLog(directory, **options) as log:
        checkpoint = log.checkpoint()
    db = connect(directory / DB_FILE)
    try:
        db.execute("BEGIN")  # one snapshot for both passes
        base, _ = old_base(db)
        size = checkpoint["size"]
        query = "SELECT seq, leaf, entry FROM entries WHERE seq < ? ORDER BY seq"
        # first pass: the leaf hashes only (32 bytes each); the entries are streamed in the second
        tree = Tree([leaf for (leaf,) in db.execute(query.replace("seq, leaf, entry", "leaf"), (size,))], base=base)
        if keys.b64(tree.root()) != checkpoint["root"]:
            raise AuditError(f"{directory}: the entries changed while exporting; run it again")
        out.write(json.dumps({"checkpoint": checkpoint}, sort_keys=True) + "\n")
        count = 0
        for seq, leaf, entry in db.execute(query, (size,)):
            line = {
                "seq": seq,
                "leaf": leaf.hex(),
                "entry": None if entry is None else entry.decode("ascii"),
                "tree_size": size,
                "proof": [h.hex() for h in tree.inclusion_proof(seq)],
            }
            out.write(json.dumps(line, sort_keys=True) + "\n")
            count += 1
        return count
    finally:
        db.close()
