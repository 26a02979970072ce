"""Behaviour features: every frame (``FrameColumns`` rows) to one row of features per entity per window.

    extractor = FeatureExtractor(entities_from=truth, window=1.0)
    for frames in buffers:                       # FRAME_DTYPE rows, buffers in time order
        samples = extractor.feed(frames)         # the windows completed so far (``Samples``, maybe empty)
    samples = extractor.finish()                 # the rest

A window [k*window, (k+1)*window) is complete once a frame at or past its end plus ``lateness`` has
arrived (or ``advance(now)`` is called with such a time, for live input that goes quiet); frames that
arrive for a window already handed on are counted in ``late`` and left out. Until then the buffers are
only kept, so every frame is worked on once, in one pass over all the frames of the completed windows:
entities by MAC (``entities.py``), samples as groups of (window, entity), and each feature a
``bincount``/``unique`` over the frames it needs. The features and their words are in ``catalogue.py``.

Each frame counts for its sender (the "out" features) and its receiver (the "in" ones) where each is an
entity. Peers are IP addresses (IPv6 ones by their last four bytes: the text then shows ``…:a:b``).
"""

from __future__ import annotations

import math

import numpy as np

from vmsentry.analyse.behaviour.catalogue import COMPARED, LINEAR, NAMES, RATES, SCALES, TRACKED
from vmsentry.analyse.behaviour.entities import LIMIT, EntityTable
from vmsentry.analyse.behaviour.memory import ArpBindings, BeaconTable, SeenSet
from vmsentry.model.behaviour import PEERS, Samples
from vmsentry.model.traffic import FRAME_DTYPE, ICMP, ICMP6, TCP, UDP

U = np.uint64
IPV6_PEER = U(1 << 32)  # peer keys: the address (IPv4, or an IPv6 address's last four bytes) + this bit for IPv6
RATE = {name: i for i, name in enumerate(RATES)}
LATENESS = 0.5  # seconds a window waits past its end for frames that come late


