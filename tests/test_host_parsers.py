"""The text parsers behind the live host collector, fed recorded output (and real output produced in a
network namespace of our own where that needs root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from vmsentry.collect import linux_host_parsers as lh

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "host")


def fixture(name: str) -> str:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as fh:
        return fh.read()


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.fixture
def netns():
    """A network namespace of our own, so nothing we load touches the host's network."""
    if not can_make_namespaces():
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"vmsentry-t{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# -- ss and /proc/net --------------------------------------------------------------------------------


def test_parse_ss():
    sockets = lh.parse_ss(fixture("ss-listening.txt"))
    by_port = {(s["proto"], s["port"], s["address"]): s for s in sockets}
    assert ("udp", 40000, "10.0.0.5") not in by_port  # a connected UDP socket is not listening
    assert by_port[("tcp", 22, "0.0.0.0")] == {
        "proto": "tcp",
        "address": "0.0.0.0",
        "port": 22,
        "process": "sshd",
        "pid": 611,
        "interface": None,
    }
    assert by_port[("tcp", 22, "::")]["process"] == "sshd"
    # "*" is the IPv6 wildcard accepting IPv4 too
    assert by_port[("tcp", 16509, "::")]["process"] == "libvirtd"
    assert by_port[("udp", 53, "192.168.122.1")]["interface"] == "virbr0"
    assert by_port[("udp", 67, "0.0.0.0")] == {
        "proto": "udp",
        "address": "0.0.0.0",
        "port": 67,
        "process": "dnsmasq",
        "pid": 1402,
        "interface": "virbr0",
    }
    assert by_port[("tcp", 5900, "127.0.0.1")]["pid"] == 2001  # first of several owners
    assert by_port[("tcp", 8080, "fe80::1")]["interface"] == "virbr0"
    assert by_port[("tcp", 2024, "0.0.0.0")]["process"] is None  # owner not visible to us
    assert len(sockets) == 10


def test_parse_proc_net():
    tcp = lh.parse_proc_net(fixture("proc-net-tcp.txt"), "tcp", ipv6=False)
    assert [(s["address"], s["port"]) for s in tcp] == [("0.0.0.0", 2024), ("127.0.0.1", 5900)]
    tcp6 = lh.parse_proc_net(fixture("proc-net-tcp6.txt"), "tcp", ipv6=True)
    assert [(s["address"], s["port"]) for s in tcp6] == [("::", 22), ("::1", 8080)]
    udp = lh.parse_proc_net(fixture("proc-net-udp.txt"), "udp", ipv6=False)
    assert udp == [
        {"proto": "udp", "address": "192.168.122.1", "port": 53, "process": None, "pid": None, "interface": None}
    ]


# -- interfaces and bridges ----------------------------------------------------------------------------


def test_parse_ip_json_kinds_and_bridges():
    links = lh.parse_ip_json(fixture("ip-addr.json"), physical_names={"eno2"})
    kinds = {link["name"]: link["kind"] for link in links}
    assert kinds == {
        "lo": "loopback",
        "eno1": "physical",
        "eno2": "physical",
        "bond0": "bond",
        "bond0.10": "vlan",
        "br0": "bridge",
        "br-lan": "bridge",
        "virbr0": "bridge",
        "vnet0": "tun",
        "vnet1": "tun",
        "macvtap0": "macvtap",
        "tun0": "tun",
        "wg0": "other",
    }
    virbr0 = next(link for link in links if link["name"] == "virbr0")
    assert virbr0["addresses"] == ["192.168.122.1/24", "fe80::5054:ff:fe1c:2d3e/64"]
    assert virbr0["state"] == "up" and virbr0["mtu"] == 1500 and virbr0["mac"] == "52:54:00:1c:2d:3e"
    vnet0 = next(link for link in links if link["name"] == "vnet0")
    assert vnet0["master"] == "virbr0" and vnet0["promiscuity"] == 1
    assert next(link for link in links if link["name"] == "tun0")["mac"] is None

    bridges = {bridge["name"]: bridge for bridge in lh.bridges_from_interfaces(links)}
    assert bridges["br0"] == {
        "name": "br0",
        "addresses": ["10.1.0.5/24"],
        "ports": ["eno1"],
        "physical_ports": ["eno1"],
        "stp": False,
        "vlan_filtering": True,
        "isolated_ports": [],
    }
    # a VLAN over a bond over a NIC still puts br-lan's guests on the LAN
    assert bridges["br-lan"]["physical_ports"] == ["bond0.10"] and bridges["br-lan"]["stp"] is True
    assert bridges["virbr0"]["ports"] == ["vnet0", "vnet1"]
    assert bridges["virbr0"]["physical_ports"] == []
    assert bridges["virbr0"]["isolated_ports"] == ["vnet0"]


