"""The capture fast path: a buffer of Ethernet frames decoded at once with numpy.

Python pays about a microsecond for every function call and attribute lookup, so a reader that handles a
packet at a time cannot reach a million packets a second once each packet means work (a scan or a
flood makes every packet a new flow). Here the reader locates the frames of a buffer (classic pcap:
``PcapBuffers`` with the parallel record walk of ``pcap_walk.py`` and one gather of the record headers;
pcapng: its block walk), the first 48 bytes of every frame are then gathered at once through a strided
numpy view of the buffer (``Columns``), and the frames are sorted into:

* **known**: IPv4 TCP without SYN/FIN/RST, or UDP, of a flow the ``FlowTable`` already knows: only counted;
* **SYN**: bare TCP SYNs (IPv4 without options, not a fragment): the flows they open are forgotten in one
  set operation and the attempts batched into ``Probes`` by source, destination and ``PROBE_SPAN`` slot,
  as ``FlowTable`` does one at a time;
* **new UDP**: the first packet of each UDP flow (neither direction known): ``Probes`` with payloads;
  every UDP key is then known at once;
* **ARP**: ``Arp`` events, built column by column;
* **the rest** (handshakes, FIN/RST, ICMP, DHCP, VLAN tags, IPv6, IP options, fragments, anything cut
  short): decoded one at a time by ``FrameDecoder``, in capture order, exactly as on the general path.
  A packet of a flow that became known earlier in the same buffer is only counted there too.

The events of a buffer are then put in time order (a stable sort, so that a SYN's ``Probes`` comes before
the SYN-ACK with the same time stamp). One difference from the one-at-a-time path, within one buffer
(about 4 MB, some 40,000 packets): membership in the flow tables is read as it stood when the buffer
started, so a flow reopened by a SYN in the middle of a buffer has its later packets counted, not
re-examined.
"""

from __future__ import annotations

from operator import attrgetter

import numpy as np

from vmsentry.collect.traffic.flows import PAYLOAD_KEPT, PENDING_EMPTY, FlowTable
from vmsentry.collect.traffic.frame_columns import bulk_rows
from vmsentry.collect.traffic.pcap_walk import RecordWalker
from vmsentry.model.traffic import PROBE_PAYLOADS, PROBE_SPAN, TCP, UDP, Arp, FrameColumns, Probes, new

KEY = np.dtype([("ips", ">u8"), ("ports", ">u4")])  # the flow key: src ip, dst ip, src port, dst port
ARP_HEAD = 0x000108000604  # ARP: hardware 1, protocol 0x0800, address lengths 6 and 4
BY_TIME = attrgetter("ts")
SLOT = int(PROBE_SPAN)  # (whole seconds, so that a slot can be taken from the integer time stamp)
assert SLOT == PROBE_SPAN
FIRST_LOOK = PENDING_EMPTY + 1  # packets of a new TCP flow looked at before it is known (see flows.py)
U = np.uint64