class FeatureExtractor:
    def __init__(
        self,
        entities_from=None,
        window: float = 1.0,
        *,
        lateness: float = LATENESS,
        max_entities: int = LIMIT,
        admit_after: int | None = None,
    ) -> None:
        if not (math.isfinite(window) and window > 0):
            raise ValueError(f"window must be a positive number of seconds, not {window!r}")
        self.window = float(window)
        self.lateness = float(lateness)
        kwargs = {} if admit_after is None else {"admit_after": admit_after}
        self.table = EntityTable(entities_from, limit=max_entities, **kwargs)
        self.names = list(NAMES)
        self.pending: list[np.ndarray] = []
        self.newest = -math.inf
        self.next_window: int | None = None  # the first window not handed on yet
        self.frames = 0
        self.late = 0
        self.peers_seen = SeenSet()
        self.macs_seen = SeenSet()
        self.beacons = BeaconTable()
        size = max_entities + len(self.table) + 1
        self.arp_bindings = ArpBindings()
        for e in self.table.entities:
            if e.ip and e.mac and e.ip.count(".") == 3:
                self.arp_bindings.bind(
                    int.from_bytes(bytes(int(x) for x in e.ip.split(".")), "big"), int(e.mac.replace(":", ""), 16)
                )
        self.avg = np.zeros((len(SCALES), len(TRACKED), size))
        self.avg_at = np.full(size, -np.inf)  # the window start the averages were last updated at

    @property
    def entities(self):
        return self.table.entities

    # --- input -------------------------------------------------------------------------------------
    def feed(self, frames: np.ndarray) -> Samples:
        """Take the frames of one buffer (``FRAME_DTYPE``); returns the samples of the windows completed."""
        if frames.dtype != FRAME_DTYPE:
            raise TypeError("frames must be FRAME_DTYPE rows (model.traffic)")
        if not len(frames):
            return self._empty()
        self.frames += len(frames)
        if self.next_window is not None:  # frames of windows already handed on: counted, left out
            early = frames["ts"] < self.next_window * self.window
            if early.any():
                self.late += int(early.sum())
                frames = frames[~early]
                if not len(frames):
                    return self._empty()
        self.pending.append(frames)
        newest = float(frames["ts"].max())
        if newest > self.newest:
            self.newest = newest
        return self.advance(self.newest)

    def advance(self, now: float) -> Samples:
        """Hand on the windows that ended at least ``lateness`` before ``now``."""
        cut = math.floor((now - self.lateness) / self.window)  # windows before this one are complete
        if not self.pending or (self.next_window is not None and cut <= self.next_window):
            return self._empty()
        return self._complete(cut)

    def finish(self) -> Samples:
        """The samples of every window still open."""
        return self._complete(None)

    # --- the work ----------------------------------------------------------------------------------
    def _complete(self, cut: int | None) -> Samples:
        frames = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending) if self.pending else None
        self.pending = []
        if frames is None or not len(frames):
            return self._empty()
        w = np.floor(frames["ts"] / self.window).astype(np.int64)
        if cut is not None:
            later = w >= cut
            if later.any():
                self.pending = [frames[later]]
                frames, w = frames[~later], w[~later]
        if self.next_window is not None:
            early = w < self.next_window
            if early.any():
                self.late += int(early.sum())
                frames, w = frames[~early], w[~early]
        if not len(frames):
            return self._empty()
        self.next_window = int(w.max()) + 1 if cut is None else max(cut, int(w.max()) + 1)
        return self._samples(frames, w)

    def _empty(self) -> Samples:
        return Samples(
            list(self.entities),
            self.names,
            self.window,
            np.zeros(0, np.int32),
            np.zeros(0),
            np.zeros((0, len(self.names)), np.float32),
            [],
        )

    def _samples(self, f: np.ndarray, w: np.ndarray) -> Samples:
        ts, length = f["ts"], f["length"].astype(np.float64)
        etype, proto, flags = f["ethertype"], f["proto"], f["flags"]
        sport, dport = f["sport"], f["dport"]
        ipv4, ipv6 = etype == 0x0800, etype == 0x86DD
        is_ip = (ipv4 | ipv6) & (proto != 0)
        src_ip, dst_ip = f["src_ip"].astype(np.uint64), f["dst_ip"].astype(np.uint64)
        v6 = np.where(ipv6, IPV6_PEER, U(0))
        src_peer, dst_peer = src_ip | v6, dst_ip | v6
        sender = self.table.senders(f["src_mac"], np.where(ipv4, src_ip, U(0)), ts)
        receiver = self.table.receivers(f["dst_mac"], np.where(ipv4, dst_ip, U(0)))
        receiver[receiver == sender] = -1
        entities = len(self.table)

        # samples: the distinct (window, entity) of senders and receivers
        w0 = int(w.min())
        key_out = (w - w0) * entities + sender
        inbound = np.flatnonzero(receiver >= 0)
        key_in = (w[inbound] - w0) * entities + receiver[inbound]
        keys, inverse = np.unique(np.concatenate([key_out, key_in]), return_inverse=True)
        sid_out, sid_in = inverse[: len(f)], inverse[len(f) :]
        n = len(keys)
        entity, window = keys % entities, keys // entities + w0
        raw = np.zeros((n, len(RATES)))

        def put(name: str, sid: np.ndarray, weights=None) -> None:
            raw[:, RATE[name]] = np.bincount(sid, weights, n)

        put("frames_out_per_s", sid_out)
        put("bytes_out_per_s", sid_out, length)
        put("frames_in_per_s", sid_in)
        put("bytes_in_per_s", sid_in, length[inbound])
        tcp, udp = proto == TCP, proto == UDP
        icmp = (proto == ICMP) | (proto == ICMP6)
        syn = tcp & ((flags & 0x12) == 0x02)
        put("syn_out_per_s", sid_out[syn])
        put("udp_out_per_s", sid_out[udp])
        put("icmp_out_per_s", sid_out[icmp])
        put("broadcast_out_per_s", sid_out[(f["dst_mac"] & U(1 << 40)) != 0])
        tcp_in, proto_in = tcp[inbound], proto[inbound]
        put("rst_in_per_s", sid_in[tcp_in & ((flags[inbound] & 0x04) != 0)])
        unreachable = ((proto_in == ICMP) & (sport[inbound] == 3)) | ((proto_in == ICMP6) & (sport[inbound] == 1))
        put("icmp_unreachable_in_per_s", sid_in[unreachable])
        synack_in = np.bincount(sid_in[tcp_in & ((flags[inbound] & 0x12) == 0x12)], None, n)
        arp_op = f["arp_op"]
        put("arp_requests_out_per_s", sid_out[arp_op == 1])
        replies = np.flatnonzero(arp_op == 2)
        put("arp_replies_out_per_s", sid_out[replies])
        dns = (tcp | udp) & (dport == 53)
        put("dns_out_per_s", sid_out[dns])
        put("dns_bytes_out_per_s", sid_out[dns], length[dns])

        # an ARP frame claiming an address another MAC holds (arpwatch's "flip flop")
        arp_rows = np.flatnonzero(arp_op != 0)
        if len(arp_rows):
            foreign = self.arp_bindings.claims(src_ip[arp_rows].tolist(), f["src_mac"][arp_rows].tolist())
            put("arp_foreign_claims_per_s", sid_out[arp_rows[foreign]])

        # distinct peers and ports (pairs of sample and value, counted once)
        ip_out = np.flatnonzero(is_ip)
        pair_out = (sid_out[ip_out].astype(np.uint64) << U(33)) | dst_peer[ip_out]
        distinct_out, first_out = np.unique(pair_out, return_index=True)
        raw[:, RATE["peers_out"]] = np.bincount((distinct_out >> U(33)).astype(np.int64), None, n)
        ip_in = np.flatnonzero(is_ip[inbound])
        pair_in = (sid_in[ip_in].astype(np.uint64) << U(33)) | src_peer[inbound[ip_in]]
        distinct_in = np.unique(pair_in)
        raw[:, RATE["peers_in"]] = np.bincount((distinct_in >> U(33)).astype(np.int64), None, n)
        l4 = np.flatnonzero(tcp | udp)
        ports = np.unique((sid_out[l4].astype(np.uint64) << U(16)) | dport[l4].astype(np.uint64))
        raw[:, RATE["ports_out"]] = np.bincount((ports >> U(16)).astype(np.int64), None, n)

        # peers never seen for this entity: per (entity, peer), its first sample in these frames
        if len(distinct_out):
            sid_of = (distinct_out >> U(33)).astype(np.int64)
            ent_peer = (entity[sid_of].astype(np.uint64) << U(33)) | (distinct_out & U((1 << 33) - 1))
            order = np.lexsort((window[sid_of], ent_peer))
            firsts = order[np.r_[True, ent_peer[order][1:] != ent_peer[order][:-1]]]
            new = self.peers_seen.add(ent_peer[firsts])
            put("new_peers_out_per_s", sid_of[firsts[new]])
        # source MACs never seen: each distinct MAC at its first frame
        macs, first_mac = np.unique(f["src_mac"], return_index=True)
        new = self.macs_seen.add(macs)
        put("new_macs_per_s", sid_out[first_mac[new]])

        # shares and sizes
        bytes_out = raw[:, RATE["bytes_out_per_s"]]
        frames_out = raw[:, RATE["frames_out_per_s"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            raw[:, RATE["mean_size_out"]] = np.where(frames_out > 0, bytes_out / frames_out, 0.0)
            dns_n = raw[:, RATE["dns_out_per_s"]]
            raw[:, RATE["dns_mean_size"]] = np.where(dns_n > 0, raw[:, RATE["dns_bytes_out_per_s"]] / dns_n, 0.0)
            syn_n = raw[:, RATE["syn_out_per_s"]]
            raw[:, RATE["unanswered_syn_ratio"]] = np.where(
                syn_n > 0, np.clip((syn_n - synack_in) / syn_n, 0.0, 1.0), 0.0
            )
        peer_bytes = np.bincount(np.searchsorted(distinct_out, pair_out), length[ip_out], len(distinct_out))
        top = np.zeros(n)
        np.maximum.at(top, (distinct_out >> U(33)).astype(np.int64), peer_bytes)
        ip_bytes_out = np.bincount(sid_out[ip_out], length[ip_out], n)
        raw[:, RATE["top_peer_share"]] = np.where(ip_bytes_out > 0, top / np.maximum(ip_bytes_out, 1.0), 0.0)

        # beacons: regular new connections from one entity to one peer
        syn_rows = np.flatnonzero(syn)
        if len(syn_rows):
            ent_peer = (sender[syn_rows].astype(np.uint64) << U(33)) | dst_peer[syn_rows]
            last, score = self.beacons.update(ent_peer, ts[syn_rows])
            regular = np.zeros(n)
            np.maximum.at(regular, sid_out[syn_rows[last]], score)
            raw[:, RATE["beacon_regularity"]] = regular

        rates = list(RATES)
        per_second = [i for i, name in enumerate(rates) if name.endswith("_per_s")]
        raw[:, per_second] /= self.window
        peers = self._top_peers(sid_out, sid_in, inbound, is_ip, dst_peer, src_peer, length, n)
        matrix = self._matrix(raw, entity, window)
        return Samples(
            list(self.entities),
            self.names,
            self.window,
            entity.astype(np.int32),
            window.astype(np.float64) * self.window,
            matrix,
            peers,
        )

    def _matrix(self, raw: np.ndarray, entity: np.ndarray, window: np.ndarray) -> np.ndarray:
        """The stored row: rates, damped averages over the entity's windows, now against the long average."""
        tracked = raw[:, [RATE[name] for name in TRACKED]]
        averages = np.zeros((len(SCALES), len(entity), len(TRACKED)))
        for k in np.unique(window).tolist():  # (a batch holds a window or a few: the loop is per window)
            rows = np.flatnonzero(window == k)
            e = entity[rows]
            start = k * self.window
            gap = start - self.avg_at[e]
            first = ~np.isfinite(gap)
            for s, tau in enumerate(SCALES.values()):
                keep = np.exp(-np.where(first, 0.0, gap)[:, None] / tau)
                step = 1.0 - math.exp(-self.window / tau)
                old = self.avg[s][:, e].T
                new = np.where(first[:, None], tracked[rows], old * keep + step * tracked[rows])
                self.avg[s][:, e] = new.T
                averages[s, rows] = new
            self.avg_at[e] = start
        columns = [raw[:, i] for i in range(raw.shape[1])]
        rates = list(RATES)
        out = [np.log1p(c) if rates[i] not in LINEAR else c for i, c in enumerate(columns)]
        for j, _name in enumerate(TRACKED):
            for s in range(len(SCALES)):
                out.append(np.log1p(averages[s, :, j]))
        long = list(SCALES).index("600s")
        for name in COMPARED:
            j = TRACKED.index(name)
            out.append(np.log1p(tracked[:, j]) - np.log1p(averages[long, :, j]))
        return np.column_stack(out).astype(np.float32)

    def _top_peers(self, sid_out, sid_in, inbound, is_ip, dst_peer, src_peer, length, n) -> list:
        """Per sample, the ``PEERS`` addresses it exchanged the most bytes with (both directions)."""
        o, i = np.flatnonzero(is_ip), np.flatnonzero(is_ip[inbound])
        sid = np.concatenate([sid_out[o], sid_in[i]]).astype(np.uint64)
        peer = np.concatenate([dst_peer[o], src_peer[inbound[i]]])
        size = np.concatenate([length[o], length[inbound[i]]])
        pairs, where = np.unique((sid << U(33)) | peer, return_inverse=True)
        total = np.bincount(where, size, len(pairs))
        of = (pairs >> U(33)).astype(np.int64)
        order = np.lexsort((-total, of))
        of_sorted = order if not len(order) else order
        starts = np.searchsorted(of[of_sorted], np.arange(n))
        rank = np.arange(len(order)) - starts[of[of_sorted]]
        chosen = of_sorted[rank < PEERS]
        peers: list[list] = [[] for _ in range(n)]
        for s, p, b in zip(of[chosen].tolist(), (pairs[chosen] & U((1 << 33) - 1)).tolist(), total[chosen].tolist()):
            peers[s].append((_peer_text(p), int(b)))
        return peers


def _peer_text(peer: int) -> str:
    a = peer & 0xFFFFFFFF
    if peer >> 32:
        return f"…:{a >> 16:x}:{a & 0xFFFF:x}"
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


def concat(parts: list[Samples]) -> Samples:
    """Samples of one extractor's successive calls as one (the last call's entity list names them all)."""
    parts = [p for p in parts if p is not None]
    if not parts:
        raise ValueError("no samples to put together")
    last = parts[-1]
    return Samples(
        list(last.entities),
        list(last.names),
        last.window,
        np.concatenate([p.entity for p in parts]).astype(np.int32),
        np.concatenate([p.start for p in parts]),
        np.concatenate([p.matrix for p in parts]).astype(np.float32)
        if any(len(p) for p in parts)
        else np.zeros((0, len(last.names)), np.float32),
        [row for p in parts for row in p.peers],
    )
