"""Each detector on crafted traffic (scapy builds the packets; the real decoder and detectors read them):
what raises, what does not, who is named, how incidents are grouped and suppressed, and that state stays
bounded under floods."""

from __future__ import annotations

import os
import random

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptPrefixInfo, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vmsentry.analyse.detectors import Engine, Truth
from vmsentry.analyse.detectors.tunables import TunableError, with_overrides
from vmsentry.model.traffic import Frame, Packet

from traffic_helpers import LAB, T0, detect, lab_inventory, write_pcap

HOST_IP, HOST_MAC = LAB["host"]
VM1_IP, VM1_MAC = LAB["vm1"]
VM2_IP, VM2_MAC = LAB["vm2"]
VM3_IP, VM3_MAC = LAB["vm3"]
BCAST = "ff:ff:ff:ff:ff:ff"


def forged_reply(ts_offset=0.0):
    arp = ARP(op=2, hwsrc=VM1_MAC, psrc=HOST_IP, hwdst=VM2_MAC, pdst=VM2_IP)
    return ts_offset, Ether(src=VM1_MAC, dst=VM2_MAC) / arp


def dhcp_offer(server_ip, server_mac, client_mac, offered, router, xid=7):
    return (
        Ether(src=server_mac, dst=BCAST)
        / IP(src=server_ip, dst="255.255.255.255")
        / UDP(sport=67, dport=68)
        / BOOTP(op=2, xid=xid, yiaddr=offered, chaddr=bytes.fromhex(client_mac.replace(":", "")) + b"\0" * 10)
        / DHCP(
            options=[
                ("message-type", "offer"),
                ("server_id", server_ip),
                ("router", router),
                ("name_server", router),
                "end",
            ]
        )
    )


def syn(src, smac, dst, dmac, dport, sport=40000):
    return Ether(src=smac, dst=dmac) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S")


def handshake(src, smac, dst, dmac, dport, sport=41000, data=b"hello"):
    return [
        Ether(src=smac, dst=dmac) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S", seq=1),
        Ether(src=dmac, dst=smac) / IP(src=dst, dst=src) / TCP(sport=dport, dport=sport, flags="SA", seq=9, ack=2),
        Ether(src=smac, dst=dmac) / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="A", seq=2, ack=10),
        Ether(src=smac, dst=dmac)
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags="PA", seq=2, ack=10)
        / data,
    ]


def types(alerts):
    return sorted(a["type"] for a in alerts)


# --- arp_spoof ------------------------------------------------------------------------------------------
def test_solicited_arp_and_unicast_refresh_are_quiet(tmp_path):
    pkts = [
        Ether(src=VM2_MAC, dst=BCAST) / ARP(op=1, hwsrc=VM2_MAC, psrc=VM2_IP, pdst=HOST_IP),
        Ether(src=HOST_MAC, dst=VM2_MAC) / ARP(op=2, hwsrc=HOST_MAC, psrc=HOST_IP, hwdst=VM2_MAC, pdst=VM2_IP),
        Ether(src=HOST_MAC, dst=VM2_MAC) / ARP(op=1, hwsrc=HOST_MAC, psrc=HOST_IP, pdst=VM2_IP),  # unicast refresh
        Ether(src=VM2_MAC, dst=HOST_MAC) / ARP(op=2, hwsrc=VM2_MAC, psrc=VM2_IP, hwdst=HOST_MAC, pdst=HOST_IP),
    ]
    path = write_pcap(tmp_path / "arp.pcap", pkts)
    assert detect(path)[0] == [] and detect(path, inventory=lab_inventory())[0] == []


def test_ethernet_arp_mismatch_names_the_frame_sender(tmp_path):
    pkt = Ether(src=VM3_MAC, dst=VM2_MAC) / ARP(op=2, hwsrc=HOST_MAC, psrc=HOST_IP, hwdst=VM2_MAC, pdst=VM2_IP)
    (alert,) = detect(write_pcap(tmp_path / "m.pcap", [pkt]))[0]
    assert alert["type"] == "arp_spoof" and alert["attacker"]["mac"] == VM3_MAC
    assert alert["evidence"]["reasons"] == {"eth_arp_mismatch": 1}


