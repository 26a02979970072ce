"""Classic pcap (tcpdump's format; either byte order, micro- or nanosecond stamps), plain or gzip'd.

The file is read in chunks of a few MB (bounded memory whatever its size). Each record goes through
one precompiled ``Struct`` that pulls, in one call, the record length, the wire length, the EtherType
with the IPv4 version/IHL byte, the protocol, the 12 bytes of addresses and ports (the flow key) and the TCP
flags. A TCP/UDP packet of a flow already known (and, for TCP, without SYN/FIN/RST) is then only counted:
that is most of the traffic, and it costs no decoding. Everything else goes to ``FrameDecoder``.

A record whose length is impossible (bigger than the snap length allows) is corrupt: the reader looks for
the next plausible record header (sane lengths, a time stamp close to the last one, and a plausible record
after it), counts the bytes skipped and carries on. A record cut by the end of the file is counted too.
"""
from __future__ import annotations

import struct
from typing import Iterator

from vmsentry.collect.traffic.decode import LINK_ETHERNET, FrameDecoder, linktype_supported
from vmsentry.collect.traffic.events import Arp, new

ARP_ETHERNET_IPV4 = b"\x00\x01\x08\x00\x06\x04"    # hardware 1, protocol 0x0800, lengths 6 and 4
MAGICS = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
          b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
CHUNK = 4 << 20
RESYNC_WINDOW = 1 << 20
HEADER = 24


