"""Traffic for ``policy check``: the project's traffic readers (``vmsentry.collect.traffic``: pcap, pcapng,
gzip'd, Zeek logs, Suricata eve.json, a live bridge) -> ``check.Flow`` records.

A flow record is made for each *connection attempt* the readers pass up: a TCP SYN without ACK, the first
UDP datagram of an exchange (not a server's answer), an ICMP/ICMPv6 echo request, and every ARP packet
(for ARP anti-spoofing). ``check.check_flows`` takes any iterable of ``Flow``, so another source can feed
it directly.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from vmsentry.act.policy.check import Flow


class TrafficError(RuntimeError):
    pass


UDP_KEYS = 1 << 20


def events_to_flows(batches: Iterable[list]) -> Iterator[Flow]:
    """Events of a stream read with ``all_packets=True`` -> flows. Packets that start nothing become
    ``proto="ip"`` records: they are judged only for a forged source (a VM that forwards or injects
    packets with another address mid-stream)."""
    from vmsentry.model.traffic import ACK, ICMP, ICMP6, SYN, TCP, UDP, Arp, Packet, ip_text, mac_text
    udp_seen: set[bytes] = set()
    for batch in batches:
        for e in batch:
            kind = type(e)
            if kind is Packet:
                proto = e.proto
                smac, sip, dip = mac_text(e.src_mac), ip_text(e.src_ip), ip_text(e.dst_ip)
                if proto == TCP and e.flags & SYN and not e.flags & ACK:
                    yield Flow(e.ts, smac, sip, dip, "tcp", e.dport, mac_text(e.dst_mac))
                    continue
                if proto == UDP:
                    key = e.src_ip + e.dst_ip + e.sport.to_bytes(2, "big") + e.dport.to_bytes(2, "big")
                    if key not in udp_seen:
                        if len(udp_seen) >= UDP_KEYS:
                            udp_seen.clear()
                        udp_seen.add(key)
                        rkey = e.dst_ip + e.src_ip + e.dport.to_bytes(2, "big") + e.sport.to_bytes(2, "big")
                        # not the answer to an earlier datagram, nor a server answering an exchange whose
                        # start was not captured
                        if rkey not in udp_seen and not (e.sport < 1024 <= e.dport and e.sport not in (68, 546)):
                            yield Flow(e.ts, smac, sip, dip, "udp", e.dport, mac_text(e.dst_mac))
                            continue
                elif (proto == ICMP and e.sport == 8) or (proto == ICMP6 and e.sport == 128):
                    yield Flow(e.ts, smac, sip, dip, "icmp", None, mac_text(e.dst_mac))
                    continue
                yield Flow(e.ts, smac, sip, dip, "ip", None, mac_text(e.dst_mac))
            elif kind is Arp:
                yield Flow(e.ts, mac_text(e.eth_src) or mac_text(e.sha), ip_text(e.spa), ip_text(e.tpa), "arp", None,
                           mac_text(e.eth_dst), e.op, mac_text(e.sha))


class Traffic:
    """The inputs of one ``policy check`` run: ``flows()`` then ``stats()`` / ``damage()``."""

    def __init__(self, paths: list[str], interface: str | None = None, duration: float | None = None,
                 netns: str | None = None, on_ready=None):
        from vmsentry.collect.traffic import BadTrafficInput, TrafficStream, open_inputs
        self.readers = []
        for path in paths:
            try:
                self.readers.extend(open_inputs(path))
            except BadTrafficInput as exc:
                raise TrafficError(str(exc)) from None
        if interface:
            self.readers.append(_live_reader(interface, duration, netns, on_ready))
        self.stream = TrafficStream(all_packets=True)       # every packet: a forged source mid-flow counts

    def flows(self) -> Iterator[Flow]:
        from vmsentry.collect.traffic.live import LiveError
        try:
            yield from events_to_flows(self.stream.batches(self.readers))
        except LiveError as exc:
            raise TrafficError(str(exc)) from None
        self.stream.stats.finish()

    def stats(self) -> dict:
        return self.stream.stats.to_dict()

    def damage(self) -> list[str]:
        from vmsentry.report.alerts import damage_lines
        return damage_lines(self.stats())


def _live_reader(interface: str, duration: float | None, netns: str | None, on_ready):
    from vmsentry.collect.traffic.live import LiveReader
    if not netns:
        return LiveReader(interface, duration=duration, on_ready=on_ready)

    class NetnsLiveReader(LiveReader):
        """The capture socket is made inside ``netns`` (the socket keeps its namespace)."""

        def open(self):
            from vmsentry.act.policy.netns import open_in_netns
            return open_in_netns(netns, super().open)

    reader = NetnsLiveReader(interface, duration=duration, on_ready=on_ready)
    reader.name = f"live:{interface}@{netns}"
    return reader
