#!/usr/bin/env python3
"""Benchmark for issue 12 (``vmsentry watch``): each figure beside its anchor, in the same run.

  capacity  live capture on the typical mix: packets / busy CPU second of the watcher (target >= 1,000,000),
            beside tcpdump -w /dev/null (watch_capacity.py)
  drops     kernel drops at the highest rate this machine generates (target 0), beside tcpdump's
            (watch_capacity.py)
  memory    peak RSS under a MAC / flow flood: `vmsentry detect` on the file beside tcpdump and arpwatch
            (watch_memory.py), and the live ring watcher with the same flood replayed into its bridge,
            beside tcpdump on that bridge (watch_capacity.live_memory)
  latency   first attack frame to quarantine rule in force (the [watch] part)

Needs root (network namespaces). Prints one JSON object: {part: figures}.

    python benchmarks/bench_watch.py [--part capacity|drops|memory|latency|all] [--packets N] [--senders N]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import watch_capacity
import watch_latency
import watch_memory


def part_capacity(args: argparse.Namespace) -> dict:
    return watch_capacity.capacity(args.packets or 1_000_000)


def part_drops(args: argparse.Namespace) -> dict:
    return watch_capacity.drops(args.packets or 2_000_000, args.senders)


def part_latency(args: argparse.Namespace) -> dict:
    return watch_latency.run(argparse.Namespace(runs=args.runs, burst=0.3, gap=1.5, verbose=False))


def part_memory(args: argparse.Namespace) -> dict:
    packets = args.packets or 1_000_000
    files = watch_memory.run(
        argparse.Namespace(packets=packets, floods=",".join(watch_memory.FLOODS), runs=1, bound_mb=200, json=None)
    )
    live = {}
    for kind in watch_memory.FLOODS:
        pcap, inv = watch_memory.generate(kind, packets)
        live[kind] = watch_capacity.live_memory(pcap, inv, seconds=max(15.0, packets / 40_000))
    return {"file": files, "live": live}


PARTS = {"capacity": part_capacity, "drops": part_drops, "memory": part_memory, "latency": part_latency}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("capacity", "drops", "memory", "latency", "all"), default="all")
    ap.add_argument("--packets", type=int, help="packets per part (default: the part's own)")
    ap.add_argument("--senders", type=int, default=1, help="drops: trafgen senders (one namespace each)")
    ap.add_argument("--runs", type=int, default=20, help="latency: attacks (median and p95 over them)")
    args = ap.parse_args()
    chosen = list(PARTS) if args.part == "all" else [args.part]
    results = {}
    for name in chosen:
        if name not in PARTS:
            results[name] = {"missing": "this part is not in this tree yet"}
            continue
        results[name] = PARTS[name](args)
        print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
