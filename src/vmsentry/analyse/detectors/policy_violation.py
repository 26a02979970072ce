"""policy_violation: the connection attempts and packet sources a segmentation policy forbids.

The policy is the resolved one (``model.policy.Resolved``, built by ``act.policy.resolve`` and handed in as
data); each attempt is judged by ``analyse.policy_decision.Evaluator``, which walks the same ordered rules the
nftables compiler turns into nft rules. What counts as an attempt:

* a TCP SYN without ACK, the first UDP datagram of an exchange (not the answer to an earlier datagram, nor a
  server answering an exchange whose start was not captured), an ICMP/ICMPv6 echo request;
* every other IP packet, judged for a forged source only (a VM that forwards or injects packets with another
  address mid-stream);
* every ARP packet (ARP anti-spoofing).

That needs every packet: feed it a stream read with ``all_packets=True`` (as ``vmsentry policy check`` does).
Without a policy the detector is off and costs nothing.

One alert per (kind, source VM, source, destination, protocol, reason), counting the forbidden packets, with
*every* port (the ports are the finding, so they are not capped like other alerts') and the policy line in
``evidence``. The default ``suppress`` is infinite: one alert per such flow for the whole input.
"""

from __future__ import annotations

from vmsentry.analyse.detectors.base import Detector
from vmsentry.analyse.policy_decision import Decision, Evaluator, Flow
from vmsentry.model.alert import Alert
from vmsentry.model.policy import Resolved
from vmsentry.model.traffic import ACK, ICMP, ICMP6, SYN, TCP, UDP, ip_text, mac_text


class PolicyViolation(Detector):
    name = "policy_violation"

    def __init__(self, truth, tun, sink, policy: Resolved | None = None) -> None:
        super().__init__(truth, tun, sink)
        self.policy = policy
        self.evaluator = Evaluator(policy) if policy is not None else None
        self.udp_seen: set[bytes] = set()
        self.judged = self.allowed = self.forbidden = 0

    def handler(self, event_type: type):
        return super().handler(event_type) if self.policy is not None else None

    def counts(self) -> dict[str, int]:
        """What ``policy check`` adds to its stats."""
        return {"flows_judged": self.judged, "flows_allowed": self.allowed, "flows_forbidden": self.forbidden}

    # --- events -------------------------------------------------------------------------------------
    def on_packet(self, e) -> None:
        proto = e.proto
        smac, sip, dip = mac_text(e.src_mac), ip_text(e.src_ip), ip_text(e.dst_ip)
        if proto == TCP and e.flags & SYN and not e.flags & ACK:
            self.judge(Flow(e.ts, smac, sip, dip, "tcp", e.dport, mac_text(e.dst_mac)))
            return
        if proto == UDP:
            if self._first_datagram(e):
                self.judge(Flow(e.ts, smac, sip, dip, "udp", e.dport, mac_text(e.dst_mac)))
                return
        elif (proto == ICMP and e.sport == 8) or (proto == ICMP6 and e.sport == 128):
            self.judge(Flow(e.ts, smac, sip, dip, "icmp", None, mac_text(e.dst_mac)))
            return
        self.judge(Flow(e.ts, smac, sip, dip, "ip", None, mac_text(e.dst_mac)))

    def on_arp(self, e) -> None:
        self.judge(
            Flow(
                e.ts,
                mac_text(e.eth_src) or mac_text(e.sha),
                ip_text(e.spa),
                ip_text(e.tpa),
                "arp",
                None,
                mac_text(e.eth_dst),
                e.op,
                mac_text(e.sha),
            )
        )

    def _first_datagram(self, e) -> bool:
        seen = self.udp_seen
        key = e.src_ip + e.dst_ip + e.sport.to_bytes(2, "big") + e.dport.to_bytes(2, "big")
        if key in seen:
            return False
        if len(seen) >= self.tun.udp_flows:
            seen.clear()
        seen.add(key)
        reverse = e.dst_ip + e.src_ip + e.dport.to_bytes(2, "big") + e.sport.to_bytes(2, "big")
        # not the answer to an earlier datagram, nor a server answering an exchange whose start was not captured
        return reverse not in seen and not (e.sport < 1024 <= e.dport and e.sport not in (68, 546))

    # --- judging --------------------------------------------------------------------------------------
    def judge(self, f: Flow) -> None:
        """Decide one attempt; a forbidden one joins (or opens) its alert."""
        d = self.evaluator.decide(f)
        if d.action == "ignore":
            return
        self.judged += 1
        if d.action == "accept":
            self.allowed += 1
            return
        self.forbidden += 1
        key = (
            d.kind,
            d.src_vm,
            f.src_mac if d.kind in ("spoof", "ipv6") else None,
            f.src_ip,
            None if d.kind == "ipv6" else f.dst_ip,
            None if d.kind == "ipv6" else f.proto,
            d.why,
        )
        alert = self.incident(key, f.ts, lambda: self._alert(f, d))
        alert.seen(f.ts)
        if f.dport is not None:
            alert.ports.add(f.dport)  # every port, past the usual cap: which ports were tried is the finding

    def _alert(self, f: Flow, d: Decision) -> Alert:
        if d.kind == "ipv6":
            severity = "low"
        elif d.kind in ("spoof", "quarantine"):
            severity = "high"
        else:
            severity = "high" if d.dst_kind == "host" and d.src_vm else "medium"
        alert = Alert(
            "policy_violation",
            severity,
            f.ts,
            {"mac": f.src_mac, "ip": f.src_ip, "vm": d.src_vm},
            0.95 if d.kind in ("flow", "quarantine") else 0.99,
            _describer(f, d),
            {
                "rule": d.why,
                "policy_file": self.policy.file,
                "policy_line": d.line,
                "proto": f.proto,
                "kind": d.kind,
                "destination": d.dst_kind,
            },
        )
        if f.dst_ip is not None:
            dst_ep = self.evaluator.by_ip.get(f.dst_ip)
            alert.victim({"ip": f.dst_ip, "mac": dst_ep.mac if dst_ep else f.dst_mac, "vm": d.dst_vm})
        return alert


