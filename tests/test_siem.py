"""Alerts for other tools (CONTRACTS.md "Alerts for other tools"): stable ids, one signature per detector
reason with its ATT&CK techniques, Community ID v1 against the spec's published vectors, Suricata eve and
ECS lines from `detect`, read back by the project's own eve reader, and -o with --follow."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from vmsentry.model.signatures import SIGNATURES, UNKNOWN, alert_id, reason, signature
from vmsentry.report.alerts import AlertWriter
from vmsentry.report.community_id import community_id
from vmsentry.report.output import OutputError
from vmsentry.report.siem import ecs_record, eve_record, eve_time

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
# Suricata's etc/schema.json: "timestamp" pattern; ATT&CK ids: technique or sub-technique
EVE_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+[+\-]\d+$")
ATTACK_ID = re.compile(r"^T\d{4}(\.\d{3})?$")
# the eve alert event as Suricata's eve docs and etc/schema.json describe it (the fields vmsentry writes)
EVE_ALERT = {
    "type": "object",
    "required": ["timestamp", "event_type", "alert", "host", "vmsentry"],
    "properties": {
        "timestamp": {"type": "string", "pattern": EVE_TIMESTAMP.pattern},
        "event_type": {"const": "alert"},
        "in_iface": {"type": "string"},
        "src_ip": {"type": "string"},
        "src_port": {"type": "integer"},
        "dest_ip": {"type": "string"},
        "dest_port": {"type": "integer"},
        "proto": {"type": "string"},
        "community_id": {"type": "string", "pattern": "^1:[A-Za-z0-9+/]{27}=$"},
        "src_mac": {"type": "string"},
        "dest_mac": {"type": "string"},
        "ether": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"src_mac": {"type": "string"}, "dest_mac": {"type": "string"}},
        },
        "host": {"type": "string"},
        "alert": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action", "gid", "signature_id", "rev", "signature", "category", "severity"],
            "properties": {
                "action": {"enum": ["allowed", "blocked"]},
                "gid": {"type": "integer"},
                "signature_id": {"type": "integer"},
                "rev": {"type": "integer"},
                "signature": {"type": "string"},
                "category": {"type": "string"},
                "severity": {"enum": [1, 2, 3]},
                "metadata": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                },
            },
        },
        "vmsentry": {"type": "object", "required": ["id", "type", "signature_id", "attack_ids"]},
    },
    "additionalProperties": False,
}


def _captures(shared_dir) -> list[Path]:
    return sorted((shared_dir / "pcaps").glob("*.pcap")) + sorted((shared_dir / "pcaps" / "lab").glob("*.pcap"))


def _detect(run_cli, *args):
    proc = run_cli("detect", *args)
    assert proc.returncode in (0, 1), proc.stderr
    return proc


@pytest.fixture(scope="module")
def alerts(shared_dir, run_cli):
    proc = run_cli("detect", *_captures(shared_dir), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)["alerts"]


# --- Community ID ----------------------------------------------------------------------------------------
def test_community_id_matches_every_published_baseline_vector():
    data = json.loads((FIXTURES / "community_id" / "baseline.json").read_text())
    assert "corelight/community-id-spec" in data["source"] and len(data["vectors"]) == 46
    for v in data["vectors"]:
        got = community_id(v["proto"], v["saddr"], v["daddr"], v["sport"], v["dport"], seed=v["seed"])
        assert got == v["communityid"], v


def test_community_id_is_the_same_both_ways_and_takes_names_and_bytes():
    one = community_id("TCP", "10.0.0.1", "10.0.0.2", 40000, 22)
    assert one == community_id(6, "10.0.0.2", "10.0.0.1", 22, 40000)
    assert one == community_id("tcp", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 40000, 22)


# --- ids and signatures ----------------------------------------------------------------------------------
def test_signature_table_is_consistent_and_covers_every_alert_type():
    ids = [s.id for s in SIGNATURES.values()]
    assert len(ids) == len(set(ids)) and UNKNOWN.id not in ids
    assert all(9_100_000 <= i < 9_200_000 for i in ids)  # outside Suricata local and ET ranges
    for sig in SIGNATURES.values():
        assert sig.name and sig.category and all(ATTACK_ID.match(t) for t in sig.attack_ids)
    types = {kind for kind, _ in SIGNATURES}
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` ", (REPO / "docs" / "detection.md").read_text(), re.M))
    assert documented <= types | {"n/a"}, documented - types
    assert {"config_drift", "anomaly", "arp_spoof", "rogue_dhcp", "mac_flood", "policy_violation"} <= types
    doc = (REPO / "docs" / "detection.md").read_text()
    for sig in SIGNATURES.values():
        assert str(sig.id) in doc, f"signature {sig.id} not in docs/detection.md"


def test_reasons_name_the_strongest_cause():
    spoof = {"type": "arp_spoof", "evidence": {"reasons": {"claims_other_ip": 3, "contradicts_inventory": 1}}}
    assert reason(spoof) == "contradicts_inventory" and signature(spoof).attack_ids == ("T1557.002",)
    guess = {"type": "mgmt_access", "evidence": {"service": "ssh", "brute_force": {"short_sessions": 12}}}
    assert signature(guess).attack_ids == ("T1110.001",)
    assert signature({"type": "mgmt_access", "evidence": {"service": "libvirtd-tls"}}).name.endswith("libvirtd")
    assert reason({"type": "config_drift", "evidence": {"change": "filter_removed"}}) == "filter_removed"
    assert reason({"type": "config_drift", "evidence": {"change": "something new"}}) == "other"
    assert signature({"type": "anomaly", "evidence": {}}).id == 9101401
    assert signature({"type": "no_such_type"}) is UNKNOWN


def test_alert_ids_are_stable_across_runs_formats_and_update_lines(shared_dir, run_cli, alerts):
    assert all(re.fullmatch(r"[0-9a-f]{16}", a["id"]) for a in alerts)
    assert len({a["id"] for a in alerts}) == len(alerts)
    again = json.loads(_detect(run_cli, *_captures(shared_dir), "--format", "json").stdout)["alerts"]
    assert [a["id"] for a in again] == [a["id"] for a in alerts]
    lines = _detect(run_cli, *_captures(shared_dir), "--format", "jsonl").stdout.splitlines()
    records = [json.loads(line) for line in lines if '"event"' in line]
    assert {r["id"] for r in records} == {a["id"] for a in alerts}  # raised and final lines share the id
    for a in alerts:
        sig = signature(a)
        assert a["signature_id"] == sig.id != UNKNOWN.id and a["attack_ids"] == list(sig.attack_ids)
    # the id does not depend on the sensor or the wall clock: only on the incident
    assert alert_id("arp_spoof", b"\x52\x54\x00\x00\x00\x01", 1.5) == alert_id("arp_spoof", b"RT\x00\x00\x00\x01", 1.5)


# --- eve -------------------------------------------------------------------------------------------------
def test_eve_lines_are_suricata_alert_events(shared_dir, run_cli, alerts, tmp_path):
    out = tmp_path / "eve.json"
    proc = _detect(run_cli, *_captures(shared_dir), "--format", "eve", "-o", out)
    assert proc.stdout == ""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(alerts)
    validator = jsonschema.Draft202012Validator(EVE_ALERT)
    for r in records:
        errors = [e.message for e in validator.iter_errors(r)]
        assert not errors, (errors, r)
        assert r["timestamp"] == eve_time(r["vmsentry"]["last_seen"]) and r["timestamp"].endswith("+0000")
        assert r["alert"]["signature_id"] == r["vmsentry"]["signature_id"]
        assert r["alert"]["severity"] == {"critical": 1, "high": 1, "medium": 2}.get(r["vmsentry"]["severity"], 3)
        assert r["alert"]["metadata"].get("mitre_technique_id", []) == r["vmsentry"]["attack_ids"]
    flows = [r for r in records if "community_id" in r]
    assert flows, "a connection alert (lateral movement over SMB/RPC) carries its flow's Community ID"
    for r in flows:
        assert r["community_id"] == community_id(r["proto"], r["src_ip"], r["dest_ip"], r["src_port"], r["dest_port"])


def test_eve_output_is_read_back_by_the_eve_reader(shared_dir, run_cli, tmp_path):
    """The project's own eve reader (collect/traffic/eve.py) takes the file as Suricata's: every line is a
    well-formed eve record with a timestamp it parses, recognised as an alert event (which it does not use)."""
    out = tmp_path / "eve.json"
    _detect(run_cli, *_captures(shared_dir), "--format", "eve", "-o", out)
    n = len(out.read_text().splitlines())
    proc = run_cli("detect", "--eve", out, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)["stats"]
    assert stats["packets"] == n and stats["problems"] == {"eve-type-not-used (alert)": n}


# --- ECS -------------------------------------------------------------------------------------------------
def test_ecs_documents_use_ecs_8_field_names(shared_dir, run_cli, alerts):
    lines = _detect(run_cli, *_captures(shared_dir), "--format", "ecs").stdout.splitlines()
    docs = [json.loads(line) for line in lines]
    assert {d["event"]["id"] for d in docs} == {a["id"] for a in alerts}
    for d in docs:
        assert d["ecs"]["version"].startswith("8.")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", d["@timestamp"])
        assert d["event"]["kind"] == "alert" and d["event"]["category"] == ["network", "intrusion_detection"]
        assert set(d["event"]["type"]) <= {"allowed", "denied", "info"}  # ECS: intrusion_detection's types
        assert d["rule"]["id"] == str(d["vmsentry"]["signature_id"]) and d["rule"]["ruleset"] == "vmsentry"
        assert d["observer"]["type"] == "ids" and d["observer"]["hostname"]
        ids = d["vmsentry"]["attack_ids"]
        if ids:
            assert d["threat"]["framework"] == "MITRE ATT&CK"
            assert set(d["threat"]["technique"]["id"]) == {t.split(".")[0] for t in ids}
        for side in ("source", "destination"):
            mac = d.get(side, {}).get("mac")
            assert mac is None or re.fullmatch(r"([0-9A-F]{2}-){5}[0-9A-F]{2}", mac)  # RFC 7042, as ECS says
        assert set(d) <= {"@timestamp", "ecs", "message", "event", "rule", "threat", "source", "destination"} | {
            "network",
            "observer",
            "vmsentry",
        }


def test_config_drift_and_ipv6_alerts_map_to_their_schema_places():
    drift = {
        "id": "0" * 16,
        "type": "config_drift",
        "severity": "high",
        "first_seen": 1.0,
        "last_seen": 1.0,
        "count": 1,
        "attacker": {"ip": None, "mac": "52:54:00:00:00:01", "vm": "vm1"},
        "victims": [],
        "ports": [],
        "confidence": 1.0,
        "summary": "vm1: filter clean-traffic removed from NIC 52:54:00:00:00:01",
        "evidence": {"change": "filter_removed"},
    }
    doc = ecs_record(drift, "host1", None)
    assert doc["event"]["category"] == ["configuration"] and doc["event"]["type"] == ["change"]
    assert doc["threat"]["technique"]["subtechnique"]["id"] == ["T1562.004"]
    eve = eve_record(drift, "host1", "virbr0", "raised")
    assert eve["alert"]["signature_id"] == 9101503 and eve["in_iface"] == "virbr0" and "src_ip" not in eve
    assert eve["vmsentry"]["event"] == "raised"


# --- -o with --follow, AlertWriter ----------------------------------------------------------------------
def test_follow_appends_each_line_to_the_output_file_as_it_comes(shared_dir, tmp_path):
    out = tmp_path / "alerts.eve.json"
    out.write_text('{"kept": "lines already there"}\n')
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    lab = shared_dir / "pcaps" / "lab"
    cmd = [sys.executable, "-m", "vmsentry", "detect", str(lab / "arpspoof-vm1-vs-vm2.pcap")]
    cmd += [str(lab / "nmap-sS-vm1-vs-hostns.pcap"), "--follow", "--format", "eve", "-o", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(out.read_text().splitlines()) < 3:
            time.sleep(0.1)
        # the alerts are in the file while vmsentry still runs (it follows the last capture)
        assert proc.poll() is None
        live = out.read_text().splitlines()
        assert live[0] == '{"kept": "lines already there"}' and len(live) >= 3
    finally:
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert stdout == b""
    records = [json.loads(line) for line in out.read_text().splitlines()[1:]]
    assert {r["event_type"] for r in records} == {"alert"}
    assert {r["vmsentry"]["type"] for r in records} == {"arp_spoof", "port_scan"}
    assert {r["vmsentry"]["event"] for r in records} <= {"raised", "final"}


def test_alert_writer_reopens_after_rotation_and_refuses_links(tmp_path, alerts):
    path = tmp_path / "alerts.jsonl"
    writer = AlertWriter("jsonl", str(path), "sensor1", "virbr0")
    writer.write(alerts[0])
    os.rename(path, tmp_path / "alerts.jsonl.1")  # logrotate moves it, then SIGHUP
    writer.reopen()
    writer.write(alerts[1], "final")
    writer.stats({"packets": 1})
    writer.close()
    assert json.loads((tmp_path / "alerts.jsonl.1").read_text())["id"] == alerts[0]["id"]
    rotated = [json.loads(line) for line in path.read_text().splitlines()]
    assert rotated[0]["id"] == alerts[1]["id"] and rotated[0]["event"] == "final" and "stats" in rotated[1]
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    with pytest.raises(OutputError, match="symbolic link"):
        AlertWriter("eve", str(tmp_path / "link"), "sensor1", None)
    assert not (tmp_path / "victim").exists()


def test_alert_writer_says_once_when_it_cannot_write_and_goes_on(alerts):
    problems: list[str] = []
    writer = AlertWriter("ecs", "/dev/full", "sensor1", None, on_problem=problems.append)
    for a in alerts[:3]:
        writer.write(a)
    writer.close()
    assert len(problems) == 1 and "/dev/full: cannot write" in problems[0]
    assert writer.dropped == 3 and writer.written == 0
