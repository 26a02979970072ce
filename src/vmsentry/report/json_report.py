"""``scan --format json``: the machine-readable report (CONTRACTS.md, "Finding").

Findings are listed worst first, every status except ``not_applicable`` (those are only counted: on a
large fleet they are most of the volume and say nothing). Output is deterministic for a given result.
Small reports are indented for people; past ``COMPACT_ABOVE`` items the output is compact, because
indentation switches ``json`` to its pure-Python encoder, which is several times slower (400k findings
must serialise in well under 2 s). Non-ASCII is escaped (``\\uXXXX``) so that a name holding a lone
surrogate (an undecodable file name) cannot make writing the report fail.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

from vmsentry.analyse.checks import STATUSES
from vmsentry.analyse.engine import sort_findings
from vmsentry.analyse.rules import SEVERITIES
from vmsentry.report import ScanResult

COMPACT_ABOVE = 20_000


def dump_json(document: Any, items: int) -> str:
    """``document`` as JSON text; ``items`` is how many records it holds (decides on indentation)."""
    if items > COMPACT_ABOVE:
        return json.dumps(document, separators=(",", ":"), default=str)
    return json.dumps(document, indent=2, default=str)


def summarise(result: ScanResult) -> dict[str, Any]:
    """Counts shared by the JSON and text reports."""
    inventory = result.inventory
    by_status = Counter(f.status for f in result.findings)
    failing = Counter(f.severity for f in result.findings if f.status == "fail")
    summary = {
        "vms": len(inventory.vms), "networks": len(inventory.networks), "hosts": len(inventory.hosts),
        "findings": len(result.findings),
        "by_status": {s: by_status[s] for s in STATUSES},
        "failing_by_severity": {s: failing[s] for s in SEVERITIES},
        "errors": len(inventory.errors), "skipped_files": result.skipped_files,
        "seconds": round(result.seconds, 3), "fail_on": result.fail_on,
    }
    if result.baseline is not None:
        summary["new"] = len(result.baseline["new"])
        summary["fixed"] = len(result.baseline["fixed"])
    return summary


def render(result: ScanResult) -> str:
    listed = sort_findings([f for f in result.findings if f.status != "not_applicable"])
    document: dict[str, Any] = {
        "tool": {"name": "vmsentry", "version": result.tool_version},
        "summary": summarise(result),
        "findings": [f.to_dict() for f in listed],
        "notes": list(result.notes),
        "inventory": result.inventory.to_dict(),
        "errors": [{"file": e.file, "message": e.message} for e in result.inventory.errors],
    }
    if result.baseline is not None:
        base = result.baseline
        document["baseline"] = {
            "file": base.get("file"), "new": [f.to_dict() for f in sort_findings(base["new"])],
            "fixed": list(base["fixed"]), "unchanged": base.get("unchanged", 0),
        }
    return dump_json(document, len(listed)) + "\n"
