#!/usr/bin/env python3
"""The cost of keeping recent frames for evidence (``collect/traffic/recent.py``): the watcher calls
``RecentFrames.add`` for every captured block, so its time per million packets is what it takes from the
capture's budget. The capture (gen_traffic.py, written once into benchmarks/.data/) is cut into blocks of
about 4 MB, as the TPACKET_V3 ring hands them over, and only ``add`` is timed; then one incident's frames are
taken out (``frames``) and the memory held is compared with its bound.

    python benchmarks/bench_recent.py [--packets 1000000] [--kind typical|busy|syn] [--per-vm-mb 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_detect import generate  # noqa: E402
from vmsentry.collect.traffic.pcap_bulk import _rows  # noqa: E402
from vmsentry.collect.traffic.pcap_walk import RecordWalker  # noqa: E402
from vmsentry.collect.traffic.recent import RecentFrames  # noqa: E402

BLOCK = 4 << 20


def blocks(path: Path):
    """The capture's frames as the ring would hand them: (buf, offsets, ts, incl, orig) per ~4 MB."""
    data = path.read_bytes()
    walker = RecordWalker("<", 1e-6, 262144)
    off, end = 24, len(data)
    while off < end - 64:
        stop = min(end, off + BLOCK)
        buf = data[off:stop] + bytes(64)
        rec, done = walker.starts(buf, 0, stop - off)
        if not len(rec):
            break
        sec, usec, incl, orig = _rows(buf, rec, 16).view("<u4").astype(np.int64).T
        yield buf, rec + 16, sec + usec * 1e-6, incl, orig
        off += done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--kind", default="typical", choices=("typical", "busy", "syn"))
    ap.add_argument("--per-vm-mb", type=float, default=8)
    ap.add_argument("--passes", type=int, default=3, help="passes over the capture (later ones: rings full)")
    args = ap.parse_args()
    pcap, inv = generate(args.kind, args.packets)
    with open(inv, encoding="utf-8") as fh:
        inventory = json.load(fh)
    macs = {
        bytes.fromhex(nic["mac"].replace(":", "")): vm["name"]
        for vm in inventory["vms"]
        for nic in vm.get("nics", [])
        if nic.get("mac")
    }
    recent = RecentFrames(per_vm_bytes=int(args.per_vm_mb * (1 << 20)))
    recent.set_macs(macs)
    captured = list(blocks(pcap))
    seconds = []  # per pass over the capture: the first fills the rings, later ones evict as they go
    for shift in range(args.passes):
        packets, spent = 0, 0.0
        for buf, frame, ts, incl, orig in captured:
            ts = ts + shift * 3600.0
            t = time.perf_counter()
            recent.add("bench0", buf, frame, ts, incl, orig)
            spent += time.perf_counter() - t
            packets += len(frame)
        seconds.append(spent)
    t = time.perf_counter()
    some_vm = sorted(set(macs.values()))[2]
    taken = recent.frames({some_vm})
    take = time.perf_counter() - t
    stats = recent.stats()
    bound = 2 * (recent.per_vm_bytes * stats["rings"] + recent.shared.limit)
    print(
        json.dumps(
            {
                "capture": pcap.name,
                "packets": packets,
                "add_seconds_per_million_packets_by_pass": [round(s * 1e6 / max(packets, 1), 3) for s in seconds],
                "frames_of_one_vm": len(taken),
                "frames_seconds": round(take, 3),
                "stats": stats,
                "bound_bytes": bound,
                "within_bound": stats["chunk_bytes"] + stats["frames"] * 48 <= bound,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
