"""Runs the Kitsune-py anchor (Mirsky et al., NDSS 2018; ../shared/anchors/kitsune-py, MIT) on one capture and
writes one score per packet. Executed by benchmarks/kitsune_anchor.py with the python of Kitsune's own
virtualenv (numpy<2, scipy, cython, scapy), never imported by vmsentry: Kitsune's code stays where it is and is
only put on sys.path.

    python kitsune_driver.py --anchor DIR --pcap COMBINED.pcap --train-packets N --fm-grace F --ad-grace A
        --max-ae 10 --shift S --out packets.npz --speed speed.json

The capture holds the training part (its first N packets) then the evaluation part, whose timestamps were moved
S whole seconds later (so that Kitsune's damped statistics never see time run backwards); the timestamps written
out are the original ones. Kitsune parses the capture with tshark into COMBINED.pcap.tsv; the driver reads the
timestamp and source MAC of each packet from the very row Kitsune's feature extractor has just consumed, by
wrapping its csv reader, so that the two can never drift apart.

Output (np.savez): ts float64, mac uint64 (the source MAC as a big-endian 48-bit integer, 0 when the frame has
none), rmse float32 (0 during the grace periods, as Kitsune returns it), in capture order.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--anchor", required=True, help="the kitsune-py folder")
    parser.add_argument("--pcap", required=True)
    parser.add_argument("--train-packets", type=int, required=True)
    parser.add_argument("--fm-grace", type=int, required=True)
    parser.add_argument("--ad-grace", type=int, required=True)
    parser.add_argument("--max-ae", type=int, default=10)
    parser.add_argument("--shift", type=int, default=0, help="whole seconds added to the evaluation part")
    parser.add_argument("--out", required=True)
    parser.add_argument("--speed", required=True)
    parser.add_argument("--progress", type=int, default=10000, help="report every N packets on stderr")
    return parser.parse_args(argv)


def mac_value(text: str) -> int:
    return int(text.replace(":", ""), 16) if text else 0


def original_time(text: str, shift: int) -> float:
    # Subtract the whole-second shift on the integer part of tshark's decimal text, so that the evaluation
    # part's timestamps (and so its 1-second windows) come back exactly as they were in its own capture.
    seconds, _, fraction = text.partition(".")
    return float(f"{int(seconds) - shift}.{fraction or '0'}")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, os.path.abspath(args.anchor))
    import numpy as np  # the venv's numpy<2, which Kitsune needs
    from Kitsune import Kitsune

    wall0, cpu0, child0 = time.perf_counter(), time.process_time(), children_cpu()
    kitsune = Kitsune(args.pcap, np.inf, args.max_ae, args.fm_grace, args.ad_grace)
    extractor = kitsune.FE
    if extractor.parse_type != "tsv":
        print(f"{args.pcap}: Kitsune did not parse the capture with tshark", file=sys.stderr)
        return 2
    parse_wall = time.perf_counter() - wall0
    parse_cpu = time.process_time() - cpu0 + children_cpu() - child0

    last_row: list = [None]

    def recording(reader):
        for row in reader:
            last_row[0] = row
            yield row

    extractor.tsvin = recording(extractor.tsvin)

    stamps, macs, scores = [], [], []
    train_packets, shift = args.train_packets, args.shift
    wall1, cpu1 = time.perf_counter(), time.process_time()
    while True:
        score = kitsune.proc_next_packet()
        if score == -1:
            break
        row = last_row[0]
        index = len(scores)
        stamps.append(original_time(row[0], shift if index >= train_packets else 0))
        macs.append(mac_value(row[2]))
        scores.append(score)
        if args.progress and (index + 1) % args.progress == 0:
            rate = (index + 1) / (time.perf_counter() - wall1)
            print(f"kitsune: {index + 1} packets, {rate:.0f} packets/s", file=sys.stderr, flush=True)
    loop_wall = time.perf_counter() - wall1
    loop_cpu = time.process_time() - cpu1

    count = len(scores)
    np.savez(
        args.out,
        ts=np.asarray(stamps, dtype=np.float64),
        mac=np.asarray(macs, dtype=np.uint64),
        rmse=np.asarray(scores, dtype=np.float32),
    )
    speed = {
        "packets": count,
        "packets_in_capture": int(extractor.limit),
        "train_packets": train_packets,
        "fm_grace": args.fm_grace,
        "ad_grace": args.ad_grace,
        "max_ae": args.max_ae,
        "autoencoders": len(kitsune.AnomDetector.ensembleLayer),
        "features": int(kitsune.FE.get_num_features()),
        "tshark_parse_wall_s": parse_wall,
        "tshark_parse_cpu_s": parse_cpu,
        "loop_wall_s": loop_wall,
        "loop_cpu_s": loop_cpu,
        "packets_per_s_wall": count / loop_wall if loop_wall > 0 else None,
        "packets_per_s_cpu": count / loop_cpu if loop_cpu > 0 else None,
        "packets_per_s_wall_with_parse": count / (loop_wall + parse_wall) if count else None,
    }
    with open(args.speed, "w", encoding="utf-8") as handle:
        json.dump(speed, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
