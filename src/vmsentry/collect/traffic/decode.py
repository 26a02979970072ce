"""Frame decoding: one captured frame (a slice of a buffer) to events, for every link type we read.

This is the general path. The classic-pcap reader has a fast path in front of it for the common case
(IPv4 TCP/UDP without options on a flow already known) and sends everything else here.
Nothing here raises on bad input: problems are counted in ``Stats`` by kind.
"""

from __future__ import annotations

import struct

from vmsentry.collect.traffic import protocols
from vmsentry.collect.traffic.flows import FlowTable
from vmsentry.collect.traffic.frame_columns import RowTap
from vmsentry.collect.traffic.stats import Stats
from vmsentry.model.traffic import ICMP, ICMP6, TCP, UDP, Frame

# pcap LINKTYPE_* values read here
LINK_NULL, LINK_ETHERNET, LINK_RAW, LINK_LINUX_SLL = 0, 1, 101, 113
LINK_IPV4, LINK_IPV6, LINK_LINUX_SLL2 = 228, 229, 276
LINKTYPES = {
    LINK_NULL: "null",
    LINK_ETHERNET: "ethernet",
    LINK_RAW: "raw",
    12: "raw",
    14: "raw",
    LINK_LINUX_SLL: "linux-sll",
    LINK_IPV4: "ipv4",
    LINK_IPV6: "ipv6",
    LINK_LINUX_SLL2: "linux-sll2",
}
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options: skipped over
DHCP_PORTS = (67, 68)
ICMP_PROTOS = (ICMP, ICMP6)  # a constant tuple: faster per packet than two comparisons or a tuple built inline


def linktype_supported(linktype: int) -> bool:
    return linktype in LINKTYPES


# EtherType, IPv4 version/IHL, protocol, addresses+ports (the flow key), TCP flags of an Ethernet frame
QUICK = struct.Struct("!12xHB8xB2x12s9xB")


