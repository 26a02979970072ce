"""Counters for one detection run: packets, bytes, time span, and every problem met on the way.

Problems are counted by kind (``problems["truncated-record"]``) with the first few examples kept for the
report, so a hostile or damaged input shows up in the output instead of as a traceback.
"""

from __future__ import annotations

import time
from collections import Counter

EXAMPLES_KEPT = 20
KINDS_KEPT = 200  # distinct problem kinds; kinds carry values ("link type 147"), so a hostile input could make millions
OTHER_KINDS = "other-problems"


class Problems(Counter):
    """Problem counts by kind; beyond ``KINDS_KEPT`` kinds, a new kind is counted as ``other-problems``."""

    def __setitem__(self, kind, count) -> None:
        if len(self) >= KINDS_KEPT and kind not in self:
            count += self.get(OTHER_KINDS, 0)  # (a new kind's count is the increment)
            kind = OTHER_KINDS
        super().__setitem__(kind, count)


class Stats:
    def __init__(self) -> None:
        self.packets = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.events = 0
        self.problems: Counter[str] = Problems()
        self.examples: list[str] = []
        self.evicted: Counter[str] = Counter()
        self.inputs: list[dict] = []
        self.started = time.perf_counter()
        self.elapsed: float | None = None
        self.extra: dict = {}

    def problem(self, kind: str, where: str = "", count: int = 1) -> None:
        self.problems[kind] += count
        if where and len(self.examples) < EXAMPLES_KEPT:
            self.examples.append(f"{kind}: {where}")

    def see_time(self, first: float | None, last: float | None) -> None:
        if first is not None and (self.first_ts is None or first < self.first_ts):
            self.first_ts = first
        if last is not None and (self.last_ts is None or last > self.last_ts):
            self.last_ts = last

    def finish(self) -> None:
        self.elapsed = time.perf_counter() - self.started

    def to_dict(self) -> dict:
        seconds = (self.last_ts - self.first_ts) if self.first_ts is not None and self.last_ts is not None else 0.0
        elapsed = self.elapsed if self.elapsed is not None else time.perf_counter() - self.started
        out = {
            "packets": self.packets,
            "bytes": self.bytes,
            "seconds": round(seconds, 6),
            "packets_per_second": round(self.packets / seconds, 1) if seconds > 0 else 0.0,
            "first_seen": self.first_ts,
            "last_seen": self.last_ts,
            "events": self.events,
            "processing_seconds": round(elapsed, 3),
            "processed_packets_per_second": round(self.packets / elapsed) if elapsed > 0 else 0,
            "problems": dict(sorted(self.problems.items())),
            "problem_examples": list(self.examples),
            "evicted": dict(sorted(self.evicted.items())),
            "inputs": self.inputs,
        }
        out.update(self.extra)
        return out
