"""rogue_dhcp and dhcp_flood.

* ``rogue_dhcp``: a server message (OFFER, ACK, NAK) from a server that is not sanctioned (with an
  inventory: not in ``networks[].dhcp_servers`` nor their MACs; confidence 0.95), or, without one, a
  second server answering on the segment (both named in the evidence; the newcomer is the suspect, 0.5).
  Critical when the rogue server hands out a router or DNS server that is not sanctioned (a MITM set-up).
* ``dhcp_flood`` (an extension of the contract's types): more than ``flood_messages`` client messages from
  one MAC, or ``flood_clients`` distinct client addresses, within ``flood_window`` (starvation or DoS).
"""

from __future__ import annotations

from collections import deque

from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import DHCP_TYPES, ip_text

SERVER_TYPES = (2, 5, 6)


class Dhcp(Detector):
    name = "dhcp"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.servers = Bounded(64, "dhcp.servers", sink)  # server key -> first ts
        self.per_client = Bounded(tun.max_state, "dhcp.clients", sink)  # mac -> deque of ts
        self.clients: deque = deque()  # (ts, chaddr) of client messages
        self.sanctioned_macs = {truth.mac_of_ip[ip] for ip in truth.dhcp_servers if ip in truth.mac_of_ip}

    def on_dhcp(self, ev) -> None:
        if ev.op == 2 and ev.msg_type in SERVER_TYPES:
            self._server(ev)
        elif ev.op == 1:
            self._client(ev)

    # --- rogue servers ------------------------------------------------------------------------------
    def _server(self, ev) -> None:
        truth = self.truth
        server_ip = ev.server_id or ev.src_ip
        key = ev.src_mac or server_ip
        if key is None:
            return  # a log record with neither the server's MAC nor its address: no server to count or name
        if key not in self.servers:
            self.servers.put(key, ev.ts)
        if truth.known and truth.dhcp_known:
            if server_ip in truth.dhcp_servers or (ev.src_mac is not None and ev.src_mac in self.sanctioned_macs):
                return
            confidence, why = 0.95, "not a sanctioned DHCP server"
        else:
            if len(self.servers) < 2 or next(iter(self.servers)) == key:
                return
            confidence, why = 0.5, "a second DHCP server answering on the segment"
        attacker = truth.endpoint(server_ip, ev.src_mac)

        def make() -> Alert:
            return Alert(
                "rogue_dhcp",
                "high",
                ev.ts,
                attacker,
                confidence,
                _describe_rogue,
                {"why": why, "messages": {}, "offered_routers": set(), "offered_dns": set(), "servers_seen": []},
            )

        alert = self.incident(("rogue", key), ev.ts, make)
        alert.seen(ev.ts)
        msgs = alert.evidence["messages"]
        name = DHCP_TYPES.get(ev.msg_type, str(ev.msg_type))
        msgs[name] = msgs.get(name, 0) + 1
        alert.evidence["offered_routers"].update(map(ip_text, ev.routers))
        alert.evidence["offered_dns"].update(map(ip_text, ev.dns))
        alert.evidence["servers_seen"] = [str(ip_text(k)) if len(k) == 4 else k.hex(":") for k in self.servers][:10]
        alert.port(67)
        if ev.chaddr:
            victim = truth.endpoint(ev.yiaddr, ev.chaddr)
            victim["ip"] = ip_text(ev.yiaddr)
            alert.victim(victim)
        bad = [
            r
            for r in ev.routers + ev.dns
            if truth.known and r not in truth.dhcp_servers and r not in truth.dns_servers and not truth.is_host(r)
        ]
        if bad or server_ip in ev.routers or server_ip in ev.dns:
            alert.raise_to("critical")

    # --- floods -------------------------------------------------------------------------------------
    def _client(self, ev) -> None:
        tun, ts = self.tun, ev.ts
        mac = ev.src_mac or ev.chaddr
        times = self.per_client.get(mac)
        if times is None:
            times = deque(maxlen=tun.flood_messages)
            self.per_client.put(mac, times)
        times.append(ts)
        clients = self.clients
        clients.append((ts, ev.chaddr))
        while clients and ts - clients[0][0] > tun.flood_window:
            clients.popleft()
        while len(clients) > tun.flood_clients * 4:
            clients.popleft()
        if len(times) >= tun.flood_messages and ts - times[0] <= tun.flood_window:
            self._flood(ev, mac, "messages from one client", len(times), times[0])
        elif len(clients) >= tun.flood_clients and len({c for _, c in clients}) >= tun.flood_clients:
            self._flood(ev, mac, "distinct client addresses (starvation)", len(clients), clients[0][0])

    def _flood(self, ev, mac, why: str, seen: int, since: float) -> None:
        attacker = self.truth.endpoint(None, mac)
        attacker["ip"] = ip_text(ev.src_ip) if ev.src_ip and any(ev.src_ip) else None

        def make() -> Alert:
            return Alert("dhcp_flood", "medium", ev.ts, attacker, 0.8, _describe_flood, {"why": why, "messages": {}})

        alert = self.incident(("flood", mac), ev.ts, make)
        first = alert.count == 0  # new: it also covers the messages that led up to it
        alert.seen(ev.ts, seen if first else 1)
        if first:
            alert.first_seen = since
        msgs = alert.evidence["messages"]
        name = DHCP_TYPES.get(ev.msg_type, str(ev.msg_type))
        msgs[name] = msgs.get(name, 0) + (seen if first else 1)
        alert.port(67)


def _describe_rogue(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip") or a.attacker.get("mac")
    msgs = ", ".join(f"{n} {k}" for k, n in sorted(a.evidence["messages"].items()))
    return f"DHCP server {who} answers clients ({msgs}): {a.evidence['why']}"


def _describe_flood(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("mac")
    span = a.last_seen - a.first_seen
    return f"DHCP flood from {who}: {a.count} client messages in {span:.1f} s ({a.evidence['why']})"
