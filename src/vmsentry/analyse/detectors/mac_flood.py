"""mac_flood: a burst of new source MACs (macof), which fills a switch's or bridge's forwarding table so
that it floods every frame to every port. More than ``new_macs`` never-seen source MACs within ``window``.

The flooder's MACs are random, so the frame content rarely names the attacker; when most flood frames
share one source IP or come from one known VM's address it is named, otherwise the alert says so.
State is bounded: the MAC table keeps ``max_state`` entries and evicts the oldest (counted).
"""

from __future__ import annotations

from collections import Counter, deque

from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import mac_text


class MacFlood(Detector):
    name = "mac_flood"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.seen = Bounded(tun.max_state, "mac_flood.macs", sink)
        self.recent: deque = deque()  # (ts, mac) of new MACs within the window
        self.sources: Counter = Counter()  # source IPs of frames with a new MAC (bounded below)
        for mac in list(truth.vm_of_mac) + list(truth.host_macs):
            self.seen.put(mac, 0.0)

    def _mac(self, mac, ts: float, src_ip) -> None:
        if mac is None or mac in self.seen:
            return
        self.seen.put(mac, ts)
        recent = self.recent
        recent.append((ts, mac))
        while recent and ts - recent[0][0] > self.tun.window:
            recent.popleft()
        if src_ip is not None and len(self.sources) < 4096:
            self.sources[src_ip] += 1
        if len(recent) >= self.tun.new_macs:
            self._alert(ts)

    def on_packet(self, ev) -> None:
        self._mac(ev.src_mac, ev.ts, ev.src_ip)

    def on_probes(self, ev) -> None:
        self._mac(ev.src_mac, ev.ts, ev.src_ip)
        if ev.macs:
            for mac in ev.macs:
                self._mac(mac, ev.last, ev.src_ip)

    def on_arp(self, ev) -> None:
        mac = ev[1]  # eth_src (known MACs return at once: every ARP)
        if mac not in self.seen:
            self._mac(mac, ev[0], None)

    def on_frame(self, ev) -> None:
        self._mac(ev.src_mac, ev.ts, None)

    def on_dhcp(self, ev) -> None:
        self._mac(ev.src_mac, ev.ts, None)

    def on_routeradvert(self, ev) -> None:
        self._mac(ev.src_mac, ev.ts, None)

    def _alert(self, ts: float) -> None:
        truth = self.truth
        first = self.recent[0][0]
        attacker = {"mac": None, "ip": None, "vm": None}
        top = self.sources.most_common(1)
        if top and top[0][1] * 2 > sum(self.sources.values()):
            attacker = truth.endpoint(top[0][0], None)
        alert = self.incident(
            "flood",
            ts,
            lambda: Alert(
                "mac_flood",
                "high",
                first,
                attacker,
                0.9,
                _describe,
                {"new_macs": 0, "examples": [mac_text(m) for _, m in list(self.recent)[:5]]},
            ),
        )
        added = len(self.recent)
        alert.seen(ts, added)
        alert.first_seen = min(alert.first_seen, first)
        alert.evidence["new_macs"] += added
        alert.evidence["window_seconds"] = self.tun.window
        self.recent.clear()  # the next alert-worthy burst starts from zero
        self.sources.clear()


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip") or "an unknown sender (random source MACs)"
    span = a.last_seen - a.first_seen
    return f"MAC flood: {a.evidence.get('new_macs', a.count)} new source MACs in {span:.1f} s from {who}"
