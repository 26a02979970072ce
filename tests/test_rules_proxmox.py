"""Proxmox VE rules (catalogue/proxmox.yaml) and the generic VM rules extended to Proxmox: each fails on
one input and passes (or does not apply) on another - real corpus files where one exists, otherwise the
/etc/pve trees in tests/fixtures/proxmox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_rules_hyperv import catalogue_entries, check_entries, statuses
from vmsentry.collect import collect

FIX = Path(__file__).parent / "fixtures" / "proxmox"
OK = {"pass", "not_applicable"}
LAB_NODE = f"host:pve-node:pve1@{FIX / 'lab' / 'etc' / 'pve'}"
LAB_CLUSTER = f"host:pve-cluster:{FIX / 'lab' / 'etc' / 'pve'}"
OFF_NODE = f"host:pve-node:pve2@{FIX / 'disabled' / 'etc' / 'pve'}"
OFF_CLUSTER = f"host:pve-cluster:{FIX / 'disabled' / 'etc' / 'pve'}"

# rule -> (asset that fails, asset that passes) in the fixture trees
CASES = {
    "VMS-PVE-001": (OFF_CLUSTER, LAB_CLUSTER),
    "VMS-PVE-002": (OFF_CLUSTER, LAB_CLUSTER),
    "VMS-PVE-004": (OFF_NODE, LAB_NODE),
    "VMS-PVE-005": (OFF_NODE, LAB_NODE),
    "VMS-PVE-006": (LAB_NODE, OFF_NODE),
    "VMS-PVE-010": ("vm:internal-only", "vm:web-hardened"),
    "VMS-PVE-011": ("vm:sev-guest", "vm:web-hardened"),
    "VMS-PVE-012": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-013": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-014": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-015": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-016": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-020": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-021": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-030": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-031": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-032": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-033": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-034": ("vm:web-hardened", "vm:sev-guest"),
    "VMS-PVE-035": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-PVE-036": ("vm:internal-only", "vm:web-hardened"),
    "VMS-PVE-037": ("vm:lab-risky", "vm:web-hardened"),
    # generic rules whose semantics hold on Proxmox (console/monitor/forwards come from args:)
    "VMS-VM-001": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-002": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-005": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-010": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-011": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-013": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-020": ("vm:web-hardened", "vm:internal-only"),
    "VMS-VM-030": ("vm:internal-only", "vm:web-hardened"),
    "VMS-VM-041": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-070": ("vm:lab-risky", "vm:web-hardened"),
    "VMS-VM-071": ("vm:internal-only", "vm:web-hardened"),
}

# rule -> (real corpus file, asset, expected status): the corpus as a careful auditor reads it
CORPUS_CASES = [
    ("VMS-PVE-003", "pvefw__debian_example_host.fw", "host.fw", "fail"),  # enable: 0
    ("VMS-PVE-005", "pvefw__debian_example_host.fw", "host.fw", "fail"),  # nosmurfs: 0
    ("VMS-PVE-004", "pvefw__debian_example_host.fw", "host.fw", "pass"),  # tcpflags: 1
    ("VMS-PVE-001", "pvefw__debian_example_cluster.fw", "cluster.fw", "pass"),  # enable: 1
    ("VMS-PVE-002", "pvefw__debian_example_cluster.fw", "cluster.fw", "pass"),  # policy_in: DROP
    ("VMS-PVE-012", "pvefw__debian_example_100.fw", "100.fw", "fail"),  # macfilter: 0
    ("VMS-PVE-015", "pvefw__debian_example_100.fw", "100.fw", "fail"),  # dhcp: 1
    ("VMS-PVE-016", "pvefw__debian_example_100.fw", "100.fw", "fail"),  # IN SSH(ACCEPT) -i net0
    ("VMS-PVE-013", "pvefw__debian_example_100.fw", "100.fw", "pass"),  # [IPSET ipfilter-net0]
    ("VMS-PVE-013", "pvefw__test_test-basic1_100.fw", "100.fw", "fail"),  # no ipfilter
    ("VMS-PVE-011", "pvefw__test_test-basic1_100.fw", "100.fw", "pass"),  # enable: 1
    ("VMS-PVE-010", "technomagniaque__qemu-server_104.conf", "104.conf", "fail"),  # no firewall=1
    ("VMS-PVE-010", "alexjbarnes__100.conf", "100.conf", "pass"),
    ("VMS-PVE-030", "technomagniaque__666.conf", "666.conf", "fail"),  # hostpci0..3
    ("VMS-PVE-031", "behappiness__100.conf", "100.conf", "fail"),  # args: -cpu host,...
    ("VMS-PVE-031", "alexjbarnes__100.conf", "100.conf", "not_applicable"),
    ("VMS-PVE-032", "qemuserver__cfg2cmd_spice-enhancments.conf", "101.conf", "fail"),  # foldersharing=1
    ("VMS-PVE-035", "qemuserver__parse-config-input_snapshots.conf", "111.conf", "pass"),  # no vmstate
    ("VMS-PVE-036", "qemuserver__cfg2cmd_spice-win.conf", "102.conf", "fail"),  # vga: qxl2
    ("VMS-PVE-037", "alexjbarnes__100.conf", "100.conf", "fail"),  # agent: 1
    ("VMS-VM-070", "qemuserver__cfg2cmd_vnc-clipboard-std.conf", "103.conf", "fail"),  # clipboard=vnc
    ("VMS-VM-070", "qemuserver__cfg2cmd_simple1.conf", "104.conf", "pass"),
    ("VMS-VM-041", "technomagniaque__666.conf", "666.conf", "fail"),  # usb0: spice
    ("VMS-VM-091", "qemuserver__parse-config-input_snapshots.conf", "111.conf", "fail"),  # 2025 snapshots
]


@pytest.fixture(scope="module")
def results():
    inv, _ = collect([str(FIX / "lab"), str(FIX / "disabled")])
    return statuses(inv)


def test_catalogue_entries_complete():
    check_entries("proxmox.yaml", "VMS-PVE-", "proxmox")
    ids = {e["id"] for e in catalogue_entries("proxmox.yaml")}
    assert len(ids) == 23
    assert ids <= set(CASES) | {c[0] for c in CORPUS_CASES}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fails_and_passes(results, rule_id):
    bad, good = CASES[rule_id]
    assert "fail" in results.get((rule_id, bad), set()), results.get((rule_id, bad))
    got = results.get((rule_id, good), set())
    assert got and got <= OK, got


@pytest.mark.parametrize("rule_id,source,name,expected", CORPUS_CASES, ids=[f"{c[0]}-{c[1]}" for c in CORPUS_CASES])
def test_rule_on_corpus_file(corpus_dir: Path, tmp_path: Path, rule_id, source, name, expected):
    """Each corpus file alone, under the name Proxmox gives it (so VMID.conf and VMID.fw link by VMID)."""
    shutil.copy(corpus_dir / "proxmox" / source, tmp_path / name)
    inv, _ = collect([str(tmp_path)])
    got = {status for (rid, _), sts in statuses(inv).items() if rid == rule_id for status in sts}
    assert expected in got, got


def test_firewall_state_unknown_without_the_files():
    inv, _ = collect([str(FIX / "lab" / "etc" / "pve" / "qemu-server" / "101.conf")])
    res = statuses(inv)
    for rule_id in ("VMS-PVE-011", "VMS-PVE-012", "VMS-PVE-013", "VMS-PVE-014"):
        assert res[(rule_id, "vm:web-hardened")] == {"unknown"}, rule_id
    assert res[("VMS-VM-030", "vm:web-hardened")] == {"unknown"}
    assert res[("VMS-PVE-021", "vm:web-hardened")] == {"unknown"}  # bridge not read
