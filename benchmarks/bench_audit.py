#!/usr/bin/env python3
"""Benchmark for issue 13: the audit log (appends/s, verify time at 10^6 entries), each beside an anchor
measured in the same run on the same data.

Targets: >= 10,000 appends/s; verify of 1,000,000 entries < 10 s.

    .venv/bin/python benchmarks/bench_audit.py [--entries 1000000] [--single 20000] [--batch 10000] [--dir D]

* single: ``AuditLog.append`` one entry per transaction (BEGIN IMMEDIATE, leaf + incremental tree state,
  COMMIT), as a watcher writes an alert; anchor: ``sqlite3`` inserting the same rows, one per transaction,
  with the same pragmas (WAL, synchronous=NORMAL), no hashing.
* batched: ``AuditLog.append_many`` in batches of --batch; anchor: plain ``executemany`` of the same rows.
* verify: ``verify(dir)`` of the whole log (every leaf hash, sequence, checkpoint roots); anchors: reading
  every row with ``sqlite3`` alone, one SHA-256 per entry with ``hashlib`` alone, and ``sha256sum`` over the
  database file (the floor of hashing those bytes once).
Entries are alert-sized records (~450 bytes of canonical JSON). Prints JSON last.

TODO (issue 13 part 2, the scan store): store write and query times for 10,000 scanned VMs on SQLite and
PostgreSQL (``scan --store``), beside plain inserts of the same rows. Not measured here yet.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from vmsentry.report.audit import AuditLog  # noqa: E402
from vmsentry.report.audit.log import canonical_entry  # noqa: E402
from vmsentry.report.audit.verify import verify  # noqa: E402


def alert(n: int) -> dict:
    return {
        "type": "arp_spoof",
        "severity": "high",
        "first_seen": 1700000000.0 + n,
        "last_seen": 1700000009.9 + n,
        "count": 32,
        "attacker": {"mac": "52:54:00:12:34:56", "ip": "192.168.122.10", "vm": "vm1"},
        "victims": [{"ip": "192.168.122.1", "mac": None, "vm": None}],
        "ports": [],
        "confidence": 0.97,
        "summary": f"vm1 claims 192.168.122.1 (alert {n})",
        "evidence": {"claimed": "192.168.122.1", "true_mac": "52:54:00:aa:bb:cc"},
    }


def plain_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("CREATE TABLE entries(seq INTEGER PRIMARY KEY, time REAL, kind TEXT, entry BLOB)")
    return db


def rows(first: int, count: int) -> list[tuple]:
    now = time.time()
    return [
        (n, now, "alert", canonical_entry(n, now, "alert", "root", "vmsentry bench", "hv1", alert(n)))
        for n in range(first, first + count)
    ]


def bench_single(work: Path, count: int) -> dict:
    with AuditLog(work / "single", announce=lambda line: None, command="vmsentry bench", host="hv1") as log:
        started = time.perf_counter()
        for n in range(count):
            log.append("alert", alert(n))
        ours = time.perf_counter() - started
    db = plain_db(work / "single-plain.db")
    data = rows(0, count)
    started = time.perf_counter()
    for row in data:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO entries VALUES (?, ?, ?, ?)", row)
        db.execute("COMMIT")
    anchor = time.perf_counter() - started
    db.close()
    return {
        "entries": count,
        "appends_per_s": round(count / ours),
        "anchor_sqlite_inserts_per_s": round(count / anchor),
    }


def bench_batched(log_dir: Path, work: Path, count: int, batch: int) -> dict:
    with AuditLog(log_dir, announce=lambda line: None, command="vmsentry bench", host="hv1") as log:
        started = time.perf_counter()
        for first in range(0, count, batch):
            log.append_many(("alert", alert(n)) for n in range(first, min(count, first + batch)))
        ours = time.perf_counter() - started
    db = plain_db(work / "batched-plain.db")
    anchor = 0.0
    for first in range(0, count, batch):
        data = rows(first, min(batch, count - first))  # built outside the timing: the anchor only inserts
        started = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", data)
        db.execute("COMMIT")
        anchor += time.perf_counter() - started
    db.close()
    return {
        "entries": count,
        "batch": batch,
        "appends_per_s": round(count / ours),
        "anchor_sqlite_executemany_per_s": round(count / anchor),
    }


def bench_verify(log_dir: Path) -> dict:
    started = time.perf_counter()
    report = verify(log_dir)
    ours = time.perf_counter() - started
    assert report.ok, report.problems
    db = sqlite3.connect(log_dir / "audit.db")
    started = time.perf_counter()
    entries = [bytes(e) for (e,) in db.execute("SELECT entry FROM entries ORDER BY seq")]
    read = time.perf_counter() - started
    db.close()
    sha = hashlib.sha256
    started = time.perf_counter()
    for entry in entries:
        sha(b"\x00" + entry).digest()
    hashed = time.perf_counter() - started
    size = (log_dir / "audit.db").stat().st_size
    sha256sum = None
    if shutil.which("sha256sum"):
        started = time.perf_counter()
        subprocess.run(["sha256sum", str(log_dir / "audit.db")], check=True, capture_output=True)
        sha256sum = round(time.perf_counter() - started, 3)
    return {
        "entries": report.size,
        "verify_seconds": round(ours, 3),
        "anchor_sqlite_read_all_seconds": round(read, 3),
        "anchor_hashlib_one_sha256_per_entry_seconds": round(hashed, 3),
        "anchor_sha256sum_db_file_seconds": sha256sum,
        "db_bytes": size,
    }


# --- TODO (issue 13 part 2: scan history and drift) -----------------------------------------------------
# bench_store(): `scan --store` write and query times for 10,000 scanned VMs on SQLite and on PostgreSQL
# (a server started in a temporary folder, as the store tests do), beside plain inserts of the same rows;
# `vmsentry history` and `vmsentry drift` query times. Add its figures to docs/benchmarks.md.


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in the log verified")
    parser.add_argument("--single", type=int, default=20_000, help="single appends timed")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed after)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-audit-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = {
            "single": bench_single(work, args.single),
            "batched": bench_batched(work / "big", work, args.entries, args.batch),
        }
        result["verify"] = bench_verify(work / "big")
        result["cpu"] = os.cpu_count()
        print(json.dumps(result, indent=2))
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
