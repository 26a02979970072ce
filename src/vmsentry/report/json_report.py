"""``scan --format json``: the machine-readable report (CONTRACTS.md, "Finding").

Findings are listed worst first, every status except ``not_applicable`` (those are only counted: on a
large fleet they are most of the volume and say nothing). The layout is fixed and deterministic: one
top-level key per line and one finding per line (greppable, diff-friendly; pipe to ``jq`` to indent).

Speed: 10,000 VMs x 40 rules is ~400k findings, and ``json.dumps([f.to_dict() ...])`` takes seconds.
``_FindingWriter`` writes the same JSON about three times faster: the fields that depend only on the
rule (title, severity, category, platform, remediation, references) are encoded once per rule, asset
names once per asset, and evidence through one reusable C encoder. Non-ASCII is escaped (``\\uXXXX``)
so that a name holding a lone surrogate (an undecodable file name) cannot make writing the report fail.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as quote  # the C string encoder json.dumps uses
from typing import Any

from vmsentry.model.findings import SEVERITIES, STATUSES, Finding, sort_findings
from vmsentry.report import ScanResult

compact = json.JSONEncoder(separators=(",", ":"), default=str).encode


def summarise(result: ScanResult) -> dict[str, Any]:
    """Counts shared by the JSON and text reports."""
    inventory = result.inventory
    by_status = Counter(f.status for f in result.findings)
    by_status["not_applicable"] += result.not_applicable
    failing = Counter(f.severity for f in result.findings if f.status == "fail")
    summary = {
        "vms": len(inventory.vms),
        "networks": len(inventory.networks),
        "hosts": len(inventory.hosts),
        "findings": len(result.findings) + result.not_applicable,
        "by_status": {s: by_status[s] for s in STATUSES},
        "failing_by_severity": {s: failing[s] for s in SEVERITIES},
        "errors": len(inventory.errors),
        "skipped_files": result.skipped_files,
        "seconds": round(result.seconds, 3),
        "fail_on": result.fail_on,
    }
    if result.baseline is not None:
        summary["new"] = len(result.baseline["new"])
        summary["fixed"] = len(result.baseline["fixed"])
    return summary


def render(result: ScanResult) -> str:
    writer = _FindingWriter()
    if result.baseline is not None:  # --baseline: the findings are the new ones (the summary counts all)
        listed = sort_findings(list(result.baseline["new"]))
    else:
        listed = sort_findings([f for f in result.findings if f.status != "not_applicable"])
    inventory = result.inventory
    errors = [{"file": e.file, "message": e.message} for e in inventory.errors]
    # One final join: the findings can be 100+ MB, and every intermediate join would copy them again.
    pieces = [
        '{\n"tool":',
        compact({"name": "vmsentry", "version": result.tool_version}),
        *(
            f',\n"{key}":{compact(value)}'
            for key, value in (("run_id", result.run_id), ("timestamp", result.timestamp))
            if value
        ),
        ',\n"summary":',
        compact(summarise(result)),
        ',\n"findings":',
        *writer.array(listed),
        ',\n"notes":',
        compact(result.notes),
        ',\n"inventory":',
        compact(inventory.to_dict()),
        ',\n"errors":',
        compact(errors),
    ]
    if result.baseline is not None:
        base = result.baseline
        pieces += [
            ',\n"baseline":{"file":',
            compact(base.get("file")),
            ',"unchanged":',
            compact(base.get("unchanged", 0)),
            ',"fixed":',
            compact(base["fixed"]),
            ',"new":',
            *writer.array(sort_findings(list(base["new"]))),
            "}",
        ]
    pieces.append("\n}\n")
    return "".join(pieces)


def finding_encoder():
    """A function from a Finding to its JSON text (as in the report), with the writer's caches."""
    return _FindingWriter().finding


class _FindingWriter:
    """JSON text of ``Finding.to_dict()``, the same keys in the same order, built from cached pieces."""

    def __init__(self) -> None:
        # (rule_id, platform, title, severity, category, remediation) -> (references, three JSON pieces)
        self._rule_parts: dict[tuple[str, ...], tuple[list[str], str, str, str]] = {}
        self._quoted: dict[str, str] = {}

    def array(self, findings: Iterable[Finding]) -> list[str]:
        """A JSON array, one finding per line, as pieces to join."""
        lines = ["["]
        separator = "\n"
        for finding in findings:
            lines.append(self.finding(finding, separator))
            separator = ",\n"
        lines.append("\n]" if len(lines) > 1 else "]")
        return lines

    def finding(self, f: Finding, separator: str = "") -> str:
        key = (f.rule_id, f.platform, f.title, f.severity, f.category, f.remediation)
        parts = self._rule_parts.get(key)
        if parts is None or parts[0] != f.references:
            parts = self._rule_parts[key] = (
                f.references,
                f'{{"rule_id":{quote(f.rule_id)},"title":{quote(f.title)},"severity":{quote(f.severity)},"status":',
                f',"category":{quote(f.category)},"platform":{quote(f.platform)},"asset":',
                f',"remediation":{quote(f.remediation)},"references":{compact(f.references)}',
            )
        quoted = self._quoted
        status = quoted.get(f.status) or quoted.setdefault(f.status, quote(f.status))
        asset = quoted.get(f.asset) or quoted.setdefault(f.asset, quote(f.asset))
        evidence = encode_small(f.evidence)
        waiver = "}" if f.waiver is None else f',"waiver":{compact(f.waiver)}}}'
        return f'{separator}{parts[1]}{status}{parts[2]}{asset},"evidence":{evidence}{parts[3]}{waiver}'


def _small_value_encoder():
    """``compact`` without its per-call set-up: json.dumps builds a new C encoder on every call, which is
    most of the cost for a small dict. Builds the C encoder once, where this Python has it and it gives
    the same text; otherwise falls back to ``compact``."""
    probe = {"k": [1.5, None, True, "\u00e9\n"]}
    try:
        from json.encoder import c_make_encoder  # private; hence the probe and the fallback

        encoder = c_make_encoder(None, str, quote, None, ":", ",", False, False, True)
        if "".join(encoder(probe, 0)) != compact(probe):
            return compact
    except Exception:
        return compact
    return lambda value: "".join(encoder(value, 0))


encode_small = _small_value_encoder()
