"""VMware rules (catalogue/vmware.yaml, and the generic rules extended to VMware): every rule fails on one
input and passes on another - real corpus files where one shows the case, fixtures otherwise; absent keys
follow the STIG's own semantics; catalogue entries are complete and wired to predicates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vmsentry.analyse.checks import load_checks
from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.rules import CONTROLS, load_catalogue
from vmsentry.collect import collect

CATALOGUE = Path(__file__).resolve().parents[1] / "src/vmsentry/analyse/rules/catalogue"
FIX = Path(__file__).parent / "fixtures" / "vmware"
RULES = {r.id: r for r in load_catalogue()}
C = "corpus:vmware-vmx/"


def _paths(corpus_dir: Path, spec: str | tuple) -> list[str]:
    specs = spec if isinstance(spec, tuple) else (spec,)
    return [str(corpus_dir / s[len("corpus:") :]) if s.startswith("corpus:") else str(FIX / s) for s in specs]


def statuses(corpus_dir: Path, rule_id: str, files, asset: str) -> set[str]:
    inv, _ = collect(_paths(corpus_dir, files))
    found = {f.status for f in evaluate(inv, [RULES[rule_id]]) if f.asset == asset}
    assert found, f"{rule_id}: no result for {asset}"
    return found


# rule, failing input, its asset, passing input, its asset
CASES = [
    (
        "VMS-VMX-001",
        "esx-risky.vmx",
        "vm:esx-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    (
        "VMS-VMX-002",
        "esx-risky.vmx",
        "vm:esx-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    ("VMS-VMX-003", "esx-risky.vmx", "vm:esx-risky", "esx-hardened.vmx", "vm:esx-hardened"),
    ("VMS-VMX-004", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-005", "ws-risky.vmx", "vm:ws-risky", "esx-hardened.vmx", "vm:esx-hardened"),
    (
        "VMS-VMX-006",
        "ws-risky.vmx",
        "vm:ws-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    (
        "VMS-VMX-007",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
        "esx-hardened.vmx",
        "vm:esx-hardened",
    ),
    ("VMS-VMX-008", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-009", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VMX-010",
        "ws-risky.vmx",
        "vm:ws-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    ("VMS-VMX-011", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-012", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VMX-013",
        "ws-risky.vmx",
        "vm:ws-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    (
        "VMS-VMX-014",
        C + "minsungchu__Ubuntu_64-bit.vmx",
        "vm:Ubuntu 64-bit",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    (
        "VMS-VMX-015",
        "esx-risky.vmx",
        "vm:esx-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    (
        "VMS-VMX-016",
        "esx-risky.vmx",
        "vm:esx-risky",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    ("VMS-VMX-017", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-018", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-019", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-020", "ws-risky.vmx", "vm:ws-risky", C + "libvirt__vmx2xml-gsx-in-the-wild-2.vmx", "vm:Server2"),
    ("VMS-VMX-021", "ws-risky.vmx", "vm:ws-risky", C + "libvirt__esx-in-the-wild-2.vmx", "vm:virtDebian1"),
    ("VMS-VMX-022", C + "minsungchu__Ubuntu_64-bit.vmx", "vm:Ubuntu 64-bit", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VMX-023",
        C + "libvirt__vmx2xml-esx-in-the-wild-4.vmx",
        "vm:virtMonServ1",
        "ws-hardened.vmx",
        "vm:ws-hardened",
    ),
    (
        "VMS-VMX-024",
        C + "libvirt__vmx2xml-esx-in-the-wild-4.vmx",
        "vm:virtMonServ1",
        C + "libvirt__vmx2xml-ws-in-the-wild-2.vmx",
        "vm:debian6",
    ),
    ("VMS-VMX-025", C + "minsungchu__Ubuntu_64-bit.vmx", "vm:Ubuntu 64-bit", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-026", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VMX-027", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VMX-028",
        C + "libvirt__vmx2xml-graphics-vnc.vmx",
        "vm:libvirt__vmx2xml-graphics-vnc",
        "ws-hardened.vmx",
        "vm:ws-hardened",
    ),
    ("VMS-ESX-001", "esxi-export.json", "network:VM Network", "esxi-export.json", "network:Secure PG"),
    ("VMS-ESX-002", "esxi-export.json", "network:VM Network", "esxi-export.json", "network:dvportgroup-1285"),
    ("VMS-ESX-003", "esxi-export.json", "network:Sniffer", "esxi-export.json", "network:VM Network"),
    ("VMS-ESX-004", "esxi-export.json", "network:Sniffer", "esxi-export.json", "network:Secure PG"),
    ("VMS-VMW-002", "host-linux", "network:vmnet8", "host-linux", "network:vmnet2"),
    # generic rules on VMware inputs
    ("VMS-VM-001", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VM-002", "ws-risky.vmx", "vm:ws-risky", "esx-risky.vmx", "vm:esx-risky"),
    ("VMS-VM-003", "esx-risky.vmx", "vm:esx-risky", "ws-risky.vmx", "vm:ws-risky"),
    (
        "VMS-VM-004",
        C + "libvirt__vmx2xml-serial-network-server.vmx",
        "vm:libvirt__vmx2xml-serial-network-server",
        "ws-hardened.vmx",
        "vm:ws-hardened",
    ),
    ("VMS-VM-010", ("ws-risky.vmx", "host-linux"), "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VM-011", ("ws-risky.vmx", "host-linux"), "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VM-020",
        C + "libvirt__fusion-in-the-wild-1.vmx",
        "vm:ATTM_VM",
        C + "minsungchu__Ubuntu_64-bit.vmx",
        "vm:Ubuntu 64-bit",
    ),
    # VMS-VM-024 reports what cannot be judged: unknown, never pass
    (
        "VMS-VM-024",
        C + "libvirt__vmx2xml-ethernet-custom.vmx",
        "vm:libvirt__vmx2xml-ethernet-custom",
        ("ws-risky.vmx", "host-linux"),
        "vm:ws-risky",
    ),
    (
        "VMS-VM-030",
        C + "minsungchu__Ubuntu_64-bit.vmx",
        "vm:Ubuntu 64-bit",
        ("esx-hardened.vmx", "esxi-export.json"),
        "vm:esx-hardened",
    ),
    ("VMS-VM-041", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VM-060", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    ("VMS-VM-061", "ws-risky.vmx", "vm:ws-risky", "ws-hardened.vmx", "vm:ws-hardened"),
    (
        "VMS-VM-070",
        C + "minsungchu__Ubuntu_64-bit.vmx",
        "vm:Ubuntu 64-bit",
        C + "libvirt__esx-in-the-wild-17.vmx",
        "vm:esx8.0-win11-with-second-disk-in-subfolder",
    ),
    ("VMS-VM-071", "esx-risky.vmx", "vm:esx-risky", "ws-hardened.vmx", "vm:ws-hardened"),
]


@pytest.mark.parametrize("rule_id,bad,bad_asset,good,good_asset", CASES, ids=[c[0] for c in CASES])
def test_rule_fails_and_passes(corpus_dir, rule_id, bad, bad_asset, good, good_asset):
    assert "vmware" in RULES[rule_id].platforms
    assert ("unknown" if rule_id == "VMS-VM-024" else "fail") in statuses(corpus_dir, rule_id, bad, bad_asset)
    got = statuses(corpus_dir, rule_id, good, good_asset)
    assert got <= {"pass", "not_applicable"} and got, got


def test_vmnet_nat_forward_rule(tmp_path, corpus_dir):
    assert "fail" in statuses(corpus_dir, "VMS-VMW-001", "host-linux", "network:vmnet8")
    quiet = tmp_path / "vmnet8" / "nat"
    quiet.mkdir(parents=True)
    (quiet / "nat.conf").write_text("[host]\nip = 192.168.150.2\ndevice = /dev/vmnet8\n[incomingtcp]\n# none\n")
    inv, _ = collect([str(quiet / "nat.conf")])
    assert {f.status for f in evaluate(inv, [RULES["VMS-VMW-001"]])} == {"pass"}


def test_stig_absent_key_semantics(corpus_dir):
    """STIG: absent copy/paste/dnd/diskShrink/... keys are not a finding; absent maxConnections is one."""
    inv, _ = collect(_paths(corpus_dir, "esx-hardened.vmx"))
    res = {f.rule_id: f for f in evaluate(inv, [RULES[r] for r in ("VMS-VMX-001", "VMS-VMX-010", "VMS-VMX-014")])}
    assert all(f.status == "pass" and "absent" in f.evidence["value"] for f in res.values())
    inv, _ = collect(_paths(corpus_dir, C + "libvirt__esx-in-the-wild-2.vmx"))  # ESX, no maxConnections key
    [f] = evaluate(inv, [RULES["VMS-VMX-007"]])
    assert (f.status, f.evidence["value"]) == ("fail", "absent")


def test_clipboard_stig_rules_do_not_apply_to_hosted_vms(corpus_dir):
    inv, _ = collect(_paths(corpus_dir, C + "minsungchu__Ubuntu_64-bit.vmx"))
    na: dict[str, int] = {}
    evaluate(inv, [RULES["VMS-VMX-001"], RULES["VMS-VMX-003"]], not_applicable_counts=na)
    assert na == {"VMS-VMX-001": 1, "VMS-VMX-003": 1}


def test_hgfs_server_unknown_when_product_unknown(corpus_dir):
    inv, _ = collect(_paths(corpus_dir, C + "libvirt__vmx2xml-graphics-vnc.vmx"))
    [f] = evaluate(inv, [RULES["VMS-VMX-027"]])
    assert f.status == "unknown"


def test_catalogue_entries_are_complete():
    entries = yaml.safe_load((CATALOGUE / "vmware.yaml").read_text(encoding="utf-8"))
    checks = load_checks()
    assert len(entries) >= 30
    for e in entries:
        # a Python predicate by name, or a declarative test (validated when the catalogue loads)
        assert ("check" in e) != ("test" in e) and ("test" in e or e["check"] in checks), e["id"]
        assert e["platforms"] == ["vmware"]
        assert "vmware" in e["remediation"] and e["references"] and e["default"]
        if "control" in e:
            assert e["control"] in CONTROLS
            assert "vmware" in e["setting"] and "vmware" in e["recommended"]
    tested = {c[0] for c in CASES} | {"VMS-VMW-001"}
    assert {e["id"] for e in entries} <= tested
