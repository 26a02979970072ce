"""The alert record (CONTRACTS.md "Alert"): one per incident, grown in place while the incident goes on."""

from __future__ import annotations

from collections.abc import Callable

from vmsentry.model.findings import SEVERITY_RANK
from vmsentry.model.signatures import alert_id, signature

MAX_VICTIMS = 50
MAX_PORTS = 100
MAX_RAW = 65536  # victims remembered to count each once; beyond it a repeat may be counted again


class Alert:
    __slots__ = (
        "type",
        "severity",
        "first_seen",
        "last_seen",
        "count",
        "attacker",
        "victims",
        "ports",
        "confidence",
        "evidence",
        "describe",
        "victims_total",
        "ports_total",
        "printed_count",
        "key",
        "opened",
        "_first_attacker",
        "_raw",
        "_id",
    )

    def __init__(
        self,
        type: str,
        severity: str,
        ts: float,
        attacker: dict,
        confidence: float,
        describe: Callable[[Alert], str],
        evidence: dict | None = None,
        key=None,
    ) -> None:
        self.type = type
        self.severity = severity
        self.first_seen = ts
        self.last_seen = ts
        self.count = 0
        self.attacker = attacker
        self.victims: dict[tuple, dict] = {}
        self.ports: set[int] = set()
        self.confidence = confidence
        self.evidence = evidence if evidence is not None else {}
        self.describe = describe
        self.victims_total = 0
        self.ports_total = 0
        self.printed_count = -1
        # what the incident is kept under (Detector.incident sets it) and when it began: its stable id
        self.key = key
        self.opened = ts
        self._first_attacker = (attacker.get("mac"), attacker.get("ip"), attacker.get("vm"))
        self._raw: set = set()
        self._id: str | None = None

    @property
    def id(self) -> str:
        """Stable across the lines written about this incident and across runs over the same input."""
        if self._id is None:
            # made outside a detector (no key): the attacker as first seen names it
            key = self.key if self.key is not None else self._first_attacker
            self._id = alert_id(self.type, key, self.opened)
        return self._id

    def victim_once(self, raw, make: Callable[[], dict]) -> None:
        """``victim(make())`` unless ``raw`` (e.g. the address bytes) was added before: cheap repeats."""
        if raw not in self._raw:
            if len(self._raw) < MAX_RAW:  # (a sweep of a million forged targets must not keep them all)
                self._raw.add(raw)
            self.victim(make())

    def seen(self, ts: float, count: int = 1) -> None:
        self.count += count
        if ts > self.last_seen:
            self.last_seen = ts
        elif ts < self.first_seen:
            self.first_seen = ts

    def victim(self, endpoint: dict) -> None:
        key = (endpoint.get("ip"), endpoint.get("mac"))
        if key in self.victims:
            return
        self.victims_total += 1
        if len(self.victims) < MAX_VICTIMS:
            self.victims[key] = endpoint

    def port(self, port: int) -> None:
        if port not in self.ports:
            self.ports_total += 1
            if len(self.ports) < MAX_PORTS:
                self.ports.add(port)

    def ports_seen(self, ports: list[int]) -> None:
        """``port`` for each of ``ports`` (distinct)."""
        fresh = set(ports).difference(self.ports)
        self.ports_total += len(fresh)
        room = MAX_PORTS - len(self.ports)
        if room > 0:
            self.ports.update(sorted(fresh)[:room])

    def raise_to(self, severity: str, confidence: float | None = None) -> None:
        """Make the alert worse (never better) as evidence accumulates."""
        if SEVERITY_RANK[severity] < SEVERITY_RANK[self.severity]:  # 0 = worst
            self.severity = severity
        if confidence is not None and confidence > self.confidence:
            self.confidence = confidence

    def to_dict(self) -> dict:
        evidence = dict(self.evidence)
        if self.victims_total > len(self.victims):
            evidence["victims_total"] = self.victims_total
        if self.ports_total > len(self.ports):
            evidence["ports_total"] = self.ports_total
        d = {
            "id": self.id,
            "type": self.type,
            "severity": self.severity,
            "first_seen": round(self.first_seen, 6),
            "last_seen": round(self.last_seen, 6),
            "count": self.count,
            "attacker": dict(self.attacker),
            "victims": list(self.victims.values()),
            "ports": sorted(self.ports),
            "confidence": round(self.confidence, 2),
            "summary": self.describe(self),
            "evidence": _plain(evidence),
        }
        sig = signature(d)
        d["signature_id"] = sig.id
        d["attack_ids"] = list(sig.attack_ids)
        return d

    def sort_key(self) -> tuple:
        """Worst first: severity, then confidence, then size, then time."""
        return (SEVERITY_RANK[self.severity], -self.confidence, -self.count, self.first_seen, self.type)


def _plain(value):
    """Evidence may hold sets and Counters while it grows; JSON wants lists and dicts."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
