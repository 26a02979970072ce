"""The labelled-capture generator (tests/traffic_lab/behaviour, benchmarks/make_labelled_captures.py) in
its quick mode: real servers and real attack tools in namespaces, a capture of the bridge, its truth file
and inventory. The proof that the labels line up with the traffic is vmsentry's own rule detectors: the
nmap scan and the arpspoof they find in the capture are the labelled ones, by the labelled VM, inside the
labelled times. Needs root (namespaces) and the tools of scripts/setup.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.model.behaviour import Entity, GroundTruth, Incident

pytestmark = [pytest.mark.lab, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
SLACK = 1.0  # seconds: an alert's first frame may be stamped a little before the clock read around the tool


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("labelled")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "make_labelled_captures.py"), "--split", "calibration",
         "--out", str(out), "--quick", "--vms", "6", "--minutes", "1", "--kinds", "scan,arp_spoof",
         "--prefix", f"blt{os.getpid() % 100000}"],
        capture_output=True, text=True, timeout=400, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return out, json.loads(proc.stdout)


def test_files_and_summary(made) -> None:
    out, summary = made
    for name in ("calibration.pcap", "calibration.truth.json", "calibration.inventory.json"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.glob(".*")), "a temporary file was left behind"
    assert summary["problems"] == []
    assert summary["incidents_per_kind"]["scan"] == 1 and summary["incidents_per_kind"]["arp_spoof"] == 1
    assert summary["samples"] > 100 and summary["frames"] > 1000
    assert "0 packets dropped by kernel" in summary["tcpdump"]


def _detect(out: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "vmsentry", "detect", str(out / "calibration.pcap"), "--inventory",
         str(out / "calibration.inventory.json"), "--format", "json"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def test_truth_matches_the_capture(made) -> None:
    out, _ = made
    doc = json.loads((out / "calibration.truth.json").read_text())
    truth = GroundTruth(
        vms=[Entity(v["name"], v["mac"], v["ip"], v["role"]) for v in doc["vms"]],
        incidents=[Incident(**{**i, "victims": tuple(i["victims"])}) for i in doc["incidents"]],
        split=doc["split"],
        capture=doc["capture"],
    )
    assert truth.split == "calibration" and truth.capture == "calibration.pcap"
    assert {vm.role for vm in truth.vms} == {"web", "database", "build", "desktop"}
    stats = _detect(out)["stats"]  # the span as vmsentry's own reader sees the capture
    assert stats["inputs"][0]["problems"] == 0 or set(stats["problems"]) <= {"snaplen-cut", "truncated-tcp"}
    names = {vm.name for vm in truth.vms}
    for incident in truth.incidents:
        assert incident.attacker in names
        assert set(incident.victims) <= names  # scans and ARP spoofing aim at VMs
        assert stats["first_seen"] <= incident.start < incident.end <= stats["last_seen"], incident
    inventory = json.loads((out / "calibration.inventory.json").read_text())
    assert {(v["name"], v["role"], v["nics"][0]["mac"]) for v in inventory["vms"]} == {
        (vm.name, vm.role, vm.mac) for vm in truth.vms
    }


def test_rule_detectors_find_the_labelled_attacks(made) -> None:
    out, _ = made
    doc = json.loads((out / "calibration.truth.json").read_text())
    alerts = _detect(out)["alerts"]
    for kind, alert_type in (("scan", "port_scan"), ("arp_spoof", "arp_spoof")):
        (incident,) = [i for i in doc["incidents"] if i["kind"] == kind]
        found = [a for a in alerts if a["type"] == alert_type and a["attacker"].get("vm") == incident["attacker"]]
        assert found, (kind, incident, [(a["type"], a["attacker"]) for a in alerts])
        alert = found[0]
        assert incident["start"] - SLACK <= alert["first_seen"] <= incident["end"] + SLACK, (alert, incident)
        assert alert["last_seen"] <= incident["end"] + SLACK, (alert, incident)
        victims = {v.get("vm") for v in alert["victims"]}
        assert victims & set(incident["victims"]), (alert["victims"], incident["victims"])
    # nothing else is blamed on a VM that did not attack
    attackers = {i["attacker"] for i in doc["incidents"]}
    blamed = {a["attacker"].get("vm") for a in alerts if a["type"] in ("port_scan", "arp_spoof")}
    assert blamed <= attackers, blamed
