"""dns_unsanctioned: DNS queries to a resolver that is not the sanctioned one.

The sanctioned resolvers are the inventory's ``networks[].dns_servers`` (for a libvirt network, its own
dnsmasq on the host address). Without an inventory there is no sanctioned resolver to compare with and
this detector stays silent. One alert per (client, resolver); count = queries (new flows); the first
``max_names`` query names are kept as evidence. High when the resolver is outside private address space
(a VM talking to the Internet's DNS directly can tunnel data out), medium otherwise.
"""

from __future__ import annotations

import ipaddress

from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import TCP, UDP, dns_qname, ip_text


class DnsUnsanctioned(Detector):
    name = "dns_unsanctioned"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.ports = frozenset(tun.ports)
        self.active = truth.known and truth.dns_known

    def handler(self, event_type: type):
        return super().handler(event_type) if self.active else None

    def on_packet(self, ev) -> None:
        if ev.dport not in self.ports or ev.dst_ip in self.truth.dns_servers:
            return
        proto = ev.proto
        if proto == TCP and (ev.flags & 0x02 or not ev.payload):
            return  # count TCP queries once established
        if proto in (UDP, TCP):
            self._query(ev, ev.ts, 1, [ev.payload[2:] if proto == TCP else ev.payload])

    def on_probes(self, ev) -> None:
        if ev.proto != UDP or ev.dst_ip in self.truth.dns_servers:
            return
        count = sum(map(ev.ports.count, self.ports))
        if count:
            self._query(ev, ev.last, count, ev.payloads)

    def _query(self, ev, ts: float, count: int, messages: list) -> None:
        truth = self.truth
        if truth.is_host(ev.src_ip) or ev.src_ip in truth.dns_servers:
            return  # the sanctioned resolver forwarding upstream

        def make() -> Alert:
            public = _public(ev.dst_ip)
            return Alert(
                "dns_unsanctioned",
                "high" if public else "medium",
                ev.ts,
                truth.endpoint(ev.src_ip, ev.src_mac),
                0.95,
                _describe,
                {
                    "resolver": ip_text(ev.dst_ip),
                    "public_resolver": public,
                    "names": [],
                    "sanctioned": sorted(ip_text(s) for s in truth.dns_servers),
                },
            )

        alert = self.incident((ev.src_ip, ev.dst_ip), ts, make)
        alert.seen(ts, count)
        if alert.count == count:
            alert.victim(truth.endpoint(ev.dst_ip, None))
            alert.port(53 if 53 in self.ports else next(iter(self.ports)))
        names = alert.evidence["names"]
        for message in messages[:2]:  # samples: the first two of a batch are enough, and a flood
            if len(names) >= self.tun.max_names:  # of junk "queries" is not parsed a thousand times
                break
            name = dns_qname(message)
            if name and name not in names:
                names.append(name)


def _public(ip: bytes) -> bool:
    try:
        return ipaddress.ip_address(ip).is_global
    except ValueError:
        return False


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip")
    names = a.evidence.get("names") or []
    shown = f" (e.g. {', '.join(names[:3])})" if names else ""
    sanctioned = ", ".join(a.evidence.get("sanctioned", [])) or "none"
    return f"{who} sent {a.count} DNS queries to {a.evidence['resolver']}{shown}; sanctioned: {sanctioned}"