def test_spoof_inside_vlan_tag_is_found(tmp_path):
    pkt = (
        Ether(src=VM1_MAC, dst=VM2_MAC)
        / Dot1Q(vlan=42)
        / ARP(op=2, hwsrc=VM1_MAC, psrc=HOST_IP, hwdst=VM2_MAC, pdst=VM2_IP)
    )
    alerts, stats = detect(write_pcap(tmp_path / "v.pcap", [pkt]), inventory=lab_inventory())
    assert [(a["type"], a["attacker"]["vm"]) for a in alerts] == [("arp_spoof", "vm1")]
    assert stats["problems"]["vlan-tagged"] == 1


def test_gratuitous_flood(tmp_path):
    garps = [
        (i * 0.05, Ether(src=VM3_MAC, dst=BCAST) / ARP(op=2, hwsrc=VM3_MAC, psrc=VM3_IP, hwdst=BCAST, pdst=VM3_IP))
        for i in range(40)
    ]
    (alert,) = detect(write_pcap(tmp_path / "g.pcap", garps), inventory=lab_inventory())[0]
    assert alert["type"] == "arp_spoof" and alert["attacker"]["vm"] == "vm3"
    assert "gratuitous_flood" in alert["evidence"]["reasons"] and alert["severity"] == "medium"


def test_one_alert_per_incident_and_repeats_after_the_suppress_interval(tmp_path):
    burst = [forged_reply(i * 2.0) for i in range(5)]
    later = [forged_reply(1000 + i * 2.0) for i in range(3)]  # quiet for > 300 s
    alerts = detect(write_pcap(tmp_path / "s.pcap", burst + later), inventory=lab_inventory())[0]
    assert [a["count"] for a in sorted(alerts, key=lambda a: a["first_seen"])] == [5, 3]
    tun = with_overrides(["arp_spoof.suppress=2000"])
    (alert,) = detect(tmp_path / "s.pcap", inventory=lab_inventory(), tunables=tun)[0]
    assert alert["count"] == 8 and alert["last_seen"] - alert["first_seen"] == pytest.approx(1004, abs=0.01)


# --- rogue DHCP -----------------------------------------------------------------------------------------
def test_rogue_dhcp_with_inventory(tmp_path):
    pkts = [
        dhcp_offer(HOST_IP, HOST_MAC, VM3_MAC, VM3_IP, HOST_IP),
        dhcp_offer("10.99.0.66", "52:54:00:66:66:66", VM3_MAC, "10.99.0.200", "10.99.0.66"),
    ]
    (alert,) = detect(write_pcap(tmp_path / "d.pcap", pkts), inventory=lab_inventory())[0]
    assert alert["type"] == "rogue_dhcp" and alert["attacker"]["ip"] == "10.99.0.66"
    assert alert["severity"] == "critical"  # it hands itself out as router and DNS
    assert alert["victims"][0]["mac"] == VM3_MAC and alert["evidence"]["offered_routers"] == ["10.99.0.66"]


def test_two_dhcp_servers_without_inventory(tmp_path):
    pkts = [
        dhcp_offer(HOST_IP, HOST_MAC, VM3_MAC, VM3_IP, HOST_IP),
        dhcp_offer("10.99.0.66", "52:54:00:66:66:66", VM2_MAC, "10.99.0.201", "10.99.0.66"),
    ]
    (alert,) = detect(write_pcap(tmp_path / "d.pcap", pkts))[0]
    assert alert["attacker"]["mac"] == "52:54:00:66:66:66" and alert["confidence"] == 0.5
    assert len(alert["evidence"]["servers_seen"]) == 2


# --- rogue RA -------------------------------------------------------------------------------------------
def ra(mac, src, lifetime=1800):
    return (
        Ether(src=mac, dst="33:33:00:00:00:01")
        / IPv6(src=src, dst="ff02::1")
        / ICMPv6ND_RA(routerlifetime=lifetime)
        / ICMPv6NDOptSrcLLAddr(lladdr=mac)
        / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64)
    )


