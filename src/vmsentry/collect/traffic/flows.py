"""Flow batching: decide which IP packets are passed up as ``Packet`` events and which are only counted.

A flow key is the packed ``src ip + dst ip + src port + dst port`` (12 bytes for IPv4, 36 for IPv6),
exactly the bytes that sit together in an IPv4 header without options, so a live frame's key is sliced
straight out of it and the pcap fast path builds whole columns of keys at once (``pcap_bulk.py``).

TCP, per direction: a SYN forgets what was known of the flow (and keeps no state itself: a scan's
unanswered SYNs cost nothing); the SYN-ACK marks the opener's direction *pending*; the opener's packet that
completes the handshake is then passed up (the connection is established), and so is its first packet
with payload (protocol signatures read it); then the direction is *known* and only counted. SYN, FIN and
RST packets are always passed up (bare SYNs batched into ``Probes``: scans are made of them). A packet
whose reverse direction is pending or known is a reply: counted, not passed up. A flow seen mid-stream is
oriented by its ports (the side on a well-known port is the server). Flows on ``deep_ports`` (SMB, RPC)
pass their first ``deep_packets`` payload packets up so that content signatures can read them (the server's
too on the endpoint mapper's ports, ``ANSWERS_READ``).
UDP: the first packet of a flow is passed up (batched into ``Probes``), the rest and the replies counted;
a flow is kept once, under the smaller of its two directions' keys.
ICMP: once per (source, destination, type, code).

State is bounded: each table holds at most ``limit`` keys in two generations; when the current one is
full it becomes the old one and the old one is dropped (counted in ``stats.evicted["flows"]``). A key
found in the old generation moves back, so live flows survive and idle ones age out.
"""

from __future__ import annotations

import struct
from itertools import count, islice

from vmsentry.collect.traffic.stats import Stats
from vmsentry.model.traffic import ACK, ICMP, PROBE_PAYLOADS, PROBE_SPAN, SYN, TCP, UDP, Packet, Probes, new

PORTS = struct.Struct("!HH")
DEEP_PORTS = frozenset({135, 139, 445, 593})
DEEP_PACKETS = 24
ANSWERS_READ = frozenset({135, 593})  # the endpoint mapper's answers name the dynamic RPC ports: read them too
PAYLOAD_KEPT = 512
PENDING_EMPTY = 3
FLOW_LIMIT = 65536  # keys per generation of each table (``--tune flows.limit``): about 25 MB when all are full
# pending state bits: empty packets seen so far, SYN-ACK seen, handshake already passed up
EMPTY, ANSWERED, REPORTED = 0xFF, 0x100, 0x200


