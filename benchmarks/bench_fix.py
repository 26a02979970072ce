#!/usr/bin/env python3
"""Benchmark for issue 15: `vmsentry fix` for 10,000 VMs (target < 5 s), with the scan of the same VMs as
the anchor measured in the same run (the machine's speed varies between runs; the ratio does not).

Builds (or reuses) benchmarks/.data/domains-N/ as benchmarks/bench_scan.py does (the corpus's domains
replicated under new names), scans it to JSON (the anchor, timed), then times
`vmsentry fix --from-scan SCAN.json --format sh -o FILE` (load the report, plan every failing finding,
render the script) pinned to one CPU, best of --runs.

    python benchmarks/bench_fix.py [--vms 10000] [--runs 3] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import REPO, VMSENTRY, build_corpus, scan_arguments, time_scan

TARGET_S = 5.0


def time_fix(scan: Path, out: Path, fmt: str) -> float:
    cmd = ["taskset", "-c", "0", *VMSENTRY, "fix", "--from-scan", str(scan), "--format", fmt, "-o", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"fix failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = scan_arguments(parser).parse_args()
    data = REPO / "benchmarks" / ".data" / f"domains-{args.vms}"
    build_corpus(args.shared, data, args.vms)
    scan = data.parent / f"scan-{args.vms}.json"
    anchor = min((time_scan(data, scan) for _ in range(args.runs)), key=lambda r: r["seconds"])
    print(f"anchor: scan of {anchor['vms']} VMs in {anchor['seconds']} s ({anchor['findings']} findings)")
    ok = True
    for fmt in ("sh", "json"):
        out = data.parent / f"fix-{args.vms}.{fmt}"
        best = min(time_fix(scan, out, fmt) for _ in range(args.runs))
        size = out.stat().st_size
        print(
            f"fix --format {fmt}: {best:.3f} s (best of {args.runs}; {best / anchor['seconds']:.2f} x the scan), "
            f"{size / 1e6:.1f} MB written (target < {TARGET_S} s)"
        )
        ok = ok and best < TARGET_S
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
