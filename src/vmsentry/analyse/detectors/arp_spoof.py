"""arp_spoof: who lies about which MAC owns an IP, and whose cache they poison.

Signals, strongest first (one alert per lying MAC, reasons counted in ``evidence.reasons``):

* ``contradicts_inventory``: the sender claims an IP the hypervisor gave to another MAC (Snort 112:4, but
  with libvirt's truth instead of a hand-kept list). Confidence 0.97.
* ``eth_arp_mismatch``: Ethernet source differs from the ARP sender MAC (arpwatch "ethernet mismatch",
  Zeek ``weird-arp-sha``, Snort 112:2). The frame's real sender, the Ethernet source, is named. 0.9.
* ``contradicts_dhcp``: the IP was bound to another MAC by a DHCP ACK seen earlier. 0.9.
* ``claims_other_ip``: an unsolicited reply claims an IP that is not the sender's own, its own being known
  (the inventory's, or the one it sent from earlier: IP traffic, its ARP requests). Raised at the first
  forged reply, before the real owner speaks again. 0.85.
* ``binding_change`` (no inventory): the IP was bound to another MAC, learned from ARP or IP traffic.
  The liar is the side with more marks against it: unsolicited replies for the IP, claims on other IPs
  it does not use as its own. On a tie the newcomer is named with confidence 0.5 ("conflict").
* ``gratuitous_flood``: more than ``garp_flood`` gratuitous ARPs from one MAC in ``garp_window``.
Unsolicited replies and unicast requests alone are normal (Linux refreshes its cache with unicast
requests) and raise nothing.
"""

from __future__ import annotations

from collections import deque

from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ip_text, mac_text

ZERO_IP = b"\x00\x00\x00\x00"
ZERO_MAC = b"\x00" * 6
CONFIDENCE = {
    "contradicts_inventory": 0.97,
    "eth_arp_mismatch": 0.9,
    "contradicts_dhcp": 0.9,
    "claims_other_ip": 0.85,
    "gratuitous_flood": 0.8,
}


