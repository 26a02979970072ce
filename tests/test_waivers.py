"""Waiver files (owner, reason, expiry; glob patterns) and applying them to findings."""

from datetime import date
from pathlib import Path

import pytest

from fixtures.report.builders import finding
from vmsentry.analyse.waivers import Waiver, WaiverError, apply_waivers, load_waivers

FIXTURE = Path(__file__).parent / "fixtures" / "report" / "waivers.yaml"
TODAY = date(2026, 3, 1)


def waiver(rule="VMS-LV-001", asset="vm:web", owner="alice", reason="jump host only", expires=date(2026, 12, 31)):
    return Waiver(rule, asset, owner, reason, expires, line=3)


def write(tmp_path, text):
    path = tmp_path / "waivers.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_loads_the_example_file():
    loaded = load_waivers(str(FIXTURE))
    assert loaded == [
        Waiver(
            "VMS-LV-001",
            "vm:web*",
            "alice",
            "the web tier's VNC is reachable only from the jump host",
            date(2026, 12, 31),
            line=3,
        ),
        Waiver("VMS-LV-*", "vm:lab-?", "bob", "throw-away lab guests, rebuilt nightly", date(2026, 6, 30), line=8),
    ]


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "waivers:\n", "waivers: []\n"])
def test_empty_files_hold_no_waivers(tmp_path, text):
    assert load_waivers(write(tmp_path, text)) == []


ENTRY = "waivers:\n  - rule: VMS-LV-001\n    asset: vm:web\n    owner: alice\n    reason: ok\n    expires: 2026-12-31\n"


@pytest.mark.parametrize(
    "text, where, problem",
    [
        ("waivers: [\n  {rule: x\n", 3, "bad YAML"),
        (
            "waivers:\n  - rule: VMS-LV-001\n    asset: vm:web\n    owner: alice\n    reason: ok\n    expires: 2026-12-31\n"
            "    reson: typo\n",
            7,
            "unknown key 'reson'",
        ),
        (
            "waivers:\n  - rule: VMS-LV-001\n    asset: vm:web\n    owner: alice\n    expires: 2026-12-31\n",
            2,
            "waiver lacks reason",
        ),
        ("waivers:\n  - rule: VMS-LV-001\n    asset: vm:web\n", 2, "waiver lacks owner, reason, expires"),
        (ENTRY.replace("2026-12-31", "2026-13-01"), 6, "expires must be a date YYYY-MM-DD, got '2026-13-01'"),
        (ENTRY.replace("2026-12-31", "next year"), 6, "expires must be a date YYYY-MM-DD"),
        (ENTRY.replace("2026-12-31", "2026-12-31T10:00:00"), 6, "expires must be a date YYYY-MM-DD"),
        (ENTRY.replace("reason: ok", "reason: ''"), 5, "empty reason"),
        (ENTRY.replace("reason: ok", "reason:"), 5, "empty reason"),
        (ENTRY.replace("owner: alice", "owner: [alice, bob]"), 4, "owner must be a single value"),
        (ENTRY + "    rule: VMS-LV-002\n", 7, "rule given twice"),
        (ENTRY + "ignore: []\n", 7, "unknown key 'ignore'"),
        ("waivers:\n  rule: x\n", 2, "'waivers' must be a list"),
        ("- rule: x\n", 1, "expected a mapping with a 'waivers' list"),
        ("waivers:\n  - just a string\n", 2, "a waiver must be a mapping"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path, text, where, problem):
    path = write(tmp_path, text)
    with pytest.raises(WaiverError) as caught:
        load_waivers(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{where}: "), message
    assert problem in message


def test_unreadable_file(tmp_path):
    with pytest.raises(WaiverError, match=r"missing\.yaml: cannot read: No such file"):
        load_waivers(str(tmp_path / "missing.yaml"))


def test_matching_waiver_waives_fail_and_unknown():
    failing, unknown, passing = finding(), finding(status="unknown"), finding(status="pass")
    notes = apply_waivers([failing, unknown, passing], [waiver()], TODAY)
    assert notes == []
    assert failing.status == unknown.status == "waived"
    assert failing.waiver == {
        "owner": "alice",
        "reason": "jump host only",
        "expires": "2026-12-31",
        "rule": "VMS-LV-001",
        "asset": "vm:web",
    }
    assert passing.status == "pass" and passing.waiver is None


def test_globs_on_rule_and_asset():
    findings = [
        finding(rule_id="VMS-LV-007", asset="vm:web01"),
        finding(rule_id="VMS-QE-001", asset="vm:web01"),
        finding(rule_id="VMS-LV-007", asset="vm:db01"),
        finding(rule_id="VMS-LV-007", asset="network:web"),
    ]
    apply_waivers(findings, [waiver(rule="VMS-LV-*", asset="vm:web*")], TODAY)
    assert [f.status for f in findings] == ["waived", "fail", "fail", "fail"]


def test_globs_are_case_sensitive():
    f = finding(asset="vm:Web")
    apply_waivers([f], [waiver(asset="vm:web")], TODAY)
    assert f.status == "fail"


def test_waiver_holds_through_its_expiry_day():
    f = finding()
    assert apply_waivers([f], [waiver(expires=TODAY)], TODAY) == []
    assert f.status == "waived"


def test_expired_waiver_leaves_the_finding_failing_with_a_note():
    f = finding()
    notes = apply_waivers([f], [waiver(expires=date(2026, 1, 1), owner="bob")], TODAY)
    assert f.status == "fail"
    assert f.waiver["expired"] is True and f.waiver["owner"] == "bob"
    assert notes == ["waiver for VMS-LV-001 on vm:web (bob) expired on 2026-01-01; finding is active again"]


def test_an_unexpired_waiver_wins_over_an_expired_one():
    f = finding()
    notes = apply_waivers([f], [waiver(expires=date(2026, 1, 1)), waiver(owner="carol")], TODAY)
    assert f.status == "waived" and f.waiver["owner"] == "carol"
    assert notes == []


def test_expiry_notes_are_not_repeated():
    findings = [finding(locator="line 1"), finding(locator="line 2")]
    notes = apply_waivers(findings, [waiver(expires=date(2026, 1, 1))], TODAY)
    assert len(notes) == 1


def test_unused_waivers_are_reported():
    notes = apply_waivers([finding(status="pass")], [waiver(asset="vm:gone")], TODAY)
    assert notes == ["waiver for VMS-LV-001 on vm:gone (alice, line 3) matched nothing"]
