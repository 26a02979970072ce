"""IPv6 neighbour spoofing (nd_spoof), ARP spoofing raised at the first forged reply, decoy scans and the
IPv6 truth of a saved inventory, on captures made with the real tools in the namespace lab
(tests/fixtures/traffic/pcap, README.md there says how each was made; tests/traffic_lab/attacks.py made
them) and on crafted traffic for the cases the tools do not produce."""

from __future__ import annotations

import json

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6ND_RA, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from vmsentry.analyse.detectors import Truth
from vmsentry.collect.libvirt_network import read_network
from vmsentry.model import Inventory
from vmsentry.model.traffic import ND_OVERRIDE, ND_ROUTER, ND_SOLICITED, Arp, Neighbour

from traffic_helpers import FIXTURES, LAB, detect, events, found, load_inventory, write_pcap

PCAPS = FIXTURES / "pcap"
HOST_LL, VM1_LL, VM2_LL, VM3_LL = (
    "fe80::5054:ff:fe99:1",
    "fe80::5054:ff:fe99:11",
    "fe80::5054:ff:fe99:12",
    "fe80::5054:ff:fe99:13",
)
HOST_MAC, VM1_MAC, VM2_MAC, VM3_MAC = (LAB[n][1] for n in ("host", "vm1", "vm2", "vm3"))


def inv6():
    return load_inventory([FIXTURES / "lab-inventory-ipv6.json"])


# --- nd_spoof on the real tools' captures --------------------------------------------------------------
def test_decoder_passes_neighbour_messages_up():
    evs, stats = events(PCAPS / "parasite6-vm1.pcap")
    nd = [e for e in evs if isinstance(e, Neighbour)]
    assert [(e.kind, e.src_mac.hex(":")) for e in nd] == [
        (135, VM2_MAC),
        (136, HOST_MAC),
        (136, VM1_MAC),
        (136, VM1_MAC),
        (136, VM1_MAC),
    ]
    forged = nd[2]
    assert forged.flags == ND_ROUTER | ND_SOLICITED | ND_OVERRIDE and forged.lladdr.hex(":") == VM1_MAC
    assert forged.target == bytes.fromhex("fe80000000000000505400fffe990001")
    assert not stats.problems


def test_parasite6_names_vm1_from_its_first_forged_advertisement():
    alerts, _ = detect(PCAPS / "parasite6-vm1.pcap", inventory=inv6())
    (alert,) = alerts
    assert alert["type"] == "nd_spoof" and alert["severity"] == "critical" and alert["confidence"] == 0.97
    assert alert["attacker"] == {"ip": "10.99.0.11", "mac": VM1_MAC, "vm": "vm1"}
    assert alert["count"] == 3  # parasite6 answered vm2's solicitation three times
    assert alert["evidence"]["reasons"] == {"contradicts_inventory": 3, "router_flag": 3}
    assert alert["evidence"]["impersonated"] == [HOST_LL]
    victims = {(v["ip"], v.get("host"), v.get("vm"), bool(v.get("poisoned"))) for v in alert["victims"]}
    assert victims == {(HOST_LL, "hv-lab", None, False), (VM2_LL, None, "vm2", True)}
    # the host's own answer, in between, is not a claim against it
    assert alert["evidence"]["example"].startswith(f"advertisement: {HOST_LL} is-at {VM1_MAC}")


def test_parasite6_without_inventory_is_seen_from_the_eui64_address():
    (alert,) = detect(PCAPS / "parasite6-vm1.pcap")[0]
    assert alert["type"] == "nd_spoof" and alert["attacker"]["mac"] == VM1_MAC
    assert alert["evidence"]["reasons"] == {"eui64_owner": 3} and alert["confidence"] == 0.9
    assert alert["attacker"]["ip"] == VM1_LL  # its own address, seen after the alert (router solicitation)


