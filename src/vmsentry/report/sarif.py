"""``scan --format sarif``: SARIF 2.1.0 for code-scanning dashboards (GitHub, GitLab, Azure DevOps).

Every rule carries ``properties.security-severity``: without it GitHub ranks every result "error", the
most common complaint about scanners' SARIF. Results are the failing findings, unknowns (level
"note", so that missing evidence stays visible) and waived findings (as suppressed, so dashboards show
them as dismissed with the waiver's reason instead of dropping them). Unreadable inputs and predicate
errors go to the run's ``invocations`` as notifications. Message texts are ``printable`` (one line, no
control or bidi characters: dashboards show them as text); ``properties`` keep the values as the JSON
report has them.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from vmsentry.model.findings import SECURITY_SEVERITY, Finding, sort_findings
from vmsentry.model.rule import Rule
from vmsentry.model.text import printable
from vmsentry.report import ScanResult
from vmsentry.report.json_report import compact

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
REPORTED = ("fail", "unknown", "waived")
INDENT_UP_TO = 20_000  # results; past that compact, as indenting makes json use its slow pure-Python encoder
# "line 12" at the start of a locator, or "... line 12, column 3" inside it
_LINE = re.compile(r"^line (\d+)\b|\bline (\d+),")


def render(result: ScanResult) -> str:
    rule_index = {rule.id: i for i, rule in enumerate(result.rules)}
    reported = sort_findings([f for f in result.findings if f.status in REPORTED])
    results = [_result(f, rule_index) for f in reported]
    run = {
        "tool": {
            "driver": {
                "name": "vmsentry",
                "version": result.tool_version,
                "rules": [_descriptor(rule) for rule in result.rules],
            }
        },
        "invocations": [_invocation(result)],
        "results": results,
    }
    log = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return (json.dumps(log, indent=2, default=str) if len(results) <= INDENT_UP_TO else compact(log)) + "\n"


def _descriptor(rule: Rule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "name": "".join(w[:1].upper() + w[1:] for w in re.findall(r"[A-Za-z0-9]+", rule.title)),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.rationale},
        "help": {"text": _remediation_text(rule.remediation)},
        "defaultConfiguration": {"level": LEVELS[rule.severity]},
        "properties": {
            "security-severity": SECURITY_SEVERITY[rule.severity],
            "tags": ["security", rule.category],
            "precision": "high",
        },
    }


def _remediation_text(remediation: dict[str, str]) -> str:
    if len(remediation) == 1:
        return next(iter(remediation.values()))
    return "\n".join(f"{platform}: {text}" for platform, text in remediation.items())


def _result(finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": finding.rule_id}
    if finding.rule_id in rule_index:
        out["ruleIndex"] = rule_index[finding.rule_id]
    out["level"] = "note" if finding.status == "unknown" else LEVELS[finding.severity]
    out["message"] = {"text": _message(finding)}
    out["locations"] = [_location(finding)]
    out["partialFingerprints"] = {"vmsentry/v1": fingerprint(finding)}
    if finding.status == "waived" and finding.waiver:
        out["suppressions"] = [{"kind": "external", "justification": str(finding.waiver.get("reason", ""))}]
    out["properties"] = {
        "status": finding.status,
        "severity": finding.severity,
        "asset": finding.asset,
        "evidence": finding.evidence,
    }
    if finding.waiver:
        out["properties"]["waiver"] = finding.waiver
    return out


def _message(finding: Finding) -> str:
    evidence = finding.evidence
    text = f"{finding.title} on {finding.asset}"
    if evidence.get("key"):
        text += f": {evidence['key']}={evidence.get('value')}"
    if evidence.get("message"):
        text += f" ({evidence['message']})"
    return printable(text)  # dashboards show it as text: one line, no control or bidi characters


def _location(finding: Finding) -> dict[str, Any]:
    location: dict[str, Any] = {}
    file, locator = finding.evidence.get("file"), finding.evidence.get("locator")
    if file:
        physical: dict[str, Any] = {"artifactLocation": {"uri": artifact_uri(str(file))}}
        line = line_of(locator)
        if line:
            physical["region"] = {"startLine": line}
        location["physicalLocation"] = physical
    location["logicalLocations"] = [{"name": finding.asset, "kind": "resource"}]
    return location


def artifact_uri(file: str) -> str:
    """A URI reference for an evidence file: relative paths stay relative (dashboards resolve them against
    the checkout), absolute paths become ``file://`` URIs, URIs (``qemu:///system``) are kept."""
    if "://" in file:
        return file
    path = PurePath(file)
    # surrogateescape: an undecodable file name becomes its original bytes, percent-encoded
    encoded = quote(path.as_posix(), errors="surrogateescape")
    return "file://" + encoded if path.is_absolute() else encoded


def line_of(locator: Any) -> int | None:
    match = _LINE.search(locator) if isinstance(locator, str) else None
    line = int(match[1] or match[2]) if match else 0
    return line if line >= 1 else None


def fingerprint(finding: Finding) -> str:
    """Stable across scans so dashboards track one alert per rule, asset and place."""
    rule_id, asset, file, locator = finding.key
    identity = f"{rule_id}|{asset}|{file or ''}|{locator or ''}"
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()


def _invocation(result: ScanResult) -> dict[str, Any]:
    notes = [
        {
            "level": "error",
            "message": {"text": printable(f"{e.file}: {e.message}")},
            "locations": [{"physicalLocation": {"artifactLocation": {"uri": artifact_uri(e.file)}}}],
        }
        for e in result.inventory.errors
    ]
    for f in sort_findings([f for f in result.findings if f.status == "error"]):
        text = f"{f.rule_id} on {f.asset}: {f.evidence.get('message') or 'predicate error'}"
        notes.append({"level": "error", "associatedRule": {"id": f.rule_id}, "message": {"text": printable(text)}})
    return {"executionSuccessful": not notes, "toolExecutionNotifications": notes}
