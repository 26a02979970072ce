"""``scan --format junit``: JUnit XML, for CI systems that show test results but not SARIF.

One ``testsuite`` per asset (worst first), one ``testcase`` per finding: fail -> ``failure``, error ->
``error``, unknown / not_applicable / waived -> ``skipped``, pass -> an empty testcase. Built with lxml,
which escapes markup; control characters (which XML 1.0 cannot carry at all, escaped or not) are shown
as escapes by ``printable``.
"""

from __future__ import annotations

from lxml import etree

from vmsentry.model.findings import Finding
from vmsentry.model.text import printable
from vmsentry.report import ScanResult
from vmsentry.report.text import evidence_text, group_by_asset, waiver_text

OUTCOME_ELEMENT = {
    "fail": "failure",
    "error": "error",
    "unknown": "skipped",
    "not_applicable": "skipped",
    "waived": "skipped",
}
XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'  # the CLI writes reports as UTF-8
COUNTED = {"failure": "failures", "error": "errors", "skipped": "skipped"}


def render(result: ScanResult) -> str:
    root = etree.Element("testsuites", name="vmsentry", time=f"{result.seconds:.3f}")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for asset, findings in group_by_asset(result.findings):
        suite = etree.SubElement(root, "testsuite", name=printable(asset), time="0")
        counts = dict.fromkeys(totals, 0)
        for finding in findings:
            counts["tests"] += 1
            outcome = _testcase(suite, finding)
            if outcome is not None:
                counts[COUNTED[outcome]] += 1
        for name, n in counts.items():
            suite.set(name, str(n))
            totals[name] += n
    for name, n in totals.items():
        root.set(name, str(n))
    return XML_DECLARATION + etree.tostring(root, encoding="unicode", pretty_print=True)


def _testcase(suite: etree._Element, finding: Finding) -> str | None:
    """Adds the testcase; returns the outcome element's tag, or None for a pass."""
    case = etree.SubElement(
        suite,
        "testcase",
        classname=printable(finding.asset),
        name=f"{printable(finding.rule_id)} {printable(finding.title)}",
        time="0",
    )
    tag = OUTCOME_ELEMENT.get(finding.status)
    if tag is None:
        return None
    evidence = evidence_text(finding.evidence)
    if tag == "failure":
        outcome = etree.SubElement(case, tag, message=printable(finding.title), type=finding.severity)
        outcome.text = "\n".join(
            p for p in (f"evidence: {evidence}" if evidence else "", f"fix: {printable(finding.remediation)}") if p
        )
    elif tag == "error":
        etree.SubElement(case, tag, message=evidence or "predicate error", type="error")
    else:
        etree.SubElement(case, tag, message=_skip_reason(finding, evidence))
    return tag


def _skip_reason(finding: Finding, evidence: str) -> str:
    if finding.status == "waived" and finding.waiver:
        return waiver_text(finding.waiver)
    status = finding.status.replace("_", " ")
    return f"{status}: {evidence}" if evidence else status
