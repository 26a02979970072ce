"""report.render dispatch and report.exit_code (CONTRACTS.md exit codes)."""

import subprocess
import sys

import pytest

from fixtures.report.builders import finding, result
from vmsentry.report import FORMATS, exit_code, render


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_format_renders_text(fmt):
    out = render(fmt, result([finding(), finding(status="pass", rule_id="VMS-LV-002")]))
    assert isinstance(out, str) and out.endswith("\n")


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        render("xml", result([]))


def test_importing_report_does_not_load_the_formats():
    code = (
        "import sys, vmsentry.report; "
        "print(sorted(m for m in sys.modules if m.startswith('vmsentry.report.') or m == 'lxml'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_exit_0_when_nothing_fails():
    assert exit_code(result([finding(status="pass"), finding(status="unknown")])) == 0


def test_exit_1_for_a_failure_at_or_above_fail_on():
    findings = [finding(severity="medium")]
    assert exit_code(result(findings, fail_on="high")) == 0
    assert exit_code(result(findings, fail_on="medium")) == 1
    assert exit_code(result(findings, fail_on="low")) == 1
    assert exit_code(result([finding(severity="critical")], fail_on="high")) == 1


def test_fail_on_none_never_fails():
    assert exit_code(result([finding(severity="critical")], fail_on="none")) == 0


def test_waived_and_unknown_do_not_fail():
    assert exit_code(result([finding(status="waived"), finding(status="unknown", severity="critical")])) == 0


def test_unreadable_input_is_2_and_beats_failures():
    assert exit_code(result([], errors=("bad.xml: not well-formed",))) == 2
    assert exit_code(result([finding(severity="critical")], errors=("bad.xml: not well-formed",))) == 2
    assert exit_code(result([finding()], errors=("bad.xml: x",), fail_on="none")) == 2


def test_with_a_baseline_only_new_failures_count():
    old, new = finding(rule_id="VMS-LV-001"), finding(rule_id="VMS-LV-002")
    known_only = {"new": [], "fixed": [], "unchanged": 1, "file": "base.json"}
    assert exit_code(result([old], baseline=known_only)) == 0
    with_new = {"new": [new], "fixed": [], "unchanged": 1, "file": "base.json"}
    assert exit_code(result([old, new], baseline=with_new)) == 1
    below = {"new": [finding(severity="low")], "fixed": [], "unchanged": 0, "file": "base.json"}
    assert exit_code(result(below["new"], baseline=below)) == 0


def test_bad_fail_on_is_rejected():
    with pytest.raises(ValueError, match="fail_on"):
        exit_code(result([finding()], fail_on="severe"))
