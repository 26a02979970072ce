"""Alerts from the traffic detectors as text, JSON (``{"alerts": [...], "stats": {...}}``) or JSON lines
(``--follow``: one alert per line as it is raised, and at the end the alerts that grew since, then the
stats)."""

from __future__ import annotations

import json
import time

from vmsentry.model.alert import Alert
from vmsentry.model.text import printable

_compact = json.JSONEncoder(separators=(",", ":"), default=str).encode


def render_json(alerts: list[Alert], stats: dict) -> str:
    """One alert per line, as ``scan --format json`` lists findings (greppable, diff-friendly; ``jq``
    indents it). Indenting the whole document would make json use its slow pure-Python encoder."""
    body = ",\n".join("    " + _compact(a.to_dict()) for a in alerts)
    listed = f"[\n{body}\n  ]" if alerts else "[]"
    return f'{{\n  "alerts": {listed},\n  "stats": {_compact(stats)}\n}}\n'


def alert_line(alert: Alert, event: str = "raised") -> str:
    """One JSON line for ``--follow``; ``event`` is "raised" or "final" (an alert grown since raised)."""
    return json.dumps(dict(alert.to_dict(), event=event), separators=(",", ":")) + "\n"


def stats_line(stats: dict) -> str:
    return json.dumps({"stats": stats}, separators=(",", ":")) + "\n"


def render_text(alerts: list[Alert], stats: dict) -> str:
    lines = [_headline(alerts, stats)]
    for a in alerts:
        d = a.to_dict()
        span = d["last_seen"] - d["first_seen"]
        lines.append(
            f"{d['severity'].upper():<8} {d['type']:<17} {printable(d['summary'])}  "
            f"[{d['count']}x, {_when(d['first_seen'])} +{span:.2f}s, confidence {d['confidence']:.2f}]"
        )
    problems = stats.get("problems") or {}
    if problems:
        lines.append("input problems: " + ", ".join(f"{k} {v}" for k, v in problems.items()))
        for example in stats.get("problem_examples", [])[:5]:
            lines.append(f"  {printable(example)}")
    evicted = stats.get("evicted") or {}
    if evicted:
        lines.append("state evicted (bounded tables): " + ", ".join(f"{k} {v}" for k, v in evicted.items()))
    if "kernel_drops" in stats:
        lines.append(
            f"live capture: kernel saw {stats.get('kernel_packets', 0)} packets, dropped {stats['kernel_drops']}"
        )
    return "\n".join(lines) + "\n"


def _headline(alerts: list[Alert], stats: dict) -> str:
    inputs = len(stats.get("inputs", []))
    return (
        f"vmsentry detect: {len(alerts)} alert{'s' if len(alerts) != 1 else ''} from {inputs} "
        f"input{'s' if inputs != 1 else ''}: {stats['packets']:,} packets, {stats['bytes']:,} bytes, "
        f"{stats['seconds']:.2f} s of traffic ({stats['packets_per_second']:,.0f} packets/s); processed in "
        f"{stats.get('processing_seconds', 0):.2f} s "
        f"({stats.get('processed_packets_per_second', 0):,} packets/s)"
    )


def _when(ts: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"
    except (OverflowError, ValueError, OSError):
        return str(ts)


# problem kinds that mean an input could not be read whole (exit code 2), as opposed to odd packets
DAMAGE = (
    "corrupt-record",
    "corrupt-block",
    "truncated-record",
    "truncated-block",
    "truncated-file",
    "read-error",
    "unknown-linktype",
    "malformed-zeek",
    "malformed-eve",
)


def damage_lines(stats: dict) -> list[str]:
    """One line per damaged input for stderr: the file and what happened to it."""
    return [example for example in stats.get("problem_examples", []) if example.startswith(DAMAGE)]
