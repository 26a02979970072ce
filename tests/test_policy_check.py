"""`vmsentry policy check`: flows the policy forbids, as policy_violation alerts (CONTRACTS.md Alert), from
the real lab captures in ../shared/pcaps/lab (made with arpspoof, nmap and real clients in the topology of
lab-scripts/topo.sh) and from a capture written here with scapy for the roles/jump host/time window cases.
Traffic is read by the project's readers (vmsentry.collect.traffic)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from scapy.all import IP, TCP, Ether, wrpcap

from vmsentry.act.policy.resolve import resolve
from vmsentry.act.policy.schema import parse_policy
from vmsentry.analyse.detectors.policy_violation import port_text
from vmsentry.analyse.policy_decision import Evaluator, Flow
from vmsentry.model import Inventory

FIX = Path(__file__).parent / "fixtures" / "policy"
NOTES_POL, NOTES_INV = FIX / "notes-lab-policy.yaml", FIX / "notes-lab-inventory.json"
LAB_POL, LAB_INV = FIX / "lab-policy.yaml", FIX / "lab-inventory.json"
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
    # issue 12 "Alerts for other tools": every alert has a stable id, a signature per reason, ATT&CK ids
    "id",
    "signature_id",
    "attack_ids",
}


def _check(run_cli, policy, inv, *pcaps):
    p = run_cli("policy", "check", policy, *pcaps, "--inventory", inv, "--format", "json")
    assert p.returncode in (0, 1), p.stderr
    out = json.loads(p.stdout)
    for a in out["alerts"]:
        assert set(a) == ALERT_KEYS and a["type"] == "policy_violation"
    assert {"packets", "bytes", "seconds", "packets_per_second"} <= set(out["stats"])
    return p.returncode, out


def test_nmap_scan_of_the_host_is_one_violation_with_every_port(run_cli, shared_dir):
    rc, out = _check(run_cli, NOTES_POL, NOTES_INV, shared_dir / "pcaps/lab/nmap-sS-vm1-vs-hostns.pcap")
    assert rc == 1
    assert out["stats"]["packets"] == 2056
    [a] = [a for a in out["alerts"] if a["evidence"]["proto"] == "tcp"]
    assert a["count"] == 1025 and len(a["ports"]) == 1025 and a["ports"][-1] == 8080
    assert a["attacker"] == {"mac": "52:54:00:99:00:11", "ip": "10.99.0.11", "vm": "vm1"}
    assert a["victims"] == [{"ip": "10.99.0.1", "mac": "52:54:00:99:00:01", "vm": None}]
    assert a["severity"] == "high" and a["evidence"]["rule"] == "defaults.vm_to_host: deny"
    assert a["evidence"]["policy_line"] == 4
    assert "tcp/1-1024,8080" in a["summary"]
    # vm2 also sent one IPv6 packet: IPv6 is not enabled for it, so the bridge table drops it (low)
    [v6] = [a for a in out["alerts"] if a["evidence"]["kind"] == "ipv6"]
    assert v6["attacker"]["vm"] == "vm2" and v6["severity"] == "low"


def test_arpspoof_capture_shows_forged_arp_and_the_mitm_forwarding(run_cli, shared_dir):
    rc, out = _check(run_cli, NOTES_POL, NOTES_INV, shared_dir / "pcaps/lab/arpspoof-vm1-vs-vm2.pcap")
    assert rc == 1
    spoof = [a for a in out["alerts"] if a["evidence"]["kind"] == "spoof"]
    by_why = {a["evidence"]["rule"]: a for a in spoof}
    claims = by_why[
        "ARP spoofing: VM vm1 (MAC 52:54:00:99:00:11) claims 10.99.0.1, which is not its address (10.99.0.11)"
    ]
    assert claims["count"] == 4  # the 4 forged replies (README of the capture)
    restore = by_why["ARP spoofing: VM vm1 (MAC 52:54:00:99:00:11) sends ARP as 52:54:00:99:00:01 for 10.99.0.1"]
    assert restore["count"] == 5  # the 5 "restore" replies sent from vm1's Ethernet address
    # vm1 forwards vm2's pings (ip_forward=1): IP packets with vm2's source from vm1's port
    fwd = [a for a in spoof if "sends from 10.99.0.12" in a["summary"]]
    assert fwd and all(a["attacker"]["vm"] == "vm1" for a in fwd)


def test_benign_capture_only_the_ssh_to_the_host(run_cli, shared_dir):
    rc, out = _check(run_cli, NOTES_POL, NOTES_INV, shared_dir / "pcaps/lab/benign-http-ping.pcap")
    assert rc == 1
    assert [(a["attacker"]["vm"], a["victims"][0]["ip"], a["ports"]) for a in out["alerts"]] == [
        ("vm1", "10.99.0.1", [22])
    ]
    assert out["stats"]["flows_allowed"] >= 2  # vm1 -> vm2 icmp and tcp/8000 are allowed


def test_same_capture_with_a_permissive_policy_is_clean(run_cli, shared_dir, tmp_path):
    pol = tmp_path / "open.yaml"
    pol.write_text("version: 1\ndefaults: {vm_to_host: allow, vm_to_vm: allow, anti_spoofing: true}\n")
    rc, out = _check(run_cli, pol, NOTES_INV, shared_dir / "pcaps/lab/benign-http-ping.pcap")
    assert rc == 0 and out["alerts"] == []


def test_truncated_and_non_pcap_input(run_cli, shared_dir, tmp_path):
    good = (shared_dir / "pcaps/lab/nmap-sS-vm1-vs-hostns.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good[:5010])
    p = run_cli("policy", "check", NOTES_POL, cut, "--inventory", NOTES_INV, "--format", "json")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"truncated-record: {cut}" in p.stderr
    assert json.loads(p.stdout)["alerts"]  # what could be read is still judged
    junk = tmp_path / "junk.pcap"
    junk.write_text("not a capture\n")
    p = run_cli("policy", "check", NOTES_POL, junk, "--inventory", NOTES_INV)
    assert p.returncode == 2 and "not a pcap, pcapng" in p.stderr and "Traceback" not in p.stderr
    p = run_cli("policy", "check", NOTES_POL, "--inventory", NOTES_INV)
    assert p.returncode == 3


# ------------------------------------------------------- roles, jump host, time window (capture written here)
def _frame(src_mac, dst_mac, src, dst, dport, sport=40000, flags="S"):
    return Ether(src=src_mac, dst=dst_mac) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags)


HV_MAC = "52:54:00:99:00:01"


def test_roles_jump_host_and_time_window_from_a_capture(run_cli, tmp_path):
    # 2026-11-30 is a Monday; 03:00 UTC = 11:00 Shanghai (inside 08:00-20:00), 13:00 UTC = 21:00 (outside)
    inside = datetime(2026, 11, 30, 3, 0, tzinfo=UTC).timestamp()
    outside = datetime(2026, 11, 30, 13, 0, tzinfo=UTC).timestamp()
    frames = [
        (inside, _frame(HV_MAC, "52:54:00:99:00:12", "10.77.0.30", "10.99.0.12", 22)),  # developer in window: ok
        (outside, _frame(HV_MAC, "52:54:00:99:00:12", "10.77.0.30", "10.99.0.12", 22)),  # developer outside: no
        (inside, _frame(HV_MAC, "52:54:00:99:00:11", "10.77.0.70", "10.99.0.11", 80)),  # tester: ok
        (inside, _frame(HV_MAC, "52:54:00:99:00:11", "10.77.0.30", "10.99.0.11", 80)),  # not a tester: no
        (inside, _frame(HV_MAC, "52:54:00:99:00:14", "10.77.0.5", "10.99.0.14", 22)),  # admin -> jump: ok
        (inside, _frame(HV_MAC, "52:54:00:99:00:11", "10.77.0.5", "10.99.0.11", 22)),  # admin direct: no
        (inside, _frame("52:54:00:99:00:14", "52:54:00:99:00:11", "10.99.0.14", "10.99.0.11", 22)),  # jump -> vm: ok
        (inside, _frame("52:54:00:99:00:14", HV_MAC, "10.99.0.14", "10.99.0.1", 22)),  # jump -> host: ok
        (inside, _frame("52:54:00:99:00:11", HV_MAC, "10.99.0.11", "10.99.0.1", 22)),  # vm -> host ssh: no
        (inside, _frame("52:54:00:99:00:11", "52:54:00:99:00:12", "10.99.0.11", "10.99.0.12", 8080)),  # web->app ok
        (inside, _frame("52:54:00:99:00:11", "52:54:00:99:00:12", "10.99.0.11", "10.99.0.12", 22)),  # no
        (inside, _frame("52:54:00:99:00:12", "52:54:00:99:00:13", "10.99.0.12", "10.99.0.13", 22)),  # same zone ok
        (inside, _frame("52:54:00:99:00:11", "52:54:00:99:00:12", "10.99.0.99", "10.99.0.12", 8080)),  # spoofed src
        (
            inside,
            _frame("52:54:00:99:00:12", "52:54:00:99:00:11", "10.99.0.12", "10.99.0.11", 40000, 8080, "SA"),
        ),  # a reply: no flow
    ]
    pcap = tmp_path / "roles.pcap"
    packets = []
    for ts, pkt in frames:
        pkt.time = ts
        packets.append(pkt)
    wrpcap(str(pcap), packets)
    rc, out = _check(run_cli, LAB_POL, LAB_INV, pcap)
    assert rc == 1
    got = sorted(
        (a["attacker"]["ip"], a["victims"][0]["ip"], a["ports"][0] if a["ports"] else None) for a in out["alerts"]
    )
    assert got == sorted(
        [
            ("10.77.0.30", "10.99.0.12", 22),
            ("10.77.0.30", "10.99.0.11", 80),
            ("10.77.0.5", "10.99.0.11", 22),
            ("10.99.0.11", "10.99.0.1", 22),
            ("10.99.0.11", "10.99.0.12", 22),
            ("10.99.0.99", "10.99.0.12", 8080),
        ]
    )
    assert out["stats"]["flows_judged"] == 13 and out["stats"]["flows_allowed"] == 7


def test_evaluator_quarantine_and_forensics():
    inv = Inventory.from_dict(json.loads(LAB_INV.read_text()))
    pol = parse_policy(LAB_POL.read_text().replace("quarantine: []", "quarantine: [vm5]"), "q.yaml")
    ev = Evaluator(resolve(pol, inv))
    t = 0.0
    assert ev.decide(Flow(t, "52:54:00:99:00:15", "10.99.0.15", "10.99.0.1", "tcp", 9999)).action == "accept"
    assert ev.decide(Flow(t, "52:54:00:99:00:15", "10.99.0.15", "10.99.0.1", "tcp", 22)).action == "drop"
    d = ev.decide(Flow(t, "52:54:00:99:00:12", "10.99.0.12", "10.99.0.15", "tcp", 5432))
    assert d.action == "drop" and d.kind == "quarantine"


def test_port_text():
    assert port_text([22]) == "22"
    assert port_text([1, 2, 3, 5, 8080]) == "1-3,5,8080"
    assert port_text(list(range(1, 40, 2)), limit=3) == "1,3,5,... (20 ports)"
