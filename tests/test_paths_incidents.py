"""The seed's two incidents as example labs: vmsentry finds the paths each incident used and its
smallest fix cuts them."""

from __future__ import annotations

import os

import pytest

from vmsentry.analyse.graph import analyse
from vmsentry.analyse.graph.mincut import reaching_sources
from vmsentry.collect import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIN = os.path.join(ROOT, "examples", "incident-2022-finance")
HOSP = os.path.join(ROOT, "examples", "incident-2023-hospital")


@pytest.fixture(scope="module")
def fin():
    inv, _ = collect([FIN])
    assert not inv.errors
    return inv


@pytest.fixture(scope="module")
def hosp():
    inv, _ = collect([HOSP])
    assert not inv.errors
    return inv


def techniques(paths):
    return {s["technique"] for p in paths for s in p.steps}


def test_finance_rogue_vm_breaks_out_to_the_host(fin):
    r = analyse(fin, "vm:tenant-api-7f3a", "host")
    assert r.paths and r.paths[0].score >= 9
    used = techniques(r.paths)
    # the bridge puts it next to the host's own address: host services and an unauthenticated libvirtd
    assert "guest-to-host-service" in used and "libvirt-api-no-auth" in used
    # and the hypervisor itself is in a known-vulnerable version
    assert "hypervisor-escape" in used
    assert any(s.get("attack_id") == "T1611" for p in r.paths for s in p.steps)
    first = r.paths[0].steps[0]
    assert first["evidence"]["file"].endswith("tenant-api-7f3a.xml")


def test_finance_then_lateral_to_the_lan_and_every_vm(fin):
    r = analyse(fin, "vm:tenant-api-7f3a", "any")
    targets = {p.target for p in r.paths}
    assert "lan" in targets  # the 20+ systems on the server VLAN
    assert {"vm:core-banking-db", "vm:payments-app", "vm:ledger-batch", "vm:hr-portal"} <= targets
    assert "arp-mitm" in techniques(r.paths) or "segment-peer" in techniques(r.paths)
    lan = next(p for p in r.paths if p.target == "lan")
    assert [s["technique"] for s in lan.steps][-1] == "bridged-to-lan"


def test_finance_smallest_fix_cuts_every_path_to_the_host(fin):
    r = analyse(fin, "any-vm", "host")
    assert r.fix.verified
    ids = {x["id"] for x in r.remediation}
    assert "fw-seg:bridge:br-prod" in ids or "svc:host:fin-kvm-01:tcp/16509" in ids
    assert any(i.startswith("upgrade:") for i in ids)  # the escape needs the QEMU upgrade
    after = analyse(fin, "any-vm", "host", what_if=sorted(ids))
    assert after.paths == []
    eg = r.graph
    assert not reaching_sources(eg, eg.vms, eg.hosts, ids)


def test_hospital_ransomware_spreads_through_shared_storage_and_snapshots(hosp):
    r = analyse(hosp, "vm:reception-ws", "vm:ehr-db")
    assert r.paths
    used = techniques(r.paths)
    assert "disk-image-tamper" in used  # VM images and snapshots on writable shared storage
    assert "shared-folder-write" in used
    assert any("snapshot" in s["explanation"] for p in r.paths for s in p.steps)
    r2 = analyse(hosp, "vm:reception-ws", "vm:nurse-ws")
    assert {"taint-shared-content", "disk-image-tamper"} & techniques(r2.paths)


def test_hospital_no_isolation_and_tampered_network(hosp):
    r = analyse(hosp, "any-vm", "any")
    used = techniques(r.paths)
    assert "routed-to-lan" in used  # forward mode='open' after tampering
    assert {"segment-peer", "arp-mitm"} & used or any(p.target.startswith("vm:") for p in r.paths)
    eg = r.graph
    assert eg.g.nodes["net:clinical"]["mode"] == "open"
    assert eg.g.has_edge("net:clinical", "peers:net:clinical")  # no port isolation


def test_hospital_smallest_fix(hosp):
    r = analyse(hosp, "any-vm", "host")
    assert r.paths and r.fix.verified
    ids = [x["id"] for x in r.remediation]
    assert any(i.startswith("fw-seg:") for i in ids)
    assert any(i.startswith("share") for i in ids)
    assert analyse(hosp, "any-vm", "host", what_if=ids).paths == []
    r = analyse(hosp, "vm:reception-ws", "any")
    assert r.fix.verified
    assert analyse(hosp, "vm:reception-ws", "any", what_if=[x["id"] for x in r.remediation]).paths == []
