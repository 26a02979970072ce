"""The behaviour baseline used live, in the namespace lab (tests/traffic_lab/lab.py): the VMs talk as usual
(HTTP, DNS, ping, every second), and

1. a calibration capture is taken on br-test with tcpdump while real `nmap -sS` scans run, its truth file
   written from the times the scans ran (gen_traffic.py's synthetic VMs have other MACs than the lab:
   52:54:00:99:00:0b.. for 10.99.0.11..);
2. `vmsentry baseline train -i br-test --duration S --inventory INV --calibrate CAL --truth CAL.truth.json`
   learns from the bridge while the benign traffic runs: the model says it came from the interface;
3. `vmsentry watch --model MODEL --respond auto --quarantine nft --evidence DIR` on the bridge while vm1
   scans vm3 with nmap: the model raises an `anomaly` alert about vm1 (explained, confidence >= 0.8), the
   rule detector a `port_scan`, both end in ONE incident, and the automatic response quarantines vm1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_watch_lab import Watch, pings

from traffic_lab.lab import BRIDGE, NODES, Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "tests" / "fixtures" / "traffic" / "lab-inventory.json"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
TRAIN_SECONDS = 60
ROLES = {"vm1": "desktop", "vm2": "web", "vm3": "desktop", "hv-lab": "host"}
NAMES = {"vm1": "vm1", "vm2": "vm2", "vm3": "vm3", "host": "hv-lab"}
# each VM's usual traffic, about once a second: web pages, name lookups, a ping
BENIGN = {
    "vm1": "curl -s -o /dev/null --max-time 1 http://10.99.0.12:8000/; "
    "dig +short +time=1 +tries=1 @10.99.0.1 www.lab.test >/dev/null; ping -c 1 -W 1 10.99.0.13 >/dev/null",
    "vm2": "curl -s -o /dev/null --max-time 1 http://10.99.0.1:8080/; "
    "dig +short +time=1 +tries=1 @10.99.0.1 www.lab.test >/dev/null",
    "vm3": "curl -s -o /dev/null --max-time 1 http://10.99.0.12:8000/; ping -c 1 -W 1 10.99.0.1 >/dev/null",
}


@pytest.fixture(scope="module")
def lab():
    missing = [t for t in ("nmap", "tcpdump", "nft", "curl", "dig") if not _which(t)] + Lab.missing_tools()
    if missing:
        pytest.fail(f"missing tools for the lab: {', '.join(missing)} (scripts/setup.sh installs them)")
    with Lab(f"vbl{os.getpid() % 10000}") as lab:
        lab.services()
        for node, work in BENIGN.items():
            lab.spawn(node, ["sh", "-c", f"while :; do {work}; sleep 0.7; done"])
        yield lab


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def vmsentry(*args: str, netns: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "vmsentry", *args]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=str(REPO), stdin=subprocess.DEVNULL
    )


def scan(lab: Lab, attacker: str, victim: str, ports: str = "1-3000", rate: int = 400) -> tuple[float, float]:
    """A real SYN scan (nmap -sS) of ``victim`` from ``attacker``: its start and end, wall-clock."""
    start = time.time()
    done = lab.sh(attacker, f"nmap -sS -Pn -n -p {ports} --max-rate {rate} {NODES[victim][0]}", check=False, timeout=60)
    end = time.time()
    assert done.returncode == 0, done.stdout + done.stderr
    return start, end


@pytest.fixture(scope="module")
def calibration(lab, tmp_path_factory) -> tuple[Path, Path]:
    """A labelled capture of the lab: benign traffic with three nmap -sS scans, and its truth file."""
    folder = tmp_path_factory.mktemp("calibration")
    pcap, truth = folder / "cal.pcap", folder / "cal.truth.json"
    argv = ["tcpdump", "-i", BRIDGE, "-n", "--immediate-mode", "-U", "-s", "256", "-w", str(pcap)]
    tcpdump = lab.spawn(lab.bridge_ns, argv, stderr=subprocess.PIPE, text=True)
    assert "listening on" in tcpdump.stderr.readline()
    incidents = []
    try:
        for attacker, victim in (("vm1", "vm3"), ("vm3", "vm2"), ("vm2", "vm1")):
            time.sleep(8)  # benign traffic between the scans
            start, end = scan(lab, attacker, victim)
            incidents.append(
                {
                    "kind": "scan",
                    "attacker": attacker,
                    "victims": [victim],
                    "start": start,
                    "end": end,
                    "tool": "nmap -sS",
                }
            )
        time.sleep(8)
    finally:
        time.sleep(0.3)
        lab.stop(tcpdump, signal.SIGINT)
    vms = [{"name": NAMES[n], "mac": mac, "ip": ip, "role": ROLES[NAMES[n]]} for n, (ip, mac) in NODES.items()]
    truth.write_text(json.dumps({"split": "calibration", "vms": vms, "incidents": incidents, "capture": pcap.name}))
    return pcap, truth


@pytest.fixture(scope="module")
def model(lab, calibration, tmp_path_factory) -> tuple[Path, dict]:
    """A model trained live on br-test (benign traffic only), calibrated on the lab capture."""
    cal, truth = calibration
    path = tmp_path_factory.mktemp("model") / "lab.npz"
    done = vmsentry(
        "baseline",
        "train",
        "-i",
        BRIDGE,
        "--duration",
        str(TRAIN_SECONDS),
        "--inventory",
        str(INVENTORY),
        "--calibrate",
        str(cal),
        "--truth",
        str(truth),
        "-o",
        str(path),
        "--format",
        "json",
        netns=lab.bridge_ns,
        timeout=TRAIN_SECONDS + 120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"learning from {BRIDGE}" in done.stderr
    return path, json.loads(done.stdout)


def test_baseline_trains_live_from_the_bridge(model, calibration):
    path, report = model
    shown = vmsentry("baseline", "show", str(path), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    header = json.loads(shown.stdout)
    (source,) = header["trained_on"]
    assert source["file"] == f"live:{BRIDGE}" and source["sha256"] == ""
    assert source["frames"] > 500, source
    assert TRAIN_SECONDS - 5 <= source["last"] - source["first"] <= TRAIN_SECONDS + 1, source
    assert source["first"] > os.path.getmtime(calibration[0])  # learned after the calibration capture was taken
    # every lab node was seen, by its inventory name, once a second or so
    seen = {e["name"]: e["samples"] for e in report["model"]["entities"]}
    assert set(seen) >= {"vm1", "vm2", "vm3", "hv-lab"}, seen
    assert all(seen[n] >= TRAIN_SECONDS * 0.7 for n in ("vm1", "vm2", "vm3", "hv-lab")), seen
    # calibrated on the scans: confidence is a probability, and this model can alarm
    assert report["calibrated"] and report["bh"]["can_alarm"], report["bh"]
    assert header["calibration"]["positives"] >= 3 and header["calibration"]["auc"] > 0.9, header["calibration"]


def test_watch_with_the_model_raises_an_explained_anomaly_joined_to_the_port_scan_incident(lab, model, tmp_path):
    path, _ = model
    watch = Watch(lab, tmp_path, "--model", str(path), "--respond", "auto", "--quarantine", "nft")
    time.sleep(15)  # benign traffic only: nothing to say
    assert not [a for a in watch.lines if a.get("event") == "raised"], watch.lines
    nmap = lab.spawn("vm1", ["nmap", "-sS", "-Pn", "-n", "-p", "1-3000", "--max-rate", "300", NODES["vm3"][0]])
    try:
        assert watch.wait(lambda: watch.raised("anomaly") and watch.raised("port_scan"), 20), watch.stderr()
        # the default automatic response quarantines on an anomaly at >= 0.8 (port_scan alone is not acted on)
        assert watch.wait(lambda: watch.said(r"quarantined vm1 \(nft.*unusual traffic"), 5), watch.stderr()
        assert not pings(lab, "vm1", "10.99.0.13", 2)  # held: the scan reaches nothing more
    finally:
        lab.stop(nmap, signal.SIGKILL)
    assert watch.stop() == 0
    assert "Traceback" not in watch.stderr()
    ((anomaly,), (rule,)) = watch.raised("anomaly"), watch.raised("port_scan")
    assert anomaly["attacker"]["vm"] == rule["attacker"]["vm"] == "vm1"
    assert anomaly["confidence"] >= 0.8, anomaly
    assert "vm3" in {v.get("vm") for v in anomaly["victims"]}, anomaly["victims"]
    features = anomaly["evidence"]["features"]
    assert features and all(f["text"] and f["feature"] for f in features), features
    assert any("SYN" in f["text"] or "port" in f["text"] for f in features), features
    shares = [f["value"] for f in features if f["feature"] in ("unanswered_syn_ratio", "top_peer_share")]
    assert all(0 <= share <= 1 for share in shares), features  # (stored as they are, not log1p-scaled)
    assert anomaly["evidence"]["model"].startswith("lab.npz sha256:")
    # one incident, both reasons
    listed = vmsentry("incidents", "list", "--evidence", str(watch.evidence), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    (incident,) = json.loads(listed.stdout)["incidents"]
    assert incident["vm"] == "vm1"
    shown = vmsentry("incidents", "show", incident["id"], "--evidence", str(watch.evidence), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {a["type"] for a in data["alerts"]} == {"anomaly", "port_scan"}, data["alerts"]
    assert data["manifest"]["response_seconds"] is not None
    done = vmsentry("release", "vm1", "--netns", lab.bridge_ns)
    assert done.returncode == 0, done.stdout + done.stderr
