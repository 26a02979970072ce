"""Labelled captures for the behaviour baseline (issue 14), made with real tools in network namespaces
(tests/traffic_lab/behaviour/; docs/behaviour.md, "Labelled captures: how they are made").

    sudo python benchmarks/make_labelled_captures.py --split train|calibration|evaluation --out DIR
         [--quick] [--seed N] [--vms N] [--minutes M] [--kinds scan,arp_spoof,...]

writes DIR/<split>.pcap (tcpdump -s 256 on the lab bridge), DIR/<split>.truth.json (the VMs with their
roles and the attacks: kind, attacker, victims, start, end, the exact command) and DIR/<split>.inventory.json
(for `vmsentry detect --inventory` and the model), then prints a JSON summary (frames, span, samples =
distinct (VM, second) pairs with at least one frame, incidents per kind, anything that went wrong).

train is benign only; calibration and evaluation hold every attack kind, with other seeds, attacker VMs
and tool options. Defaults: full train 80 VMs x 40 min (>= 100,000 samples), calibration and
evaluation 80 VMs x 12 min with 25 attacks each; --quick: 10 VMs x 1.2 min, one attack of each kind.
Exit 0 when written, 1 when written with problems (an attack that failed, an incident outside the
capture), 3 on a usage error or when the lab could not be built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "src")]

from traffic_lab.behaviour.attacks import KINDS  # noqa: E402
from traffic_lab.behaviour.generate import Settings, generate, missing_tools  # noqa: E402

SEEDS = {"train": 101, "calibration": 202, "evaluation": 303}
FULL_MINUTES = {"train": 40.0, "calibration": 12.0, "evaluation": 12.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True, choices=tuple(SEEDS))
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--quick", action="store_true", help="about 75 s, 10 VMs, one attack of each kind")
    parser.add_argument("--seed", type=int, help="default: one per split")
    parser.add_argument("--vms", type=int, help="default 80 (10 with --quick); the same count gives the same VMs")
    parser.add_argument("--minutes", type=float, help="benign run length (default 35 for train, 12 otherwise)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="attack kinds to run (comma-separated)")
    parser.add_argument("--prefix", help="namespace name prefix (default bl<pid>)")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    if os.geteuid() != 0:
        print("make_labelled_captures: needs root (network namespaces)", file=sys.stderr)
        return 3
    if missing := missing_tools():
        print(f"make_labelled_captures: missing tools: {', '.join(missing)} (scripts/setup.sh)", file=sys.stderr)
        return 3
    minutes = args.minutes or (1.2 if args.quick else FULL_MINUTES[args.split])
    vms = args.vms or (10 if args.quick else 80)
    if minutes <= 0 or not 4 <= vms <= 200:
        parser.error("--minutes must be > 0 and --vms 4..200")
    settings = Settings(args.split, args.out, args.seed if args.seed is not None else SEEDS[args.split], vms, minutes,
                        args.quick, kinds, args.prefix)  # fmt: skip
    try:
        summary = generate(settings)
    except (RuntimeError, OSError) as exc:
        print(f"make_labelled_captures: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(summary, indent=1))
    return 1 if summary["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