def test_fake_advertise6_unsolicited_override_to_every_node():
    (alert,) = detect(PCAPS / "fake-advertise6-vm1.pcap", inventory=inv6())[0]
    assert alert["type"] == "nd_spoof" and alert["attacker"]["vm"] == "vm1"
    assert alert["count"] == alert["evidence"]["unsolicited"] == 3
    assert alert["evidence"]["reasons"] == {"contradicts_inventory": 3}
    assert {"ip": "ff02::1", "mac": None, "vm": None, "note": "every host on the link"} in alert["victims"]
    (plain,) = detect(PCAPS / "fake-advertise6-vm1.pcap")[0]
    assert plain["type"] == "nd_spoof" and plain["attacker"]["mac"] == VM1_MAC


def test_benign_neighbour_discovery_stays_quiet():
    """DAD, MLD, router solicitations and four address resolutions with pings: nothing, with the IPv6
    inventory and without one."""
    assert detect(PCAPS / "benign-ipv6-nd.pcap", inventory=inv6())[0] == []
    assert detect(PCAPS / "benign-ipv6-nd.pcap")[0] == []


# --- nd_spoof on crafted traffic ---------------------------------------------------------------------------
def na(src_mac, target, lladdr=None, dst=VM2_LL, flags="O", src_ip=None):
    pkt = Ether(src=src_mac, dst="33:33:00:00:00:01" if dst.startswith("ff") else VM2_MAC) / IPv6(
        src=src_ip or target, dst=dst, hlim=255
    )
    pkt /= ICMPv6ND_NA(tgt=target, R="R" in flags, S="S" in flags, O="O" in flags)
    if lladdr:
        pkt /= ICMPv6NDOptDstLLAddr(lladdr=lladdr)
    return pkt


def ns(src_mac, src_ip, target, lladdr=True):
    pkt = Ether(src=src_mac, dst="33:33:ff:00:00:01") / IPv6(src=src_ip, dst="ff02::1:ff00:1", hlim=255)
    pkt /= ICMPv6ND_NS(tgt=target)
    if lladdr:
        pkt /= ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
    return pkt


def test_dad_answered_for_an_address_not_its_own_is_a_dad_dos(tmp_path):
    """thc-ipv6 dos-new-ip6: every duplicate address detection probe is answered, so the new address is
    given up. The address (a privacy address) belongs to nobody yet."""
    new = "2001:db8::1234:5678"
    pcap = write_pcap(
        tmp_path / "dad.pcap", [ns(VM3_MAC, "::", new, lladdr=False), na(VM1_MAC, new, VM1_MAC, dst="ff02::1")]
    )
    (alert,) = detect(pcap, inventory=inv6())[0]
    assert alert["type"] == "nd_spoof" and alert["evidence"]["reasons"] == {"dad_dos": 1}
    assert alert["attacker"]["vm"] == "vm1" and alert["confidence"] == 0.8


def test_link_layer_option_naming_another_mac(tmp_path):
    pcap = write_pcap(tmp_path / "mismatch.pcap", [na(VM1_MAC, "2001:db8::99", VM3_MAC, dst="ff02::1")])
    (alert,) = detect(pcap)[0]
    assert alert["evidence"]["reasons"] == {"eth_nd_mismatch": 1} and alert["attacker"]["mac"] == VM1_MAC


def test_learned_binding_names_the_liar_not_the_newcomer(tmp_path):
    """No inventory, stable-privacy addresses (no EUI-64): vm2 owns 2001:db8::2 (it solicits from it and
    answers for it), vm1 then claims it by unsolicited overriding advertisements."""
    owned = "2001:db8::2"
    pcap = write_pcap(
        tmp_path / "binding.pcap",
        [
            ns(VM2_MAC, owned, "2001:db8::1"),
            (0.5, na(VM1_MAC, owned, VM1_MAC, dst="ff02::1")),
            (0.6, ns(VM1_MAC, "2001:db8::11", "2001:db8::3")),
            (1.0, na(VM1_MAC, owned, VM1_MAC, dst="ff02::1")),
        ],
    )
    (alert,) = detect(pcap)[0]
    assert alert["attacker"]["mac"] == VM1_MAC and alert["evidence"]["reasons"] == {"binding_change": 2}
    assert {v["mac"] for v in alert["victims"]} >= {VM2_MAC}