class FrameDecoder:
    def __init__(self, flows: FlowTable, stats: Stats, bulk: bool = True, frame_columns: bool = False) -> None:
        self.flows = flows
        self.stats = stats
        self.out = flows.out
        self.bulk = bulk  # capture files may decode whole buffers at once (pcap_bulk.py)
        # the frame-columns tap (frame_columns.py): the entry points keep each frame's first bytes first;
        # without it they are the plain methods, at no cost
        self.rows: RowTap | None = None
        if frame_columns:
            self.rows = RowTap(self.out)
            self.frame, self.ethernet_frame = self._frame_with_row, self._ethernet_frame_with_row

    def _frame_with_row(self, ts, buf, b, cap, orig, linktype=LINK_ETHERNET) -> None:
        self.rows.add(ts, buf, b, cap, orig, linktype)
        self.decode(ts, buf, b, cap, orig, linktype)

    def _ethernet_frame_with_row(self, ts: float, frame: bytes) -> None:
        self.rows.add(ts, frame, 0, len(frame), len(frame), LINK_ETHERNET)
        FrameDecoder.ethernet_frame(self, ts, frame)

    def ethernet_frame(self, ts: float, frame: bytes) -> None:
        """A whole Ethernet frame (live capture): packets of known flows are only counted, as in the
        pcap reader's fast path; the rest is decoded."""
        if len(frame) >= 48 and not self.flows.all_packets:
            et, vi, proto, key, flags = QUICK.unpack_from(frame)
            if et == 0x0800 and vi == 0x45:
                if proto == 6:
                    if not flags & 7 and key in self.flows.tcp:
                        return
                elif proto == 17 and key in self.flows.udp:
                    return
        self.ethernet(ts, frame, 0, len(frame), len(frame))

    def decode(self, ts: float, buf, b: int, cap: int, orig: int, linktype: int = LINK_ETHERNET) -> None:
        """Decode the frame ``buf[b:b+cap]`` (``orig`` bytes on the wire). ``frame`` is the entry point
        for readers (the same, plus the frame-columns tap when asked); the bulk path, which makes its
        rows itself, calls this."""
        end = b + cap
        if cap < orig:
            self.stats.problems["snaplen-cut"] += 1
        if linktype == LINK_ETHERNET:
            self.ethernet(ts, buf, b, end, orig)
        elif linktype in (LINK_RAW, LINK_IPV4, LINK_IPV6, 12, 14):
            self.ip(ts, buf, b, end, orig, None, None)
        elif linktype == LINK_LINUX_SLL:
            if cap < 16:
                return self._problem("truncated-sll")
            self.l3(ts, buf, b + 16, end, orig, buf[b + 14] << 8 | buf[b + 15], None, None)
        elif linktype == LINK_LINUX_SLL2:
            if cap < 20:
                return self._problem("truncated-sll2")
            self.l3(ts, buf, b + 20, end, orig, buf[b] << 8 | buf[b + 1], None, None)
        elif linktype == LINK_NULL:
            if cap < 4:
                return self._problem("truncated-null")
            family = buf[b] if buf[b] else buf[b + 3]
            self.ip(ts, buf, b + 4, end, orig, None, None) if family in (2, 24, 28, 30) else None
        else:
            self._problem("unknown-linktype")

    frame = decode

    def ethernet(self, ts, buf, b, end, orig) -> None:
        if end - b < 14:
            return self._problem("truncated-ethernet")
        dst = bytes(buf[b : b + 6])
        src = bytes(buf[b + 6 : b + 12])
        etype = buf[b + 12] << 8 | buf[b + 13]
        l3 = b + 14
        while etype in VLAN_TYPES:
            if end - l3 < 4:
                return self._problem("truncated-vlan")
            self.stats.problems["vlan-tagged"] += 1
            etype = buf[l3 + 2] << 8 | buf[l3 + 3]
            l3 += 4
        self.l3(ts, buf, l3, end, orig, etype, src, dst)

    def l3(self, ts, buf, l3, end, orig, etype, src, dst) -> None:
        if etype == 0x0800 or etype == 0x86DD:
            self.ip(ts, buf, l3, end, orig, src, dst)
        elif etype == 0x0806:
            ev = protocols.arp(ts, buf, l3, end, src, dst)
            if isinstance(ev, str):
                return self._problem(ev, f"ARP from {src.hex(':') if src else '?'}")
            self.out.append(ev)
        elif src is not None:
            self.out.append(Frame(ts, src, dst, etype))

    def ip(self, ts, buf, n, end, orig, smac, dmac) -> None:
        if end - n < 1:
            return self._problem("truncated-ip")
        version = buf[n] >> 4
        if version == 4:
            self.ipv4(ts, buf, n, end, orig, smac, dmac)
        elif version == 6:
            self.ipv6(ts, buf, n, end, orig, smac, dmac)
        else:
            self._problem("malformed-ip (bad version)")

    def ipv4(self, ts, buf, n, end, orig, smac, dmac) -> None:
        if end - n < 20:
            return self._bad(ts, smac, dmac, 0x0800, "truncated-ipv4")
        ihl = (buf[n] & 0x0F) * 4
        if buf[n] >> 4 != 4 or ihl < 20:
            return self._bad(ts, smac, dmac, 0x0800, "malformed-ipv4 (bad version or header length)")
        total = buf[n + 2] << 8 | buf[n + 3]
        if total >= ihl:
            end = min(end, n + total)
        if buf[n + 6] & 0x1F or buf[n + 7]:
            self.stats.problems["ip-fragment"] += 1  # not the first fragment: no transport header
            return
        src = bytes(buf[n + 12 : n + 16])
        dst = bytes(buf[n + 16 : n + 20])
        self.transport(ts, buf, n + ihl, end, orig, buf[n + 9], src, dst, smac, dmac)

    def ipv6(self, ts, buf, n, end, orig, smac, dmac) -> None:
        if end - n < 40:
            return self._bad(ts, smac, dmac, 0x86DD, "truncated-ipv6")
        src = bytes(buf[n + 8 : n + 24])
        dst = bytes(buf[n + 24 : n + 40])
        end = min(end, n + 40 + (buf[n + 4] << 8 | buf[n + 5]))
        nxt, p = buf[n + 6], n + 40
        while nxt in IPV6_EXT or nxt == 44:
            if end - p < 8:
                return self._bad(ts, smac, dmac, 0x86DD, "truncated-ipv6-extension")
            if nxt == 44:
                if (buf[p + 2] << 8 | buf[p + 3]) & 0xFFF8:
                    self.stats.problems["ip-fragment"] += 1
                    return
                nxt, p = buf[p], p + 8
            else:
                nxt, p = buf[p], p + 8 + buf[p + 1] * 8
        self.transport(ts, buf, p, end, orig, nxt, src, dst, smac, dmac)

    def transport(self, ts, buf, t, end, orig, proto, src, dst, smac, dmac) -> None:
        flows = self.flows
        if proto == TCP:
            if end - t < 20:
                return self._bad(ts, smac, dmac, 0x0800 if len(src) == 4 else 0x86DD, "truncated-tcp")
            data = t + (buf[t + 12] >> 4) * 4
            flows.tcp_packet(
                ts,
                smac,
                dmac,
                src,
                dst,
                buf[t] << 8 | buf[t + 1],
                buf[t + 2] << 8 | buf[t + 3],
                buf[t + 13],
                bytes(buf[data:end]) if data < end else b"",
                orig,
            )
        elif proto == UDP:
            if end - t < 8:
                return self._bad(ts, smac, dmac, 0x0800 if len(src) == 4 else 0x86DD, "truncated-udp")
            sport, dport = buf[t] << 8 | buf[t + 1], buf[t + 2] << 8 | buf[t + 3]
            if sport in DHCP_PORTS and dport in DHCP_PORTS and len(src) == 4:
                ev = protocols.dhcp(ts, buf, t + 8, end, smac, src, dst)
                if isinstance(ev, str):
                    return self._problem(ev, f"DHCP from {smac.hex(':') if smac else '?'}")
                self.out.append(ev)
                return
            flows.udp_packet(ts, smac, dmac, src, dst, sport, dport, bytes(buf[t + 8 : min(end, t + 520)]), orig)
        elif proto in ICMP_PROTOS:
            if end - t < 4:
                return self._bad(ts, smac, dmac, 0x0800 if len(src) == 4 else 0x86DD, "truncated-icmp")
            itype = buf[t]
            if proto == ICMP6 and itype == 134:
                ev = protocols.router_advert(ts, buf, t, end, smac, src, dst)
                if isinstance(ev, str):
                    return self._problem(ev)
                self.out.append(ev)
                return
            if proto == ICMP6 and (itype == 135 or itype == 136):  # also passed on as a Packet below
                ev = protocols.neighbour(ts, buf, t, end, smac, dmac, src, dst)
                if isinstance(ev, str):
                    self._problem(ev)
                else:
                    self.out.append(ev)
            flows.icmp_packet(
                ts, smac, dmac, src, dst, proto, itype, buf[t + 1], bytes(buf[t + 8 : min(end, t + 520)]), orig
            )
        else:
            flows.icmp_packet(ts, smac, dmac, src, dst, proto, 0, 0, b"", orig)

    def _problem(self, kind: str, where: str = "") -> None:
        self.stats.problem(kind, where)

    def _bad(self, ts, smac, dmac, etype: int, kind: str) -> None:
        """A packet whose IP or transport header is cut or wrong: counted, and still passed up as a bare
        frame so that its source MAC is seen (flooders such as macof send such frames)."""
        self.stats.problems[kind] += 1
        if smac is not None:
            self.out.append(Frame(ts, smac, dmac, etype))