def _describer(f: Flow, d: Decision):
    """The alert's summary, from its first attempt and what it has grown to."""
    who = f"VM {d.src_vm}" if d.src_vm else f"{f.src_ip}"

    def describe(a: Alert) -> str:
        ports = sorted(a.ports)
        service = f"{f.proto}{'/' + port_text(ports) if ports else ''}"
        if d.kind == "ipv6":
            return f"{who} sent {a.count} IPv6 packet(s), which the policy drops: {d.why}"
        if d.kind == "spoof":
            what = "ARP packet(s)" if f.proto == "arp" else "packet(s)"
            return f"{who} sent {a.count} {what} with a forged source the policy forbids: {d.why}"
        if d.kind == "quarantine":
            return f"{who} -> {f.dst_ip} {service} while quarantined: {d.why}"
        dst_desc = {"host": "the host", "vm": f"VM {d.dst_vm}", "external": "outside"}.get(d.dst_kind, "")
        return f"{who} -> {dst_desc} ({f.dst_ip}) {service}: forbidden by {d.why}"

    return describe


def in_time_order(alerts: list[Alert]) -> list[Alert]:
    """``policy check`` lists its alerts as they first happened (the engine's order is worst first)."""
    return sorted(alerts, key=lambda a: (round(a.first_seen, 6), a.describe(a)))


def port_text(ports: list[int], limit: int = 8) -> str:
    """[1, 2, 3, 5, 8080] -> "1-3,5,8080"; long lists end with "... (N ports)"."""
    ranges: list[list[int]] = []
    for p in sorted(set(ports)):
        if ranges and p == ranges[-1][1] + 1:
            ranges[-1][1] = p
        else:
            ranges.append([p, p])
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in ranges]
    text = ",".join(parts[:limit])
    if len(parts) > limit:
        text += f",... ({len(set(ports))} ports)"
    return text
