"""Open a traffic input by what it contains, not by its name: pcap, pcapng (either gzip'd), a Zeek log
(TSV or JSON lines; conn, dns, dhcp), a Suricata eve.json, or a folder of Zeek logs / eve files."""

from __future__ import annotations

import functools
import gzip
import os
import sys
import zlib

from vmsentry.collect.traffic.pcap import MAGICS, PcapReader
from vmsentry.collect.traffic.pcapng import PcapngReader
from vmsentry.collect.traffic.tail import Follow, open_tail, read_head

HEAD = 4096
# what a damaged gzip stream or a failing read raises (gzip.BadGzipFile is an OSError; zlib.error is not)
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error)
ZEEK_LOGS = ("conn", "dns", "dhcp")


class BadTrafficInput(Exception):
    """An input that cannot be read at all (the message names the file and the reason)."""


def open_inputs(path: str, follow: Follow | None = None) -> list:
    """Readers for ``path`` (a file, ``-`` for stdin, or a folder of logs). Raises BadTrafficInput.
    ``follow``: read the file as it grows (``tail.py``; a folder is read as it is)."""
    if path != "-" and os.path.isdir(path):
        readers = []
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if os.path.isfile(full) and _log_name(name):
                readers.append(open_file(full))
        if not readers:
            raise BadTrafficInput(f"{path}: no conn/dns/dhcp Zeek logs or eve.json in this folder")
        return readers
    return [open_file(path, follow)]


def open_file(path: str, follow: Follow | None = None):
    try:
        # no with-block: the reader returned goes on reading the file after this function returns
        if follow is not None:
            raw = open_tail(path, follow)
        else:
            raw = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BadTrafficInput(f"{path}: cannot open: {exc.strerror}") from None
    stream, tail = raw, raw if follow is not None else None
    try:
        head = read_head(raw, HEAD, _known) if tail else raw.read(HEAD)
        if head[:2] == b"\x1f\x8b":
            stream = gzip.GzipFile(fileobj=_Prefixed(head, raw), mode="rb")
            head = read_head(_Steps(stream), HEAD, _known) if tail else stream.read(HEAD)
    except READ_ERRORS as exc:
        _close(raw)
        raise BadTrafficInput(f"{path}: cannot read: {_reason(exc)}") from None
    name = "<stdin>" if path == "-" else path
    try:
        return _reader(name, path, stream, head, tail)
    except BadTrafficInput:
        _close(raw)  # not a format of ours: the file is not kept open until the garbage collector comes
        raise


def _close(raw) -> None:
    if raw is not sys.stdin.buffer:
        raw.close()


def _known(head: bytes) -> bool:
    """Whether the first bytes tell the format already (a followed input is not read further to know)."""
    if head[:2] == b"\x1f\x8b" or (len(head) >= 4 and (head[:4] in MAGICS or head[:4] == b"\x0a\x0d\x0d\x0a")):
        return True
    text = head.lstrip()
    return sniff_text(head) is not None or (b"\n" in text and not text.startswith(b"#"))


def _reader(name: str, path: str, stream, head: bytes, tail):
    """The reader for what ``head`` says the input is."""

    def guarded():
        return _Guarded(stream, name, len(head), tail)

    if head[:4] in MAGICS:
        return PcapReader(name, guarded(), head)
    if head[:4] == b"\x0a\x0d\x0d\x0a":
        return PcapngReader(name, guarded(), head)
    text_kind = sniff_text(head)
    if text_kind == "eve":
        from vmsentry.collect.traffic.eve import EveReader

        return EveReader(name, guarded(), head)
    if text_kind:
        from vmsentry.collect.traffic.zeek import ZeekReader

        return ZeekReader(name, guarded(), head, os.path.basename(path))
    if not head:
        raise BadTrafficInput(f"{name}: empty file")
    raise BadTrafficInput(f"{name}: not a pcap, pcapng, Zeek log or Suricata eve.json")


