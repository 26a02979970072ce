#!/usr/bin/env python3
"""What vmsentry, arpwatch and tshark each report on every shared capture (../shared/pcaps and pcaps/lab):
prints the Markdown table of docs/detection.md ("Comparison with arpwatch and tshark").

* vmsentry: `vmsentry detect FILE` without an inventory, and with the roles of tests/fixtures/traffic/captures.json.
* arpwatch 2.1a15: `unshare -n arpwatch -d -N -f EMPTY.dat -r ABS_FILE` (empty netns: no reverse-DNS stalls;
  absolute path: it chdirs first), its reports (mail subjects) and syslog-only messages, counted by kind.
* tshark: `tshark -n -q -z expert -r FILE`, the warning and error groups it prints, counted by message.

    python benchmarks/compare_tools.py [--shared ../shared] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def vmsentry(path: Path, roles: dict | None, shared: Path, case: dict) -> list[str]:
    from traffic_helpers import FIXTURES, detect, inventory_from_roles, load_inventory

    inv = None
    if roles is not None:
        if "inventory_files" in case:
            inv = load_inventory(
                [
                    shared / f[len("shared:") :] if f.startswith("shared:") else FIXTURES / f
                    for f in case["inventory_files"]
                ]
            )
        else:
            with tempfile.TemporaryDirectory() as tmp:
                inv = inventory_from_roles(case["roles"], Path(tmp))
    alerts, _ = detect(path, inventory=inv)
    return [
        f"{a['type']} {a['attacker'].get('vm') or a['attacker'].get('ip') or a['attacker'].get('mac') or '?'}"
        f" ({a['count']})"
        for a in alerts
    ]


def arpwatch(path: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        dat = Path(tmp) / "arp.dat"
        dat.write_text("")
        proc = subprocess.run(
            ["unshare", "-n", "arpwatch", "-d", "-N", "-f", str(dat), "-r", str(path.resolve())],
            capture_output=True,
            text=True,
            timeout=120,
        )
    kinds = collections.Counter(m.group(1) for m in re.finditer(r"Subject: (.+?) \(", proc.stdout))
    kinds.update(m.group(1) for m in re.finditer(r"arpwatch: ([a-z ]+?) [0-9]", proc.stderr))
    return [f"{k} ({n})" for k, n in sorted(kinds.items())]


def tshark(path: Path) -> list[str]:
    proc = subprocess.run(
        ["tshark", "-n", "-q", "-z", "expert", "-r", str(path)], capture_output=True, text=True, timeout=300
    )
    found, group = collections.Counter(), None
    for line in proc.stdout.splitlines():
        head = re.match(r"^(Errors|Warns) \((\d+)\)", line)
        if head:
            group = head.group(1)
            continue
        if re.match(r"^(Notes|Chats|Comments) \(", line):
            group = None
        row = re.match(r"^\s+(\d+)\s+\S+\s+(.+?)\s*$", line)
        if group and row and not line.lstrip().startswith("Frequency"):
            found[row.group(2)] += int(row.group(1))
    return [f"{msg} ({n})" for msg, n in found.most_common(3)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(REPO.parent / "shared"))
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    shared = Path(args.shared)
    cases = json.loads((REPO / "tests" / "fixtures" / "traffic" / "captures.json").read_text())["captures"]
    rows = []
    print(
        "| capture | what it holds | vmsentry (no inventory) | vmsentry (with inventory) | arpwatch | "
        "tshark expert (warnings/errors) |"
    )
    print("|---|---|---|---|---|---|")
    for case in cases:
        path = shared / "pcaps" / case["file"]
        row = {
            "file": case["file"],
            "why": case["why"],
            "plain": vmsentry(path, None, shared, case),
            "roles": vmsentry(path, {}, shared, case),
            "arpwatch": arpwatch(path),
            "tshark": tshark(path),
        }
        rows.append(row)
        cell = lambda items: "; ".join(items) or "nothing"
        print(
            f"| {case['file']} | {case['why']} | {cell(row['plain'])} | {cell(row['roles'])} | "
            f"{cell(row['arpwatch'])} | {cell(row['tshark'])} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
