"""What an audit entry's ``record`` holds for each kind vmsentry writes (docs/audit.md lists them). Built
from model records only: the commands and the watcher pass what they have."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any

from vmsentry.model.alert import Alert
from vmsentry.model.scan import ScanResult


def digest(value: object) -> str:
    """SHA-256 of a JSON value in canonical form (sorted keys, no spaces, UTF-8): for an inventory saved by
    ``scan --format json``, ``jq -jcS .inventory scan.json | sha256sum`` gives the same."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def file_digest(path: str) -> str | None:
    """SHA-256 of a file's bytes (a policy, a ruleset), None when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()
    except OSError:
        return None


def scan_record(result: ScanResult, inputs: dict[str, Any], exit_code: int) -> dict[str, Any]:
    """One per scan run: counts by status and by failing severity, the inventory's digest, the inputs."""
    from vmsentry.report.json_report import summarise

    inventory = result.inventory.to_dict()
    return {
        "summary": summarise(result),
        "inventory_sha256": digest(inventory),
        "assets": {"vms": len(result.inventory.vms), "networks": len(result.inventory.networks)},
        "inputs": inputs,
        "tool_version": result.tool_version,
        "exit_code": exit_code,
    }


def alert_records(alerts: Iterable[Alert]) -> list[tuple[str, dict]]:
    """One ``alert`` entry per alert, as ``detect --format json`` prints it."""
    return [("alert", alert.to_dict()) for alert in alerts]


def detect_record(alerts: list[Alert], stats: dict[str, Any], inputs: dict[str, Any], exit_code: int) -> dict:
    """One per detect run: alerts by type and severity, the traffic counted, the inputs."""
    keep = ("packets", "bytes", "seconds", "packets_per_second", "first_time", "last_time", "problems")
    return {
        "alerts": len(alerts),
        "by_type": dict(Counter(a.type for a in alerts)),
        "by_severity": dict(Counter(a.severity for a in alerts)),
        "stats": {k: stats[k] for k in keep if k in stats},
        "inputs": inputs,
        "exit_code": exit_code,
    }