def test_proxy_advertisements_from_the_host_claim_nothing(tmp_path):
    """The host answers for a VM's address with the override flag clear (proxy NDP, RFC 4389)."""
    vm_addr = "2001:db8::12"
    inv = inv6()
    inv.vms[1].nics[0].ip = vm_addr
    pcap = write_pcap(tmp_path / "proxy.pcap", [na(HOST_MAC, vm_addr, HOST_MAC, flags="S", src_ip=HOST_LL)])
    assert detect(pcap, inventory=inv)[0] == []


def test_truncated_and_malformed_neighbour_messages_are_counted(tmp_path):
    short = Ether(src=VM1_MAC, dst=VM2_MAC) / IPv6(src=VM1_LL, dst=VM2_LL) / ICMPv6ND_NA(tgt=HOST_LL)
    raw = bytes(short)[:-8]
    zero_option = na(VM1_MAC, HOST_LL) / Raw(b"\x02\x00" + b"\0" * 6)  # an option of length 0
    pcap = write_pcap(tmp_path / "bad.pcap", [Ether(raw), zero_option])
    alerts, stats = detect(pcap)
    assert stats["problems"] == {"truncated-icmpv6-nd": 1, "malformed-icmpv6-option (length 0)": 1}
    assert alerts == []


# --- ARP: raised at the first forged reply --------------------------------------------------------------
def test_arpspoof_is_raised_at_the_first_forged_reply_without_inventory():
    """vm1 spoke from its own address (ARP request and ping to vm3), the host never before: the first forged
    reply for 10.99.0.1 is already spoofing; every forged reply and every "restore" reply is counted."""
    (alert,) = detect(PCAPS / "arpspoof-first-reply-vm1.pcap")[0]
    assert alert["type"] == "arp_spoof"
    assert alert["attacker"] == {"ip": "10.99.0.11", "mac": VM1_MAC, "vm": None}
    assert alert["evidence"]["reasons"] == {"claims_other_ip": 3, "eth_arp_mismatch": 5}
    assert alert["count"] == 8 and alert["evidence"]["unsolicited_replies"] == 8
    evs, _ = events(PCAPS / "arpspoof-first-reply-vm1.pcap")
    arps = [e for e in evs if isinstance(e, Arp) and e.op == 2 and e.spa == bytes([10, 99, 0, 1])]
    assert alert["first_seen"] == arps[0].ts and arps[0].sha.hex(":") == VM1_MAC  # the first forged reply
    host_speaks = next(e.ts for e in evs if isinstance(e, Arp) and e.sha.hex(":") == HOST_MAC)
    assert alert["first_seen"] < host_speaks


def test_arpspoof_first_reply_with_inventory_counts_every_forged_reply():
    (alert,) = detect(
        PCAPS / "arpspoof-first-reply-vm1.pcap", inventory=load_inventory([FIXTURES / "lab-inventory.json"])
    )[0]
    assert alert["attacker"] == {"ip": "10.99.0.11", "mac": VM1_MAC, "vm": "vm1"}
    assert alert["evidence"]["reasons"] == {"contradicts_inventory": 3, "eth_arp_mismatch": 5}
    assert alert["count"] == 8 and alert["severity"] == "critical"


