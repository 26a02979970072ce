"""scan --format json: the contract's shape, worst-first order, determinism, speed."""

import json
import random
import time

from fixtures.report.builders import finding, result
from vmsentry.model.findings import sort_findings
from vmsentry.report import render

FINDING_KEYS = {
    "rule_id",
    "title",
    "severity",
    "status",
    "category",
    "platform",
    "asset",
    "evidence",
    "remediation",
    "references",
}
EVIDENCE_KEYS = {"file", "locator", "key", "value"}


def scan_json(res):
    return json.loads(render("json", res))


def test_top_level_shape():
    doc = scan_json(
        result([finding()], errors=("bad.xml: not well-formed",), skipped_files=2, seconds=0.5, notes=["a note"])
    )
    assert list(doc) == ["tool", "summary", "findings", "notes", "inventory", "errors"]
    assert doc["tool"] == {"name": "vmsentry", "version": "0.1.0"}
    assert doc["errors"] == [{"file": "bad.xml", "message": "not well-formed"}]
    assert doc["notes"] == ["a note"]
    assert doc["inventory"]["schema"] == "vmsentry.inventory/1"
    assert [vm["name"] for vm in doc["inventory"]["vms"]] == ["web", "db"]


def test_findings_follow_the_contract_and_skip_not_applicable():
    doc = scan_json(
        result(
            [
                finding(),
                finding(status="not_applicable"),
                finding(status="pass"),
                finding(status="unknown", message="not collected"),
            ]
        )
    )
    assert [f["status"] for f in doc["findings"]] == ["fail", "unknown", "pass"]
    for f in doc["findings"]:
        assert set(f) == FINDING_KEYS
        assert set(f["evidence"]) >= EVIDENCE_KEYS
    assert doc["findings"][1]["evidence"]["message"] == "not collected"


def test_summary_counts():
    res = result(
        [
            finding(severity="critical"),
            finding(severity="critical"),
            finding(severity="low"),
            finding(status="pass"),
            finding(status="not_applicable"),
            finding(status="waived"),
        ],
        errors=("x: y",),
        skipped_files=4,
        seconds=1.23456,
    )
    summary = scan_json(res)["summary"]
    assert summary["vms"] == 2 and summary["networks"] == 0 and summary["hosts"] == 0
    assert summary["findings"] == 6
    assert summary["by_status"] == {"fail": 3, "pass": 1, "unknown": 0, "not_applicable": 1, "error": 0, "waived": 1}
    assert summary["failing_by_severity"] == {"critical": 2, "high": 0, "medium": 0, "low": 1, "info": 0}
    assert (summary["errors"], summary["skipped_files"], summary["seconds"]) == (1, 4, 1.235)


def test_worst_first():
    findings = [
        finding(status="pass"),
        finding(severity="low", asset="vm:a"),
        finding(status="error"),
        finding(severity="critical", asset="vm:z"),
        finding(status="unknown"),
        finding(status="waived"),
    ]
    got = [(f["status"], f["severity"], f["asset"]) for f in scan_json(result(findings))["findings"]]
    assert got == [
        ("fail", "critical", "vm:z"),
        ("fail", "low", "vm:a"),
        ("error", "high", "vm:web"),
        ("unknown", "high", "vm:web"),
        ("waived", "high", "vm:web"),
        ("pass", "high", "vm:web"),
    ]


def test_findings_are_exactly_to_dict_whatever_the_values():
    odd = [
        finding(value=5901),
        finding(value=["0.0.0.0", 5900]),
        finding(value=None, key=None, file=None),
        finding(value=True, message='line\nbreak "quoted" \\ back'),
        finding(value=1.5),
        finding(asset="vm:café-\u202e\x1b[31m", locator="/domain/devices/interface[@type='bridge']"),
        finding(file="dir/\udcff.xml"),
        finding(value={"nested": {"ports": [80, 443]}}),
    ]
    waived = finding(status="waived")
    waived.waiver = {"owner": "alice", "reason": "ok", "expires": "2026-12-31", "rule": "*", "asset": "*"}
    odd.append(waived)
    doc = scan_json(result(odd))
    assert doc["findings"] == [f.to_dict() for f in sort_findings(odd)]


def test_output_is_ascii_and_deterministic():
    findings = [finding(asset=f"vm:é{i}", rule_id=f"VMS-LV-{i % 3:03d}") for i in range(50)]
    text = render("json", result(findings))
    assert text.isascii()
    shuffled = findings[:]
    random.Random(7).shuffle(shuffled)
    assert render("json", result(shuffled)) == text


def test_one_finding_per_line():
    text = render("json", result([finding(), finding(status="pass")]))
    lines = text.splitlines()
    start = lines.index('"findings":[')
    assert lines[start + 1].startswith('{"rule_id":"VMS-LV-001"') and lines[start + 3] == "],"


def test_baseline_section():
    new = finding(rule_id="VMS-LV-002")
    fixed = finding(rule_id="VMS-LV-003").to_dict()
    doc = scan_json(result([new], baseline={"new": [new], "fixed": [fixed], "unchanged": 4, "file": "b.json"}))
    assert doc["baseline"] == {"file": "b.json", "unchanged": 4, "fixed": [fixed], "new": [new.to_dict()]}
    assert (doc["summary"]["new"], doc["summary"]["fixed"]) == (1, 1)


def test_empty_scan():
    doc = scan_json(result([], vms=()))
    assert doc["findings"] == [] and doc["summary"]["findings"] == 0


def test_large_scan_serialises_quickly():
    # 10,000 VMs x 40 rules is ~400k findings; half of that here keeps the suite short. The bound is loose
    # (shared CI machines are noisy): it catches an accidental pure-Python or quadratic path.
    count = 200_000
    statuses = ["pass"] * 6 + ["fail", "not_applicable", "not_applicable", "unknown"]
    severities = ["critical", "high", "medium", "low", "info"]
    findings = [
        finding(
            rule_id=f"VMS-LV-{i % 40:03d}",
            asset=f"vm:vm{i // 40:05d}",
            status=statuses[i % 10],
            severity=severities[i % 5],
            file=f"/etc/libvirt/qemu/vm{i // 40:05d}.xml",
        )
        for i in range(count)
    ]
    res = result(findings, vms=())
    started = time.process_time()
    text = render("json", res)
    elapsed = time.process_time() - started
    assert text.count("\n") > count * 0.7
    assert elapsed < 5.0, f"{count} findings took {elapsed:.2f} s"
