#!/usr/bin/env python3
"""Benchmarks of the behaviour baseline (issue 14), one part at a time:

  features   frames/s of feature extraction alone (from FrameColumns already decoded, decode excluded) and
             of decode + features, on one core, on a 1,000,000-frame typical capture and on a MAC flood
             (gen_traffic.py --mode macflood: every frame a new source MAC; shows the memory stays bounded)

Captures are written into benchmarks/.data/ once (gen_traffic.py). Other parts (models, Kitsune-py beside
vmsentry, evaluation) are added to PARTS.

    python benchmarks/bench_baseline.py --part features [--packets 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
sys.path.insert(0, str(REPO / "src"))


def capture(kind: str, packets: int) -> Path:
    """gen_traffic.py's capture of ``kind`` (mixed typical mix, or macflood), written once."""
    path = DATA / f"baseline-{kind}-{packets}.pcap"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        mode = ["--mode", "macflood"] if kind == "macflood" else ["--mix", "typical"]
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(path), "--packets", str(packets), *mode],
            check=True,
        )
    return path


def part_features(args) -> dict:
    from vmsentry.analyse.behaviour.features import FeatureExtractor
    from vmsentry.collect.traffic import TrafficStream, open_inputs
    from vmsentry.model.traffic import FrameColumns

    def decode(path: Path) -> list:
        buffers = []
        for batch in TrafficStream(frame_columns=True).batches(open_inputs(str(path))):
            buffers += [e.frames for e in batch if type(e) is FrameColumns]
        return buffers

    results = {}
    for kind in ("typical", "macflood"):
        path = capture(kind, args.packets)
        alone, both, plain = [], [], []
        for _ in range(args.runs):
            started = time.process_time()
            for _batch in TrafficStream().batches(open_inputs(str(path))):
                pass
            plain.append(time.process_time() - started)
            started = time.process_time()
            buffers = decode(path)
            decoded = time.process_time() - started
            frames = sum(len(b) for b in buffers)
            extractor = FeatureExtractor()
            started = time.process_time()
            samples = sum(len(extractor.feed(b)) for b in buffers) + len(extractor.finish())
            alone.append(time.process_time() - started)
            both.append(decoded + alone[-1])
        row = {
            "capture": path.name,
            "frames": frames,
            "samples": samples,
            "entities": len(extractor.entities),
            "features_alone_fps_best": round(frames / min(alone)),
            "decode_and_features_fps_best": round(frames / min(both)),
            "decode_without_columns_fps_best": round(frames / min(plain)),
            "entity_table": {
                "learned": extractor.table.learned,
                "refused": extractor.table.refused,
                "candidates_forgotten": extractor.table.forgotten,
            },
            "memory_rotations": {"peers": extractor.peers_seen.rotations, "macs": extractor.macs_seen.rotations},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        results[kind] = row
        print(
            f"{kind:9s} {frames:,} frames, {samples:,} samples, {row['entities']} entities: features alone "
            f"{row['features_alone_fps_best']:,} frames/s; decode+features {row['decode_and_features_fps_best']:,}"
            f" frames/s (decode without columns {row['decode_without_columns_fps_best']:,}/s); peak RSS "
            f"{row['peak_rss_mb']} MB",
            flush=True,
        )
    return results


PARTS = {"features": part_features}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=tuple(PARTS), required=True)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = PARTS[args.part](args)
    out = DATA / f"bench_baseline-{args.part}.json"
    DATA.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