def test_rogue_ra_from_a_vm(tmp_path):
    pkts = [ra(HOST_MAC, "fe80::5054:ff:fe99:1"), ra(VM2_MAC, "fe80::5054:ff:fe99:12", lifetime=0)]
    path = write_pcap(tmp_path / "ra.pcap", pkts)
    (alert,) = detect(path, inventory=lab_inventory(ipv6=True))[0]
    assert alert["type"] == "rogue_ra" and alert["attacker"]["vm"] == "vm2"
    assert alert["evidence"]["reasons"] == {"not_a_router": 1, "kill_router": 1}
    learned = detect(path)[0]  # no inventory: the second router is suspect
    assert [(a["type"], a["attacker"]["mac"], a["confidence"]) for a in learned] == [("rogue_ra", VM2_MAC, 0.6)]


# --- scans ----------------------------------------------------------------------------------------------
def test_slow_scan_over_a_long_window_and_a_negative_control(tmp_path):
    slow = [(i * 80.0, syn(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 1000 + i)) for i in range(42)]  # 42 ports in 55 min
    (alert,) = detect(write_pcap(tmp_path / "slow.pcap", slow), inventory=lab_inventory())[0]
    assert alert["type"] == "port_scan" and alert["attacker"]["vm"] == "vm1" and alert["confidence"] == 0.7
    assert alert["evidence"]["window_seconds"] == 3600
    sparse = [(i * 400.0, syn(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 1000 + i)) for i in range(12)]  # 12 ports, 80 min
    assert detect(write_pcap(tmp_path / "sparse.pcap", sparse))[0] == []


def test_busy_client_with_answered_connections_is_not_a_scan(tmp_path):
    pkts = []
    for port in range(8000, 8030):  # 30 services, all answer
        pkts += handshake(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, port, sport=port + 20000)
    assert detect(write_pcap(tmp_path / "busy.pcap", pkts))[0] == []


def test_ping_sweep(tmp_path):
    pkts = [Ether(src=VM1_MAC, dst=HOST_MAC) / IP(src=VM1_IP, dst=f"10.99.1.{i}") / ICMP() for i in range(1, 40)]
    (alert,) = detect(write_pcap(tmp_path / "ping.pcap", pkts))[0]
    assert alert["type"] == "host_sweep" and alert["evidence"]["methods"] == {"icmp": 39}


def test_scan_of_every_port_keeps_state_bounded():
    engine = Engine(Truth(), with_overrides(["scan.max_targets=1000"]))
    src, dst, mac = bytes([10, 99, 0, 11]), bytes([10, 99, 0, 12]), bytes.fromhex("525400990011")
    engine.feed([Packet(T0 + p * 1e-5, mac, None, src, dst, 6, 40000, p, 0x02, 60, b"") for p in range(1, 65536)])
    (alert,) = engine.finish()
    assert alert.count == 65535 and alert.evidence["distinct_ports"] == 65535
    scanner = engine.detectors[4].scanners[src]
    assert scanner.size <= 1000 and scanner.size + scanner.lost[dst] == 65535 + 1  # ports, and the host itself


# --- MAC flood ------------------------------------------------------------------------------------------
def test_mac_flood_from_pcap(tmp_path):
    rnd = random.Random(5)
    pkts = [
        Ether(src="02:" + ":".join(f"{rnd.randrange(256):02x}" for _ in range(5)), dst=BCAST)
        / IP(src=VM3_IP, dst="10.99.0.250")
        / TCP(dport=80, sport=rnd.randrange(1024, 65535), flags="S")
        for _ in range(300)
    ]
    (alert,) = detect(write_pcap(tmp_path / "flood.pcap", pkts, gap=0.0005), inventory=lab_inventory())[0]
    assert alert["type"] == "mac_flood" and alert["attacker"]["vm"] == "vm3"  # one source IP behind it
    assert alert["evidence"]["new_macs"] >= 200


def test_mac_flood_of_a_million_addresses_is_bounded():
    engine = Engine(Truth(), with_overrides(["mac_flood.max_state=50000"]))
    rnd = os.urandom(6_000_000)
    for start in range(0, 1_000_000, 100_000):
        engine.feed(
            [Frame(T0 + i * 1e-6, rnd[i * 6 : i * 6 + 6], b"\xff" * 6, 0x88B5) for i in range(start, start + 100_000)]
        )
    (alert,) = engine.finish()
    flood = engine.detectors[1]
    assert len(flood.seen) <= 50000 and engine.evicted["mac_flood.macs"] >= 950_000
    assert alert.type == "mac_flood" and alert.evidence["new_macs"] >= 990_000


