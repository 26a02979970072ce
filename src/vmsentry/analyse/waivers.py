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
from dataclasses import dataclass
from datetime import date
from fnmatch import fnmatchcase
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from vmsentry.model.findings import Finding

FIELDS = ("rule", "asset", "owner", "reason", "expires")
WAIVABLE = ("fail", "unknown")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NULL_TAG = "tag:yaml.org,2002:null"


class WaiverError(Exception):
    """A waiver file that cannot be used; the message is ``file:line: problem``."""


@dataclass(frozen=True, slots=True)
class Waiver:
    rule: str
    asset: str
    owner: str
    reason: str
    expires: date
    line: int = 0            # where the entry starts in its file, for messages

    def matches(self, finding: Finding) -> bool:
        return fnmatchcase(finding.rule_id, self.rule) and fnmatchcase(finding.asset, self.asset)

    def as_dict(self) -> dict[str, Any]:
        return {"owner": self.owner, "reason": self.reason, "expires": self.expires.isoformat(),
                "rule": self.rule, "asset": self.asset}

    def describe(self) -> str:
        return f"waiver for {self.rule} on {self.asset} ({self.owner}, line {self.line})"


def load_waivers(path: str) -> list[Waiver]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise WaiverError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        # compose, not load: nodes keep the line of every entry and value
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        raise WaiverError(f"{path}:{line} bad YAML: {getattr(exc, 'problem', None) or exc}") from None
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
        return []
    entries = _entries(path, root)
    return [_waiver(path, entry) for entry in entries]


def _entries(path: str, root: Node) -> list[Node]:
    if not isinstance(root, MappingNode):
        raise WaiverError(f"{path}:{_line(root)}: expected a mapping with a 'waivers' list")
    entries: list[Node] = []
    for key, value in root.value:
        if key.value != "waivers":
            raise WaiverError(f"{path}:{_line(key)}: unknown key {key.value!r} (expected 'waivers')")
        if isinstance(value, ScalarNode) and value.tag == _NULL_TAG:
            continue
        if not isinstance(value, SequenceNode):
            raise WaiverError(f"{path}:{_line(value)}: 'waivers' must be a list")
        entries = value.value
    return entries


def _waiver(path: str, entry: Node) -> Waiver:
    where = f"{path}:{_line(entry)}"
    if not isinstance(entry, MappingNode):
        raise WaiverError(f"{where}: a waiver must be a mapping of {', '.join(FIELDS)}")
    values: dict[str, Any] = {}
    for key, value in entry.value:
        name = key.value
        if name not in FIELDS:
            raise WaiverError(f"{path}:{_line(key)}: unknown key {name!r} (expected {', '.join(FIELDS)})")
        if name in values:
            raise WaiverError(f"{path}:{_line(key)}: {name} given twice")
        if not isinstance(value, ScalarNode):
            raise WaiverError(f"{path}:{_line(value)}: {name} must be a single value")
        text = "" if value.tag == _NULL_TAG else value.value.strip()
        if not text:
            raise WaiverError(f"{path}:{_line(value)}: empty {name}")
        values[name] = _date(f"{path}:{_line(value)}", text) if name == "expires" else text
    missing = [name for name in FIELDS if name not in values]
    if missing:
        raise WaiverError(f"{where}: waiver lacks {', '.join(missing)}")
    return Waiver(**values, line=_line(entry))


def _date(where: str, text: str) -> date:
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise WaiverError(f"{where}: expires must be a date YYYY-MM-DD, got {text!r}")


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def apply_waivers(findings: Iterable[Finding], waivers: list[Waiver], today: date) -> list[str]:
    """Waive the failing and unknown findings an unexpired waiver covers (first matching waiver wins);
    mark those covered only by an expired one. Returns notes for expired and unused waivers."""
    notes: dict[str, None] = {}          # ordered and de-duplicated
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
        notes[f"waiver for {finding.rule_id} on {finding.asset} ({expired.owner}) expired on "
              f"{expired.expires.isoformat()}; finding is active again"] = None
    for waiver in waivers:
        if waiver not in used:
            notes[f"{waiver.describe()} matched nothing"] = None
    return list(notes)
