"""What every traffic file reader starts from (pcap, pcapng, Zeek logs, eve.json): ``source.open_file``
has read the first bytes to tell the format, and hands them over with the rest of the stream.

The line formats (Zeek, eve.json) also share how a hostile line is met: a line longer than ``MAX_LINE`` is
skipped without being kept in memory (an endless line on stdin stays bounded), a record that is not what
the format says (a wrong type, a null, an out-of-range number, nesting deeper than the parser goes) is
skipped; both are counted under the reader's ``line_problem`` with the line number of the first few, and
the rest of the input is read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

LOG_BATCH = 4096  # events a log reader (Zeek, eve.json) collects before it hands them on
LOG_CHUNK = 1 << 20  # bytes a log reader reads at a time
MAX_LINE = 1 << 20  # bytes in one Zeek or eve.json line; a longer one is skipped and counted
LATEST_TS = 253402300799.0  # 9999-12-31T23:59:59Z: beyond it a time stamp is no time

# what converting a hostile record's fields can raise (a list where a string was due, inf as a port...)
RECORD_ERRORS = (TypeError, ValueError, KeyError, AttributeError, OverflowError, IndexError)


class FileReader:
    """A traffic file being read. Subclasses set ``format`` and implement ``run(decoder)``, the generator
    described in ``traffic/__init__.py``."""

    format = "file"
    line_problem = "malformed-line"  # the problem kind a line format counts bad lines under

    def __init__(self, name: str, stream, head: bytes) -> None:
        """``name``: the file as messages show it; ``stream``: a binary file object positioned after
        ``head`` (the first bytes, already read)."""
        self.name = name
        self.stream = stream
        self.head = head

    def cut(self, stats, kind: str, where: str) -> None:
        """Count data cut at the end; when the stream broke (a damaged gzip), the read error is the one line
        that names the file and the place, so the cut is only counted."""
        if getattr(self.stream, "stopped", False):
            return  # a followed input stopped by a signal: a record cut there is no damage
        if getattr(self.stream, "error", None):
            stats.problems[kind] += 1
        else:
            stats.problem(kind, where)

    def numbered_lines(self, stats) -> Iterator[Iterator[tuple[int, bytes]]]:
        """The lines of a text log as (line number from 1, line without its ``\\n``), one batch per chunk
        read, so that a reader can hand its events on between chunks. A line cut by a chunk's end comes
        whole in the next batch; the last batch, made at the end of the stream, holds what follows the last
        newline (``b""`` if nothing). A line longer than ``MAX_LINE`` comes as ``b""`` (readers skip
        empty lines) and is counted in ``stats``; its bytes are dropped as they are read."""
        pending, number, dropping = self.head, 1, False
        while True:
            chunk = self.stream.read(LOG_CHUNK)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop() if chunk else b""
            if dropping:
                if lines:
                    lines[0] = b""  # the end of the over-long line (counted when it began)
                    dropping = False
                else:
                    pending = b""
            if lines and max(map(len, lines)) > MAX_LINE:
                for i, line in enumerate(lines):
                    if len(line) > MAX_LINE:
                        self.too_long(stats, number + i)
                        lines[i] = b""
            if len(pending) > MAX_LINE:
                self.too_long(stats, number + len(lines))
                pending, dropping = b"", True
            yield enumerate(lines, number)
            number += len(lines)
            if not chunk:
                return

    def too_long(self, stats, number: int) -> None:
        stats.problem(self.line_problem, f"{self.name}: line {number}: longer than {MAX_LINE} bytes, skipped")

    def bad_line(self, stats, number: int, why: str = "") -> None:
        stats.problem(self.line_problem, f"{self.name}: line {number}" + (f": {why}" if why else ""))


def json_record(raw: bytes | str) -> dict | None:
    """One JSON object, or None for a line that is not one (including nesting deeper than the parser's
    recursion allows: a 200,000-deep array is a bad line, not a crash)."""
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return record if isinstance(record, dict) else None


def port(value) -> int:
    """A port number from a log field (0-65535), or ValueError."""
    number = int(value or 0)
    if not 0 <= number <= 65535:
        raise ValueError(f"port {number}")
    return number


def timestamp(value: float) -> float:
    """``value`` if it is a plausible time stamp (finite, 1970 to 9999), else ValueError."""
    if not (math.isfinite(value) and 0.0 <= value <= LATEST_TS):
        raise ValueError("time stamp out of range")
    return value
