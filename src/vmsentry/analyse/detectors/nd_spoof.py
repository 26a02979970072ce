"""nd_spoof (an extension of the contract's types): IPv6 neighbour spoofing, the twin of ARP poisoning
(thc-ipv6 ``parasite6``, ``fake_advertise6``). NDPMon is the anchor: its "wrong couple MAC/IP", "ethernet
mismatch", "NA router flag", "dad dos" and "changed ethernet address" checks, with the hypervisor's
inventory as the truth, as ``arp_spoof`` does for ARP.

A neighbour advertisement claims its target address for the MAC in its target link-layer option (the
Ethernet source without one); a solicitation with a source link-layer option claims its source address.
Reasons (one alert per lying MAC, counted in ``evidence.reasons``):

* ``contradicts_inventory``: the address belongs to another MAC: a VM's or the host's in the inventory, or
  the link-local/SLAAC address made (EUI-64) from an inventory MAC. 0.97.
* ``eth_nd_mismatch``: the link-layer option names another MAC than the Ethernet source (NDPMon "ethernet
  mismatch"); the frame's real sender is named. 0.9.
* ``eui64_owner`` (no inventory): the address is an EUI-64 address made from another MAC. 0.9.
* ``dad_dos``: an advertisement answers another node's duplicate address detection for an address that is
  not the sender's own, so the node gives the address up (NDPMon "dad dos"). 0.8.
* ``binding_change`` (no inventory): the address was claimed by another MAC before. The liar is the side
  with more marks: unsolicited advertisements with the override flag for the address, other addresses it
  uses as its own. On a tie the newcomer is named with confidence 0.5 ("conflict").
* ``router_flag`` (inventory): an advertisement with the router flag from a MAC that is not a sanctioned
  IPv6 router (NDPMon "NA router flag"); on its own medium.

Advertisements without the override flag from the host's or a sanctioned router's MAC are proxies (RFC
4389) and claim nothing. Unsolicited advertisements (solicited flag clear, or no solicitation for the
target seen within ``reply_window``) are counted in ``evidence.unsolicited``.
"""

from __future__ import annotations

from vmsentry.analyse.detectors.arp_spoof import CONFIDENCE as ARP_CONFIDENCE
from vmsentry.analyse.detectors.arp_spoof import claim_alert, pick_liar
from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.analyse.detectors.rogue_ra import eui64_mac
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ICMP6, ND_OVERRIDE, ND_ROUTER, ND_SOLICITED, ip_text, mac_text

UNSPECIFIED = b"\x00" * 16
# the same verdicts weigh the same as for ARP
CONFIDENCE = {**ARP_CONFIDENCE, "eth_nd_mismatch": 0.9, "eui64_owner": 0.9, "dad_dos": 0.8, "router_flag": 0.7}
OWN_KINDS = (131, 133, 143)  # MLD reports, router solicitations: a node sends these from its own address
MAX_OWN = 16  # addresses remembered per MAC


