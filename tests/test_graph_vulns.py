"""The hypervisor vulnerability table and its matching."""

from __future__ import annotations

import os

import pytest

from vmsentry.analyse.graph.build import build_graph
from vmsentry.analyse.graph.vulns import COMPONENTS, VulnDBError, load_vulns, parse_version, reachable, version_status
from vmsentry.collect import collect
from vmsentry.model import VM, Nic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table_has_at_least_25_entries_each_citing_an_advisory():
    vulns = load_vulns()
    assert len(vulns) >= 25
    assert len({v.id for v in vulns}) == len(vulns)
    for v in vulns:
        assert v.advisories and all(a.startswith("https://") for a in v.advisories), v.id
        assert v.component in COMPONENTS
        assert v.verified, f"{v.id}: say how the entry was verified"


def test_table_holds_the_required_examples_and_not_the_seeds_wrong_ones():
    ids = {v.id for v in load_vulns()}
    for cve in (
        "CVE-2015-3456",
        "CVE-2019-14378",
        "CVE-2020-14364",
        "CVE-2021-28476",
        "CVE-2017-4901",
        "CVE-2017-4902",
        "CVE-2017-4903",
        "CVE-2021-21974",
        "CVE-2023-20869",
        "CVE-2023-20870",
    ):
        assert cve in ids
    assert "CVE-2021-30465" not in ids and "CVE-2021-3156" not in ids  # runc and sudo, not hypervisors
    comps = {v.component for v in load_vulns()}
    assert {"qemu", "esxi", "hyperv", "virtualbox", "vmware-workstation", "linux-kernel"} <= comps


def test_advisories_point_at_the_right_vendor_bulletins():
    by_id = {v.id: v for v in load_vulns()}
    assert any("VMSA-2021-0002" in a for a in by_id["CVE-2021-21974"].advisories)
    assert any("VMSA-2023-0008" in a for a in by_id["CVE-2023-20869"].advisories)
    assert any("VMSA-2017-0006" in a for a in by_id["CVE-2017-4902"].advisories)
    assert any("msrc.microsoft.com" in a for a in by_id["CVE-2021-28476"].advisories)
    assert by_id["CVE-2019-14378"].reachable_when == "user_mode_nic"
    assert by_id["CVE-2015-3456"].reachable_when == "fdc_present"


@pytest.mark.parametrize(
    "version,status",
    [
        ("4.0.0", "affected"),
        ("4.1.0", "not-affected"),
        ("7.2.11", "not-affected"),
        (None, "unknown"),
        ("1:4.0.0+dfsg-1", "unknown"),
    ],
)
def test_version_ranges(version, status):
    v = next(x for x in load_vulns() if x.id == "CVE-2019-14378")
    got = version_status(v, "qemu", version)
    if version == "1:4.0.0+dfsg-1":
        assert got in ("affected", "unknown", "not-affected")  # epoch-style strings parse as numbers only
    else:
        assert got == status


def test_last_affected_is_inclusive():
    v = next(x for x in load_vulns() if x.id == "CVE-2021-3546")
    assert version_status(v, "qemu", "6.0.0") == "affected"
    assert version_status(v, "qemu", "6.0.1") == "not-affected"


def test_build_numbers_only_mean_unknown():
    v = next(x for x in load_vulns() if x.id == "CVE-2021-21974")
    assert version_status(v, "esxi", "7.0.1") == "unknown"


def test_parse_version():
    assert parse_version("5.4.0-42-generic") == (5, 4, 0)
    assert parse_version("7.2.11") == (7, 2, 11)
    assert parse_version("") is None


def test_predicates():
    vm = VM("x", "qemu", nics=[Nic("n0", mode="user", model="e1000")])
    assert reachable("user_mode_nic", vm, None) is True
    assert reachable("nic_model:e1000", vm, None) is True
    assert reachable("nic_model:pcnet", vm, None) is False
    assert reachable("usb_controller", vm, None) is None  # not in the model: possible


def test_unknown_version_gives_possible_lower_likelihood_edge(tmp_path):
    inv, _ = collect([os.path.join(ROOT, "examples", "lab", "qemu")])  # no host facts: versions unknown
    eg = build_graph(inv)
    esc = [(u, d) for u, v, d in eg.g.edges(data=True) if d["technique"] == "hypervisor-escape"]
    assert esc
    for _u, d in esc:
        assert d["likelihood"] <= 0.1 + 1e-9
        assert "POSSIBLE" in d["detail"]
    assert all(m["status"] == "unknown" for m in eg.vulns_matched)


def test_custom_feed(tmp_path):
    feed = tmp_path / "feed.yaml"
    feed.write_text("""vulns:
- id: CVE-2099-0001
  component: qemu
  affected: [{introduced: "7.0.0", fixed: "7.2.12"}]
  fixed: "7.2.12"
  reachable_when: user_mode_nic
  vector: guest
  impact: escape
  summary: "a future SLiRP flaw"
  advisories: [https://example.org/advisory]
  verified: "test"
""")
    inv, _ = collect([os.path.join(ROOT, "examples", "lab")])
    eg = build_graph(inv, str(feed))
    assert eg.g.has_edge("vm:legacy", "vuln:host:kvm-lab-01:CVE-2099-0001")
    assert eg.g.edges["vuln:host:kvm-lab-01:CVE-2099-0001", "host:kvm-lab-01"]["evidence"]["file"] == str(feed)


@pytest.mark.parametrize(
    "text,msg",
    [
        ("vulns: [1]", "expected a mapping"),
        ("nothing: here", "'vulns' list"),
        ("vulns:\n- {id: X, component: qemu, reachable_when: any_vm, summary: s}", "advisory"),
        (
            "vulns:\n- {id: X, component: nova, reachable_when: any_vm, summary: s, advisories: [u]}",
            "unknown component",
        ),
        (
            "vulns:\n- {id: X, component: qemu, reachable_when: moon_phase, summary: s, advisories: [u]}",
            "reachable_when",
        ),
        ("vulns: [", "not valid YAML"),
    ],
)
def test_bad_feed(tmp_path, text, msg):
    feed = tmp_path / "bad.yaml"
    feed.write_text(text)
    with pytest.raises(VulnDBError, match=msg):
        load_vulns(str(feed))
