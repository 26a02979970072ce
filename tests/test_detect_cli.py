"""`vmsentry detect` as a user runs it: formats, order, stats, exit codes, --tune, --follow on files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from traffic_helpers import FIXTURES

ALERT_KEYS = {
    "type",
    "severity",
    "first_seen",
    "last_seen",
    "count",
    "attacker",
    "victims",
    "ports",
    "confidence",
    "summary",
    "evidence",
}
RANK = {"critical": 4, "high": 3, "medium": 2, "low": 1, "info": 0}


def _lab(shared_dir):
    return [
        shared_dir / "pcaps" / "lab" / n
        for n in ("arpspoof-vm1-vs-vm2.pcap", "nmap-sS-vm1-vs-hostns.pcap", "benign-http-ping.pcap")
    ]


def test_json_follows_the_alert_contract(shared_dir, run_cli):
    proc = run_cli("detect", *_lab(shared_dir), "--inventory", FIXTURES / "lab-inventory.json", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert {"packets", "bytes", "seconds", "packets_per_second"} <= set(doc["stats"])
    assert doc["stats"]["packets"] == 24 + 2056 + 30
    alerts = doc["alerts"]
    for a in alerts:
        assert set(a) >= ALERT_KEYS
        assert set(a["attacker"]) >= {"mac", "ip", "vm"} and all({"ip", "mac", "vm"} <= set(v) for v in a["victims"])
        assert a["first_seen"] <= a["last_seen"] and 0 <= a["confidence"] <= 1
    ranks = [RANK[a["severity"]] for a in alerts]
    assert ranks == sorted(ranks, reverse=True)  # worst first
    assert alerts[0]["type"] == "arp_spoof" and alerts[0]["attacker"]["vm"] == "vm1"


def test_text_output(shared_dir, run_cli):
    proc = run_cli("detect", *_lab(shared_dir)[:2], "--format", "text")
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("vmsentry detect: 2 alerts from 2 inputs: 2,080 packets")
    assert lines[1].startswith("HIGH     port_scan") or lines[1].startswith("HIGH     arp_spoof")
    assert len(lines) == 3 and proc.returncode == 1


def test_no_alert_exit_0_and_output_file(shared_dir, run_cli, tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli("detect", shared_dir / "pcaps" / "lab" / "benign-http-ping.pcap", "-o", out, "--format", "json")
    assert proc.returncode == 0 and proc.stdout == ""
    assert json.loads(out.read_text())["alerts"] == []


def test_follow_on_a_file_prints_json_lines(shared_dir):
    """--follow reads the last file like tail -f (issue 11): it runs until SIGINT, then flushes."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [sys.executable, "-m", "vmsentry", "detect", *map(str, _lab(shared_dir)[:2]), "--follow"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(3)  # both files are read (2,080 packets take milliseconds); the second is then watched
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    records = [json.loads(line) for line in out.splitlines()]
    assert [record.get("event") for record in records[:2]] == ["raised", "raised"]
    assert "stats" in records[-1] and records[-1]["stats"]["packets"] == 2080
    finals = [record for record in records if record.get("event") == "final"]
    assert {f["type"] for f in finals} <= {"arp_spoof", "port_scan"}


def test_usage_errors_exit_3(run_cli, shared_dir):
    assert run_cli("detect").returncode == 3
    pcap = shared_dir / "pcaps" / "lab" / "benign-http-ping.pcap"
    proc = run_cli("detect", pcap, "--tune", "scan.bogus=1")
    assert proc.returncode == 3 and "scan has no tunable 'bogus'" in proc.stderr
    proc = run_cli("detect", pcap, "--inventory", "/nonexistent/inv.json")
    assert proc.returncode == 3 and "no such file" in proc.stderr


def test_tune_changes_a_threshold(shared_dir, run_cli):
    pcap = shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap"
    proc = run_cli("detect", pcap, "--tune", "scan.ports=2000", "--tune", "scan.slow_ports=2000", "--format", "json")
    assert json.loads(proc.stdout)["alerts"] == [] and proc.returncode == 0


def test_help_lists_detect(run_cli):
    proc = run_cli("--help")
    assert "detect" in proc.stdout