class Columns:
    """What the fast path reads of every frame of a buffer, from one gather of the first 48 bytes of
    each (six words) instead of a pass over the buffer per field. The fields every frame is sorted by are
    computed for all; the others (addresses, lengths) for the frames that need them. Fields past a short
    frame's end hold the next record's bytes: callers check ``incl``."""

    __slots__ = (
        "words",
        "frame",
        "ts",
        "slot",
        "incl",
        "orig",
        "ethertype",
        "version_ihl",
        "fragment",
        "proto",
        "pair",
        "ports",
        "flags",
    )

    def __init__(
        self, buf, frame: np.ndarray, ts: np.ndarray, slot: np.ndarray, incl: np.ndarray, orig: np.ndarray
    ) -> None:
        self.frame, self.ts, self.slot, self.incl, self.orig = frame, ts, slot, incl, orig
        # the frame as six native words per record, word by word: w[0] holds bytes 0-7 of every frame...
        self.words = w = _rows(buf, frame, 48).view(">u8").T.astype(np.uint64, order="C")
        self.ethertype = (w[1] >> U(16)) & U(0xFFFF)  # frame bytes 12-13
        self.version_ihl = (w[1] >> U(8)) & U(0xFF)  # 14
        self.fragment = (w[2] >> U(16)) & U(0xFFFF)  # 20-21
        self.proto = w[2] & U(0xFF)  # 23
        self.pair = (w[3] << U(16)) | (w[4] >> U(48))  # 26-33: source and destination IP
        self.ports = ((w[4] >> U(16)) & U(0xFFFFFFFF)).astype(np.uint32)  # 34-37: source and destination port
        self.flags = w[5] & U(0xFF)  # 47: TCP flags

    def dst_mac(self, idx: np.ndarray) -> np.ndarray:  # bytes 0-5
        return self.words[0][idx] >> U(16)

    def src_mac(self, idx: np.ndarray) -> np.ndarray:  # 6-11
        return ((self.words[0][idx] & U(0xFFFF)) << U(32)) | (self.words[1][idx] >> U(32))

    def total(self, idx: np.ndarray) -> np.ndarray:  # 16-17: IP total length
        return self.words[2][idx] >> U(48)

    def arp(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # 14-19 and 20-21 of ARP
        w1, w2 = self.words[1][idx], self.words[2][idx]
        return ((w1 & U(0xFFFF)) << U(32)) | (w2 >> U(32)), (w2 >> U(16)) & U(0xFFFF)


def _rows(buf, at: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` bytes at each offset in ``at``, one row each. Every ``width``-byte window of the
    buffer is a row of a strided view (no copy); taking rows copies contiguous bytes, at memcpy speed."""
    windows = np.lib.stride_tricks.as_strided(
        np.frombuffer(buf, np.uint8), shape=(len(buf) - width + 1, width), strides=(1, 1), writeable=False
    )
    return windows[at]


class PcapBuffers:
    """Classic pcap, Ethernet: walks a buffer's records (``pcap_walk.py``), reads their headers in one
    gather and hands the frames to a ``BulkDecoder``."""

    def __init__(self, order: str, scale: float, maxcap: int, dec) -> None:
        self.order, self.scale = order, scale
        self.walker = RecordWalker(order, scale, maxcap)
        self.bulk = BulkDecoder(dec)
        self.last_record = 0  # offset of the last record decoded by ``walk``

    def walk(self, buf, off: int, end: int) -> int:
        """Decode the records from ``off`` that lie wholly in ``buf[:end]`` and start far enough before its
        end, up to the first impossible length; returns where it stopped (the careful loop takes over
        from there)."""
        rec, off = self.walker.starts(buf, off, end)
        if len(rec):
            self.last_record = int(rec[-1])
            header = _rows(buf, rec, 16).view(self.order + "u8")
            low, half = U(0xFFFFFFFF), U(32)
            if self.order == ">":  # seconds, fraction / captured, wire length
                sec, frac = header[:, 0] >> half, header[:, 0] & low
                incl, orig = header[:, 1] >> half, header[:, 1] & low
            else:
                sec, frac = header[:, 0] & low, header[:, 0] >> half
                incl, orig = header[:, 1] & low, header[:, 1] >> half
            self.bulk.frames(
                buf, rec + 16, sec.astype(np.float64) + frac * self.scale, sec // U(SLOT), incl.astype(np.int64), orig
            )  # slot = ts // PROBE_SPAN
        return off


class BulkDecoder:
    """Decodes many Ethernet frames of one buffer at once into the ``FrameDecoder``'s flow table and
    event list (the frames of a classic pcap or pcapng buffer, located by their reader)."""

    def __init__(self, dec) -> None:
        self.dec = dec
        _keep_freed_memory()

    def frames(
        self, buf, frame: np.ndarray, ts: np.ndarray, slot: np.ndarray, incl: np.ndarray, orig: np.ndarray
    ) -> None:
        """The Ethernet frames at offsets ``frame`` of ``buf`` (``incl`` bytes captured of ``orig``, time
        stamps ``ts``, ``slot`` = ts // PROBE_SPAN), in capture order; every frame must have 48 bytes of
        the buffer from its start."""
        dec = self.dec
        stats, flows, out = dec.stats, dec.flows, dec.out
        first_event = len(out)
        col = Columns(buf, frame, ts, slot, incl, orig)
        if dec.rows is not None:  # the frame-columns tap: what the one-at-a-time path kept first, in order
            dec.rows.flush()
            out.append(FrameColumns(float(ts[0]), bulk_rows(buf, col)))
            first_event += 1
        ports = col.ports
        stats.packets += len(frame)
        stats.bytes += int(orig.sum(dtype=np.int64))
        stats.see_time(float(ts.min()), float(ts.max()))

        # IPv4 without options, not a fragment (MF and offset clear; DF allowed), the L4 ports present
        ipv4 = (col.ethertype == 0x0800) & (col.version_ihl == 0x45) & ((col.fragment & U(0x3FFF)) == 0) & (incl >= 42)
        tcp = ipv4 & (col.proto == TCP) & (incl >= 54)
        syn = tcp & ((col.flags & U(0x17)) == 2)
        udp = ipv4 & (col.proto == UDP)
        sport, dport = ports >> np.uint32(16), ports & np.uint32(0xFFFF)
        udp &= ~(((sport == 67) | (sport == 68)) & ((dport == 67) | (dport == 68)))  # DHCP: decoded in full
        arp = np.flatnonzero((col.ethertype == 0x0806) & (incl >= 42))
        arp_head, arp_op = col.arp(arp)
        is_arp = (arp_head == ARP_HEAD) & ((arp_op == 1) | (arp_op == 2))
        arp, arp_op = arp[is_arp], arp_op[is_arp]
        rest = ~(syn | udp)
        rest[arp] = False

        # TCP without SYN, FIN or RST: the packets of a flow known when the buffer starts are only counted.
        # Of any other flow, the first FIRST_LOOK packets go the one-at-a-time way with the rest (handshake
        # and first payload make a flow known); its later packets are counted if it is known by then, and
        # decoded after the rest if not (SMB/RPC flows whose first payloads are read).
        watch, late = {}, None
        idx = np.flatnonzero(tcp & ((col.flags & U(7)) == 0))
        if len(idx):
            ips, flow_ports = col.pair[idx], ports[idx]
            first, flow, rank = _group(ips, flow_ports)
            flow_keys = _keys(ips[first], flow_ports[first])
            known = flows.tcp
            unknown = np.array([k not in known for k in flow_keys], bool)[flow]
            rest[idx] = False
            if unknown.any():
                early = unknown & (rank < FIRST_LOOK)
                rest[idx[early]] = True
                watch = dict(zip(idx[early].tolist(), [flow_keys[f] for f in flow[early].tolist()]))
                is_late = unknown & ~early
                late, late_flow = idx[is_late], flow[is_late]

        cut = incl < orig
        # bare SYNs
        idx = np.flatnonzero(syn)
        if len(idx):
            if flows.tcp or flows.tcp_old or flows.pending:  # else there is nothing to forget
                flows.reopened(set(_keys(col.pair[idx], ports[idx])))
            self._probes(buf, col, idx, TCP, payloads=False)
            _count_cut(stats, cut[idx])

        # UDP: the first packet of each flow not known yet
        idx = np.flatnonzero(udp)
        if len(idx):
            first, udp_keys = _udp_flows(col.pair[idx], ports[idx])
            opened = flows.udp_opened(udp_keys)
            if len(opened):
                idx = idx[first[opened]]
                self._probes(buf, col, idx, UDP, payloads=True)
                _count_cut(stats, cut[idx])

        # ARP
        idx = arp
        if len(idx):
            u8 = np.frombuffer(buf, np.uint8)
            f = frame[idx]
            columns = [
                ts[idx].tolist(),
                _as_bytes(col.src_mac(idx), 6),
                _as_bytes(col.dst_mac(idx), 6),
                arp_op.tolist(),
                _take(u8, f + 22, 6),
                _take(u8, f + 28, 4),
                _take(u8, f + 32, 6),
                _take(u8, f + 38, 4),
            ]
            out.extend([new(Arp, row) for row in zip(*columns)])

        # the rest, one at a time and in order
        self._one_by_one(buf, np.flatnonzero(rest), ts, frame, incl, orig, tcp, watch)
        if late is not None and len(late):
            known = flows.tcp
            flows_left = np.flatnonzero(np.bincount(late_flow))  # (np.unique sorts; these are small ints)
            still = np.zeros(len(flow_keys), bool)
            still[flows_left] = [flow_keys[f] not in known for f in flows_left.tolist()]
            self._one_by_one(buf, late[still[late_flow]], ts, frame, incl, orig, tcp, {})

        if len(out) > first_event:
            out[first_event:] = sorted(out[first_event:], key=BY_TIME)

    def _one_by_one(self, buf, idx, ts, frame, incl, orig, tcp, watch: dict) -> None:
        """The packets ``idx`` in order through the flow table (IPv4 TCP without options straight to it,
        the rest through ``FrameDecoder``); one in ``watch`` (position -> flow key) is only counted if its
        flow became known meanwhile."""
        flows, stats, decode = self.dec.flows, self.dec.stats, self.dec.decode
        tcp_packet = flows.tcp_packet
        for i, t, b, n, o, plain in zip(
            idx.tolist(),
            ts[idx].tolist(),
            frame[idx].tolist(),
            incl[idx].tolist(),
            orig[idx].tolist(),
            tcp[idx].tolist(),
        ):
            key = watch.get(i)
            if key is not None and key in flows.tcp:  # became known earlier in this buffer
                continue
            if not plain:
                decode(t, buf, b, n, o)
                continue
            total = buf[b + 16] << 8 | buf[b + 17]
            end = b + 14 + total if total >= 20 and total < n - 14 else b + n
            data = b + 34 + (buf[b + 46] >> 4) * 4
            head = bytes(buf[b : b + 34])  # copied out of the reused buffer
            tcp_packet(
                t,
                head[6:12],
                head[:6],
                head[26:30],
                head[30:34],
                buf[b + 34] << 8 | buf[b + 35],
                buf[b + 36] << 8 | buf[b + 37],
                buf[b + 47],
                bytes(buf[data:end]) if data < end else b"",
                o,
                key,
            )
            if n < o:
                stats.problems["snaplen-cut"] += 1

    def _probes(self, buf, col: Columns, idx: np.ndarray, proto: int, payloads: bool) -> None:
        """``Probes`` for the attempts ``idx``: one per source, destination and ``PROBE_SPAN`` slot of time."""
        pair, second, src_mac = col.pair[idx], col.slot[idx], col.src_mac(idx)
        order = _together(pair, second)  # slots on the same grid as FlowTable._probe
        idx, pair, second, src_mac = idx[order], pair[order], second[order], src_mac[order]
        ports = (col.ports[idx] & np.uint32(0xFFFF)).tolist()
        t = col.ts[idx]
        starts = np.flatnonzero(np.r_[True, (pair[1:] != pair[:-1]) | (second[1:] != second[:-1])])
        stops = np.r_[starts[1:], len(idx)]
        sizes = stops - starts
        mixed = np.flatnonzero(np.logical_or.reduceat(src_mac != np.repeat(src_mac[starts], sizes), starts))
        # one record per source, destination and slot of time in a batch: a record opened by an earlier
        # buffer of the same batch (or by FlowTable for a packet of the one-at-a-time path) grows
        table = self.dec.flows.probes[proto]
        records = {}
        heads = idx[starts]
        firsts, lasts = starts.tolist(), stops.tolist()
        t0s, t1s = t[starts].tolist(), t[stops - 1].tolist()
        pair_keys = _as_bytes(pair[starts], 8)
        if payloads:  # the first PROBE_PAYLOADS of each record: copied for the groups that need them
            kept = np.minimum(sizes, PROBE_PAYLOADS)
            for g, (key, t0) in enumerate(zip(pair_keys, t0s)):
                rec = table.get(key)
                if rec is not None and rec.ts // PROBE_SPAN == t0 // PROBE_SPAN and len(rec.payloads) >= PROBE_PAYLOADS:
                    kept[g] = 0
            at = idx[np.repeat(starts, kept) + (np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept))]
            texts = _udp_payloads(buf, col.frame[at], col.incl[at], col.total(at))
            bounds = np.r_[0, np.cumsum(kept)].tolist()
        smacs, dmacs = _as_bytes(src_mac[starts], 6), _as_bytes(col.dst_mac(heads), 6)
        for g in np.argsort(heads).tolist():  # groups in the order of their first attempt
            s, e, t0, t1, pair_key, smac = firsts[g], lasts[g], t0s[g], t1s[g], pair_keys[g], smacs[g]
            rec = table.get(pair_key)
            if rec is not None and rec.ts // PROBE_SPAN == t0 // PROBE_SPAN:
                rec.last = t1
                rec.ports += ports[s:e]
                if payloads and len(rec.payloads) < PROBE_PAYLOADS:
                    rec.payloads += [p for p in texts[bounds[g] : bounds[g + 1]] if p][
                        : PROBE_PAYLOADS - len(rec.payloads)
                    ]
            else:
                table[pair_key] = rec = Probes(t0, smac, dmacs[g], pair_key[:4], pair_key[4:], proto, 0)
                rec.last = t1
                rec.ports = ports[s:e]
                if payloads:
                    rec.payloads = [p for p in texts[bounds[g] : bounds[g + 1]] if p]
                self.dec.out.append(rec)
            records[g] = rec
            if smac != rec.src_mac:
                FlowTable.other_mac(rec, smac)
        for g in mixed.tolist():  # attempts from more than one MAC (rare)
            rec = records[g]
            for mac in set(_as_bytes(src_mac[starts[g] : stops[g]], 6)):
                if mac != rec.src_mac:
                    FlowTable.other_mac(rec, mac)


_MALLOC_TUNED = False


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for the next arrays. By default it maps every block over 128 KB
    fresh from the kernel and unmaps it when freed, so each buffer's temporary arrays cost new zeroed
    pages: about 45,000 page faults per million packets, 0.1-0.2 s of system time. With the thresholds
    raised (32 MB, glibc's maximum for mmap) the same memory is reused; peak RSS does not change."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)
    mallopt(M_TRIM_THRESHOLD, 64 << 20)


def _count_cut(stats, cut: np.ndarray) -> None:
    """Packets captured shorter than they were on the wire (snap length) among the ones passed up."""
    n = int(cut.sum())
    if n:
        stats.problems["snaplen-cut"] += n


def _keys(ips: np.ndarray, ports: np.ndarray) -> list[bytes]:
    """Flow keys as ``FlowTable`` spells them (src ip + dst ip + src port + dst port, 12 bytes)."""
    k = np.empty(len(ips), KEY)
    k["ips"], k["ports"] = ips, ports
    return k.view("V12").tolist()


GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (odd; products wrap around)


def _together(*columns: np.ndarray) -> np.ndarray:
    """A stable order in which rows with equal values in every column are next to each other (the order
    of the groups themselves does not matter). Two passes of numpy's radix sort over a 32-bit hash of
    the row cost a third of a merge sort of the columns; rows whose hashes collide are detected and
    then the columns are sorted themselves."""
    h = np.zeros(len(columns[0]), np.uint64)
    for column in columns:
        h = (h ^ column.astype(np.uint64)) * GOLDEN
    h >>= np.uint64(32)
    order = np.argsort((h & np.uint64(0xFFFF)).astype(np.uint16), kind="stable")
    order = order[np.argsort((h[order] >> np.uint64(16)).astype(np.uint16), kind="stable")]
    same_hash = h[order][1:] == h[order][:-1]
    for column in columns:
        sorted_column = column[order]
        if np.any(same_hash & (sorted_column[1:] != sorted_column[:-1])):
            return np.lexsort(columns[::-1])
    return order


def _group(ips: np.ndarray, ports: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packets grouped by flow key (``ips`` = src|dst, ``ports`` = sport|dport): the position of each
    flow's first packet, each packet's flow number (an index into the first array) and its rank within
    its flow (0 for the first packet)."""
    order = _together(ips, ports)  # stable: each run starts with its first packet
    ips_sorted, ports_sorted = ips[order], ports[order]
    runs = np.r_[True, (ips_sorted[1:] != ips_sorted[:-1]) | (ports_sorted[1:] != ports_sorted[:-1])]
    run_of = np.cumsum(runs) - 1
    run_start = np.flatnonzero(runs)
    flow = np.empty(len(order), np.int64)
    flow[order] = run_of
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order)) - run_start[run_of]
    return order[run_start], flow, rank


def _udp_flows(ips: np.ndarray, ports: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """The distinct flows among UDP packets: the position of each flow's first packet (in order) and its
    canonical key, the smaller of the two directions' keys as ``FlowTable.udp_packet`` keeps it."""
    src, dst = ips >> np.uint64(32), ips & np.uint64(0xFFFFFFFF)
    swap = (src > dst) | ((src == dst) & ((ports >> np.uint32(16)) > (ports & np.uint32(0xFFFF))))
    ips = np.where(swap, (ips << np.uint64(32)) | (ips >> np.uint64(32)), ips)
    ports = np.where(swap, (ports << np.uint32(16)) | (ports >> np.uint32(16)), ports)
    first = np.sort(_group(ips, ports)[0])
    return first, _keys(ips[first], ports[first])


def _as_bytes(values: np.ndarray, width: int) -> list[bytes]:
    """Unsigned integers as their last ``width`` bytes, big-endian (a MAC, a pair of IPv4 addresses)."""
    raw = values.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - width :]
    return np.ascontiguousarray(raw).view(f"V{width}").ravel().tolist()


def _take(u8: np.ndarray, at: np.ndarray, width: int) -> list[bytes]:
    """``width`` bytes at each offset in ``at``, as a list of bytes objects."""
    return np.ascontiguousarray(u8[at[:, None] + np.arange(width)]).view(f"V{width}").ravel().tolist()


def _udp_payloads(buf, frame: np.ndarray, captured: np.ndarray, total: np.ndarray) -> list[bytes]:
    """The payloads of the IPv4/UDP packets in the Ethernet frames at ``frame`` (``captured`` bytes long,
    IP total length ``total``): up to the IP total length when that is sane (Ethernet pads short frames),
    at most ``PAYLOAD_KEPT`` bytes, copied out of the buffer."""
    total = total.astype(np.int64)
    end = np.where((total >= 20) & (total < captured - 14), frame + 14 + total, frame + captured)
    start = frame + 42
    end = np.minimum(np.maximum(end, start), start + PAYLOAD_KEPT)
    view = memoryview(buf)
    return [bytes(view[a:b]) for a, b in zip(start.tolist(), end.tolist())]