# --- decoy scans ------------------------------------------------------------------------------------------
def test_decoy_scan_is_one_alert_naming_the_vm_with_the_decoys_listed():
    alerts, _ = detect(PCAPS / "nmap-decoy-vm1.pcap", inventory=load_inventory([FIXTURES / "lab-inventory.json"]))
    (scan,) = alerts
    assert scan["type"] == "port_scan" and scan["attacker"] == {"ip": "10.99.0.11", "mac": VM1_MAC, "vm": "vm1"}
    assert scan["evidence"]["decoys"] == ["10.99.0.50", "10.99.0.51", "10.99.0.52"]
    assert scan["victims"][0]["host"] == "hv-lab"
    assert "decoy sources: 10.99.0.50, 10.99.0.51, 10.99.0.52" in scan["summary"]
    # without an inventory nothing tells a decoy from a router's forwarded traffic: one alert per source
    plain, _ = detect(PCAPS / "nmap-decoy-vm1.pcap")
    assert found(plain) >= {("port_scan", ip) for ip in ("10.99.0.11", "10.99.0.50", "10.99.0.51", "10.99.0.52")}


# --- the IPv6 truth of a saved inventory ---------------------------------------------------------------
def _saved(tmp_path, network: dict):
    doc = json.loads((FIXTURES / "lab-inventory.json").read_text())
    doc["networks"][0] = {k: v for k, v in {**doc["networks"][0], **network}.items() if v is not None}
    path = tmp_path / "inv.json"
    path.write_text(json.dumps(doc))
    return load_inventory([path])


def test_saved_inventory_without_ipv6_derives_it_from_the_subnets(tmp_path):
    inv = _saved(tmp_path, {"ipv6": None, "subnets": ["10.99.0.0/24", "fd00:99::/64"]})
    assert inv.networks[0].ipv6 is True
    assert _saved(tmp_path, {"ipv6": None}).networks[0].ipv6 is False  # IPv4 only
    assert _saved(tmp_path, {"ipv6": False, "subnets": ["fd00:99::/64"]}).networks[0].ipv6 is False  # said
    # IPv6 on: the neighbour discovery of the benign capture is not "unexpected"
    assert detect(PCAPS / "benign-ipv6-nd.pcap", inventory=inv)[0] == []


def test_rogue_ra_judges_by_the_sanctioned_routers(tmp_path):
    def ra(mac, ll):
        return Ether(src=mac, dst="33:33:00:00:00:01") / IPv6(src=ll, dst="ff02::1") / ICMPv6ND_RA(routerlifetime=1800)

    pcap = write_pcap(tmp_path / "ra.pcap", [ra(HOST_MAC, HOST_LL), ra(VM3_MAC, VM3_LL)])
    routers = [{"mac": VM3_MAC, "ip": VM3_LL}]
    # the host's own advertisements are not rogue when the inventory leaves ipv6 out but lists an IPv6 subnet
    derived = _saved(tmp_path, {"ipv6": None, "subnets": ["10.99.0.0/24", "fd00:99::/64"]})
    assert found(detect(pcap, inventory=derived)[0]) == {("rogue_ra", VM3_LL), ("rogue_ra", VM3_MAC)}
    # a router VM that the inventory sanctions: only the others are rogue
    sanctioned = _saved(tmp_path, {"ipv6": True, "ipv6_routers": routers})
    assert Truth.from_inventory(sanctioned).router_macs == {bytes.fromhex(VM3_MAC.replace(":", ""))}
    (alert,) = detect(pcap, inventory=sanctioned)[0]
    assert alert["attacker"]["mac"] == HOST_MAC and alert["evidence"]["reasons"] == {"not_a_router": 1}


def test_libvirt_network_with_ipv6_lists_its_dnsmasq_as_router(corpus_dir):
    from lxml import etree

    root = etree.parse(str(corpus_dir / "libvirt-network" / "libvirt__nat-network-forward-nat-ipv6.xml")).getroot()
    net = read_network(root)
    assert net.ipv6 and net.ipv6_routers and net.ipv6_routers[0]["ip"] and ":" in net.ipv6_routers[0]["ip"]
    assert net.ipv6_routers[0]["mac"] == net.host_mac
    again = Inventory.from_dict(json.loads(json.dumps(Inventory(networks=[net]).to_dict())))
    assert again.networks[0].ipv6_routers == net.ipv6_routers