@pytest.mark.lab
def test_parse_ip_json_from_a_real_namespace(netns):
    ip = ["ip", "-n", netns]
    subprocess.run(ip + ["link", "add", "brt", "type", "bridge", "stp_state", "1"], check=True)
    subprocess.run(ip + ["link", "add", "vt0", "type", "veth", "peer", "name", "vt1"], check=True)
    subprocess.run(ip + ["link", "set", "vt0", "master", "brt"], check=True)
    subprocess.run(ip + ["tuntap", "add", "tapt0", "mode", "tap"], check=True)
    subprocess.run(ip + ["link", "set", "tapt0", "master", "brt"], check=True)
    subprocess.run(ip + ["addr", "add", "10.253.78.1/24", "dev", "brt"], check=True)
    subprocess.run(ip + ["link", "set", "brt", "up"], check=True)
    output = subprocess.run(ip + ["-j", "-d", "addr", "show"], check=True, capture_output=True, text=True).stdout
    links = lh.parse_ip_json(output)
    kinds = {link["name"]: link["kind"] for link in links}
    assert kinds == {"lo": "loopback", "brt": "bridge", "vt0": "veth", "vt1": "veth", "tapt0": "tun"}
    bridge = lh.bridges_from_interfaces(links)[0]
    assert bridge["name"] == "brt" and bridge["addresses"] == ["10.253.78.1/24"]
    assert sorted(bridge["ports"]) == ["tapt0", "vt0"] and bridge["physical_ports"] == []
    assert bridge["stp"] is True and bridge["vlan_filtering"] is False


# -- firewall --------------------------------------------------------------------------------------------


def test_parse_nft_json_recorded():
    # tests/fixtures/host/nft-ruleset.json is `nft -j list ruleset` of nft-ruleset.nft
    ruleset = lh.parse_nft_json(fixture("nft-ruleset.json"))
    check_nft_summary(ruleset)


@pytest.mark.lab
def test_parse_nft_json_from_a_real_namespace(netns):
    if shutil.which("nft") is None:
        pytest.skip("nft is not installed")
    subprocess.run(["ip", "netns", "exec", netns, "nft", "-f", os.path.join(FIXTURES, "nft-ruleset.nft")], check=True)
    output = subprocess.run(
        ["ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset"], check=True, capture_output=True, text=True
    ).stdout
    check_nft_summary(lh.parse_nft_json(output))


def check_nft_summary(ruleset):
    assert ruleset["ruleset_rules"] == 8
    tables = {(t["family"], t["name"]): t for t in ruleset["tables"]}
    assert set(tables) == {("inet", "filter"), ("ip", "nat"), ("bridge", "b")}
    chains = {c["name"]: c for c in tables[("inet", "filter")]["chains"]}
    assert {k: v for k, v in chains["forward"].items() if not k.startswith("_")} == {
        "name": "forward",
        "hook": "forward",
        "type": "filter",
        "priority": 0,
        "policy": "drop",
        "rules": 3,
    }
    assert chains["fwd_vm"]["hook"] is None and chains["fwd_vm"]["rules"] == 2
    firewall = lh.summarise_firewall(ruleset, {"tables": [], "ruleset_rules": 0})
    assert firewall["forward_policy"] == "drop"
    # forward's 3 rules + fwd_vm (jump) 2 + sub2 (through a verdict map) 1; the bridge chain is not counted
    assert firewall["forward_rules"] == 6
    assert firewall["input_policy"] == "accept"
    # the inet table filters IPv6 as well; the ip nat table does not count for it
    assert (firewall["forward_policy_v6"], firewall["forward_rules_v6"]) == ("drop", 6)
    assert firewall["libvirt_chains"] == []
    assert firewall["iptables_legacy"] == {"tables": [], "ruleset_rules": 0}
    # legacy tables that could not be read might hold a drop policy: only a drop is still certain
    partial = lh.summarise_firewall(ruleset, None)
    assert partial["forward_policy"] == "drop" and partial["input_policy"] == "unknown"
    assert partial["iptables_legacy"] is None
    json.dumps(firewall)  # plain JSON: the private jump sets are gone
    assert "_jumps" not in json.dumps(firewall)


