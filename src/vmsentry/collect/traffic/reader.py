"""What every traffic file reader starts from (pcap, pcapng, Zeek logs, eve.json): ``source.open_file``
has read the first bytes to tell the format, and hands them over with the rest of the stream."""

from __future__ import annotations

from collections.abc import Iterator

LOG_BATCH = 4096  # events a log reader (Zeek, eve.json) collects before it hands them on
LOG_CHUNK = 1 << 20  # bytes a log reader reads at a time


class FileReader:
    """A traffic file being read. Subclasses set ``format`` and implement ``run(decoder)``, the generator
    described in ``traffic/__init__.py``."""

    format = "file"

    def __init__(self, name: str, stream, head: bytes) -> None:
        """``name``: the file as messages show it; ``stream``: a binary file object positioned after
        ``head`` (the first bytes, already read)."""
        self.name = name
        self.stream = stream
        self.head = head

    def numbered_lines(self) -> Iterator[Iterator[tuple[int, bytes]]]:
        """The lines of a text log as (line number from 1, line without its ``\\n``), one batch per chunk
        read, so that a reader can hand its events on between chunks. A line cut by a chunk's end comes
        whole in the next batch; the last batch, made at the end of the stream, holds what follows the last
        newline (``b""`` if nothing)."""
        pending, number = self.head, 1
        while True:
            chunk = self.stream.read(LOG_CHUNK)
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop() if chunk else b""
            yield enumerate(lines, number)
            number += len(lines)
            if not chunk:
                return
