"""rogue_ra: IPv6 router advertisements from a host that is not a router.

Reasons (counted in ``evidence.reasons``; one alert per sending MAC):

* ``not_a_router`` (inventory): the sender is not a sanctioned router (``networks[].ipv6_routers``; when
  the inventory lists none, the host's bridge), or IPv6 is off on the network. 0.95.
* ``spoofed_source``: the link-local source is an EUI-64 address of another MAC than the one sending
  (thc-ipv6 kill_router6 speaks as the real router). 0.9.
* ``lladdr_mismatch``: the source link-layer address option names another MAC than the sender. 0.9.
* ``second_router`` (no inventory): a router other than the first one seen advertises. 0.6.
* ``kill_router``: router lifetime 0 (hosts drop that router as default gateway); added to the others,
  and on its own when it speaks for a router it is not.
"""

from __future__ import annotations

from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ip_text, mac_text

CONFIDENCE = {"not_a_router": 0.95, "spoofed_source": 0.9, "lladdr_mismatch": 0.9, "second_router": 0.6}


def eui64_mac(ip: bytes) -> bytes | None:
    """The MAC an EUI-64 interface identifier (ff:fe in the middle) was made from, else None."""
    if len(ip) != 16 or ip[11] != 0xFF or ip[12] != 0xFE:
        return None
    return bytes((ip[8] ^ 0x02, ip[9], ip[10], ip[13], ip[14], ip[15]))


class RogueRa(Detector):
    name = "rogue_ra"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.routers: set[bytes] = set()  # learned (no inventory): MACs that advertised cleanly

    def on_routeradvert(self, ev) -> None:
        truth, mac = self.truth, ev.src_mac
        reasons = []
        origin = eui64_mac(ev.src_ip)
        if origin is not None and mac is not None and origin != mac:
            reasons.append("spoofed_source")
        if ev.source_lladdr is not None and mac is not None and ev.source_lladdr != mac:
            reasons.append("lladdr_mismatch")
        if truth.known and truth.ipv6_allowed is not None:
            if not truth.ipv6_allowed or not truth.is_router(mac, ev.src_ip):
                reasons.append("not_a_router")
        elif not reasons:
            if not self.routers:
                self.routers.add(mac)
            elif mac not in self.routers:
                reasons.append("second_router")
        if not reasons:
            return
        if ev.lifetime == 0:
            reasons.append("kill_router")
        spoofed = "spoofed_source" in reasons
        attacker = truth.endpoint(None, mac)
        attacker["ip"] = None if spoofed else ip_text(ev.src_ip)

        def make() -> Alert:
            return Alert(
                "rogue_ra",
                "high",
                ev.ts,
                attacker,
                0.5,
                _describe,
                {"reasons": {}, "lifetimes": set(), "prefixes": set()},
            )

        alert = self.incident(mac, ev.ts, make)
        alert.seen(ev.ts)
        counts = alert.evidence["reasons"]
        for r in reasons:
            counts[r] = counts.get(r, 0) + 1
        alert.evidence["lifetimes"].add(ev.lifetime)
        alert.evidence["prefixes"].update(ev.prefixes)
        alert.raise_to("high", max(CONFIDENCE.get(r, 0.5) for r in reasons))
        if spoofed:
            alert.victim(
                {
                    "ip": ip_text(ev.src_ip),
                    "mac": mac_text(origin),
                    "vm": truth.vm_name(None, origin),
                    "impersonated": True,
                }
            )
        if "kill_router" in reasons and ev.dst_ip[:1] == b"\xff":
            alert.victim({"ip": ip_text(ev.dst_ip), "mac": None, "vm": None, "note": "every host on the link"})


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("mac")
    kill = a.evidence["reasons"].get("kill_router", 0)
    what = f", {kill} with router lifetime 0 (kill router)" if kill else ""
    reasons = ", ".join(sorted(r for r in a.evidence["reasons"] if r != "kill_router"))
    return f"{who} sends IPv6 router advertisements ({a.count}{what}): {reasons}"
