"""Time windows ("08:00-20:00" in a named timezone, optionally on some weekdays) and their conversion to
the UTC hour/day ranges that nftables' ``meta hour`` / ``meta day`` match.

The kernel compares ``meta hour`` with the seconds since midnight **UTC** of the packet's arrival (and
``meta day`` with the UTC weekday); nft converts literals with the *local* timezone of the nft process,
and gets the weekday wrong across midnight while doing so. vmsentry therefore runs nft with ``TZ=UTC`` and
converts the policy's window to UTC itself, splitting a window that crosses midnight (local or UTC) into
pieces. The conversion uses the zone's UTC offset at compile time: for zones with daylight saving time the
window shifts by the DST difference until the policy is applied again (a warning names the next change).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vmsentry.model.policy import Window

DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")  # Python weekday order
_DAY_ALIASES = {n[:3]: i for i, n in enumerate(DAY_NAMES)} | {n: i for i, n in enumerate(DAY_NAMES)}
NFT_DAY = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
WEEK = 7 * 1440


class WindowError(ValueError):
    pass


def parse_hours(text: str) -> tuple[int, int]:
    m = _HHMM.match(text)
    if not m:
        raise WindowError(f"hours {text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(x) for x in m.groups())
    for h, mi, what in ((h1, m1, "start"), (h2, m2, "end")):
        if mi > 59 or h > 24 or (h == 24 and mi != 0):
            raise WindowError(f"hours {text!r}: {what} {h:02d}:{mi:02d} is not a time of day")
    if h1 == 24:
        raise WindowError(f"hours {text!r}: a window cannot start at 24:00")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end == 1440:
        end = 0 if start > 0 else 1440
    if start == end % 1440 and not (start == 0 and end == 1440):
        raise WindowError(
            f"hours {text!r}: start and end are the same, so the window is empty (write 00:00-24:00 for the whole day)"
        )
    return start, end


def parse_days(values: list[str]) -> frozenset[int]:
    out = set()
    for v in values:
        key = str(v).strip().lower()
        if key not in _DAY_ALIASES:
            raise WindowError(f"day {v!r} is not a weekday (mon, tue, ... or monday, tuesday, ...)")
        out.add(_DAY_ALIASES[key])
    if not out:
        raise WindowError("days is empty, so the window never opens")
    return frozenset(out)


def check_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise WindowError(f"timezone {name!r} is not a known IANA timezone (e.g. Asia/Shanghai, UTC)") from None


def utc_offset_minutes(tz: str, at: datetime | None = None) -> int:
    at = at or datetime.now(UTC)
    off = at.astimezone(ZoneInfo(tz)).utcoffset() or timedelta(0)
    return int(off.total_seconds() // 60)


def next_offset_change(tz: str, at: datetime | None = None, horizon_days: int = 366) -> datetime | None:
    """The first day within the horizon on which the zone's UTC offset differs from today's (DST)."""
    at = at or datetime.now(UTC)
    zone = ZoneInfo(tz)
    base = at.astimezone(zone).utcoffset()
    for d in range(1, horizon_days + 1):
        t = at + timedelta(days=d)
        if t.astimezone(zone).utcoffset() != base:
            return t.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    return None


@dataclass(frozen=True, slots=True)
class UtcPiece:
    """What one nft rule matches: UTC weekdays (None = all) and hour ranges [start, end] in seconds,
    end inclusive (``meta hour`` ranges are inclusive)."""

    days: frozenset[int] | None
    hours: tuple[tuple[int, int], ...]

    def nft_hours(self) -> list[tuple[str, str]]:
        return [(_hms(a), _hms(b)) for a, b in self.hours]

    def nft_days(self) -> list[str] | None:
        return None if self.days is None else [NFT_DAY[d] for d in sorted(self.days)]


def _hms(sec: int) -> str:
    h, rest = divmod(sec, 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}" if s == 0 else f"{h:02d}:{m:02d}:{s:02d}"


def to_utc(window: Window, at: datetime | None = None) -> list[UtcPiece]:
    """Convert the window to UTC pieces with the zone's offset at ``at`` (default now)."""
    offset = utc_offset_minutes(window.tz, at)
    length = (window.end - window.start) % 1440 or 1440
    days = range(7) if window.days is None else sorted(window.days)
    # minute intervals over the UTC week, [a, b)
    spans: list[tuple[int, int]] = []
    for d in days:
        a = (d * 1440 + window.start - offset) % WEEK
        b = a + length
        if b <= WEEK:
            spans.append((a, b))
        else:
            spans += [(a, WEEK), (0, b - WEEK)]
    # split at UTC midnights: (day, start_min, end_min)
    per_range: dict[tuple[int, int], set[int]] = {}
    for a, b in spans:
        while a < b:
            day, s = divmod(a, 1440)
            e = min(b - day * 1440, 1440)
            per_range.setdefault((s, e), set()).add(day)
            a = day * 1440 + e
    # group hour ranges by their day set; one piece per distinct day set
    by_days: dict[frozenset[int], list[tuple[int, int]]] = {}
    for (s, e), ds in sorted(per_range.items()):
        by_days.setdefault(frozenset(ds), []).append((s * 60, e * 60 - 1))
    pieces = []
    for ds, hours in sorted(by_days.items(), key=lambda kv: (sorted(kv[0]), kv[1])):
        pieces.append(UtcPiece(None if len(ds) == 7 else ds, tuple(_merge(hours))))
    return pieces


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
