"""Every edge type of the exposure graph, each created from a real configuration file (the bundled
example lab, the two incident labs, or tests/fixtures/graph)."""

from __future__ import annotations

import os

import pytest

from vmsentry.analyse.graph.build import build_graph
from vmsentry.analyse.graph.techniques import TECHNIQUES
from vmsentry.analyse.graph.vulns import load_vulns
from vmsentry.collect import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "examples", "lab")
FIN = os.path.join(ROOT, "examples", "incident-2022-finance")
HOSP = os.path.join(ROOT, "examples", "incident-2023-hospital")
MISC = os.path.join(ROOT, "tests", "fixtures", "graph", "misc")

_cache: dict = {}


def graph(path, vulns=None):
    key = (path, vulns is None)
    if key not in _cache:
        inv, _ = collect([path])
        assert not inv.errors, inv.errors
        _cache[key] = build_graph(inv, vulns=vulns)
    return _cache[key]


def edges(eg, technique):
    return [(u, v, d) for u, v, d in eg.g.edges(data=True) if d["technique"] == technique]


# technique -> (lab, from-node prefix or exact, to-node prefix or exact)
CASES = {
    "nic-attach": (LAB, "vm:web", "net:default"),
    "bridged-to-lan": (LAB, "bridge:br0", "lan"),
    "routed-to-lan": (HOSP, "net:clinical", "lan"),
    "nat-outbound": (LAB, "net:default", "lan"),
    "guest-to-host-service": (LAB, "net:backend", "addr:host:kvm-lab-01"),
    "user-nat-host-loopback": (LAB, "vm:legacy", "loop:host:kvm-lab-01"),
    "lan-to-host-service": (LAB, "external", "svc:host:kvm-lab-01:tcp/0.0.0.0:16509"),
    "reach-listener": (LAB, "addr:host:kvm-lab-01", "listener:build:0"),
    "reach-forward": (MISC, "external", "fwd:kiosk:0"),
    "lan-to-guest": (LAB, "lan", "vm:build"),
    "segment-peer": (LAB, "peers:net:default", "vm:web"),
    "host-service-exploit": (LAB, "svc:host:kvm-lab-01:tcp/0.0.0.0:5432", "host:kvm-lab-01"),
    "ssh-login": (LAB, "svc:host:kvm-lab-01:tcp/0.0.0.0:22", "host:kvm-lab-01"),
    "rdp-login": (MISC, "svc:host:misc-host:tcp/0.0.0.0:3389", "host:misc-host"),
    "smb-admin-share": (FIN, "svc:host:fin-kvm-01:tcp/0.0.0.0:445", "host:fin-kvm-01"),
    "winrm": (MISC, "svc:host:misc-host:tcp/0.0.0.0:5985", "host:misc-host"),
    "libvirt-api-no-auth": (LAB, "svc:host:kvm-lab-01:tcp/0.0.0.0:16509", "host:kvm-lab-01"),
    "container-api-no-auth": (MISC, "svc:host:misc-host:tcp/0.0.0.0:2375", "host:misc-host"),
    "console-takeover": (LAB, "listener:build:0", "vm:build"),
    "console-password": (MISC, "listener:kiosk:0", "vm:kiosk"),
    "console-tls": (MISC, "listener:media:0", "vm:media"),
    "qemu-monitor-exec": (LAB, "listener:legacy:1", "host:kvm-lab-01"),
    "migration-inject": (MISC, "listener:kiosk:1", "host:misc-host"),
    "port-forward-into-guest": (LAB, "fwd:legacy:0", "vm:legacy"),
    "shared-folder-write": (LAB, "vm:build", "share:host:kvm-lab-01:/srv/build"),
    "host-path-write": (LAB, "share:host:kvm-lab-01:/srv/build", "host:kvm-lab-01"),
    "taint-shared-content": (HOSP, "share:host:hosp-kvm-02:/srv/vmstore/shared", "vm:nurse-ws"),
    "disk-image-tamper": (HOSP, "share:host:hosp-kvm-02:/srv/vmstore", "vm:ehr-db"),
    "clipboard-channel": (LAB, "vm:win-desktop", "chan:win-desktop:clipboard"),
    "drag-and-drop-channel": (LAB, "vm:win-desktop", "chan:win-desktop:dnd"),
    "arp-mitm": (LAB, "vm:build", "mitm:bridge:br0"),
    "mitm-session-hijack": (LAB, "mitm:bridge:br0", "host:kvm-lab-01"),
    "passthrough-device": (LAB, "vm:win-desktop", "dev:win-desktop:2"),
    "dma-attack": (LAB, "iommu:host:kvm-lab-01", "host:kvm-lab-01"),
    "reach-vulnerable-component": (FIN, "vm:tenant-api-7f3a", "vuln:host:fin-kvm-01:CVE-2021-3748"),
    "hypervisor-escape": (FIN, "vuln:host:fin-kvm-01:CVE-2021-3748", "host:fin-kvm-01"),
    "host-controls-guest": (LAB, "host:kvm-lab-01", "vm:db"),
}


