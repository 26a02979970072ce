"""The frame-columns tap: every decoded frame as one ``FRAME_DTYPE`` row (``model/traffic.py``), for
consumers that need each frame's size and addresses (the behaviour baseline) rather than flow events.

Asked for with ``TrafficStream(frame_columns=True)``; otherwise nothing here runs. Two ways in, with the
same result for the same frames (the tests hold them to it):

* the bulk path (``pcap_bulk.BulkDecoder``: classic pcap, pcapng, the live ring) fills the rows of a whole
  buffer from the 48-byte gather it already made (``Columns``): untagged Ethernet with IPv4 without
  options or ARP; the irregular frames (VLAN tags, IPv6, IPv4 options) are read from a wider gather by
  ``rows_from_bytes``;
* the one-at-a-time path (``FrameDecoder.frame``/``ethernet_frame``: the ends of pcap buffers, other link
  types, pcapng blocks the bulk walk leaves, the live socket fallback, ``bulk=False``) keeps the first
  ``WIDTH`` bytes of each frame and turns them into rows with ``rows_from_bytes`` when flushed.

Rows are flushed in capture order: before each bulk buffer (what the one-at-a-time path gathered until
then) and at the end of each batch. Zeek and Suricata logs carry no frames: they give no rows.
"""

from __future__ import annotations

import numpy as np

from vmsentry.model.traffic import FRAME_DTYPE, ICMP, ICMP6, TCP, UDP, FrameColumns

WIDTH = 96  # bytes kept of a frame: two VLAN tags, an IPv6 header, one extension header, TCP flags
VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
IPV6_EXT = (0, 43, 60)  # hop-by-hop, routing, destination options (as decode.py skips them)
ARP_HEAD = 0x000108000604  # hardware 1, protocol 0x0800, address lengths 6 and 4
# link types (decode.py's LINK_* values; repeated as plain numbers to keep this module free of the decoder)
ETHERNET, NULL, SLL, SLL2 = 1, 0, 113, 276
RAW_TYPES = (101, 228, 229, 12, 14)
U = np.uint64


class RowTap:
    """Rows of the one-at-a-time path, kept until flushed into ``out`` as one ``FrameColumns``."""

    __slots__ = ("out", "ts", "heads", "caps", "origs", "links")

    def __init__(self, out: list) -> None:
        self.out = out
        self.ts: list[float] = []
        self.heads: list[bytes] = []
        self.caps: list[int] = []
        self.origs: list[int] = []
        self.links: list[int] = []

    def add(self, ts: float, buf, b: int, cap: int, orig: int, linktype: int) -> None:
        n = cap if cap < WIDTH else WIDTH
        self.ts.append(ts)
        self.heads.append(bytes(buf[b : b + n]).ljust(WIDTH, b"\0"))
        self.caps.append(cap)
        self.origs.append(orig)
        self.links.append(linktype)

    def flush(self) -> None:
        if not self.ts:
            return
        head = np.frombuffer(b"".join(self.heads), np.uint8).reshape(-1, WIDTH)
        rows = rows_from_bytes(
            head, np.array(self.caps, np.int64), np.array(self.ts), np.array(self.origs), np.array(self.links)
        )
        self.out.append(FrameColumns(float(rows["ts"][0]), rows))
        self.ts, self.heads, self.caps, self.origs, self.links = [], [], [], [], []


