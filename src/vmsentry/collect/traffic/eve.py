"""Suricata eve.json (one JSON object per line): ``flow``, ``dns``, ``dhcp`` and ``arp`` records turned into
the same events the packet decoders produce. Other event types are counted and skipped.

* flow (TCP): the client's SYN when ``tcp.syn`` (or the flags seen to the server include S), the server's
  SYN-ACK or reset from ``tcp_flags_tc``, and an "established" packet when both sides sent packets and the
  state is established/closed (a handshake that completed). UDP/ICMP flows give their first packet.
  MACs come from ``ether`` when Suricata logs them.
* dns: each query (``type`` "query"/"request", v2 ``rrname`` or v3 ``queries[]``) becomes a query packet.
* dhcp: ``dhcp.type`` request/reply, ``dhcp_type``, ``client_mac``, ``assigned_ip``, ``routers``,
  ``dns_servers``; the server is the reply's source address.
* arp (Suricata 8): ``src_mac``/``src_ip``/``dest_mac``/``dest_ip``/``opcode``; the Ethernet addresses
  from ``ether`` when present, otherwise the ARP ones.

A line that is no JSON object (or longer than ``MAX_LINE``) and a record whose fields are not what Suricata
writes (a wrong type, a null, an out-of-range number) are counted with their line number and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from vmsentry.collect.traffic.decode import FrameDecoder
from vmsentry.collect.traffic.flow_log import tcp_opening
from vmsentry.collect.traffic.reader import LOG_BATCH, RECORD_ERRORS, FileReader, json_record, port, timestamp
from vmsentry.model.traffic import (
    ACK,
    ICMP,
    ICMP6,
    RST,
    SYN,
    TCP,
    UDP,
    Arp,
    Dhcp,
    Packet,
    dns_query_payload,
    ip_bytes,
    mac_bytes,
)

PROTOS = {"TCP": TCP, "UDP": UDP, "ICMP": ICMP, "IPV6-ICMP": ICMP6, "ICMPV6": ICMP6}
DHCP_CODES = {"discover": 1, "offer": 2, "request": 3, "decline": 4, "ack": 5, "nak": 6, "release": 7, "inform": 8}
ZERO_MAC = b"\x00" * 6
EVENT_TYPES = ("flow", "dns", "dhcp", "arp")


class EveReader(FileReader):
    format = "eve"
    line_problem = "malformed-eve-line"

    def __init__(self, name: str, stream, head: bytes) -> None:
        super().__init__(name, stream, head)
        self.last_ts = 0.0

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        stats, out = dec.stats, dec.out
        for lines in self.numbered_lines(stats):
            for number, raw in lines:
                if not raw.strip():
                    continue
                record = json_record(raw)
                if record is None:
                    self.bad_line(stats, number)
                    continue
                stats.packets += 1
                kind = record.get("event_type")
                if not isinstance(kind, str) or kind not in EVENT_TYPES:
                    shown = kind if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 40 else "other"
                    stats.problems[f"eve-type-not-used ({shown})"] += 1
                    continue
                try:
                    getattr(self, f"_{kind}")(record, out, self._ts(record, stats))
                except RECORD_ERRORS:
                    stats.problem("malformed-eve-record", f"{self.name}: line {number} ({kind})")
                if len(out) >= LOG_BATCH:
                    yield
            yield

    def _ts(self, r: dict, stats) -> float:
        value = (r.get("flow") or {}).get("start") if r.get("event_type") == "flow" else None
        value = value or r.get("timestamp")
        try:
            ts = timestamp(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp())
        except (TypeError, ValueError, OverflowError):
            try:
                ts = timestamp(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
            except (ValueError, OverflowError):
                stats.problems["eve-bad-timestamp"] += 1
                return self.last_ts
        self.last_ts = ts
        stats.see_time(ts, ts)
        return ts

    @staticmethod
    def _addresses(r: dict):
        src, dst = ip_bytes(r.get("src_ip")), ip_bytes(r.get("dest_ip"))
        if src is None or dst is None:
            raise ValueError("address")
        ether = r.get("ether") or {}
        smac = mac_bytes(ether.get("src_mac") or next(iter(ether.get("src_macs") or []), None))
        dmac = mac_bytes(ether.get("dest_mac") or next(iter(ether.get("dest_macs") or []), None))
        return src, dst, smac, dmac, port(r.get("src_port")), port(r.get("dest_port"))

    def _flow(self, r: dict, out: list, ts: float) -> None:
        src, dst, smac, dmac, sport, dport = self._addresses(r)
        proto = PROTOS.get(str(r.get("proto", "")).upper())
        if proto is None:
            return
        flow = r.get("flow") or {}
        if proto != TCP:
            if proto in (ICMP, ICMP6):
                sport, dport = port(r.get("icmp_type")), port(r.get("icmp_code"))
            out.append(Packet(ts, smac, dmac, src, dst, proto, sport, dport, 0, 0, b""))
            return
        tcp = r.get("tcp") or {}
        to_server, to_client = _flags(tcp.get("tcp_flags_ts")), _flags(tcp.get("tcp_flags_tc"))
        client_syn = bool(tcp.get("syn") or to_server & SYN)
        accepted, reset = bool(to_client & SYN and to_client & ACK), bool(to_client & RST)
        tcp_opening(out, ts, smac, dmac, src, dst, sport, dport, client_syn, accepted, reset)
        established = tcp.get("state") in (
            "established",
            "closed",
            "fin_wait1",
            "fin_wait2",
            "close_wait",
            "time_wait",
            "last_ack",
            "closing",
        )
        handshake = bool(to_client & SYN) or not tcp.get("syn")  # completed, or seen mid-stream
        if established and handshake and flow.get("pkts_toserver", 0) >= 2 and flow.get("pkts_toclient", 0) >= 1:
            out.append(Packet(ts, smac, dmac, src, dst, TCP, sport, dport, ACK, 0, b""))

    def _dns(self, r: dict, out: list, ts: float) -> None:
        dns = r.get("dns") or {}
        if dns.get("type") not in ("query", "request"):
            return
        src, dst, smac, dmac, sport, dport = self._addresses(r)
        names = [dns["rrname"]] if "rrname" in dns else [q.get("rrname") for q in dns.get("queries", [])]
        proto = PROTOS.get(str(r.get("proto", "UDP")).upper(), UDP)
        for name in filter(None, names):
            payload = dns_query_payload(str(name))
            if proto == TCP:
                payload = len(payload).to_bytes(2, "big") + payload
            out.append(Packet(ts, smac, dmac, src, dst, proto, sport, dport, ACK if proto == TCP else 0, 0, payload))

    def _dhcp(self, r: dict, out: list, ts: float) -> None:
        dhcp = r.get("dhcp") or {}
        src, dst, smac, dmac, sport, dport = self._addresses(r)
        code = DHCP_CODES.get(str(dhcp.get("dhcp_type", "")).lower(), 0)
        reply = dhcp.get("type") == "reply"
        chaddr = mac_bytes(dhcp.get("client_mac"))
        assigned = ip_bytes(dhcp.get("assigned_ip"))
        if assigned == b"\x00\x00\x00\x00":
            assigned = None
        routers = tuple(filter(None, map(ip_bytes, dhcp.get("routers") or [])))
        dns = tuple(filter(None, map(ip_bytes, dhcp.get("dns_servers") or [])))
        out.append(
            Dhcp(
                ts,
                smac or (None if reply else chaddr),
                src,
                dst,
                2 if reply else 1,
                code,
                int(dhcp.get("id") or 0) & 0xFFFFFFFF,
                chaddr,
                assigned,
                src if reply else None,
                routers,
                dns,
            )
        )

    def _arp(self, r: dict, out: list, ts: float) -> None:
        arp = r.get("arp") or {}
        sha, tha = mac_bytes(arp.get("src_mac")), mac_bytes(arp.get("dest_mac")) or ZERO_MAC
        spa, tpa = ip_bytes(arp.get("src_ip")), ip_bytes(arp.get("dest_ip"))
        if sha is None or spa is None or tpa is None:
            raise ValueError("address")
        op = {"request": 1, "reply": 2}.get(str(arp.get("opcode")).lower())
        if op is None:
            return
        ether = r.get("ether") or {}
        eth_src = mac_bytes(ether.get("src_mac")) or sha
        eth_dst = mac_bytes(ether.get("dest_mac")) or (b"\xff" * 6 if op == 1 else tha)
        out.append(Arp(ts, eth_src, eth_dst, op, sha, spa, tha, tpa))


def _flags(value) -> int:
    """Suricata's hex TCP flags ("1b") to the bit mask."""
    try:
        return int(str(value), 16) if value is not None else 0
    except ValueError:
        return 0
