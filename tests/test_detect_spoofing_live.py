"""Live: the spoofing and decoy attacks of tests/test_detect_spoofing.py run again with the real tools
(thc-ipv6 parasite6 and fake_advertise6, dsniff arpspoof, nmap -D) in a fresh namespace lab, recorded with
tcpdump and read back: the same alerts, naming the attacker VM (tests/traffic_lab/attacks.py)."""

from __future__ import annotations

import shutil

import pytest

from traffic_helpers import FIXTURES, detect, load_inventory
from traffic_lab.attacks import TOOLS, record

pytestmark = [pytest.mark.lab, pytest.mark.slow]


@pytest.fixture(autouse=True)
def tools():
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for the live lab: {', '.join(missing)} (scripts/setup.sh installs them)")


def _alerts(path, inventory):
    return detect(path, inventory=load_inventory([FIXTURES / inventory]))[0]


@pytest.mark.parametrize("name", ["parasite6-vm1.pcap", "fake-advertise6-vm1.pcap"])
def test_thc_ipv6_neighbour_spoofing_is_alerted(name, tmp_path):
    alerts = _alerts(record(name, tmp_path), "lab-inventory-ipv6.json")
    assert [(a["type"], a["attacker"]["vm"]) for a in alerts] == [("nd_spoof", "vm1")]
    (alert,) = alerts
    assert alert["severity"] == "critical" and alert["evidence"]["reasons"]["contradicts_inventory"] >= 1
    assert alert["evidence"]["impersonated"] == ["fe80::5054:ff:fe99:1"]


def test_benign_neighbour_discovery_is_quiet(tmp_path):
    path = record("benign-ipv6-nd.pcap", tmp_path)
    assert _alerts(path, "lab-inventory-ipv6.json") == []
    assert detect(path)[0] == []


def test_arpspoof_alerted_from_the_first_forged_reply(tmp_path):
    path = record("arpspoof-first-reply-vm1.pcap", tmp_path)
    (alert,) = detect(path)[0]
    assert alert["type"] == "arp_spoof" and alert["attacker"]["ip"] == "10.99.0.11"
    assert alert["evidence"]["reasons"].get("claims_other_ip", 0) >= 2
    (known,) = _alerts(path, "lab-inventory.json")
    assert known["attacker"]["vm"] == "vm1" and known["evidence"]["reasons"]["contradicts_inventory"] >= 2


def test_nmap_decoy_scan_names_the_real_scanner(tmp_path):
    alerts = _alerts(record("nmap-decoy-vm1.pcap", tmp_path), "lab-inventory.json")
    if not alerts:
        # Once, in a full CI run, the lab's tcpdump stopped writing 50 ms into the scan (11 ports
        # recorded, below the threshold): record again once. The detection itself is also checked on the
        # committed capture (test_detect_spoofing.py); a second empty recording still fails here.
        again = tmp_path / "again"
        again.mkdir()
        alerts = _alerts(record("nmap-decoy-vm1.pcap", again), "lab-inventory.json")
    (scan,) = alerts
    assert scan["type"] == "port_scan" and scan["attacker"]["vm"] == "vm1"
    assert scan["evidence"]["decoys"] == ["10.99.0.50", "10.99.0.51", "10.99.0.52"]
