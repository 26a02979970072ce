"""The terminal report: summary line, grouping and order, what is listed, hostile names."""

import re

from fixtures.report.builders import finding, result
from vmsentry.model.text import printable
from vmsentry.report import render


def lines_of(res, **kw):
    return render("text", res, **kw).splitlines()


def test_summary_line_counts_everything_first():
    res = result(
        [
            finding(severity="critical"),
            finding(severity="high", rule_id="VMS-LV-002"),
            finding(status="pass"),
            finding(status="not_applicable"),
            finding(status="unknown"),
            finding(status="error"),
            finding(status="waived"),
        ],
        errors=("bad.xml: not well-formed",),
        skipped_files=3,
        seconds=1.25,
    )
    summary = lines_of(res)[0]
    assert summary.startswith("2 VMs, 0 networks, 0 hosts | failing: 1 critical, 1 high |")
    for part in (
        "1 unknown",
        "1 error",
        "1 waived",
        "1 passed",
        "1 not applicable",
        "1 unreadable input",
        "3 skipped files",
        "1.2 s",
    ):
        assert part in summary


def test_assets_worst_first_and_findings_worst_first_within():
    res = result(
        [
            finding(asset="vm:a-only-unknown", status="unknown", message="qemu.conf not read"),
            finding(asset="vm:b-medium", severity="medium"),
            finding(asset="vm:c-critical", severity="low", rule_id="VMS-LV-009"),
            finding(asset="vm:c-critical", severity="critical", rule_id="VMS-LV-005"),
            finding(asset="vm:c-critical", status="unknown", rule_id="VMS-LV-007"),
        ]
    )
    out = lines_of(res)
    headings = [line for line in out if line.startswith("vm:")]
    assert headings == ["vm:c-critical  (2 failing)", "vm:b-medium  (1 failing)", "vm:a-only-unknown"]
    block = out[out.index(headings[0]) + 1 : out.index(headings[1])]
    tags = [line.split()[0] for line in block if line.startswith("  [")]
    assert tags == ["[CRITICAL]", "[LOW]", "[UNKNOWN]"]


def test_failing_line_has_evidence_and_remediation():
    out = render("text", result([finding(file="vms/web.xml", locator="line 12", key="listen", value="0.0.0.0")]))
    assert "[HIGH]     VMS-LV-001 VNC console listens on every host address" in out
    assert "evidence: vms/web.xml:line 12 listen=0.0.0.0" in out
    assert "fix: Bind the console to 127.0.0.1 or a UNIX socket." in out


def test_passes_and_not_applicable_are_counted_not_listed():
    out = render("text", result([finding(status="pass"), finding(status="not_applicable")]))
    assert "VMS-LV-001" not in out
    assert "nothing needs attention" in out


def test_unknown_and_error_are_one_line_with_their_reason():
    out = lines_of(
        result(
            [
                finding(status="unknown", key=None, file=None, locator=None, message="qemu.conf was not collected"),
                finding(status="error", rule_id="VMS-LV-002", message="KeyError: 'nics'"),
            ]
        )
    )
    unknown = [line for line in out if "[UNKNOWN]" in line]
    assert unknown == ["  [UNKNOWN]  VMS-LV-001 VNC console listens on every host address: qemu.conf was not collected"]
    assert any("[ERROR]" in line and line.endswith("(KeyError: 'nics')") for line in out)
    assert not any("fix:" in line for line in out)


def test_waived_is_compact_with_owner_reason_expiry():
    waived = finding(status="waived")
    waived.waiver = {
        "owner": "alice",
        "reason": "jump host only",
        "expires": "2026-12-31",
        "rule": "VMS-LV-*",
        "asset": "vm:web*",
    }
    out = render("text", result([waived]))
    assert (
        "[WAIVED]   VMS-LV-001 VNC console listens on every host address "
        "(waived by alice until 2026-12-31: jump host only)" in out
    )


def test_expired_waiver_is_shown_on_the_failure_and_notes_listed():
    failing = finding()
    failing.waiver = {
        "owner": "bob",
        "reason": "r",
        "expires": "2026-01-01",
        "rule": "*",
        "asset": "*",
        "expired": True,
    }
    out = render("text", result([failing], notes=["waiver for VMS-LV-001 on vm:web (bob) expired on 2026-01-01"]))
    assert "waiver by bob expired on 2026-01-01" in out
    assert out.splitlines()[-1] == "  waiver for VMS-LV-001 on vm:web (bob) expired on 2026-01-01"


def test_inventory_errors_at_the_end_one_line_each():
    out = lines_of(result([finding()], errors=("vms/bad.xml: line 3: not well-formed", "x.vmx: unreadable")))
    assert out[-3:] == [
        "inputs that could not be read",
        "  vms/bad.xml: line 3: not well-formed",
        "  x.vmx: unreadable",
    ]


def test_baseline_sections():
    new = finding(rule_id="VMS-LV-002", asset="vm:db", severity="critical")
    fixed = finding(rule_id="VMS-LV-003").to_dict()
    out = render("text", result([new], baseline={"new": [new], "fixed": [fixed], "unchanged": 0, "file": "b.json"}))
    assert "new since baseline (1)" in out and "fixed since baseline (1)" in out
    assert "[CRITICAL] VMS-LV-002 VNC console listens on every host address on vm:db" in out
    assert "[HIGH]     VMS-LV-003 VNC console listens on every host address on vm:web" in out
    assert "1 new, 1 fixed since baseline" in out.splitlines()[0]


def test_no_colour_unless_asked():
    res = result([finding(severity="critical")])
    assert "\x1b" not in render("text", res)
    coloured = render("text", res, color=True)
    assert "\x1b[1;31m[CRITICAL]" in coloured
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == render("text", res)


def test_hostile_names_cannot_reach_the_terminal():
    evil_asset = "vm:web\x1b[2J\x1b]0;pwned\x07\nFAKE [CRITICAL] line\r\u202eexe.txt"
    evil = finding(asset=evil_asset, value="0.0.0.0\x1b[31m", message="bad\x00byte", file="dir/\udcff.xml")
    errors = ("vms/\x1b[1mbad.xml: line 1:\nforged",)
    for color in (False, True):
        out = render("text", result([evil], errors=errors), color=color)
        stripped = re.sub(r"\x1b\[[0-9;]*m", "", out) if color else out
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u202e\udcff]", stripped)
        assert "vm:web\\x1b[2J\\x1b]0;pwned\\x07\\nFAKE [CRITICAL] line\\r\\u202eexe.txt" in stripped
        assert "0.0.0.0\\x1b[31m" in stripped and "bad\\x00byte" in stripped and "dir/\\udcff.xml" in stripped
        assert "  vms/\\x1b[1mbad.xml: line 1:\\nforged" in stripped.splitlines()
        assert not any(line.startswith("FAKE") for line in stripped.splitlines())


def test_printable_keeps_ordinary_text():
    assert printable("vm:web-01 café ✓") == "vm:web-01 café ✓"
    assert printable(None) == "None" and printable(5901) == "5901"
