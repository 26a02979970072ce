"""Hyper-V rules (catalogue/hyperv.yaml) and the generic VM rules extended to Hyper-V: each fails on one
input and passes (or does not apply) on another, using the export fixtures in tests/fixtures/hyperv."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from vmsentry.analyse.checks import CHECKS, load_checks
from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.rules import CATEGORIES, CONTROLS, SEVERITIES, _rule_from, load_catalogue
from vmsentry.collect import collect

CATALOGUE = Path(__file__).resolve().parents[1] / "src/vmsentry/analyse/rules/catalogue"


def catalogue_entries(name: str) -> list[dict]:
    return yaml.safe_load((CATALOGUE / name).read_text(encoding="utf-8"))


def statuses(inv) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for f in evaluate(inv, load_catalogue()):
        out.setdefault((f.rule_id, f.asset), set()).add(f.status)
    return out


def check_entries(name: str, prefix: str, platform: str) -> None:
    load_checks()
    entries = catalogue_entries(name)
    assert entries, name
    for entry in entries:
        rule = _rule_from(entry, name)
        assert rule.id.startswith(prefix)
        assert rule.platforms == (platform,)
        assert rule.severity in SEVERITIES and rule.category in CATEGORIES
        # a Python predicate by name, or a declarative test (validated by _rule_from)
        assert (rule.check is None) != (rule.test is None) and (rule.test or rule.check in CHECKS), rule.id
        assert rule.references and rule.remediation_for(platform) and rule.default
        assert rule.control is None or rule.control in CONTROLS
        if rule.control:
            assert rule.setting.get(platform) and rule.recommended.get(platform), rule.id


FIX = Path(__file__).parent / "fixtures" / "hyperv"
OK = {"pass", "not_applicable"}

# rule -> (asset that fails, asset that passes)
CASES = {
    "VMS-HV-001": ("vm:web01", "vm:sql01"),
    "VMS-HV-002": ("vm:web01", "vm:sql01"),
    "VMS-HV-003": ("vm:web01", "vm:sql01"),
    "VMS-HV-004": ("vm:web01", "vm:sql01"),
    "VMS-HV-005": ("vm:web01", "vm:sql01"),
    "VMS-HV-006": ("host:HV-LAB1", "host:HV-PROD7"),
    "VMS-HV-007": ("vm:web01", "vm:sql01"),
    "VMS-HV-008": ("vm:web01", "vm:sql01"),
    "VMS-HV-009": ("host:HV-LAB1", "host:HV-PROD7"),
    "VMS-HV-010": ("host:HV-LAB1", "host:HV-PROD7"),
    "VMS-HV-011": ("vm:web01", "vm:sql01"),
    "VMS-HV-012": ("vm:web01", "vm:sql01"),
    "VMS-HV-013": ("vm:web01", "vm:sql01"),
    "VMS-HV-014": ("vm:web01", "vm:sql01"),
    "VMS-HV-015": ("vm:web01", "vm:sql01"),
    "VMS-HV-016": ("network:External LAN", "network:vSwitch-VM"),
    "VMS-HV-017": ("network:Default Switch", "network:vSwitch-VM"),
    "VMS-HV-018": ("network:External LAN", "network:vSwitch-VM"),
    # generic rules whose semantics hold on Hyper-V
    "VMS-VM-020": ("vm:web01", "vm:build02"),
    "VMS-VM-030": ("vm:web01", "vm:sql01"),
    "VMS-VM-070": ("vm:web01", "vm:sql01"),
    "VMS-VM-071": ("vm:build02", "vm:sql01"),
    "VMS-VM-091": ("vm:web01", "vm:sql01"),
}


@pytest.fixture(scope="module")
def results():
    inv, _ = collect([str(FIX / "hv-lab.hyperv.json"), str(FIX / "hv-hardened.hyperv.json")])
    return statuses(inv)


def test_catalogue_entries_complete():
    check_entries("hyperv.yaml", "VMS-HV-", "hyperv")
    ids = {e["id"] for e in catalogue_entries("hyperv.yaml")}
    assert ids <= set(CASES) and len(ids) == 18


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fails_and_passes(results, rule_id):
    bad, good = CASES[rule_id]
    assert "fail" in results.get((rule_id, bad), set()), results.get((rule_id, bad))
    got = results.get((rule_id, good), set())
    assert got and got <= OK, got


def test_missing_facts_are_unknown_never_pass():
    inv, _ = collect([str(FIX / "hv-ps51-numeric.hyperv.json")])
    res = statuses(inv)
    for rule_id in ("VMS-HV-005", "VMS-HV-007", "VMS-HV-011", "VMS-HV-012", "VMS-HV-015"):
        assert res[(rule_id, "vm:legacy")] == {"unknown"}, rule_id
    assert res[("VMS-HV-009", "host:HV-OLD")] == {"not_applicable"}  # live migration disabled
    assert res[("VMS-HV-001", "vm:legacy")] == {"fail"} and res[("VMS-HV-002", "vm:legacy")] == {"pass"}
