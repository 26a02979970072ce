"""Waivers: accepted risks, each with an owner, a reason and an expiry date (VSAT's exceptions, Trivy's
``.trivyignore.yaml``). A waived finding is still reported, as ``waived`` (Prowler's "muted"); once
its waiver has expired it fails again, and the report says so.

    waivers:
      - rule: VMS-LV-*          # fnmatch glob, or an exact rule id
        asset: "vm:web*"        # fnmatch glob over vm:NAME / network:NAME / host:NAME
        owner: alice
        reason: the web tier's VNC is reachable only from the jump host
        expires: 2026-12-31     # last day the waiver applies
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase
from typing import Any

from vmsentry.model.findings import Finding
from vmsentry.model.yaml_lines import LMap, Loc, LSeq, load_file

FIELDS = ("rule", "asset", "owner", "reason", "expires")
WAIVABLE = ("fail", "unknown")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class WaiverError(Exception):
    """A waiver file that cannot be used; the message is ``file:line: problem``."""


@dataclass(frozen=True, slots=True)
class Waiver:
    rule: str
    asset: str
    owner: str
    reason: str
    expires: date
    line: int = 0  # where the entry starts in its file, for messages

    def matches(self, finding: Finding) -> bool:
        return fnmatchcase(finding.rule_id, self.rule) and fnmatchcase(finding.asset, self.asset)

    def as_dict(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "reason": self.reason,
            "expires": self.expires.isoformat(),
            "rule": self.rule,
            "asset": self.asset,
        }

    def describe(self) -> str:
        return f"waiver for {self.rule} on {self.asset} ({self.owner}, line {self.line})"


# A waiver is five short lines; 4 MiB is tens of thousands of them
MAX_BYTES = 4 * 1024 * 1024


def load_waivers(path: str) -> list[Waiver]:
    # values as written (an expiry is checked as text, not guessed into a date)
    root = load_file(path, MAX_BYTES, WaiverError, raw_scalars=True, duplicates=False)
    if root is None or root.value is None:
        return []
    return [_waiver(path, entry) for entry in _entries(path, root)]


def _entries(path: str, root: Loc) -> list[Loc]:
    top = root.value
    if not isinstance(top, LMap):
        raise WaiverError(f"{path}:{root.line}: expected a mapping with a 'waivers' list")
    for key in top:
        if key != "waivers":
            raise WaiverError(f"{path}:{top.key_lines[key]}: unknown key {key!r} (expected 'waivers')")
    value = top.get("waivers")
    if value is None or value.value is None:
        return []
    if not isinstance(value.value, LSeq):
        raise WaiverError(f"{path}:{value.line}: 'waivers' must be a list")
    return list(value.value)


def _waiver(path: str, entry: Loc) -> Waiver:
    where = f"{path}:{entry.line}"
    fields = entry.value
    if not isinstance(fields, LMap):
        raise WaiverError(f"{where}: a waiver must be a mapping of {', '.join(FIELDS)}")
    values: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in FIELDS:
            raise WaiverError(f"{path}:{fields.key_lines[name]}: unknown key {name!r} (expected {', '.join(FIELDS)})")
        if isinstance(value.value, (LMap, LSeq)):
            raise WaiverError(f"{path}:{value.line}: {name} must be a single value")
        text = (value.value or "").strip()
        if not text:
            raise WaiverError(f"{path}:{value.line}: empty {name}")
        values[name] = _date(f"{path}:{value.line}", text) if name == "expires" else text
    for name, line in fields.repeated.items():
        raise WaiverError(f"{path}:{line}: {name} given twice")
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise WaiverError(f"{where}: waiver lacks {', '.join(missing)}")
    return Waiver(**values, line=entry.line)


def _date(where: str, text: str) -> date:
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise WaiverError(f"{where}: expires must be a date YYYY-MM-DD, got {text!r}")


def apply_waivers(findings: Iterable[Finding], waivers: list[Waiver], today: date) -> list[str]:
    """Waive the failing and unknown findings an unexpired waiver covers (first matching waiver wins);
    mark those covered only by an expired one. Returns notes for expired and unused waivers."""
    notes: dict[str, None] = {}  # ordered and de-duplicated
    used: set[Waiver] = set()
    for finding in findings:
        if finding.status not in WAIVABLE:
            continue
        matching = [w for w in waivers if w.matches(finding)]
        if not matching:
            continue
        used.update(matching)
        active = next((w for w in matching if w.expires >= today), None)
        if active is not None:
            finding.status = "waived"
            finding.waiver = active.as_dict()
            continue
        expired = matching[0]
        finding.waiver = {**expired.as_dict(), "expired": True}
        notes[
            f"waiver for {finding.rule_id} on {finding.asset} ({expired.owner}) expired on "
            f"{expired.expires.isoformat()}; finding is active again"
        ] = None
    for waiver in waivers:
        if waiver not in used:
            notes[f"{waiver.describe()} matched nothing"] = None
    return list(notes)
