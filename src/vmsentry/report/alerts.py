"""Alerts from the traffic detectors as text, JSON (``{"alerts": [...], "stats": {...}}``), JSON lines
(``--follow``: one alert per line as it is raised, and at the end the alerts that grew since, then the
stats), Suricata eve or ECS lines (report/siem.py). ``AlertWriter`` writes them one at a time, to stdout or
appended to a file, for ``detect --follow`` and the watcher."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

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
    return _jsonl(alert.to_dict(), event)


def _jsonl(d: dict, event: str) -> str:
    return json.dumps(dict(d, event=event), separators=(",", ":")) + "\n"


def stats_line(stats: dict) -> str:
    return json.dumps({"stats": stats}, separators=(",", ":")) + "\n"


def render_text(alerts: list[Alert], stats: dict) -> str:
    lines = [_headline(alerts, stats)]
    lines.extend(text_line(a.to_dict()) for a in alerts)
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


def text_line(d: dict) -> str:
    """One alert (``Alert.to_dict()``) as a line of the text report (no newline)."""
    span = d["last_seen"] - d["first_seen"]
    return (
        f"{d['severity'].upper():<8} {d['type']:<17} {printable(d['summary'])}  "
        f"[{d['count']}x, {_when(d['first_seen'])} +{span:.2f}s, confidence {d['confidence']:.2f}]"
    )


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


LINE_FORMATS = ("jsonl", "eve", "ecs", "text")


class AlertWriter:
    """Alerts one line at a time as they are raised or grow (``phase`` "raised" or "final"), in ``fmt``
    (jsonl, eve, ecs, or text), to stdout (``path`` None) or appended to ``path`` and flushed line by line.
    ``reopen()`` opens the path again (after logrotate moved the file: the watcher's SIGHUP). A write that
    fails (disk full, reader gone) is one line through ``on_problem`` and the lines are dropped until the
    next write succeeds: detection goes on."""

    def __init__(
        self,
        fmt: str,
        path: str | None,
        sensor: str,
        iface: str | None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        if fmt not in LINE_FORMATS:
            raise ValueError(f"{fmt}: not a line format ({', '.join(LINE_FORMATS)})")
        self.fmt, self.path, self.sensor, self.iface = fmt, path, sensor, iface
        self.on_problem = on_problem or stderr_line
        self.written = self.dropped = 0
        self._failing = False
        self._fh = None
        self.reopen()

    def line(self, alert: Alert | dict, phase: str = "raised") -> str:
        d = alert.to_dict() if isinstance(alert, Alert) else alert
        if self.fmt == "eve":
            from vmsentry.report.siem import eve_line

            return eve_line(d, self.sensor, self.iface, phase)
        if self.fmt == "ecs":
            from vmsentry.report.siem import ecs_line

            return ecs_line(d, self.sensor, self.iface, phase)
        if self.fmt == "text":
            return text_line(d) + "\n"
        return _jsonl(d, phase)

    def write(self, alert: Alert | dict, phase: str = "raised") -> None:
        self._emit(self.line(alert, phase))
        if isinstance(alert, Alert):
            alert.printed_count = alert.count

    def stats(self, stats: dict) -> None:
        """The run's stats as the last line (jsonl only: eve and ECS consumers expect alerts alone)."""
        if self.fmt == "jsonl":
            self._emit(stats_line(stats))

    def reopen(self) -> None:
        if self.path is None:
            return
        from vmsentry.report.output import open_append

        self._close_file()
        self._fh = open_append(self.path)

    def close(self) -> None:
        if self.path is None:
            try:
                sys.stdout.flush()
            except (OSError, ValueError):
                pass
        self._close_file()

    def _emit(self, text: str) -> None:
        data = text.encode("utf-8", "backslashreplace")
        try:
            if self._fh is None:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                self._fh.write(data)  # unbuffered, O_APPEND: one write per line
        except BrokenPipeError:
            self.dropped += 1  # the reader went away (| head): say nothing, as cat does
            return
        except OSError as exc:
            self.dropped += 1
            if not self._failing:
                self._failing = True
                where = self.path or "standard output"
                self.on_problem(f"{where}: cannot write: {exc.strerror or exc} (alerts are dropped until it can)")
            return
        if self._failing:
            self._failing = False
            self.on_problem(f"{self.path or 'standard output'}: writing again ({self.dropped} line(s) dropped)")
        self.written += 1

    def _close_file(self) -> None:
        self._fh = close_quietly(self._fh)


def close_quietly(handle) -> None:
    """Close a file or socket that may already be broken (a full disk, a receiver gone); returns None."""
    if handle is not None:
        try:
            handle.close()
        except OSError:
            pass


def stderr_line(line: str) -> None:
    print(f"vmsentry: {printable(line)}", file=sys.stderr, flush=True)
