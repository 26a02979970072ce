"""Every capture in ../shared/pcaps and ../shared/pcaps/lab: each attack found with the right attacker and
type, nothing raised on the benign ones, with and without an inventory (tests/fixtures/traffic/captures.json
says what is expected and why). Suricata's and Zeek's expected outputs are checked where they apply."""

from __future__ import annotations

import json

import pytest

from vmsentry.model.traffic import Arp, Dhcp, RouterAdvert

from traffic_helpers import FIXTURES, detect, events, found, inventory_from_roles, load_inventory

CASES = json.loads((FIXTURES / "captures.json").read_text())["captures"]


def _pcap(shared_dir, name):
    path = shared_dir / "pcaps" / name
    assert path.is_file(), f"missing capture {path}"
    return path


def _check(alerts, expected, name):
    got = found(alerts)
    missing = [tuple(e) for e in expected if tuple(e) not in got]
    assert not missing, f"{name}: missed {missing}; found {sorted(got)}"
    assert len(alerts) == len(expected), f"{name}: extra alerts: {[(a['type'], a['summary']) for a in alerts]}"


def test_every_shared_capture_is_covered(shared_dir):
    on_disk = {p.name for p in (shared_dir / "pcaps").glob("*.pcap")} | {
        f"lab/{p.name}" for p in (shared_dir / "pcaps" / "lab").glob("*.pcap")
    }
    assert on_disk == {c["file"] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_capture_without_inventory(shared_dir, case):
    alerts, stats = detect(_pcap(shared_dir, case["file"]))
    _check(alerts, case["plain"], case["file"])
    assert stats["packets"] > 0
    assert not [k for k in stats["problems"] if k.startswith(("corrupt-record", "truncated-record"))]
    for a in alerts:  # learned, not known: the confidence says so
        assert 0 < a["confidence"] <= 1 and a["summary"] and a["count"] >= 1


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_capture_with_inventory(shared_dir, case, tmp_path):
    if "inventory_files" in case:
        inv = load_inventory(
            [
                shared_dir / f[len("shared:") :] if f.startswith("shared:") else FIXTURES / f
                for f in case["inventory_files"]
            ]
        )
    else:
        inv = inventory_from_roles(case["roles"], tmp_path)
    alerts, _ = detect(_pcap(shared_dir, case["file"]), inventory=inv)
    _check(alerts, case["with_roles"], case["file"])


def test_arpspoof_names_liar_and_victims(shared_dir):
    inv = load_inventory([FIXTURES / "lab-inventory.json"])
    alerts, _ = detect(_pcap(shared_dir, "lab/arpspoof-vm1-vs-vm2.pcap"), inventory=inv)
    spoof = next(a for a in alerts if a["type"] == "arp_spoof")
    assert spoof["attacker"] == {"ip": "10.99.0.11", "mac": "52:54:00:99:00:11", "vm": "vm1"}
    victims = {(v["ip"], v.get("vm"), v.get("host"), bool(v.get("poisoned"))) for v in spoof["victims"]}
    assert ("10.99.0.1", None, "hv-lab", False) in victims  # impersonated: the host
    assert ("10.99.0.12", "vm2", None, True) in victims  # poisoned: vm2's cache
    assert spoof["severity"] == "critical" and spoof["confidence"] >= 0.95
    # 4 forged replies + 5 "restore" replies sent from vm1's Ethernet address
    assert spoof["count"] == 9
    assert spoof["evidence"]["reasons"] == {"contradicts_inventory": 4, "eth_arp_mismatch": 5}
    assert 11.9 < spoof["last_seen"] - spoof["first_seen"] < 12.1


def test_arpspoof_without_inventory_is_learned_and_says_so(shared_dir):
    alerts, _ = detect(_pcap(shared_dir, "lab/arpspoof-vm1-vs-vm2.pcap"))
    (spoof,) = alerts
    assert spoof["attacker"]["mac"] == "52:54:00:99:00:11" and spoof["attacker"]["ip"] == "10.99.0.11"
    assert spoof["confidence"] < 0.97  # no inventory: not the inventory's certainty
    assert "binding_change" in spoof["evidence"]["reasons"]


def test_nmap_scan_counts_and_span(shared_dir):
    alerts, _ = detect(_pcap(shared_dir, "lab/nmap-sS-vm1-vs-hostns.pcap"))
    (scan,) = alerts
    assert scan["count"] == 1025 and scan["evidence"]["distinct_ports"] == 1025
    assert scan["evidence"]["open_ports"] == [22, 8080]
    assert scan["victims"][0]["ip"] == "10.99.0.1"
    assert scan["last_seen"] - scan["first_seen"] < 0.2  # nmap -T4 took 0.12 s


def test_host_sweep_matches_manifest(shared_dir):
    alerts, _ = detect(_pcap(shared_dir, "nmap_host_discovery_zeek.pcap"))
    (sweep,) = alerts
    assert sweep["attacker"] == {"ip": "192.168.1.71", "mac": "c4:2c:03:3b:6c:aa", "vm": None}
    assert sweep["evidence"]["methods"]["arp"] == 503
    assert sweep["evidence"]["distinct_hosts"] >= 245


# --- Suricata's and Zeek's expected outputs (../shared/pcaps/expected) ----------------------------------
def test_suricata_decode_arp_2_expects_four_arp_records(shared_dir):
    evs, _ = events(_pcap(shared_dir, "arp_unicast_request_suricata.pcap"))
    arps = [e for e in evs if isinstance(e, Arp)]
    assert len(arps) == 4  # test.yaml: count 4, event_type arp
    fifth, sixth = arps[2], arps[3]  # pcap_cnt 5 and 6
    assert (fifth.op, fifth.sha.hex(":"), fifth.spa, fifth.tha, fifth.tpa) == (
        1,
        "00:1d:09:f0:92:ab",
        bytes([10, 10, 10, 1]),
        b"\0" * 6,
        bytes([10, 10, 10, 2]),
    )
    assert (sixth.op, sixth.sha.hex(":"), sixth.tha.hex(":")) == (2, "00:1a:6b:6c:0c:cc", "00:1d:09:f0:92:ab")


def test_suricata_dhcp_request_flood_expects_ten_thousand_dhcp_records(shared_dir):
    evs, _ = events(_pcap(shared_dir, "dhcp_request_flood_suricata.pcap"))
    assert sum(isinstance(e, Dhcp) for e in evs) == 10000
    alerts, _ = detect(_pcap(shared_dir, "dhcp_request_flood_suricata.pcap"))
    assert alerts[0]["count"] == 10000


def test_suricata_kill_router_expects_four_lifetime_zero_ras(shared_dir):
    evs, _ = events(_pcap(shared_dir, "ipv6_rogue_ra_kill_router6.pcap"))
    ras = [e for e in evs if isinstance(e, RouterAdvert)]
    assert sum(ra.lifetime == 0 for ra in ras) == 4  # test.yaml: 4 alerts, sid 1
    (alert,) = detect(_pcap(shared_dir, "ipv6_rogue_ra_kill_router6.pcap"))[0]
    assert alert["count"] == 4 and alert["evidence"]["reasons"]["kill_router"] == 4
    assert alert["victims"][0]["mac"] == "64:00:6a:5b:8e:b3"  # the router it spoke for


def test_zeek_bad_arp_baseline(shared_dir):
    """Zeek's bad_arp explanations for arp-leak.pcap, counted as problems with the same words."""
    baseline = (shared_dir / "pcaps" / "expected" / "arp_corrupt_headers_zeek" / "baseline.stdout").read_text()
    expected = {}
    for line in baseline.splitlines():
        if line.startswith("BAD"):
            why = line.split(", ", 5)[5]
            expected[why] = expected.get(why, 0) + 1
    _, stats = detect(_pcap(shared_dir, "arp_corrupt_headers_zeek.pcap"))
    assert {k: v for k, v in stats["problems"].items() if k.startswith("corrupt-arp")} == expected


def test_zeek_rfb_baseline_connection_is_the_mgmt_alert(shared_dir, tmp_path):
    """The connection in Zeek's rfb.log baseline is the one mgmt_access reports."""
    rfb = (shared_dir / "pcaps" / "expected" / "vnc_scanner_zeek" / "rfb.log").read_text().splitlines()
    fields = next(line for line in rfb if line.startswith("#fields")).split("\t")[1:]
    row = dict(zip(fields, next(line for line in rfb if not line.startswith("#")).split("\t")))
    inv = inventory_from_roles({"vms": {"scanner-vm": row["id.orig_h"]}, "host": row["id.resp_h"]}, tmp_path)
    (alert,) = detect(_pcap(shared_dir, "vnc_scanner_zeek.pcap"), inventory=inv)[0]
    assert alert["attacker"]["ip"] == row["id.orig_h"] and alert["victims"][0]["ip"] == row["id.resp_h"]
    assert alert["ports"] == [int(row["id.resp_p"])]