class ArpSpoof(Detector):
    name = "arp_spoof"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.bindings = Bounded(tun.max_state, "arp_spoof.bindings", sink)  # ip -> [mac, source]
        self.claims = Bounded(tun.max_state, "arp_spoof.claims", sink)  # mac -> set of IPs claimed
        self.own_ip = Bounded(tun.max_state, "arp_spoof.own_ip", sink)  # mac -> IP it sends from
        self.requests = Bounded(tun.max_state, "arp_spoof.requests", sink)  # (asker ip, asked ip) -> ts
        self.unsolicited = Bounded(tun.max_state, "arp_spoof.unsolicited", sink)  # (mac, ip) -> count
        self.garps = Bounded(tun.max_state, "arp_spoof.garps", sink)  # mac -> deque of ts

    # --- learning from other traffic ----------------------------------------------------------------
    def on_packet(self, ev) -> None:
        """IP traffic between neighbours (same /24) shows which IP each MAC really uses."""
        mac = ev.src_mac
        if mac in self.own_ip or mac is None:
            return
        sip = ev.src_ip
        if len(sip) != 4 or sip[:3] != ev.dst_ip[:3]:
            return
        self.own_ip.put(mac, sip)
        if sip not in self.bindings and sip not in self.truth.mac_of_ip:
            self.bindings.put(sip, [mac, "ip"])

    on_probes = on_packet  # same fields: src_mac, src_ip, dst_ip

    def on_dhcp(self, ev) -> None:
        if ev.op == 2 and ev.msg_type == 5 and ev.yiaddr and ev.chaddr:
            self.bindings.put(ev.yiaddr, [ev.chaddr, "dhcp"])

    # --- ARP ----------------------------------------------------------------------------------------
    def on_arp(self, ev) -> None:
        ts, eth_src, eth_dst, op, sha, spa, _, tpa = ev  # (one unpacking: this runs for every ARP)
        if op == 1:
            self.requests.put((spa, tpa), ts)
        if spa == ZERO_IP:  # an ARP probe claims nothing
            return
        if op == 1 and sha == eth_src and sha not in self.own_ip and self._unclaimed(spa, sha):
            self.own_ip.put(sha, spa)  # the address a MAC asks from is its own
        sender = eth_src or sha
        reasons = []
        if eth_src is not None and eth_src != sha:
            reasons.append("eth_arp_mismatch")
        solicited = True
        if op == 2:
            asked = self.requests.get((tpa, spa))
            solicited = asked is not None and 0 <= ts - asked <= self.tun.reply_window
            if not solicited and spa != tpa:
                self.unsolicited.bump((sha, spa))
        claims = self.claims.get(sha)
        if claims is None:
            self.claims.put(sha, {spa})
        elif spa not in claims and len(claims) < 64:
            claims.add(spa)
        truth_mac = self.truth.mac_of_ip.get(spa)
        victim_mac = truth_mac
        confidence = None
        if truth_mac is not None:
            if sha != truth_mac:
                reasons.append("contradicts_inventory")
        else:
            if not solicited and spa != tpa:
                own = self.truth.ips_of_mac.get(sha) or {self.own_ip.get(sha)} - {None}
                if own and spa not in own:
                    reasons.append("claims_other_ip")
            bound = self.bindings.get(spa)
            if bound is None:
                if "claims_other_ip" not in reasons:  # a forged claim is not the binding owners are judged by
                    self.bindings.put(spa, [sha, "arp"])
            elif bound[0] != sha:
                victim_mac = bound[0]
                if bound[1] == "dhcp":
                    reasons.append("contradicts_dhcp")
                else:
                    liar, confidence = self._liar(sha, bound[0], spa)
                    if liar == bound[0]:  # the old binding was the lie: sha restores it
                        bound[0] = sha
                        sender, victim_mac = liar, sha
                    reasons.append("binding_change")
        if (spa == tpa or eth_dst == b"\xff" * 6 and op == 2) and self._garp_flood(sender, ts):
            reasons.append("gratuitous_flood")
        if reasons:
            self._alert(ev, sender, victim_mac, reasons, confidence, solicited)

    def _unclaimed(self, ip: bytes, mac: bytes) -> bool:
        """No other MAC holds ``ip``, in the inventory or by what was learned."""
        bound = self.bindings.get(ip)
        return self.truth.mac_of_ip.get(ip, mac) == mac and (bound is None or bound[0] == mac)

    def finish(self) -> None:
        """Attackers whose own address only showed after their alert was raised get it now."""
        for mac, alert in self.open.items():
            if alert.attacker.get("ip") is None and self.own_ip.get(mac) is not None:
                alert.attacker.update(self.truth.endpoint(self.own_ip[mac], mac))

    def _liar(self, new: bytes, old: bytes, ip: bytes) -> tuple[bytes, float]:
        """Which of two MACs claiming ``ip`` lies, and how sure we are, without an inventory."""

        def marks(mac: bytes) -> int:
            n = 1 if self.unsolicited.get((mac, ip), 0) else 0
            own = self.own_ip.get(mac)
            others = (self.claims.get(mac) or set()) - {ip}
            if (own is not None and own != ip) or others:
                n += 1
            return n

        return pick_liar(new, old, marks)

    def _garp_flood(self, mac: bytes, ts: float) -> bool:
        times = self.garps.get(mac)
        if times is None:
            times = deque(maxlen=self.tun.garp_flood + 1)
            self.garps.put(mac, times)
        times.append(ts)
        return len(times) > self.tun.garp_flood and ts - times[0] <= self.tun.garp_window

    def _alert(self, ev, sender: bytes, victim_mac, reasons: list[str], confidence, solicited: bool) -> None:
        truth = self.truth
        own = truth.ips_of_mac.get(sender)
        own_ip = next(iter(own)) if own else self.own_ip.get(sender)
        if own_ip == ev.spa and "eth_arp_mismatch" not in reasons:
            own_ip = None  # the claimed IP is not the liar's own
        conf = max([CONFIDENCE.get(r, 0.5) for r in reasons] + [confidence or 0.0])
        severity = "high"
        if truth.is_host(ev.spa) or ev.spa in truth.dhcp_servers or ev.spa in truth.dns_servers:
            severity = "critical"
        elif reasons == ["gratuitous_flood"] or conf <= 0.5:
            severity = "medium"

        evidence = {"reasons": {}, "impersonated": [], "unsolicited_replies": 0}
        alert = claim_alert(self, ev.ts, sender, own_ip, severity, conf, _describe(truth), evidence, reasons)
        if not solicited:
            alert.evidence["unsolicited_replies"] += 1
        impersonated = ip_text(ev.spa)
        if (
            impersonated not in alert.evidence["impersonated"]
            and len(alert.evidence["impersonated"]) < 20
            and reasons[0] != "gratuitous_flood"
        ):
            alert.evidence["impersonated"].append(impersonated)
        if reasons != ["gratuitous_flood"]:
            alert.victim(truth.endpoint(ev.spa, victim_mac))
        if ev.op == 2 and ev.tpa != ev.spa and ev.tpa != ZERO_IP:
            target = ev.tha if ev.tha != ZERO_MAC else ev.eth_dst
            alert.victim(dict(truth.endpoint(ev.tpa, target), poisoned=True))
        if "example" not in alert.evidence:
            alert.evidence["example"] = (
                f"{'reply' if ev.op == 2 else 'request'}: {ip_text(ev.spa)} is-at "
                f"{mac_text(ev.sha)} (Ethernet source {mac_text(ev.eth_src)}) "
                f"to {ip_text(ev.tpa)}"
            )