def bulk_rows(buf, col) -> np.ndarray:
    """The rows of a bulk buffer's frames (``col``: the ``pcap_bulk.Columns`` gather), in capture order."""
    n = len(col.frame)
    w, incl = col.words, col.incl
    rows = np.zeros(n, FRAME_DTYPE)
    rows["ts"] = col.ts
    rows["length"] = col.orig
    rows["dst_mac"] = np.where(incl >= 6, w[0] >> U(16), U(0))
    rows["src_mac"] = np.where(incl >= 12, ((w[0] & U(0xFFFF)) << U(32)) | (w[1] >> U(32)), U(0))
    etype = np.where(incl >= 14, col.ethertype, U(0))
    rows["ethertype"] = etype

    # IPv4 without options (the addresses in the gather's pair, the ports in its port word)
    ipv4 = (etype == 0x0800) & (col.version_ihl == 0x45) & (incl >= 34)
    rows["src_ip"] = np.where(ipv4, col.pair >> U(32), U(0))
    rows["dst_ip"] = np.where(ipv4, col.pair & U(0xFFFFFFFF), U(0))
    proto = np.where(ipv4, col.proto, U(0))
    rows["proto"] = proto
    first = ipv4 & ((col.fragment & U(0x1FFF)) == 0)  # later fragments carry no transport header
    ports = col.ports.astype(np.uint64)
    l4 = first & ((proto == TCP) | (proto == UDP)) & (incl >= 38)
    rows["sport"] = np.where(l4, ports >> U(16), U(0))
    rows["dport"] = np.where(l4, ports & U(0xFFFF), U(0))
    rows["flags"] = np.where(first & (proto == TCP) & (incl >= 48), col.flags, U(0))
    icmp = first & (proto == ICMP) & (incl >= 36)  # type and code, as Packet carries them
    if icmp.any():
        rows["sport"][icmp] = ports[icmp] >> U(24)
        rows["dport"][icmp] = (ports[icmp] >> U(16)) & U(0xFF)

    # ARP: sender and target protocol addresses, the opcode
    arp = (etype == 0x0806) & (incl >= 42)
    if arp.any():
        at = np.flatnonzero(arp)
        w1, w2, w3, w4, w5 = w[1][at], w[2][at], w[3][at], w[4][at], w[5][at]
        head = ((w1 & U(0xFFFF)) << U(32)) | (w2 >> U(32))
        good = (head == U(ARP_HEAD)) & (((w2 >> U(16)) & U(0xFFFF)) < U(256))
        at, w2, w3, w4, w5 = at[good], w2[good], w3[good], w4[good], w5[good]
        rows["arp_op"][at] = (w2 >> U(16)) & U(0xFF)
        rows["src_ip"][at] = w3 & U(0xFFFFFFFF)
        rows["dst_ip"][at] = ((w4 & U(0xFFFF)) << U(16)) | (w5 >> U(48))

    # the irregular frames: read again from a wider gather, one field at a time
    odd = (etype == 0x86DD) | (etype == 0x8100) | (etype == 0x88A8) | (etype == 0x9100)
    odd |= (etype == 0x0800) & (col.version_ihl != 0x45)
    if odd.any():
        at = np.flatnonzero(odd)
        head = gather(buf, col.frame[at], WIDTH)
        rows[at] = rows_from_bytes(head, incl[at], col.ts[at], col.orig[at], np.full(len(at), ETHERNET))
    return rows


def gather(buf, at: np.ndarray, width: int) -> np.ndarray:
    """``width`` bytes from each offset in ``at`` (rows), zeros past the buffer's end."""
    u8 = np.frombuffer(buf, np.uint8)
    n = len(u8)
    at = np.asarray(at, np.int64)
    padded = u8
    if len(at) and int(at.max()) + width > n:  # (rare: the last frames of a buffer) a padded copy of the tail
        lo = int(at.min())
        padded = np.zeros(n - lo + width, np.uint8)
        padded[: n - lo] = u8[lo:]
        at = at - lo
    windows = np.lib.stride_tricks.as_strided(
        padded, shape=(len(padded) - width + 1, width), strides=(1, 1), writeable=False
    )
    return windows[at]