def test_every_technique_has_a_case():
    assert set(CASES) == set(TECHNIQUES)


@pytest.mark.parametrize("technique", sorted(CASES))
def test_edge_created_from_real_config(technique):
    path, u, v = CASES[technique]
    eg = graph(path)
    assert eg.g.has_edge(u, v), f"{u} -> {v} missing"
    d = eg.g.edges[u, v]
    assert d["technique"] == technique
    assert 0 < d["likelihood"] <= 1
    assert "file" in d["evidence"] and "locator" in d["evidence"]
    assert d["detail"]


def test_edges_carry_evidence_from_the_file():
    eg = graph(LAB)
    d = eg.g.edges["vm:build", "bridge:br0"]
    assert d["evidence"]["file"].endswith("domains/build.xml")
    assert "interface" in d["evidence"]["locator"]
    d = eg.g.edges["svc:host:kvm-lab-01:tcp/0.0.0.0:16509", "host:kvm-lab-01"]
    assert "16509" in d["evidence"]["locator"]


def test_nat_and_isolated_networks_still_reach_host_services():
    """libvirt's NAT/isolated rules do not block guest-to-host traffic: both reach 0.0.0.0 services."""
    eg = graph(LAB)
    for seg in ("net:default", "net:backend"):
        assert eg.g.has_edge(seg, "addr:host:kvm-lab-01")
    assert eg.g.has_edge("addr:host:kvm-lab-01", "svc:host:kvm-lab-01:tcp/0.0.0.0:22")


def test_dnsmasq_of_libvirt_is_not_an_attack_edge():
    eg = graph(LAB)
    assert not any("dnsmasq" in str(d.get("process")) for _, d in eg.g.nodes(data=True) if d.get("kind") == "service")


def test_macvtap_cannot_talk_to_its_own_host():
    eg = graph(MISC, vulns=[])
    assert eg.g.has_edge("vm:media", "lan")
    import networkx as nx

    # without hypervisor flaws, media's only ways out are the LAN; the LAN has no edge into the host
    assert not nx.has_path(eg.g, "vm:media", "host:misc-host")
    assert "macvtap" in eg.g.edges["vm:media", "lan"]["detail"]


def test_passthrough_nic_is_a_pci_device():
    eg = graph(MISC)
    assert eg.g.has_edge("vm:media", "dev:media:nic-net1")
    assert "iommu:host:misc-host" not in eg.g  # IOMMU is on in this host's facts


def test_user_mode_restrict_on_removes_loopback_reach():
    eg = graph(MISC)
    assert not eg.g.has_edge("vm:kiosk", "loop:host:misc-host")
    # but the SLiRP flaws are still reachable: restrict does not stop the guest from talking to slirp
    assert eg.g.has_edge("vm:kiosk", "vuln:host:misc-host:CVE-2019-14378")


def test_user_mode_reaches_loopback_services(tmp_path):
    eg = graph(LAB)
    lo = "loop:host:kvm-lab-01"
    assert eg.g.has_edge(lo, "listener:web:0")  # VNC of web on 127.0.0.1
    assert eg.g.has_edge(lo, "addr:host:kvm-lab-01")


def test_port_forward_exposes_guest_to_whoever_reaches_the_bound_address():
    eg = graph(LAB)
    assert eg.g.has_edge("external", "fwd:legacy:0")  # hostfwd on every address
    assert eg.g.has_edge("addr:host:kvm-lab-01", "fwd:legacy:0")


def test_no_host_facts_gives_possible_edges():
    inv, _ = collect([os.path.join(LAB, "domains"), os.path.join(LAB, "networks")])
    eg = build_graph(inv)
    assert "host:host" in eg.g
    assert eg.g.has_edge("svc:host:host:unknown", "host:host")
    assert eg.g.edges["svc:host:host:unknown", "host:host"]["possible"] is True


def test_every_vulnerable_edge_names_its_cve():
    eg = graph(FIN)
    for u, _v, d in edges(eg, "hypervisor-escape"):
        assert d["cve"] in u
        assert d["change"] == "upgrade:host:fin-kvm-01:qemu" or d["change"].startswith("upgrade:")


def test_network_vector_flaw_reached_from_outside():
    inv, _ = collect([MISC])
    vulns = load_vulns()
    for v in vulns:
        if v.id == "CVE-2021-2279":
            assert v.vector == "network"
    eg = build_graph(inv, vulns=vulns)
    assert not any(n.endswith("CVE-2021-2279") for n in eg.g)  # no VirtualBox VM here
