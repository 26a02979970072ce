"""ipv6_unexpected (an extension of the contract's types): IPv6 on a segment where it is meant to be off.

"Off" is the inventory's word: every network of the segment has ``ipv6: false``. Without an inventory
this detector stays silent. One alert per sending MAC. Low while the sender only does link-local
housekeeping (neighbour discovery, MLD: the kernel does that by itself when IPv6 is not disabled in the
guest), medium once it uses a global address or runs TCP/UDP over IPv6. Router advertisements are the
rogue_ra detector's.
"""

from __future__ import annotations

from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ICMP6, TCP, UDP, ip_text

KINDS = {
    133: "router-solicitation",
    135: "neighbour-solicitation",
    136: "neighbour-advertisement",
    130: "mld-query",
    131: "mld-report",
    143: "mldv2-report",
    128: "echo-request",
    129: "echo-reply",
}


class Ipv6(Detector):
    name = "ipv6"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.active = truth.known and truth.ipv6_allowed is False

    def handler(self, event_type: type):
        return super().handler(event_type) if self.active else None

    def on_packet(self, ev) -> None:
        if not self.active or len(ev.src_ip) != 16:
            return
        if ev.proto == ICMP6:
            kind = KINDS.get(ev.sport, f"icmpv6-{ev.sport}")
        elif ev.proto in (TCP, UDP):
            kind = f"{'tcp' if ev.proto == TCP else 'udp'}/{ev.dport}"
        else:
            kind = f"proto-{ev.proto}"
        self._seen(ev, kind)

    def on_probes(self, ev) -> None:
        if self.active and len(ev.src_ip) == 16:
            self._seen(ev, f"{'tcp' if ev.proto == TCP else 'udp'}/{ev.ports[0]}")

    def _seen(self, ev, kind: str) -> None:
        truth = self.truth
        key = ev.src_mac or ev.src_ip

        def make() -> Alert:
            return Alert(
                "ipv6_unexpected",
                "low",
                ev.ts,
                truth.endpoint(ev.src_ip, ev.src_mac),
                0.9,
                _describe,
                {"kinds": {}, "addresses": set()},
            )

        alert = self.incident(key, ev.ts, make)
        alert.seen(ev.ts)
        alert.attacker["vm"] = alert.attacker["vm"] or truth.vm_name(None, ev.src_mac)
        kinds = alert.evidence["kinds"]
        kinds[kind] = kinds.get(kind, 0) + 1
        if len(alert.evidence["addresses"]) < 10:
            alert.evidence["addresses"].add(ip_text(ev.src_ip))
        if ev.src_ip[:2] != b"\xfe\x80" and any(ev.src_ip) or ev.proto in (TCP, UDP):
            alert.raise_to("medium")


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("mac") or a.attacker.get("ip")
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(a.evidence["kinds"].items())[:5])
    return f"{who} uses IPv6 on a segment where it is meant to be off ({kinds})"