def sniff_text(head: bytes) -> str | None:
    """'zeek-tsv', 'zeek-json', 'eve' or None, from the first bytes."""
    text = head.lstrip()
    if text.startswith(b"#") and (b"#separator" in text or b"\n#fields" in text):
        return "zeek-tsv"  # (btest baselines put a comment line first)
    if text.startswith(b"{"):
        first = text.split(b"\n", 1)[0]
        if b'"event_type"' in first:
            return "eve"
        if b'"uid"' in first or b'"uids"' in first or b'"id.orig_h"' in first:
            return "zeek-json"
    return None


def _log_name(name: str) -> bool:
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith(".json") and "eve" in base:
        return True
    stem = base.split(".")[0]
    return stem in ZEEK_LOGS and (base.endswith(".log") or base.endswith(".json"))


class _Prefixed:
    """A read-only stream that first returns ``head`` (already read from ``raw``), then the rest."""

    def __init__(self, head: bytes, raw) -> None:
        self.head, self.raw = head, raw

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n is None or n < 0:
                out, self.head = self.head + self.raw.read(), b""
                return out
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.raw.read(n)

    def readinto(self, view) -> int:
        if self.head:
            n = min(len(view), len(self.head))
            view[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return _readinto(self.raw, view)


class _Guarded:
    """Turns a damaged gzip stream or a read error into the end of the data plus a noted problem, which
    says how far the data could be read (``error``: one line for the report)."""

    def __init__(self, stream, name: str, offset: int = 0, tail=None) -> None:
        """``offset``: bytes of data already read (the head); ``tail``: the TailStream being followed."""
        self.stream, self.name = stream, name
        self.error: str | None = None
        self.offset = offset
        self.tail = tail
        self.eager = tail is not None  # (see TailStream.eager)
        self.ended = False
        # gzip: one decompression step per call. A buffered read that fills a whole chunk loses every byte
        # it had gathered when the damage is met, so what came before the damage would not be decoded.
        compressed = isinstance(stream, gzip.GzipFile)
        self._read = stream.read1 if compressed else stream.read
        self._readinto = stream.readinto1 if compressed else functools.partial(_readinto, stream)

    @property
    def stopped(self) -> bool:
        """The input was followed and the run was stopped (SIGINT/SIGTERM): what is cut is no damage."""
        return self.tail is not None and self.tail.stopped

    def read(self, n: int = -1) -> bytes:
        if self.error or self.ended:
            return b""
        try:
            data = self._read(n)
        except READ_ERRORS as exc:
            self._failed(exc)
            return b""
        self.offset += len(data)
        return data

    def readinto(self, view) -> int:
        if self.error or self.ended:
            return 0
        try:
            n = self._readinto(view)
        except READ_ERRORS as exc:
            self._failed(exc)
            return 0
        self.offset += n
        return n

    def _failed(self, exc: Exception) -> None:
        self.ended = True
        if self.stopped:
            return  # a gzip member cut by the stop
        data = "decompressed data" if isinstance(self.stream, gzip.GzipFile) else "data"
        self.error = f"{_reason(exc)}; read up to byte {self.offset:,} of the {data}, the rest is lost"


def _reason(exc: Exception) -> str:
    """A read error in words: ``zlib.error`` says 'Error -3 while decompressing data: invalid ...'."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, (zlib.error, EOFError, gzip.BadGzipFile)):
        return f"damaged gzip data ({text})"
    return getattr(exc, "strerror", None) or text


class _Steps:
    """A gzip stream read a decompression step at a time (``read1``)."""

    def __init__(self, stream) -> None:
        self.read = stream.read1


def _readinto(stream, view) -> int:
    """``stream.readinto`` where the stream has it (files, gzip), else a read copied into ``view``."""
    readinto = getattr(stream, "readinto", None)
    if readinto is not None:
        return readinto(view) or 0
    data = stream.read(len(view))
    view[: len(data)] = data
    return len(data)