def test_parse_iptables_legacy_save():
    ruleset = lh.parse_iptables_save(fixture("iptables-legacy-save.txt"))
    assert ruleset["ruleset_rules"] == 18
    tables = {t["name"]: t for t in ruleset["tables"]}
    assert set(tables) == {"mangle", "nat", "filter"} and all(t["family"] == "ip" for t in ruleset["tables"])
    chains = {c["name"]: c for c in tables["filter"]["chains"]}
    assert chains["FORWARD"] == {
        "name": "FORWARD",
        "hook": "forward",
        "type": "filter",
        "priority": 0,
        "policy": "drop",
        "rules": 3,
        "_jumps": {"LIBVIRT_FWX", "LIBVIRT_FWI", "LIBVIRT_FWO"},
    }
    assert chains["LIBVIRT_FWI"]["policy"] is None and chains["LIBVIRT_FWI"]["hook"] is None
    nat = {c["name"]: c for c in tables["nat"]["chains"]}
    assert nat["POSTROUTING"]["priority"] == 100 and nat["PREROUTING"]["priority"] == -100

    firewall = lh.summarise_firewall({"tables": [], "ruleset_rules": 0}, ruleset)
    assert firewall["forward_policy"] == "drop"
    assert firewall["forward_rules"] == 3 + 2 + 2 + 1  # FORWARD + FWI + FWO + FWX; UNUSED is not reached
    assert firewall["input_policy"] == "accept"
    # IPv4-only legacy rules leave IPv6 forwarding unfiltered
    assert (firewall["forward_policy_v6"], firewall["forward_rules_v6"]) == ("accept", 0)
    assert firewall["libvirt_chains"] == [
        "LIBVIRT_FWI",
        "LIBVIRT_FWO",
        "LIBVIRT_FWX",
        "LIBVIRT_INP",
        "LIBVIRT_OUT",
        "LIBVIRT_PRT",
    ]


def test_parse_ip6tables_legacy_save():
    ruleset = lh.parse_iptables_save("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\nCOMMIT\n", "ip6")
    assert ruleset["tables"][0]["family"] == "ip6"
    firewall = lh.summarise_firewall({"tables": [], "ruleset_rules": 0}, ruleset)
    assert firewall["forward_policy_v6"] == "drop" and firewall["forward_policy"] == "accept"


def test_firewall_policies_without_chains_or_rulesets():
    empty = {"tables": [], "ruleset_rules": 0}
    assert lh.summarise_firewall(empty, empty)["forward_policy"] == "accept"  # nothing filters the hook
    assert lh.summarise_firewall(None, empty)["forward_policy"] == "unknown"
    unknown = lh.summarise_firewall(None, None)
    assert unknown["forward_policy"] == "unknown" and unknown["input_policy"] == "unknown"
    assert unknown["forward_rules"] == 0


def test_malformed_nft_output_is_a_collection_error():
    with pytest.raises(lh.CollectionError):
        lh.parse_nft_json("{not json")


# -- small files -------------------------------------------------------------------------------------------


def test_parse_cpuinfo():
    cpu, flags = lh.parse_cpuinfo(fixture("cpuinfo-amd.txt"))
    assert cpu == {"vendor": "AuthenticAMD", "vmx": False, "svm": True, "model": "AMD EPYC 7763 64-Core Processor"}
    assert {"sev", "sev_es", "sme"} <= flags and "sev_snp" not in flags


def test_parse_group_file():
    groups = lh.parse_group_file(fixture("group.txt"), fixture("passwd.txt"))
    # listed members plus the users whose primary group it is; a missing group is None
    assert groups == {"libvirt": ["alice", "bob"], "kvm": ["alice", "libvirt-qemu"], "libvirt-qemu": None}


def test_small_parsers():
    assert (
        lh.parse_os_release('NAME="Debian GNU/Linux"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
        == "Debian GNU/Linux 12 (bookworm)"
    )
    assert lh.parse_os_release("") is None
    assert lh.parse_iommu_flags("BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt quiet -- iommu=init-arg") == [
        "intel_iommu=on",
        "iommu=pt",
    ]
    assert lh.parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n") == "7.2.22"
    assert lh.parse_libvirt_version("libvirtd (libvirt) 9.0.0\n") == "9.0.0"


@pytest.mark.parametrize(
    "argv, managed",
    [
        (
            [
                "/usr/bin/qemu-system-x86_64",
                "-name",
                "guest=web,debug-threads=on",
                "-object",
                '{"qom-type":"secret","id":"masterKey0","format":"raw",'
                '"file":"/var/lib/libvirt/qemu/domain-1-web/master-key.aes"}',
            ],
            True,
        ),
        (
            [
                "qemu-system-x86_64",
                "-name",
                "guest=dev",
                "-chardev",
                "socket,id=m,path=/home/u/.config/libvirt/qemu/lib/domain-2-dev/monitor.sock",
            ],
            True,
        ),
        (["qemu-system-x86_64", "-name", "guest=byhand", "-m", "1G"], False),
        (["qemu-system-x86_64", "-name", "plain", "-drive", "file=/var/lib/libvirt/qemu/x.img"], False),
    ],
)
def test_is_libvirt_managed(argv, managed):
    assert lh.is_libvirt_managed(argv) is managed


@pytest.mark.parametrize(
    "label, confinement",
    [
        ("unconfined", "none"),
        ("libvirt-5a3c6f2e-1b7d-4c1a-9e0f-2d4b8c6a1f00 (enforce)", "apparmor"),
        ("system_u:system_r:svirt_t:s0:c12,c345", "selinux"),
        ("unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023", "none"),
    ],
)
def test_confinement_of_label(label, confinement):
    assert lh.confinement_of_label(label) == confinement