class PcapReader:
    format = "pcap"

    def __init__(self, name: str, stream, head: bytes) -> None:
        """``stream``: a binary file object positioned after ``head`` (the first bytes already read)."""
        self.name = name
        self.stream = stream
        self.head = head
        self.resyncing = False
        self.last_sec: int | None = None

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        """Decode the whole file into ``dec``; yields after each chunk so the caller can drain events."""
        stats = dec.stats
        head = self.head + _read_upto(self.stream, HEADER - len(self.head))
        if len(head) < HEADER:
            stats.problem("truncated-file-header", self.name)
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
        while True:
            chunk = self.stream.read(CHUNK)
            if not chunk:
                break
            buf = buf + chunk if buf else chunk
            done = self._walk(buf, dec, eof=False)
            buf = buf[done:]
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
        fast = self.linktype == LINK_ETHERNET and not dec.flows.all_packets
        while True:
            if fast:
                off = self._fast(buf, off, end, dec)
            off, again = self._careful(buf, off, end, dec, eof)
            if not again:
                return off

    def _fast(self, buf: bytes, off: int, end: int, dec: FrameDecoder) -> int:
        """The hot loop: Ethernet records that lie at least 64 bytes before the end of ``buf``."""
        order = self.order
        # record length, wire length, EtherType + version/IHL + TOS, protocol, addresses+ports, TCP flags
        unpack = struct.Struct(order + "8xII12xI7xB2x12s9xB").unpack_from
        stamp = struct.Struct(order + "II").unpack_from
        # IPv4 without options: EtherType 0x0800 and version/IHL 0x45, whatever the TOS byte
        if order == "<":
            mask, ip45, etarp, shift = 0xFFFFFF, 0x450008, 0x0608, 0
        else:
            mask, ip45, etarp, shift = 0xFFFFFF00, 0x08004500, 0x0806, 16
        append = dec.out.append
        scale, maxcap = self.scale, self.maxcap
        flows = dec.flows
        tcp, udp = flows.tcp, flows.udp
        tcp_packet, udp_packet, syn, frame = flows.tcp_packet, flows.udp_packet, flows.syn, dec.frame
        stats = dec.stats
        safe = end - 64
        n = nbytes = incl = 0
        broke = False
        while off <= safe:
            incl, orig, etvi, proto, key, flags = unpack(buf, off)
            if etvi & mask == ip45:
                if proto == 6:
                    if not flags & 7 and key in tcp:
                        n += 1
                        nbytes += orig
                        off += 16 + incl
                        continue
                elif proto == 17:
                    if key in udp:
                        n += 1
                        nbytes += orig
                        off += 16 + incl
                        continue
            b = off + 16
            nxt = b + incl
            if incl > maxcap or nxt > end:
                broke = True                            # corrupt or incomplete: the careful loop decides
                break
            n += 1
            nbytes += orig
            sec, frac = stamp(buf, off)
            ts = sec + frac * scale
            if proto == 6 and flags & 0x17 == 2 and etvi & mask == ip45 and incl >= 54 \
                    and not (buf[b + 20] & 0x3F or buf[b + 21]):       # a bare SYN: an attempt
                syn(ts, buf[b + 6:b + 12], buf[b:b + 6], key, buf[b + 36] << 8 | buf[b + 37])
                if incl < orig:
                    stats.problems["snaplen-cut"] += 1
            elif etvi & mask == ip45 and incl >= 42 and (proto == 6 or proto == 17) \
                    and not (buf[b + 20] & 0x3F or buf[b + 21]):
                smac, dmac = buf[b + 6:b + 12], buf[b:b + 6]
                total = buf[b + 16] << 8 | buf[b + 17]
                ip_end = b + 14 + total if 20 <= total and b + 14 + total < nxt else nxt
                sip, dip = key[:4], key[4:8]
                sport, dport = buf[b + 34] << 8 | buf[b + 35], buf[b + 36] << 8 | buf[b + 37]
                if proto == 6:
                    if incl < 54:
                        frame(ts, buf, b, incl, orig)
                    else:
                        data = b + 34 + (buf[b + 46] >> 4) * 4
                        tcp_packet(ts, smac, dmac, sip, dip, sport, dport, flags,
                                   buf[data:ip_end] if data < ip_end else b"", orig, key)
                        if incl < orig:
                            stats.problems["snaplen-cut"] += 1
                elif sport in (67, 68) and dport in (67, 68):
                    frame(ts, buf, b, incl, orig)
                else:
                    udp_packet(ts, smac, dmac, sip, dip, sport, dport, buf[b + 42:min(ip_end, b + 562)], orig, key)
                    if incl < orig:
                        stats.problems["snaplen-cut"] += 1
            elif (etvi >> shift) & 0xFFFF == etarp and incl >= 42 and buf[b + 14:b + 20] == ARP_ETHERNET_IPV4 \
                    and not buf[b + 20] and 1 <= buf[b + 21] <= 2:
                append(new(Arp, (ts, buf[b + 6:b + 12], buf[b:b + 6], buf[b + 21], buf[b + 22:b + 28],
                                 buf[b + 28:b + 32], buf[b + 32:b + 38], buf[b + 38:b + 42])))
            else:
                frame(ts, buf, b, incl, orig)
            tcp, udp = flows.tcp, flows.udp              # a table may have rotated
            off = nxt
        if n and not broke:
            last = off - 16 - incl                      # the last record counted
            if off > end:                               # it runs past the buffer: give it back to the
                n -= 1                                  # careful loop (which also takes its time)
                nbytes -= struct.unpack_from(order + "I", buf, last + 12)[0]
                off = last
            else:
                self._saw(buf, last, stats)
        stats.packets += n
        stats.bytes += nbytes
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
            stats.problem("truncated-record", f"{self.name}: last {end - off} bytes")
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
            return (incl <= self.maxcap and incl <= orig <= 262144 and frac < fracmax
                    and (self.last_sec is None or abs(sec - self.last_sec) <= 86400))

        for p in range(start, stop + 1):
            if not plausible(p):
                continue
            nxt = p + 16 + hdr(buf, p)[2]
            if nxt == end or (nxt + 16 <= end and plausible(nxt)):
                self.resyncing = False
                return p
        self.resyncing = not eof
        return None

    def _saw(self, buf: bytes, last: int, stats) -> None:
        sec, frac = struct.unpack_from(self.order + "II", buf, last)
        self.last_sec = sec
        stats.see_time(None, sec + frac * self.scale)


def _read_upto(stream, n: int) -> bytes:
    out = b""
    while n > 0:
        chunk = stream.read(n)
        if not chunk:
            break
        out += chunk
        n -= len(chunk)
    return out
