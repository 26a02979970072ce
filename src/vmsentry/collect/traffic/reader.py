"""What every traffic file reader starts from (pcap, pcapng, Zeek logs, eve.json): ``source.open_file``
has read the first bytes to tell the format, and hands them over with the rest of the stream."""

from __future__ import annotations


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