def rows_from_bytes(
    head: np.ndarray, cap: np.ndarray, ts: np.ndarray, orig: np.ndarray, linktype: np.ndarray
) -> np.ndarray:
    """Rows from the first ``WIDTH`` bytes of frames (``head``, one row each; ``cap`` bytes of each were
    captured) of the given link types: Ethernet (VLAN tags read past), Linux cooked (v1, v2: the sender's
    link-layer address as source MAC), raw IP and BSD loopback (no MACs)."""
    n = len(head)
    width = head.shape[1]
    cap = np.minimum(np.asarray(cap, np.int64), width)
    rows = np.zeros(n, FRAME_DTYPE)
    rows["ts"] = ts
    rows["length"] = orig
    if not n:
        return rows
    line = np.arange(n)

    def field(at: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The big-endian integer of ``size`` bytes at column ``at`` of each row, and whether captured."""
        value = np.zeros(n, np.uint64)
        for k in range(size):
            value = (value << U(8)) | head[line, np.minimum(at + k, width - 1)]
        return value, at + size <= cap

    zero = np.zeros(n, np.int64)
    ether = linktype == ETHERNET
    l3 = np.where(
        ether, 14, np.where(linktype == SLL, 16, np.where(linktype == SLL2, 20, np.where(linktype == NULL, 4, 0)))
    )
    etype_at = np.where(ether, 12, np.where(linktype == SLL, 14, 0))
    etype, ok = field(etype_at, 2)
    etype = np.where(ok & (ether | (linktype == SLL) | (linktype == SLL2)), etype, U(0))
    if ether.any():
        dst, ok = field(zero, 6)
        rows["dst_mac"] = np.where(ether & ok, dst, U(0))
        src, ok = field(zero + 6, 6)
        rows["src_mac"] = np.where(ether & ok, src, U(0))
        for _ in range(2):  # up to two tags (802.1Q, 802.1ad)
            tagged = ether & ((etype == 0x8100) | (etype == 0x88A8) | (etype == 0x9100))
            if not tagged.any():
                break
            inner, ok = field(l3 + 2, 2)
            etype = np.where(tagged, np.where(ok, inner, etype), etype)
            l3 = np.where(tagged & ok, l3 + 4, l3)
    cooked = (linktype == SLL) | (linktype == SLL2)
    if cooked.any():  # the sender's link-layer address (v1: length at 4, address at 6; v2: 11 and 12)
        sll = linktype == SLL
        halen = np.where(sll, field(zero + 4, 2)[0], field(zero + 11, 1)[0])
        addr, ok = field(np.where(sll, 6, 12), 6)
        rows["src_mac"] = np.where(cooked & ok & (halen == 6), addr, rows["src_mac"])
    bare = np.isin(linktype, RAW_TYPES) | (linktype == NULL)  # raw IP and loopback: the IP version says which
    version, ok = field(l3, 1)
    version >>= U(4)
    etype = np.where(bare & ok, np.where(version == 4, U(0x0800), np.where(version == 6, U(0x86DD), U(0))), etype)
    rows["ethertype"] = etype

    proto = np.zeros(n, np.uint64)
    l4 = np.full(n, width, np.int64)  # where the transport header starts (width: none)
    # IPv4 (options skipped; later fragments carry no transport header)
    ipv4 = (etype == 0x0800) & (version == 4)
    if ipv4.any():
        ihl = (field(l3, 1)[0] & U(0x0F)).astype(np.int64) * 4
        dst, ok = field(l3 + 16, 4)
        ipv4 &= ok & (ihl >= 20)
        rows["src_ip"] = np.where(ipv4, field(l3 + 12, 4)[0], U(0))
        rows["dst_ip"] = np.where(ipv4, dst, U(0))
        proto = np.where(ipv4, field(l3 + 9, 1)[0], proto)
        offset = field(l3 + 6, 2)[0] & U(0x1FFF)
        l4 = np.where(ipv4 & (offset == 0), l3 + ihl, l4)
    # IPv6: the last four bytes of each address; extension headers skipped as decode.py does
    ipv6 = (etype == 0x86DD) & (version == 6)
    if ipv6.any():
        dst, ok = field(l3 + 36, 4)
        ipv6 &= ok
        rows["src_ip"] = np.where(ipv6, field(l3 + 20, 4)[0], rows["src_ip"])
        rows["dst_ip"] = np.where(ipv6, dst, rows["dst_ip"])
        nxt = np.where(ipv6, field(l3 + 6, 1)[0], U(0))
        at = np.where(ipv6, l3 + 40, width)
        for _ in range(3):
            ext = ipv6 & np.isin(nxt, IPV6_EXT) & (at + 8 <= cap)
            fragment = ipv6 & (nxt == 44) & (at + 8 <= cap)
            if not (ext.any() or fragment.any()):
                break
            later = fragment & ((field(at + 2, 2)[0] & U(0xFFF8)) != 0)
            step = np.where(ext, 8 + field(at + 1, 1)[0].astype(np.int64) * 8, 8)
            nxt = np.where(ext | fragment, field(at, 1)[0], nxt)
            at = np.where(later, width, np.where(ext | fragment, at + step, at))
        proto = np.where(ipv6, nxt, proto)
        l4 = np.where(ipv6, at, l4)
    rows["proto"] = proto
    ports, ok = field(np.minimum(l4, width), 4)
    l4ok = ok & (l4 < width)
    tcp_udp = l4ok & ((proto == TCP) | (proto == UDP))
    rows["sport"] = np.where(tcp_udp, ports >> U(16), U(0))
    rows["dport"] = np.where(tcp_udp, ports & U(0xFFFF), U(0))
    flags, ok = field(np.minimum(l4 + 13, width), 1)
    rows["flags"] = np.where(ok & (l4 < width) & (proto == TCP), flags, U(0))
    icmp = (proto == ICMP) | (proto == ICMP6)
    type_code, ok = field(np.minimum(l4, width), 2)
    icmp &= ok & (l4 < width)
    rows["sport"] = np.where(icmp, type_code >> U(8), rows["sport"])
    rows["dport"] = np.where(icmp, type_code & U(0xFF), rows["dport"])

    arp = etype == 0x0806
    if arp.any():
        arp_head, ok = field(l3, 6)
        op, _ = field(l3 + 6, 2)
        tpa, whole = field(l3 + 24, 4)
        arp &= ok & whole & (arp_head == U(ARP_HEAD)) & (op < U(256))
        rows["arp_op"] = np.where(arp, op, U(0))
        rows["src_ip"] = np.where(arp, field(l3 + 14, 4)[0], rows["src_ip"])
        rows["dst_ip"] = np.where(arp, tpa, rows["dst_ip"])
    return rows
