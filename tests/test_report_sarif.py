"""scan --format sarif: valid SARIF 2.1.0 (against the OASIS schema), severity mapping, locations."""

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from fixtures.report.builders import finding, result, rule
from vmsentry.analyse.rules import SECURITY_SEVERITY
from vmsentry.report import render

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "report" / "sarif-schema-2.1.0.json").read_text())
RULES = (
    rule("VMS-LV-001", "critical"),
    rule("VMS-LV-002", "high"),
    rule("VMS-LV-003", "medium"),
    rule("VMS-LV-004", "low"),
    rule("VMS-LV-005", "info", category="logging"),
)


def sarif(findings, **kw):
    kw.setdefault("rules", RULES)
    log = json.loads(render("sarif", result(findings, **kw)))
    jsonschema.Draft4Validator(SCHEMA).validate(log)
    return log


def only_run(log):
    (run,) = log["runs"]
    return run


def test_a_full_report_is_valid_sarif():
    waived = finding(rule_id="VMS-LV-003", status="waived")
    waived.waiver = {"owner": "alice", "reason": "lab only", "expires": "2026-12-31", "rule": "*", "asset": "*"}
    log = sarif(
        [
            finding(),
            finding(rule_id="VMS-LV-002", status="unknown", message="not collected"),
            waived,
            finding(rule_id="VMS-LV-004", status="error", message="KeyError"),
            finding(status="pass"),
            finding(rule_id="VMS-UNKNOWN-RULE", file=None),
        ],
        errors=("vms/bad.xml: not well-formed",),
    )
    assert log["$schema"] == "https://json.schemastore.org/sarif-2.1.0.json" and log["version"] == "2.1.0"
    driver = only_run(log)["tool"]["driver"]
    assert driver["name"] == "vmsentry" and driver["version"] == "0.1.0" and "informationUri" not in driver


def test_every_catalogue_rule_with_security_severity_and_level():
    rules = only_run(sarif([]))["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [r.id for r in RULES]
    levels = {r["id"]: r["defaultConfiguration"]["level"] for r in rules}
    assert levels == {
        "VMS-LV-001": "error",
        "VMS-LV-002": "error",
        "VMS-LV-003": "warning",
        "VMS-LV-004": "note",
        "VMS-LV-005": "note",
    }
    for descriptor, source in zip(rules, RULES):
        assert descriptor["properties"]["security-severity"] == SECURITY_SEVERITY[source.severity]
        assert descriptor["properties"]["tags"] == ["security", source.category]
        assert descriptor["properties"]["precision"] == "high"
        assert descriptor["shortDescription"]["text"] == source.title
        assert descriptor["fullDescription"]["text"] == source.rationale
        assert descriptor["help"]["text"] == f"Fix {source.id}."
    assert float(rules[0]["properties"]["security-severity"]) >= 9.0  # GitHub's "critical" band


def test_results_are_failures_unknowns_and_suppressed_waivers_only():
    waived = finding(rule_id="VMS-LV-003", severity="medium", status="waived")
    waived.waiver = {"owner": "alice", "reason": "lab only", "expires": "2026-12-31", "rule": "*", "asset": "*"}
    findings = [
        finding(rule_id="VMS-LV-002"),
        finding(rule_id="VMS-LV-001", status="unknown", message="why"),
        waived,
        finding(status="pass"),
        finding(status="not_applicable"),
        finding(status="error"),
    ]
    results = only_run(sarif(findings))["results"]
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in results] == [
        ("VMS-LV-002", 1, "error"),
        ("VMS-LV-001", 0, "note"),
        ("VMS-LV-003", 2, "warning"),
    ]
    assert results[1]["properties"]["status"] == "unknown"
    assert "suppressions" not in results[0]
    assert results[2]["suppressions"] == [{"kind": "external", "justification": "lab only"}]


def test_message_names_title_asset_and_evidence():
    (res,) = only_run(sarif([finding(asset="vm:web", key="listen", value="0.0.0.0")]))["results"]
    assert res["message"]["text"] == "VNC console listens on every host address on vm:web: listen=0.0.0.0"


@pytest.mark.parametrize(
    "locator, line",
    [
        ("line 12", 12),
        ("line 7, column 3", 7),
        ("key x at line 40, col 2", 40),
        ("/domain/devices/graphics[1]", None),
        ("line 0", None),
        ("outline 5", None),
        (None, None),
    ],
)
def test_region_from_locator(locator, line):
    (res,) = only_run(sarif([finding(locator=locator)]))["results"]
    physical = res["locations"][0]["physicalLocation"]
    assert physical.get("region") == ({"startLine": line} if line else None)


def test_locations_and_uris():
    findings = [
        finding(file="vms/web 1.xml", asset="vm:a"),
        finding(file="/etc/libvirt/qemu/db.xml", asset="vm:b"),
        finding(file=None, asset="vm:c"),
        finding(file="vms/\udcff.xml", asset="vm:d"),
        finding(file="qemu:///system", asset="vm:e"),
    ]
    by_asset = {
        r["locations"][0]["logicalLocations"][0]["name"]: r["locations"][0]
        for r in only_run(sarif(findings))["results"]
    }
    assert by_asset["vm:a"]["physicalLocation"]["artifactLocation"]["uri"] == "vms/web%201.xml"
    assert by_asset["vm:b"]["physicalLocation"]["artifactLocation"]["uri"] == "file:///etc/libvirt/qemu/db.xml"
    assert by_asset["vm:d"]["physicalLocation"]["artifactLocation"]["uri"] == "vms/%FF.xml"
    assert by_asset["vm:e"]["physicalLocation"]["artifactLocation"]["uri"] == "qemu:///system"
    assert "physicalLocation" not in by_asset["vm:c"]
    assert by_asset["vm:c"]["logicalLocations"] == [{"name": "vm:c", "kind": "resource"}]


def test_fingerprint_is_stable_and_per_place():
    a, b = finding(locator="line 3"), finding(locator="line 4")
    results = only_run(sarif([a, b]))["results"]
    expected = hashlib.sha256(b"VMS-LV-001|vm:web|vms/web.xml|line 3").hexdigest()
    assert results[0]["partialFingerprints"] == {"vmsentry/v1": expected}
    assert results[1]["partialFingerprints"]["vmsentry/v1"] != expected
    assert only_run(sarif([a, b]))["results"] == results


def test_unreadable_inputs_and_predicate_errors_are_notifications():
    log = sarif([finding(status="error", message="KeyError: 'nics'")], errors=("vms/bad.xml: not well-formed",))
    (invocation,) = only_run(log)["invocations"]
    assert invocation["executionSuccessful"] is False
    texts = [n["message"]["text"] for n in invocation["toolExecutionNotifications"]]
    assert texts == ["vms/bad.xml: not well-formed", "VMS-LV-001 on vm:web: KeyError: 'nics'"]
    assert only_run(sarif([]))["invocations"] == [{"executionSuccessful": True, "toolExecutionNotifications": []}]


def test_hostile_strings_stay_valid_json_and_sarif():
    evil = finding(asset="vm:<script>&\"'\x1b[2J\n", value="\x00\udcff", file="d/\u202e\udcff.xml")
    (res,) = only_run(sarif([evil]))["results"]
    assert res["locations"][0]["logicalLocations"][0]["name"] == "vm:<script>&\"'\x1b[2J\n"
