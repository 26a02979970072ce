"""Response latency of `vmsentry watch --respond auto --quarantine nft` in the namespace lab
(tests/traffic_lab/lab.py): repeated forged-ARP attacks from vm1's port, each from a fresh source MAC (so
that each is a new incident: a detector keeps an incident open while its attacker goes on), crafted with
scapy and sent from a raw socket in vm1's namespace, one frame a millisecond for ``--burst`` seconds.

Per run:
  response  = the rule in force (the watcher's clock right after the nft transaction returned) minus the
              first attack frame's capture time stamp (the kernel's, in the watcher's ring): the watcher's own
              figure (audit entry ``response_seconds``), checked against the victim's side:
  delivered = attack frames vm2's own capture (tcpdump in vm2's namespace) received after the rule was in
              force (should be 0),
  dropped   = attack frames sent that vm2 never received (the attacker's next frames), beside the quarantine
              table's drop counter (one count per frame and output port: a frame flooded to 3 ports is 3),
then `vmsentry release vm1` and the next run. The median and p95 over ``--runs`` runs (target: median
<= 50 ms with nft). Needs root and the lab tools.

    sudo PYTHONPATH=src:tests python benchmarks/watch_latency.py --runs 20
    sudo PYTHONPATH=src:tests python benchmarks/bench_watch.py --part latency      (the same, from the suite)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from traffic_lab.lab import BRIDGE, Lab  # noqa: E402

INVENTORY = REPO / "tests" / "fixtures" / "traffic" / "lab-inventory.json"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}

# the attacker: reads one line per run (a source MAC), then sends forged replies "10.99.0.1 is-at MAC" to vm2
SENDER = r"""
import socket, sys, time
from scapy.all import ARP, Ether, raw
burst = float(sys.argv[1])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
print("ready", flush=True)
for line in sys.stdin:
    mac = line.strip()
    frame = raw(Ether(src=mac, dst="52:54:00:99:00:12") / ARP(op=2, hwsrc=mac, psrc="10.99.0.1",
                                                             hwdst="52:54:00:99:00:12", pdst="10.99.0.12"))
    end = time.time() + burst
    sent = 0
    while time.time() < end:
        s.send(frame)
        sent += 1
        time.sleep(0.001)
    print(sent, flush=True)
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _actions(audit: Path) -> list[dict]:
    """The watcher's successful quarantines, from its signed audit log (committed within 0.1 s of the action)."""
    import sqlite3

    path = audit / "audit.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT entry FROM entries WHERE kind = 'quarantine' ORDER BY seq").fetchall()
    except sqlite3.Error:
        return []
    finally:
        db.close()
    records = [json.loads(bytes(entry))["record"] for (entry,) in rows if entry is not None]
    return [r for r in records if r.get("ok")]


def _drops(lab: Lab) -> int:
    out = lab.sh(lab.bridge_ns, "nft -j list table bridge vmsentry_quarantine", check=False).stdout
    try:
        rules = json.loads(out)["nftables"]
    except (ValueError, KeyError):
        return 0
    total = 0
    for item in rules:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                total += expr["counter"].get("packets", 0)
    return total


def run(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="vmsentry-latency-"))
    config = tmp / "watch.yaml"
    config.write_text("max_per_minute: 1000\nttl: 0\n")
    results: list[dict] = []
    with Lab(f"vwl{os.getpid() % 10000}") as lab:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "vmsentry", "watch", "--config", str(config), "-i", BRIDGE]
            + ["--netns", lab.bridge_ns, "--inventory", str(INVENTORY), "--respond", "auto"]
            + ["--quarantine", "nft", "--audit", str(tmp / "audit"), "--format", "jsonl", "-o", str(tmp / "a.jsonl")],
            env=ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        first = [watcher.stderr.readline() for _ in range(2)]  # (the audit log's new key is said first)
        assert any("watching" in line for line in first), first
        victim = lab.spawn(
            "vm2",
            ["tcpdump", "-i", "eth0", "-n", "--immediate-mode", "-U", "-s", "64", "-w", str(tmp / "vm2.pcap"), "arp"],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "listening on" in victim.stderr.readline()
        sender = subprocess.Popen(
            ["ip", "netns", "exec", lab.ns("vm1"), sys.executable, "-c", SENDER, str(args.burst)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lab.procs.append(sender)
        assert sender.stdout.readline().strip() == "ready"
        try:
            for n in range(args.runs):
                mac = f"02:00:00:5a:{n // 256:02x}:{n % 256:02x}"
                before = len(_actions(tmp / "audit"))
                sender.stdin.write(mac + "\n")
                sender.stdin.flush()
                sent = int(sender.stdout.readline())
                deadline = time.time() + 5
                while len(_actions(tmp / "audit")) == before and time.time() < deadline:
                    time.sleep(0.05)
                acts = _actions(tmp / "audit")
                if len(acts) == before:
                    results.append({"run": n, "mac": mac, "sent": sent, "response": None})
                    continue
                act = acts[-1]
                results.append(
                    {
                        "run": n,
                        "mac": mac,
                        "sent": sent,
                        "response": act["response_seconds"],
                        "in_force": act["in_force"],
                        "nft_drop_count": _drops(lab),
                    }
                )
                subprocess.run(
                    [sys.executable, "-m", "vmsentry", "release", "vm1", "--netns", lab.bridge_ns],
                    env=ENV,
                    capture_output=True,
                    timeout=30,
                )
                time.sleep(args.gap)
        finally:
            sender.stdin.close()
            lab.stop(sender)
            time.sleep(0.3)
            lab.stop(victim, signal.SIGINT)
            lab.stop(watcher)
        seen = subprocess.run(
            ["tcpdump", "-r", str(tmp / "vm2.pcap"), "-n", "-tt", "-e"], capture_output=True, text=True
        ).stdout.splitlines()
    for r in results:
        if r["response"] is None:
            continue
        times = [float(line.split()[0]) for line in seen if r["mac"] in line]
        r["delivered_before"] = sum(t <= r["in_force"] for t in times)
        r["delivered_after"] = sum(t > r["in_force"] for t in times)
        r["dropped"] = r["sent"] - len(times)
    answered = [r for r in results if r["response"] is not None]
    latencies = [r["response"] for r in answered]
    summary = {
        "runs": len(results),
        "quarantined": len(answered),
        "median_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 1) if latencies else None,
        "max_ms": round(max(latencies) * 1000, 1) if latencies else None,
        "target_median_ms": 50,
        "attack_frames_sent": sum(r["sent"] for r in results),
        "delivered_after_response": sum(r.get("delivered_after", 0) for r in answered),
        "dropped_after_response": sum(r.get("dropped", 0) for r in answered),
        "nft_drop_count": sum(r.get("nft_drop_count", 0) for r in answered),
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()[0]},
    }
    if args.verbose:
        summary["per_run"] = results
    return summary


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=20, help="attacks (default 20)")
    p.add_argument("--burst", type=float, default=0.3, help="seconds each attack goes on (a frame a millisecond)")
    p.add_argument("--gap", type=float, default=1.5, help="seconds between runs (the watcher reads holds each 1 s)")
    p.add_argument("--verbose", action="store_true", help="every run's figures too")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_options(p)
    print(json.dumps(run(p.parse_args(argv)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
