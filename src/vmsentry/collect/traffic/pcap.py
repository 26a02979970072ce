"""Classic pcap (tcpdump's format; either byte order, micro- or nanosecond stamps), plain or gzip'd.

The file is read in chunks of a few MB (bounded memory whatever its size). An Ethernet capture's chunk
is decoded at once with numpy (``pcap_bulk.py``): packets of known flows are only counted, SYNs, new UDP
flows and ARP are turned into events column by column, and the rest goes to ``FrameDecoder`` one at a
time. Other link types, and the records at the very end of a chunk, go through the careful loop.

A record whose length is impossible (bigger than the snap length allows) is corrupt: the reader looks for
the next plausible record header (sane lengths, a time stamp close to the last one, and a plausible record
after it), counts the bytes skipped and carries on. A record cut by the end of the file is counted too.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from vmsentry.collect.traffic.decode import LINK_ETHERNET, FrameDecoder, linktype_supported
from vmsentry.collect.traffic.pcap_bulk import PcapBuffers
from vmsentry.collect.traffic.reader import FileReader

MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
CHUNK = 4 << 20  # bytes read and decoded at a time
BATCH = 16 << 20  # bytes of capture per batch of events handed on (fewer, fuller Probes records)
# events after which a batch is handed on before BATCH bytes: a flood makes an event of every packet (a
# million forged sources, one Probes each), and a batch's events are all held at once. The benchmark's
# captures make at most about 17,000 events per 16 MB: the same number of batches as without the cut
# (the lab mix's 1,000,000 packets give one event more, 60,474: a batch boundary moved by a buffer).
BATCH_EVENTS = 16384
# A chunk that makes more than FLOOD_EVENTS events per MB (a flood: an event for almost every packet; the
# benchmark's mixes make 500-1,100) is followed by chunks of FLOOD_CHUNK bytes, so that the lists a
# buffer's events are built from stay small too; the reader returns to CHUNK when the rate drops.
FLOOD_EVENTS = 4096
FLOOD_CHUNK = 1 << 20
RESYNC_WINDOW = 1 << 20
FAST_RETURNS = 8  # resyncs in one buffer after which its records are walked one by one (_walk)
HEADER = 24


class PcapReader(FileReader):
    format = "pcap"

    def __init__(self, name: str, stream, head: bytes) -> None:
        super().__init__(name, stream, head)
        self.resyncing = False
        self.last_sec: int | None = None
        self.bulk = None

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        """Decode the whole file into ``dec``; yields after every ``BATCH`` bytes so the caller can drain events."""
        stats = dec.stats
        head = self.head + _read_upto(self.stream, HEADER - len(self.head))
        if len(head) < HEADER:
            self.cut(stats, "truncated-file-header", self.name)
            return
        order, scale = MAGICS[head[:4]]
        _, _, _, _, snaplen, linktype = struct.unpack(order + "HHiIII", head[4:24])
        linktype &= 0x0FFFFFFF
        if not linktype_supported(linktype):
            stats.problem("unknown-linktype", f"{self.name}: link type {linktype}")
            return
        self.order, self.scale, self.linktype = order, scale, linktype
        self.maxcap = max(snaplen if 0 < snaplen < (1 << 24) else 0, 262144)
        buf = self.head[HEADER:]
        unyielded = 0
        chunks = Chunks(self.stream)
        while True:
            more = chunks.after(buf)
            if more is None:
                break
            buf = more
            events = len(dec.out)
            done = self._walk(buf, dec, eof=False)
            chunks.made(len(dec.out) - events, done)
            buf = buf[done:]
            unyielded += done
            # (followed: hand on what came at once)
            if unyielded >= BATCH or chunks.eager or len(dec.out) >= BATCH_EVENTS:
                unyielded = 0
                yield
        if buf:
            self._walk(buf, dec, eof=True)
        yield

    def _walk(self, buf: bytes, dec: FrameDecoder, eof: bool) -> int:
        """Decode the complete records of ``buf``; returns where the first incomplete one starts."""
        off, end = 0, len(buf)
        if self.resyncing:
            found = self._resync(buf, 0, eof)
            if found is None:
                return max(0, end - 65536) if not eof else end
            off = found
        if off + 16 <= end:
            sec, frac = struct.unpack_from(self.order + "II", buf, off)
            dec.stats.see_time(sec + frac * self.scale, None)
        fast = self.linktype == LINK_ETHERNET and dec.bulk and not dec.flows.all_packets
        returns = 0
        while True:
            if fast:
                off = self._fast(buf, off, end, dec)
            off, again = self._careful(buf, off, end, dec, eof)
            if not again:
                return off
            # each return to the bulk walk plans the rest of the buffer again: a buffer damaged all along
            # (a corrupt record every few bytes) would cost that plan per record; it is read record by record
            returns += 1
            fast = fast and returns <= FAST_RETURNS

    def _fast(self, buf: bytes, off: int, end: int, dec: FrameDecoder) -> int:
        """The bulk of an Ethernet capture, a buffer at a time (``pcap_bulk.py``)."""
        if self.bulk is None:
            self.bulk = PcapBuffers(self.order, self.scale, self.maxcap, dec)
        start = off
        off = self.bulk.walk(buf, off, end)
        if off > start:  # (the bulk decoder saw the time span; the resync wants the last second)
            self.last_sec = struct.unpack_from(self.order + "I", buf, self.bulk.last_record)[0]
        return off

    def _careful(self, buf: bytes, off: int, end: int, dec: FrameDecoder, eof: bool) -> tuple[int, bool]:
        """Any link type, and the records near the end of the buffer, every length checked. Returns
        (offset reached, True if the fast loop should take over again after a resync)."""
        stats = dec.stats
        hdr = struct.Struct(self.order + "IIII").unpack_from
        fracmax = 1_000_000_000 if self.scale < 1e-6 else 1_000_000
        while off + 16 <= end:
            sec, frac, incl, orig = hdr(buf, off)
            if incl > self.maxcap or frac >= fracmax:
                stats.problem("corrupt-record", f"{self.name}: record of length {incl}")
                found = self._resync(buf, off + 1, eof)
                if found is None:
                    return (max(off, end - 65536) if not eof else end), False
                stats.problems["skipped-bytes"] += found - off
                off = found
                if self.linktype == LINK_ETHERNET and not dec.flows.all_packets:
                    return off, True
                continue
            if off + 16 + incl > end:
                break
            stats.packets += 1
            stats.bytes += orig
            self.last_sec = sec
            ts = sec + frac * self.scale
            stats.see_time(ts, ts)
            dec.frame(ts, buf, off + 16, incl, orig, self.linktype)
            off += 16 + incl
        if eof and off < end:
            self.cut(stats, "truncated-record", f"{self.name}: last {end - off} bytes")
            return end, False
        return off, False

    def _resync(self, buf: bytes, start: int, eof: bool) -> int | None:
        """The next offset that looks like a record header followed by another (or by the end)."""
        hdr = struct.Struct(self.order + "IIII").unpack_from
        fracmax = 1_000_000_000 if self.scale < 1e-6 else 1_000_000
        end = len(buf)
        stop = min(end - 16, start + RESYNC_WINDOW)

        def plausible(p: int) -> bool:
            sec, frac, incl, orig = hdr(buf, p)
            return (
                incl <= self.maxcap
                and incl <= orig <= 262144
                and frac < fracmax
                and (self.last_sec is None or abs(sec - self.last_sec) <= 86400)
            )

        for p in range(start, stop + 1):
            if not plausible(p):
                continue
            nxt = p + 16 + hdr(buf, p)[2]
            if nxt == end or (nxt + 16 <= end and plausible(nxt)):
                self.resyncing = False
                return p
        self.resyncing = not eof
        return None


class Chunks:
    """The stream a buffer at a time, each buffer starting with what the previous one left undecoded.
    The buffer is one ``bytearray`` refilled in place: a fresh 4 MB object per read (or a concatenation
    with the leftover) costs more than the read itself, in page faults. Whatever keeps bytes of a packet
    copies them out (``bytes(...)``), so refilling never changes an event."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.space = bytearray(CHUNK)
        self.size = CHUNK  # bytes to read next (FLOOD_CHUNK in a flood, see ``made``)
        # a followed input (``tail.py``): a buffer is whatever has come, not a full chunk
        self.eager = getattr(stream, "eager", False)

    def made(self, events: int, consumed: int) -> None:
        """The last buffer's ``consumed`` bytes made ``events`` events: more than FLOOD_EVENTS a MB is a
        flood, and the next buffers are FLOOD_CHUNK bytes until the rate drops again."""
        self.size = FLOOD_CHUNK if events * (1 << 20) > FLOOD_EVENTS * max(consumed, 1) else CHUNK

    def after(self, left) -> bytearray | None:
        """``left`` followed by as much of the stream as fits in ``size`` bytes (more if ``left`` is a
        long record's start), or None at its end."""
        if len(left) + 65536 > len(self.space):  # a record longer than a chunk (big snap length)
            self.space = bytearray(len(left) + CHUNK)
        space = self.space
        view = memoryview(space)
        view[: len(left)] = left
        got = len(left)
        limit = min(len(space), max(self.size, len(left) + 65536))
        while got < limit:
            n = self.stream.readinto(view[got:limit])
            if not n:
                break
            got += n
            if self.eager:
                break
        view.release()
        if got == len(left):
            return None
        return space if got == len(space) else space[:got]


def _read_upto(stream, n: int) -> bytes:
    out = b""
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        out += chunk
        n -= len(chunk)
    return out
