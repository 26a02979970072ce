"""Baselines: read a previous JSON report back and tell new from fixed failures."""

import json

import pytest

from fixtures.report.builders import finding, result
from vmsentry.analyse.baseline import BaselineError, compare, load_baseline
from vmsentry.report import render


def saved_report(tmp_path, findings):
    path = tmp_path / "baseline.json"
    path.write_text(render("json", result(findings)), encoding="utf-8")
    return str(path)


def test_reads_back_a_json_report(tmp_path):
    findings = [finding(), finding(status="pass", rule_id="VMS-LV-002"), finding(status="not_applicable")]
    previous = load_baseline(saved_report(tmp_path, findings))
    assert previous == [findings[0].to_dict(), findings[1].to_dict()]


def test_new_fixed_and_unchanged():
    still = finding(rule_id="VMS-LV-001")
    fixed_now = finding(rule_id="VMS-LV-002")
    brand_new = finding(rule_id="VMS-LV-003")
    previous = [still.to_dict(), fixed_now.to_dict()]
    fixed_now.status = "pass"
    diff = compare([still, fixed_now, brand_new], previous)
    assert diff["new"] == [brand_new]
    assert diff["fixed"] == [previous[1]]
    assert diff["unchanged"] == 1


def test_identity_is_rule_asset_file_and_locator():
    before = finding(locator="/domain/devices/graphics[1]")
    moved = finding(locator="/domain/devices/graphics[2]")
    other_file = finding(file="vms/web-copy.xml")
    other_asset = finding(asset="vm:web2")
    diff = compare([before, moved, other_file, other_asset], [before.to_dict()])
    assert diff["new"] == [moved, other_file, other_asset]
    assert diff["fixed"] == [] and diff["unchanged"] == 1


def test_only_failures_count_on_either_side():
    was_unknown = finding(status="unknown").to_dict()
    was_waived = finding(rule_id="VMS-LV-002", status="waived").to_dict()
    now_failing = [finding(), finding(rule_id="VMS-LV-002")]
    diff = compare(now_failing + [finding(rule_id="VMS-LV-003", status="unknown")], [was_unknown, was_waived])
    assert diff["new"] == now_failing and diff["fixed"] == []


def test_findings_without_file_or_locator_match(tmp_path):
    bare = finding(file=None, locator=None)
    previous = load_baseline(saved_report(tmp_path, [bare]))
    assert compare([bare], previous) == {"new": [], "fixed": [], "unchanged": 1}


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "cannot read: No such file"),
        ('{"findings": [', ":1: not JSON"),
        ('{"runs": []}', "no 'findings' list"),
        ("[1, 2]", "no 'findings' list"),
        ('{"findings": [{"rule_id": "X"}]}', "findings[0] is not a finding"),
        (
            '{"findings": [{"rule_id": "X", "asset": "vm:a", "status": "fail", "evidence": "nope"}]}',
            "findings[0] is not a finding",
        ),
    ],
)
def test_unusable_files_say_which_and_why(tmp_path, content, problem):
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(BaselineError) as caught:
        load_baseline(str(path))
    assert str(caught.value).startswith(str(path))
    assert problem in str(caught.value)


def test_not_utf8(tmp_path):
    path = tmp_path / "base.json"
    path.write_bytes(b'{"findings": ["\xff"]}')
    with pytest.raises(BaselineError, match="not UTF-8"):
        load_baseline(str(path))


def test_a_sarif_file_is_refused_clearly(tmp_path):
    path = tmp_path / "base.sarif"
    path.write_text(json.dumps({"version": "2.1.0", "runs": []}), encoding="utf-8")
    with pytest.raises(BaselineError, match="expected the output of 'vmsentry scan --format json'"):
        load_baseline(str(path))
