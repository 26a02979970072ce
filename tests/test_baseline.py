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


def test_scan_with_a_baseline_reports_only_new_and_fixed(run_cli, tmp_path):
    """`scan --baseline` (its help: "report only new and fixed"): the JSON's findings are the new ones, and
    the text lists the new and the fixed, not every finding of the scan again."""
    import re
    import shutil
    from pathlib import Path

    lab = Path(__file__).resolve().parents[1] / "examples" / "lab"
    changed = tmp_path / "lab"
    shutil.copytree(lab, changed)
    web = changed / "domains" / "web.xml"
    web.write_text(web.read_text().replace("127.0.0.1", "0.0.0.0"))  # VNC of vm web on every address
    db = changed / "domains" / "db.xml"
    db.write_text(re.sub(r"\s*<serial type='tcp'>.*?</serial>", "", db.read_text(), flags=re.S))
    before = tmp_path / "before.json"
    assert run_cli("scan", str(lab), "--format", "json", "--no-progress", "-o", str(before)).returncode == 1
    full = json.loads(run_cli("scan", str(changed), "--format", "json", "--no-progress").stdout)
    proc = run_cli("scan", str(changed), "--baseline", str(before), "--format", "json", "--no-progress")
    doc = json.loads(proc.stdout)
    new, fixed = doc["baseline"]["new"], doc["baseline"]["fixed"]
    assert new and fixed
    assert doc["findings"] == new and all(f["status"] == "fail" for f in new)
    assert len(doc["findings"]) < len([f for f in full["findings"] if f["status"] == "fail"])
    assert doc["summary"]["by_status"] == full["summary"]["by_status"]  # the summary still counts the scan
    text = run_cli("scan", str(changed), "--baseline", str(before), "--format", "text", "--no-progress").stdout
    listed = [line for line in text.splitlines() if re.match(r"\s+\[[A-Z]+\]", line)]
    assert len(listed) == len(new) + len(fixed)
    assert f"{doc['baseline']['unchanged']} failing findings already in the baseline, not listed" in text
    assert all(f"{f['rule_id']}" in text for f in new + fixed)