def pick_liar(new: bytes, old: bytes, marks) -> tuple[bytes, float]:
    """Of two MACs claiming one address, the liar is the one with more ``marks`` against it (unsolicited
    claims, other addresses it uses as its own), named with 0.6 + 0.1 a mark; on a tie the newcomer, 0.5."""
    new_marks, old_marks = marks(new), marks(old)
    if new_marks > old_marks:
        return new, 0.6 + 0.1 * new_marks
    if old_marks > new_marks:
        return old, 0.6 + 0.1 * old_marks
    return new, 0.5


def claim_alert(det: Detector, ts: float, sender: bytes, own_ip, severity, conf, describe, evidence, reasons) -> Alert:
    """The open alert of a MAC making forged address claims (arp_spoof, nd_spoof), or a new one, with this
    message and its ``reasons`` counted; the attacker's own address is filled in once it is known."""
    truth = det.truth
    alert = det.incident(
        sender, ts, lambda: Alert(det.name, severity, ts, truth.endpoint(own_ip, sender), conf, describe, evidence)
    )
    alert.seen(ts)
    if alert.attacker["ip"] is None and own_ip is not None:
        alert.attacker.update(truth.endpoint(own_ip, sender))
    counts = alert.evidence["reasons"]
    for r in reasons:
        counts[r] = counts.get(r, 0) + 1
    alert.raise_to(severity, conf)
    return alert


def _describe(truth):
    def describe(a: Alert) -> str:
        who = (
            truth.label(_ip(a.attacker), _mac(a.attacker))
            if a.attacker.get("vm") or a.attacker.get("ip")
            else a.attacker.get("mac")
        )
        claimed = ", ".join(a.evidence.get("impersonated", [])[:3]) or "addresses"
        poisoned = [v for v in a.victims.values() if v.get("poisoned")]
        where = f", poisoning {len(poisoned)} cache(s)" if poisoned else ""
        reasons = ", ".join(sorted(a.evidence.get("reasons", {})))
        return f"{who} claims {claimed} with forged ARP ({a.count} packets{where}; {reasons})"

    return describe


def _ip(endpoint: dict):
    from vmsentry.model.traffic import ip_bytes

    return ip_bytes(endpoint.get("ip"))


def _mac(endpoint: dict):
    from vmsentry.model.traffic import mac_bytes

    return mac_bytes(endpoint.get("mac"))
