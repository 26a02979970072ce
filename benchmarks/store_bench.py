#!/usr/bin/env python3
"""Benchmark for issue 13 part 2, the scan store: write and query times for a scan of 10,000 VMs on SQLite
and on PostgreSQL, each beside an anchor measured in the same run on the same rows.

    .venv/bin/python benchmarks/store_bench.py [--vms 10000] [--runs 3] [--shared ../shared]

The scan is the one bench_scan.py makes (10,000 libvirt domains replicated from the corpus); it is
collected and evaluated once, in process, and not timed here. Then, per backend:

* write: ``Store.save`` of the run (summary, compressed inventory, every listed finding), --runs times
  (new run ids); anchor: the command-line client loading the same finding rows, already encoded, into a
  table of the same shape (``sqlite3 .import`` of a CSV; ``psql \\copy`` of the same CSV) — the floor of
  putting those bytes in that database, without vmsentry's encoding, summary and inventory.
* query: ``history`` (every run with its counts), ``history --asset`` (one VM's trend: the index on asset),
  ``drift``'s read (one run's inventory, decompressed and rebuilt into records) and one run's findings;
  anchor: ``SELECT count(*)`` of a run's findings through the same connection.

PostgreSQL is a server started for the run (tests/pg_server.py: initdb + pg_ctl in a temporary folder), with
its default durability (fsync on), on this machine's socket. Prints JSON last.

``benchmarks/bench_audit.py`` (issue 13's benchmark) calls ``run()`` for its store section.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_scan import build_corpus  # noqa: E402
from pg_server import PostgresServer  # noqa: E402
from vmsentry.model.history import iso_utc, new_run_id, utc_now  # noqa: E402
from vmsentry.model.scan import ScanResult  # noqa: E402
from vmsentry.report.store import open_store  # noqa: E402

ANCHOR_TABLE = """CREATE TABLE anchor_findings (run_id TEXT NOT NULL, rule_id TEXT NOT NULL, asset TEXT NOT NULL,
    status TEXT NOT NULL, severity TEXT NOT NULL, finding TEXT NOT NULL)"""


def scan_result(folder: Path) -> ScanResult:
    from vmsentry.analyse.engine import evaluate
    from vmsentry.analyse.rules import load_catalogue
    from vmsentry.collect import collect

    inventory, _ = collect([str(folder)])
    rules = load_catalogue()
    findings = evaluate(inventory, rules)
    return ScanResult(findings=findings, inventory=inventory, rules=rules, tool_version="bench")


def with_new_id(result: ScanResult) -> ScanResult:
    now = utc_now()
    result.run_id, result.timestamp = new_run_id(now), iso_utc(now)
    return result


def finding_csv(result: ScanResult, path: Path) -> int:
    from vmsentry.report.json_report import finding_encoder

    encode = finding_encoder()
    rows = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        for f in result.findings:
            if f.status != "not_applicable":
                writer.writerow((result.run_id, f.rule_id, f.asset, f.status, f.severity, encode(f)))
                rows += 1
    return rows


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - started, value


def bench_backend(target: str, result: ScanResult, runs: int, asset: str) -> dict:
    writes = []
    with open_store(target) as store:
        for _ in range(runs):
            seconds, _ = timed(store.save, with_new_id(result), {"paths": ["bench"]}, 1)
            writes.append(seconds)
        run_id = result.run_id
        queries = {
            "history_s": timed(store.runs)[0],
            "history_asset_s": timed(store.runs, asset=asset)[0],
            "drift_read_inventory_s": timed(store.run_inventory, run_id)[0],
            "findings_of_a_run_s": timed(store.findings, run_id)[0],
        }
        cur = store.db.cursor()
        started = time.perf_counter()
        cur.execute(store._sql("SELECT count(*) FROM vmsentry_findings WHERE run_id = ?"), (run_id,))
        cur.fetchone()
        queries["anchor_count_findings_of_a_run_s"] = time.perf_counter() - started
        store.db.rollback()
    return {
        "write_s": [round(w, 3) for w in writes],
        "write_best_s": round(min(writes), 3),
        **{k: round(v, 4) for k, v in queries.items()},
    }


def anchor_sqlite(folder: Path, rows_csv: Path) -> float:
    db = folder / "anchor.db"
    subprocess.run(
        ["sqlite3", str(db), "PRAGMA journal_mode=WAL;", ANCHOR_TABLE + ";"], check=True, capture_output=True
    )
    started = time.perf_counter()
    subprocess.run(
        ["sqlite3", str(db), "PRAGMA synchronous=NORMAL;", f".import --csv {rows_csv} anchor_findings"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def anchor_postgres(url: str, rows_csv: Path) -> float:
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", ANCHOR_TABLE], check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", url, "-c", f"\\copy anchor_findings FROM '{rows_csv}' CSV"],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def run(vms: int = 10_000, runs: int = 3, shared: Path | None = None, work: Path | None = None) -> dict:
    shared = shared or Path(os.environ.get("VMSENTRY_SHARED", REPO.parent / "shared"))
    data = (
        REPO / "benchmarks" / ".data" / f"domains-{vms // 1000}k"
        if vms >= 1000
        else REPO / "benchmarks" / ".data" / f"domains-{vms}"
    )
    build_corpus(shared, data, vms)
    seconds, result = timed(scan_result, data)
    with_new_id(result)
    temp = Path(work or tempfile.mkdtemp(prefix="bench-store-"))
    temp.mkdir(parents=True, exist_ok=True)
    os.chmod(temp, 0o755)
    rows_csv = temp / "findings.csv"
    rows = finding_csv(result, rows_csv)
    os.chmod(rows_csv, 0o644)  # psql runs as this user, but keep it readable for a server-side COPY too
    asset = f"vm:{result.inventory.vms[len(result.inventory.vms) // 2].name}"
    out = {
        "vms": len(result.inventory.vms),
        "finding_rows_per_run": rows,
        "scan_in_process_s": round(seconds, 2),
        "runs_written": runs,
    }
    try:
        sqlite_dir = temp / "sqlite"
        out["sqlite"] = bench_backend(str(sqlite_dir), result, runs, asset)
        out["sqlite"]["db_bytes"] = (sqlite_dir / "scans.db").stat().st_size
        out["sqlite"]["anchor_sqlite3_import_csv_s"] = round(anchor_sqlite(temp, rows_csv), 3)
        with PostgresServer(durable=True) as server:
            url = server.create_database("bench")
            out["postgresql"] = bench_backend(url, result, runs, asset)
            out["postgresql"]["anchor_psql_copy_csv_s"] = round(anchor_postgres(url, rows_csv), 3)
    finally:
        if work is None:
            shutil.rmtree(temp, ignore_errors=True)
    out["cpu"] = os.cpu_count()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3, help="runs written per backend (the best is reported too)")
    parser.add_argument("--shared", type=Path, default=None, help="the shared folder (its corpus makes the VMs)")
    args = parser.parse_args()
    print(json.dumps(run(args.vms, args.runs, args.shared), indent=2))


if __name__ == "__main__":
    main()