class NdSpoof(Detector):
    name = "nd_spoof"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.bindings = Bounded(tun.max_state, "nd_spoof.bindings", sink)  # ip -> MAC that claimed it first
        self.own = Bounded(tun.max_state, "nd_spoof.own", sink)  # mac -> addresses it sends from
        self.asked = Bounded(tun.max_state, "nd_spoof.asked", sink)  # target -> ts of the last solicitation
        self.dad = Bounded(tun.max_state, "nd_spoof.dad", sink)  # target -> ts of the last DAD probe
        self.unsolicited = Bounded(tun.max_state, "nd_spoof.unsolicited", sink)  # (mac, ip) -> count

    # --- learning -----------------------------------------------------------------------------------
    def on_packet(self, ev) -> None:
        if ev.proto == ICMP6 and ev.sport in OWN_KINDS and ev.src_mac is not None and ev.src_ip != UNSPECIFIED:
            self._learn(ev.src_mac, ev.src_ip)

    def _learn(self, mac: bytes, ip: bytes) -> None:
        own = self.own.get(mac)
        if own is None:
            self.own.put(mac, {ip})
        elif len(own) < MAX_OWN:
            own.add(ip)
        if ip not in self.bindings:
            self.bindings.put(ip, mac)

    def _owns(self, mac: bytes, ip: bytes) -> bool:
        return eui64_mac(ip) == mac or ip in self.truth.ips_of_mac.get(mac, ()) or ip in self.own.get(mac, ())

    # --- neighbour discovery ------------------------------------------------------------------------
    def on_neighbour(self, ev) -> None:
        ts, smac, _, sip, _, kind, flags, target, lladdr = ev  # (one unpacking: this runs for every NS/NA)
        if kind == 135:
            if sip == UNSPECIFIED:  # duplicate address detection: claims nothing
                self.dad.put(target, ts)
                return
            self.asked.put(target, ts)
            if lladdr is None:  # a unicast reachability probe: no cache entry is written
                return
            ip, override, solicited = sip, True, True
        else:
            ip, override = target, bool(flags & ND_OVERRIDE)
            asked = self.asked.get(target)
            solicited = bool(flags & ND_SOLICITED) and asked is not None and 0 <= ts - asked <= self.tun.reply_window
        claimed = lladdr or smac
        if claimed is None:
            return
        sender = smac or claimed
        truth = self.truth
        if kind == 136 and not override and (sender in truth.host_macs or truth.is_router(sender)):
            return  # a proxy (RFC 4389) answers for others with the override flag clear
        reasons, victim_mac, confidence = [], None, None
        if smac is not None and lladdr is not None and lladdr != smac:
            reasons.append("eth_nd_mismatch")
        owner = truth.mac_of_ip.get(ip)
        origin = eui64_mac(ip)
        if owner is None and origin is not None and (origin in truth.vm_of_mac or origin in truth.host_macs):
            owner = origin
        if owner is not None:
            if owner != claimed:
                reasons.append("contradicts_inventory")
                victim_mac = owner
        elif origin is not None and origin != claimed:
            reasons.append("eui64_owner")
            victim_mac = origin
        else:
            if kind == 136 and not solicited and override:
                self.unsolicited.bump((claimed, ip))
            bound = self.bindings.get(ip)
            if bound is None:
                if kind == 135 or solicited:
                    self._learn(claimed, ip)
            elif bound != claimed:
                liar, confidence = self._liar(claimed, bound, ip)
                victim_mac = bound
                if liar == bound:  # the earlier claim was the lie: this one restores the owner
                    self.bindings.put(ip, claimed)
                    sender, victim_mac = liar, claimed
                reasons.append("binding_change")
        if kind == 136:
            probe = self.dad.get(target)
            if probe is not None and 0 <= ts - probe <= self.tun.reply_window and not self._owns(claimed, ip):
                reasons.append("dad_dos")
            if flags & ND_ROUTER and truth.known and truth.ipv6_allowed and not truth.is_router(sender):
                reasons.append("router_flag")
        elif not reasons:
            self._learn(claimed, ip)
        if reasons:
            self._alert(ev, sender, ip, victim_mac, reasons, confidence, solicited)

    def finish(self) -> None:
        """Attackers whose own address only showed after their alert was raised get it now."""
        for mac, alert in self.open.items():
            own = self.own.get(mac)
            if alert.attacker.get("ip") is None and own:
                alert.attacker["ip"] = ip_text(min(own))

    def _liar(self, new: bytes, old: bytes, ip: bytes) -> tuple[bytes, float]:
        """Which of two MACs claiming ``ip`` lies, and how sure we are, without an inventory."""

        def marks(mac: bytes) -> int:
            n = 1 if self.unsolicited.get((mac, ip), 0) else 0
            if any(a != ip for a in self.own.get(mac, ())) and ip not in self.own.get(mac, ()):
                n += 1
            return n

        return pick_liar(new, old, marks)

    def _alert(self, ev, sender: bytes, ip: bytes, victim_mac, reasons: list[str], confidence, solicited: bool):
        truth = self.truth
        own = truth.ips_of_mac.get(sender) or (self.own.get(sender) or set()) - {ip}
        own_ip = min(own, key=len) if own else None
        conf = max([CONFIDENCE.get(r, 0.5) for r in reasons] + [confidence or 0.0])
        severity = "high"
        if (
            truth.is_host(ip)
            or truth.is_router(victim_mac, ip)
            or (victim_mac is not None and victim_mac in truth.host_macs)
        ):
            severity = "critical"
        elif reasons == ["router_flag"] or conf <= 0.5:
            severity = "medium"

        evidence = {"reasons": {}, "impersonated": [], "unsolicited": 0}
        alert = claim_alert(self, ev.ts, sender, own_ip, severity, conf, _describe, evidence, reasons)
        if ev.kind == 136 and not solicited:
            alert.evidence["unsolicited"] += 1
        if reasons == ["router_flag"]:
            return
        claimed = ip_text(ip)
        if claimed not in alert.evidence["impersonated"] and len(alert.evidence["impersonated"]) < 20:
            alert.evidence["impersonated"].append(claimed)
        impersonated = truth.endpoint(ip, victim_mac)
        if victim_mac in truth.host_of_mac and not impersonated["vm"]:
            impersonated["host"] = truth.host_of_mac[victim_mac]
        alert.victim(impersonated)
        if ev.dst_ip[:1] == b"\xff" and ev.kind == 136:
            alert.victim({"ip": ip_text(ev.dst_ip), "mac": None, "vm": None, "note": "every host on the link"})
        elif ev.dst_ip[:1] != b"\xff" and ev.dst_ip != ip:
            alert.victim(dict(truth.endpoint(ev.dst_ip, ev.dst_mac), poisoned=True))
        if "example" not in alert.evidence:
            what = "advertisement" if ev.kind == 136 else "solicitation"
            alert.evidence["example"] = (
                f"{what}: {claimed} is-at {mac_text(ev.lladdr or ev.src_mac)} "
                f"(Ethernet source {mac_text(ev.src_mac)}, flags {_flags(ev.flags)}) to {ip_text(ev.dst_ip)}"
            )


def _flags(flags: int) -> str:
    names = [
        n for bit, n in ((ND_ROUTER, "router"), (ND_SOLICITED, "solicited"), (ND_OVERRIDE, "override")) if flags & bit
    ]
    return ",".join(names) or "none"


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip") or a.attacker.get("mac")
    claimed = ", ".join(a.evidence.get("impersonated", [])[:3]) or "a router's role"
    poisoned = [v for v in a.victims.values() if v.get("poisoned")]
    where = f", poisoning {len(poisoned)} cache(s)" if poisoned else ""
    reasons = ", ".join(sorted(a.evidence.get("reasons", {})))
    return f"{who} claims {claimed} with forged IPv6 neighbour discovery ({a.count} messages{where}; {reasons})"