# --- access, DNS, IPv6 ----------------------------------------------------------------------------------
def test_vm_to_vm_and_vm_to_host_access(tmp_path):
    pkts = (
        handshake(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 22)
        + handshake(VM1_IP, VM1_MAC, HOST_IP, HOST_MAC, 16509)
        + handshake(HOST_IP, HOST_MAC, VM2_IP, VM2_MAC, 22, sport=42000)
        + handshake(VM3_IP, VM3_MAC, HOST_IP, HOST_MAC, 80, sport=43000)
    )  # host->VM, VM->host web: fine
    alerts = detect(write_pcap(tmp_path / "acc.pcap", pkts), inventory=lab_inventory())[0]
    got = {(a["type"], a["attacker"]["vm"], tuple(a["ports"]), a["severity"]) for a in alerts}
    assert got == {("mgmt_access", "vm1", (16509,), "critical"), ("lateral_movement", "vm1", (22,), "high")}


def test_syn_probe_to_a_mgmt_port_is_not_access(tmp_path):
    pkts = [
        syn(VM1_IP, VM1_MAC, HOST_IP, HOST_MAC, 22),
        Ether(src=HOST_MAC, dst=VM1_MAC) / IP(src=HOST_IP, dst=VM1_IP) / TCP(sport=22, dport=40000, flags="SA"),
        Ether(src=VM1_MAC, dst=HOST_MAC) / IP(src=VM1_IP, dst=HOST_IP) / TCP(sport=40000, dport=22, flags="R"),
    ]
    assert detect(write_pcap(tmp_path / "probe.pcap", pkts), inventory=lab_inventory())[0] == []


def test_dns_to_an_unsanctioned_resolver(tmp_path):
    def query(dst, name, sport):
        return (
            Ether(src=VM2_MAC, dst=HOST_MAC)
            / IP(src=VM2_IP, dst=dst)
            / UDP(sport=sport, dport=53)
            / DNS(rd=1, qd=DNSQR(qname=name))
        )

    pkts = [
        query(HOST_IP, "repo.example.org", 5001),
        query("8.8.8.8", "exfil.example.com", 5002),
        query("8.8.8.8", "more.example.com", 5003),
    ]
    path = write_pcap(tmp_path / "dns.pcap", pkts)
    (alert,) = detect(path, inventory=lab_inventory())[0]
    assert alert["type"] == "dns_unsanctioned" and alert["attacker"]["vm"] == "vm2" and alert["count"] == 2
    assert alert["severity"] == "high" and alert["evidence"]["names"] == ["exfil.example.com", "more.example.com"]
    assert detect(path)[0] == []  # no inventory: nothing sanctioned to compare


def test_ipv6_on_an_ipv4_only_segment(tmp_path):
    dad = IPv6(src="::", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::1")
    pkts = [
        Ether(src=VM3_MAC, dst="33:33:ff:00:00:01") / dad,
        Ether(src=VM2_MAC, dst=HOST_MAC) / IPv6(src="2001:db8::12", dst="2001:db8::1") / TCP(dport=443, flags="S"),
    ]
    alerts = detect(write_pcap(tmp_path / "v6.pcap", pkts), inventory=lab_inventory())[0]
    assert {(a["type"], a["attacker"]["vm"], a["severity"]) for a in alerts} == {
        ("ipv6_unexpected", "vm3", "low"),
        ("ipv6_unexpected", "vm2", "medium"),
    }
    assert detect(tmp_path / "v6.pcap", inventory=lab_inventory(ipv6=True))[0] == []


# --- tunables -------------------------------------------------------------------------------------------
def test_tunables_override_and_reject_unknown_names():
    tun = with_overrides(["scan.ports=5", "access.mgmt_ports=22,5900-5901", "access.signatures=off"])
    assert tun["scan"].ports == 5 and tun["access"].mgmt_ports == (22, 5900, 5901) and not tun["access"].signatures
    for bad in ("scan.nope=1", "nodetector.x=1", "scan.ports=many", "scan.ports"):
        with pytest.raises(TunableError):
            with_overrides([bad])
