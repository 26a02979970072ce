"""Scan history: what one stored run says (``scan --store``), as ``vmsentry history`` and reports read it.

A run id is the scan's UTC start time and a random tail, ``20250301T101500Z-3f9a1c``: it sorts as time,
is unique across machines writing one store, and is short enough to type (a unique prefix will do).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from vmsentry.model.findings import SEVERITIES


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso_utc(when: datetime) -> str:
    """ISO 8601 in UTC to the millisecond, with ``Z``: ``2025-03-01T10:15:00.042Z`` (fixed width, so it
    sorts as time as text: two runs in one second keep their order)."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(when: datetime) -> str:
    return f"{when.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class StoredRun:
    """One run as the store keeps it. ``failing_by_severity`` counts the whole run, or one asset's
    findings when the history was asked for one (``asset``)."""

    run_id: str
    timestamp: str  # ISO 8601 UTC
    tool_version: str
    inputs: dict[str, Any]
    exit_code: int
    vms: int
    failing_by_severity: dict[str, int] = field(default_factory=dict)
    asset: str | None = None

    @property
    def failing(self) -> int:
        return sum(self.failing_by_severity.get(s, 0) for s in SEVERITIES)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "asset"}
        out["failing_by_severity"] = {s: self.failing_by_severity.get(s, 0) for s in SEVERITIES}
        out["failing"] = self.failing
        if self.asset is not None:  # only in one asset's history
            out["asset"] = self.asset
        return out