class FlowTable:
    def __init__(
        self,
        out: list,
        stats: Stats,
        *,
        limit: int = FLOW_LIMIT,
        all_packets: bool = False,
        deep_ports=DEEP_PORTS,
        deep_packets: int = DEEP_PACKETS,
    ) -> None:
        self.out = out
        self.stats = stats
        self.limit = limit
        self.all_packets = all_packets
        self.deep_ports = frozenset(deep_ports)
        self.deep_packets = deep_packets
        self.tcp: set[bytes] = set()
        self.tcp_old: set[bytes] = set()
        self.udp: set[bytes] = set()
        self.udp_old: set[bytes] = set()
        self.icmp: set[bytes] = set()
        self.pending: dict[bytes, int] = {}
        self.deep: dict[bytes, int] = {}
        self.probes = {TCP: {}, UDP: {}}  # this batch's attempts by protocol, then source+destination

    def end_batch(self) -> None:
        """The batch is handed on: attempts after this start new Probes records."""
        self.probes[TCP].clear()
        self.probes[UDP].clear()

    # --- whole buffers at once (the classic-pcap reader's numpy path, ``pcap_bulk.py``) -----------------
    def reopened(self, keys: set) -> None:
        """Bare SYNs of ``keys``: each (re)opens its flow from this side, so what was known of it goes
        (what ``_tcp_passes`` does for one SYN, in three set operations)."""
        self.tcp.difference_update(keys)
        self.tcp_old.difference_update(keys)
        pending = self.pending
        for key in pending.keys() & keys:
            del pending[key]

    def udp_opened(self, flows: list) -> list[int]:
        """Distinct UDP flows (canonical keys, see ``udp_packet``): the positions of those not known
        before, which the packet that brought them opens; all of them are known afterwards."""
        fresh = set(flows).difference(self.udp)
        back = fresh.intersection(self.udp_old)  # known in the old generation: moves back
        opened = fresh - back if back else fresh
        self._add_udp_many(fresh)
        if len(opened) == len(flows):  # all new (a flood, a scan): no need to look
            return list(range(len(flows)))
        if len(opened) * 2 < len(flows):
            return [i for i, key in enumerate(flows) if key in opened]
        # mostly new: find the few known ones through an index built in C
        index = dict(zip(flows, count()))
        known = sorted(index[key] for key in set(flows).difference(opened))
        keep, start = [], 0
        for i in known:
            keep.extend(range(start, i))
            start = i + 1
        keep.extend(range(start, len(flows)))
        return keep

    def _probe(self, ts, smac, dmac, sip, dip, proto, dport, payload) -> None:
        pair = sip + dip
        table = self.probes[proto]
        rec = table.get(pair)
        if rec is None or ts // PROBE_SPAN != rec.ts // PROBE_SPAN:  # one record per slot of time
            table[pair] = rec = Probes(ts, smac, dmac, sip, dip, proto, dport, payload[:PAYLOAD_KEPT])
            self.out.append(rec)
            return
        rec.last = ts
        rec.ports.append(dport)
        if payload and len(rec.payloads) < PROBE_PAYLOADS:
            rec.payloads.append(payload[:PAYLOAD_KEPT])
        if smac != rec.src_mac:
            self.other_mac(rec, smac)

    @staticmethod
    def other_mac(rec: Probes, smac) -> None:
        """Note that an attempt of ``rec`` came from another source MAC (bounded)."""
        if rec.macs is None:
            rec.macs = set()
        if len(rec.macs) < 65536:
            rec.macs.add(smac)

    # --- TCP ----------------------------------------------------------------------------------------
    def tcp_packet(self, ts, smac, dmac, sip, dip, sport, dport, flags, payload, length, key=None) -> None:
        if key is None:
            key = sip + dip + PORTS.pack(sport, dport)
        if self._tcp_passes(key, sip, dip, sport, dport, flags, payload) or self.all_packets:
            if flags & 0x17 == SYN and not self.all_packets:  # a bare SYN: an attempt, batched
                self._probe(ts, smac, dmac, sip, dip, TCP, dport, payload)
                return
            self.out.append(
                new(Packet, (ts, smac, dmac, sip, dip, TCP, sport, dport, flags, length, payload[:PAYLOAD_KEPT]))
            )

    def _tcp_passes(self, key, sip, dip, sport, dport, flags, payload) -> bool:
        """Update the TCP state for one packet; True if it is passed up."""
        if flags & 7:  # SYN, FIN or RST: always passed up
            if flags & SYN:
                if flags & ACK:  # SYN-ACK: the server side is known from now (read on ANSWERS_READ)
                    self._add_tcp(key) if sport not in ANSWERS_READ else self._established(key, sport, dport)
                    rkey = dip + sip + PORTS.pack(dport, sport)
                    if rkey not in self.tcp:
                        self._pend(rkey, self.pending.get(rkey, 0) | ANSWERED)
                else:  # SYN: (re)opened from this side; it is pending
                    self.tcp.discard(key)  # once answered (a scan's unanswered SYNs then
                    self.tcp_old.discard(key)  # cost no state)
                    self.pending.pop(key, None)
            return True
        if key in self.tcp:
            return False
        if key in self.tcp_old:
            self._add_tcp(key)
            return False
        state = self.pending.get(key)
        if state is not None:  # the opener's side, before its first payload
            if payload or state & EMPTY >= PENDING_EMPTY:
                del self.pending[key]
                self._established(key, sport, dport)
                return bool(payload) or not state & REPORTED
            if state & ANSWERED and not state & REPORTED:
                self.pending[key] = state | REPORTED  # handshake completed: passed up once, and the
                return True  # first payload will be passed up too
            self.pending[key] = state + 1
            return False
        left = self.deep.get(key)
        if left is not None:
            if not payload:
                return False
            if left <= 1:
                del self.deep[key]
                self._add_tcp(key)
            else:
                self.deep[key] = left - 1
            return True
        rkey = dip + sip + PORTS.pack(dport, sport)
        if rkey in self.pending or rkey in self.tcp or rkey in self.tcp_old or rkey in self.deep:
            self._add_tcp(key)  # a reply
            return False
        # mid-stream: the side on the lower, well-known port is the server
        if sport < 1024 <= dport or (sport < dport and sport in self.deep_ports):
            self._add_tcp(key)
            self._pend(rkey, 0)
            return False
        if payload:
            self._established(key, sport, dport)
            return True
        self._pend(key, 1)
        return False

    def _established(self, key, sport, dport) -> None:
        if self.deep_packets and (dport in self.deep_ports or sport in self.deep_ports):
            if len(self.deep) >= self.limit:
                self._trim(self.deep, "deep-flows")
            self.deep[key] = self.deep_packets - 1
        else:
            self._add_tcp(key)

    def _add_tcp(self, key) -> None:
        tcp = self.tcp
        if len(tcp) >= self.limit:
            tcp = self._new_generation("tcp")
        tcp.add(key)

    def _new_generation(self, table: str) -> set:
        """The ``tcp`` or ``udp`` table is full: its current set becomes the old generation (the old one is
        dropped and counted) and a new empty set, returned, the current one. Runs once per ``limit`` keys,
        so the names are looked up here rather than the per-packet callers being made generic."""
        old = table + "_old"
        self.stats.evicted["flows"] += len(getattr(self, old))
        setattr(self, old, getattr(self, table))
        fresh: set[bytes] = set()
        setattr(self, table, fresh)
        return fresh

    def _pend(self, key, value) -> None:
        if len(self.pending) >= self.limit:
            self._trim(self.pending, "pending-flows")
        self.pending[key] = value

    def _trim(self, table: dict, name: str) -> None:
        drop = max(1, len(table) // 4)
        for k in list(islice(table, drop)):
            del table[k]
        self.stats.evicted[name] += drop

    # --- UDP and ICMP -----------------------------------------------------------------------------------
    def udp_packet(self, ts, smac, dmac, sip, dip, sport, dport, payload, length, key=None) -> None:
        """A UDP flow is kept once for both directions, under the smaller of its two keys (its canonical
        key), so that a reply is known without a second entry."""
        if key is None:
            key = sip + dip + PORTS.pack(sport, dport)
        if key in self.udp and not self.all_packets:
            return
        rkey = dip + sip + PORTS.pack(dport, sport)
        flow = key if key <= rkey else rkey
        if not self.all_packets:
            if flow in self.udp:
                return
            if flow in self.udp_old:
                self._add_udp(flow)
                return
        self._add_udp(flow)
        if self.all_packets:
            self.out.append(
                new(Packet, (ts, smac, dmac, sip, dip, UDP, sport, dport, 0, length, payload[:PAYLOAD_KEPT]))
            )
            return
        self._probe(ts, smac, dmac, sip, dip, UDP, dport, payload)

    def _add_udp(self, key) -> None:
        udp = self.udp
        if len(udp) >= self.limit:
            udp = self._new_generation("udp")
        udp.add(key)

    def _add_udp_many(self, keys: set) -> None:
        if len(self.udp) + len(keys) > self.limit:
            self._new_generation("udp")
            if len(keys) > self.limit:  # a buffer of more new flows than a generation holds (a flood)
                self.stats.evicted["flows"] += len(keys) - self.limit
                keys = islice(keys, self.limit)
        self.udp.update(keys)

    def icmp_packet(self, ts, smac, dmac, sip, dip, proto, itype, code, payload, length) -> None:
        """ICMP (proto 1) or ICMPv6 (58). For errors the key includes the quoted packet's ports."""
        if not self.all_packets:
            key = sip + dip + bytes((itype, code)) + (payload[20:24] if proto == ICMP and itype == 3 else b"")
            if key in self.icmp:
                return
            if len(self.icmp) >= self.limit:
                self.stats.evicted["icmp-keys"] += len(self.icmp)
                self.icmp = set()
            self.icmp.add(key)
        self.out.append(new(Packet, (ts, smac, dmac, sip, dip, proto, itype, code, 0, length, payload[:PAYLOAD_KEPT])))
