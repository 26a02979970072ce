"""scan --format junit: parses back, one suite per asset, outcomes mapped, hostile names escaped."""

from lxml import etree

from fixtures.report.builders import finding, result
from vmsentry.model.text import printable
from vmsentry.report import render


def junit(findings, **kw):
    text = render("junit", result(findings, **kw))
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return etree.fromstring(text.encode("utf-8"))


def test_suites_per_asset_worst_first_with_counts():
    root = junit(
        [
            finding(asset="vm:db", severity="low"),
            finding(asset="vm:web", severity="critical"),
            finding(asset="vm:web", status="pass", rule_id="VMS-LV-002"),
            finding(asset="vm:web", status="error", rule_id="VMS-LV-003", message="KeyError"),
            finding(asset="vm:db", status="not_applicable", rule_id="VMS-LV-004"),
        ],
        seconds=2.5,
    )
    assert root.tag == "testsuites"
    assert {k: root.get(k) for k in ("tests", "failures", "errors", "skipped", "time")} == {
        "tests": "5",
        "failures": "2",
        "errors": "1",
        "skipped": "1",
        "time": "2.500",
    }
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["vm:web", "vm:db"]
    assert [(s.get("tests"), s.get("failures"), s.get("errors"), s.get("skipped")) for s in suites] == [
        ("3", "1", "1", "0"),
        ("2", "1", "0", "1"),
    ]


def test_outcomes():
    waived = finding(status="waived", rule_id="VMS-LV-005")
    waived.waiver = {"owner": "alice", "reason": "lab", "expires": "2026-12-31", "rule": "*", "asset": "*"}
    root = junit(
        [
            finding(severity="critical", locator="line 4"),
            finding(status="pass", rule_id="VMS-LV-002"),
            finding(status="error", rule_id="VMS-LV-003", message="KeyError: 'nics'"),
            finding(
                status="unknown",
                rule_id="VMS-LV-004",
                key=None,
                file=None,
                locator=None,
                message="qemu.conf not collected",
            ),
            waived,
        ]
    )
    cases = {c.get("name").split()[0]: c for c in root.iter("testcase")}
    assert all(c.get("classname") == "vm:web" for c in cases.values())
    assert cases["VMS-LV-001"].get("name") == "VMS-LV-001 VNC console listens on every host address"
    failure = cases["VMS-LV-001"].find("failure")
    assert failure.get("type") == "critical" and failure.get("message") == "VNC console listens on every host address"
    assert failure.text == (
        "evidence: vms/web.xml:line 4 listen=0.0.0.0\nfix: Bind the console to 127.0.0.1 or a UNIX socket."
    )
    assert len(cases["VMS-LV-002"]) == 0
    assert cases["VMS-LV-003"].find("error").get("message").endswith("(KeyError: 'nics')")
    assert cases["VMS-LV-004"].find("skipped").get("message") == "unknown: qemu.conf not collected"
    assert cases["VMS-LV-005"].find("skipped").get("message") == "waived by alice until 2026-12-31: lab"


def test_hostile_names_are_escaped_and_round_trip():
    evil = "vm:<script>alert(1)</script>&\"'\x1b[2J\n\x00"
    text = render("junit", result([finding(asset=evil, title="<b>\"x\"</b> & 'y'", value="</failure>")]))
    assert "<script>" not in text and "</b>" not in text
    root = etree.fromstring(text.encode("utf-8"))
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == printable(evil)
    case = suite.find("testcase")
    assert case.get("name") == "VMS-LV-001 <b>\"x\"</b> & 'y'"
    assert "listen=</failure>" in case.find("failure").text


def test_empty_scan_is_valid():
    root = junit([])
    assert root.get("tests") == "0" and root.findall("testsuite") == []
