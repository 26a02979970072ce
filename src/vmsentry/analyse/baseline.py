"""Baselines: compare a scan with an earlier ``vmsentry scan --format json`` output, so CI can fail on
what is new rather than on everything already known. A finding is the same across scans when its
``Finding.key`` (rule, asset, evidence file and locator) is.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmsentry.model.files import BadInput, MalformedJson, parse_json, read_bounded
from vmsentry.model.findings import Finding

Key = tuple[str, str, Any, Any]
EXPECTED = "expected the output of 'vmsentry scan --format json'"
# A scan report is about 15 KB a VM (findings and inventory): 256 MiB holds over 15,000 VMs
MAX_BYTES = 256 * 1024 * 1024


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file and the problem."""


def load_baseline(path: str) -> list[dict[str, Any]]:
    """The findings (dicts) of a saved JSON scan report."""
    try:
        document = parse_json(read_bounded(path, MAX_BYTES), f"not UTF-8 text; {EXPECTED}")
    except MalformedJson as exc:
        raise BaselineError(f"{path}:{exc.line}: not JSON ({exc.problem}); {EXPECTED}") from None
    except BadInput as exc:
        raise BaselineError(f"{path}: {exc}") from None
    findings = document.get("findings") if isinstance(document, dict) else None
    if not isinstance(findings, list):
        raise BaselineError(f"{path}: no 'findings' list; {EXPECTED}")
    for i, finding in enumerate(findings):
        if not (
            isinstance(finding, dict)
            and isinstance(finding.get("evidence"), dict)
            and all(isinstance(finding.get(k), str) for k in ("rule_id", "asset", "status"))
        ):
            raise BaselineError(
                f"{path}: findings[{i}] is not a finding (needs rule_id, asset, status and an evidence object)"
            )
    return findings


def key_of(finding: dict[str, Any]) -> Key:
    """``Finding.key`` of a finding read back from JSON."""
    evidence = finding["evidence"]
    return (finding["rule_id"], finding["asset"], evidence.get("file"), evidence.get("locator"))


def compare(findings: Iterable[Finding], previous: list[dict[str, Any]]) -> dict[str, Any]:
    """``new``: failing now, not failing then (Findings); ``fixed``: failing then, not failing now
    (the baseline's dicts); ``unchanged``: how many failing findings were failing then too."""
    failing_now = [f for f in findings if f.status == "fail"]
    failing_then = [d for d in previous if d["status"] == "fail"]
    keys_then = {key_of(d) for d in failing_then}
    keys_now = {f.key for f in failing_now}
    new = [f for f in failing_now if f.key not in keys_then]
    return {
        "new": new,
        "fixed": [d for d in failing_then if key_of(d) not in keys_now],
        "unchanged": len(failing_now) - len(new),
    }
