"""pcapng (Wireshark/dumpcap's format), plain or gzip'd: sections of either byte order, several
interfaces with their own link type and time resolution, enhanced, simple and obsolete packet blocks.

Read in chunks like classic pcap. The Ethernet packets of a chunk's enhanced packet blocks are gathered
while its blocks are walked and decoded together (``BulkDecoder``); the rest one at a time, in order. A
block whose length fields are inconsistent is corrupt: the reader
looks for the next block whose leading and trailing lengths agree, counts the bytes skipped and carries
on. Packets of an interface with a link type we do not read are counted and skipped.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

from vmsentry.collect.traffic.decode import LINK_ETHERNET, FrameDecoder, linktype_supported
from vmsentry.collect.traffic.pcap import Chunks
from vmsentry.collect.traffic.pcap_bulk import BulkDecoder
from vmsentry.collect.traffic.reader import FileReader
from vmsentry.model.traffic import PROBE_SPAN

SHB, IDB, PB_OBSOLETE, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
KNOWN_BLOCKS = {SHB, IDB, PB_OBSOLETE, SPB, 4, 5, EPB, 7, 8, 9, 10, 0x0BAD, 0x40000BAD}
MAX_BLOCK = 16 << 20
RESYNC_WINDOW = 1 << 20


class Interface:
    __slots__ = ("linktype", "snaplen", "scale", "offset")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        self.scale = 1e-6
        self.offset = 0


class PcapngReader(FileReader):
    format = "pcapng"

    def __init__(self, name: str, stream, head: bytes) -> None:
        super().__init__(name, stream, head)
        self.order = "<"
        self.ifaces: list[Interface] = []
        self.resyncing = False
        self.bulk: BulkDecoder | None = None
        self.pending: tuple = ([], [], [], [])  # frame offsets, time stamps, captured, wire lengths

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        buf = self.head
        chunks = Chunks(self.stream)
        if dec.bulk and not dec.flows.all_packets:
            self.bulk = BulkDecoder(dec)
        while True:
            more = chunks.after(buf)
            eof = more is None
            if not eof:
                buf = more
            events = len(dec.out)
            done = self._walk(buf, dec, eof=eof)
            chunks.made(len(dec.out) - events, done)
            buf = buf[done:]
            yield
            if eof:
                break

    def _walk(self, buf, dec: FrameDecoder, eof: bool) -> int:
        try:
            return self._blocks(buf, dec, eof)
        finally:
            self._flush(buf)  # the gathered packets, before the buffer is refilled

    def _blocks(self, buf, dec: FrameDecoder, eof: bool) -> int:
        stats = dec.stats
        off, end = 0, len(buf)
        if self.resyncing:
            found = self._resync(buf, 0)
            if found is None:
                return end if eof else max(0, end - 65536)
            off = found
        fast = self._fast_blocks if self.bulk is not None else None
        while off + 12 <= end:
            if fast is not None:
                off = fast(buf, off, end)
                if off + 12 > end:
                    break
            btype = int.from_bytes(buf[off : off + 4], "little")
            if btype == SHB:
                bom = buf[off + 8 : off + 12]
                if len(bom) < 4:
                    break
                if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    stats.problem("corrupt-block", f"{self.name}: section header with a bad byte-order mark")
                    return end
                self.order = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                self.ifaces = []
            order = self.order
            btype, blen = struct.unpack_from(order + "II", buf, off)
            if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                found = self._corrupt(buf, off, dec, f"block length {blen}")
                if found is None:
                    return end if eof else max(off, end - 65536)
                off = found
                continue
            if off + blen > end:
                break
            if struct.unpack_from(order + "I", buf, off + blen - 4)[0] != blen:
                found = self._corrupt(buf, off, dec, "leading and trailing block lengths differ")
                if found is None:
                    return end if eof else max(off, end - 65536)
                off = found
                continue
            self._flush(buf)  # (in capture order with what follows)
            self._block(btype, buf, off, blen, dec)
            off += blen
        if eof and off < end:
            self.cut(stats, "truncated-block", f"{self.name}: last {end - off} bytes")
            return end
        return off

    def _fast_blocks(self, buf, off: int, end: int) -> int:
        """Enhanced packet blocks of Ethernet interfaces, whole and with 48 bytes of the buffer after the
        packet's start, are gathered for ``BulkDecoder`` (one unpacking each); returns the offset of the
        first block that is anything else, for the general loop."""
        order = self.order
        head = struct.Struct(order + "7I").unpack_from  # type, length, interface, time, lengths
        tail = struct.Struct(order + "I").unpack_from
        ifaces = self.ifaces
        ethernet = [i.linktype == LINK_ETHERNET for i in ifaces]
        scales = [i.scale for i in ifaces]
        offsets = [i.offset for i in ifaces]
        count = len(ifaces)
        frames, stamps, caps, origs = self.pending
        add_frame, add_stamp, add_cap, add_orig = frames.append, stamps.append, caps.append, origs.append
        limit = end - 76
        while off <= limit:
            btype, blen, ifid, hi, lo, cap, orig = head(buf, off)
            if (
                btype != EPB
                or blen < 32
                or blen > MAX_BLOCK
                or blen % 4
                or off + blen > end
                or ifid >= count
                or not ethernet[ifid]
                or tail(buf, off + blen - 4)[0] != blen
            ):
                return off
            add_frame(off + 28)
            add_stamp(((hi << 32) | lo) * scales[ifid] + offsets[ifid])
            add_cap(cap if cap <= blen - 32 else blen - 32)
            add_orig(orig)
            off += blen
        return off

    def _flush(self, buf) -> None:
        """Decode the Ethernet packets gathered from this buffer (``BulkDecoder``)."""
        frames, stamps, caps, origs = self.pending
        if frames:
            ts = np.array(stamps)
            self.bulk.frames(
                buf,
                np.array(frames, np.int64),
                ts,
                (ts // PROBE_SPAN).astype(np.int64),
                np.array(caps, np.int64),
                np.array(origs, np.int64),
            )
            self.pending = ([], [], [], [])

    def _block(self, btype: int, buf: bytes, off: int, blen: int, dec: FrameDecoder) -> None:
        order, stats = self.order, dec.stats
        if btype == IDB and blen >= 20:
            linktype, _, snaplen = struct.unpack_from(order + "HHI", buf, off + 8)
            iface = Interface(linktype, snaplen)
            self._options(buf, off + 16, off + blen - 4, iface)
            self.ifaces.append(iface)
            if not linktype_supported(linktype):
                stats.problem("unknown-linktype", f"{self.name}: interface {len(self.ifaces) - 1} link type {linktype}")
        elif btype in (EPB, PB_OBSOLETE) and blen >= 32:
            if btype == EPB:
                ifid, hi, lo, cap, orig = struct.unpack_from(order + "IIIII", buf, off + 8)
            else:
                ifid, _, hi, lo, cap, orig = struct.unpack_from(order + "HHIIII", buf, off + 8)
            self._packet(buf, off + 28, min(cap, blen - 32), orig, ifid, (hi << 32) | lo, dec)
        elif btype == SPB and blen >= 16:
            orig = struct.unpack_from(order + "I", buf, off + 8)[0]
            snap = self.ifaces[0].snaplen if self.ifaces and self.ifaces[0].snaplen else orig
            self._packet(buf, off + 12, min(orig, snap, blen - 16), orig, 0, None, dec)

    def _packet(self, buf, data: int, cap: int, orig: int, ifid: int, stamp, dec: FrameDecoder) -> None:
        stats = dec.stats
        if ifid >= len(self.ifaces):
            stats.problem("packet-for-unknown-interface", self.name)
            return
        iface = self.ifaces[ifid]
        stats.packets += 1
        stats.bytes += orig
        if not linktype_supported(iface.linktype):
            stats.problems["packet-of-unknown-linktype"] += 1
            return
        ts = stamp * iface.scale + iface.offset if stamp is not None else (stats.last_ts or 0.0)
        stats.see_time(ts, ts)
        dec.frame(ts, buf, data, cap, orig, iface.linktype)

    def _options(self, buf: bytes, i: int, end: int, iface: Interface) -> None:
        order = self.order
        while i + 4 <= end:
            code, length = struct.unpack_from(order + "HH", buf, i)
            if code == 0:
                break
            value = i + 4
            if code == 9 and length >= 1:
                res = buf[value]
                iface.scale = 2.0 ** -(res & 0x7F) if res & 0x80 else 10.0**-res
            elif code == 14 and length == 8:
                iface.offset = struct.unpack_from(order + "q", buf, value)[0]
            i = value + (length + 3) // 4 * 4

    def _corrupt(self, buf: bytes, off: int, dec: FrameDecoder, why: str) -> int | None:
        dec.stats.problem("corrupt-block", f"{self.name}: {why}")
        found = self._resync(buf, off + 4)
        if found is not None:
            dec.stats.problems["skipped-bytes"] += found - off
        return found

    def _resync(self, buf: bytes, start: int) -> int | None:
        """The next 4-aligned-looking offset with a known block type and matching lengths."""
        order, end = self.order, len(buf)
        for p in range(start, min(end - 12, start + RESYNC_WINDOW)):
            btype, blen = struct.unpack_from(order + "II", buf, p)
            if (
                btype in KNOWN_BLOCKS
                and 12 <= blen <= MAX_BLOCK
                and blen % 4 == 0
                and p + blen <= end
                and struct.unpack_from(order + "I", buf, p + blen - 4)[0] == blen
            ):
                self.resyncing = False
                return p
        self.resyncing = True
        return None
