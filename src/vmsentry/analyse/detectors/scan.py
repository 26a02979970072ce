"""port_scan and host_sweep, counted per scanner over a fast and a slow window (as Zeek's scan scripts,
with our own thresholds for VM-to-VM and VM-to-host traffic; see tunables).

Probes: TCP SYNs (an answered SYN-ACK makes the port open, which does not count), first UDP packets to a
port, ICMP/ICMPv6 echo requests, and ARP requests (an ARP sweep; a reply makes the host answered).

* ``port_scan``: at least ``ports`` distinct failed ports on one host within ``window`` seconds, or
  ``slow_ports`` within ``slow_window`` (a slow scan).
* ``host_sweep``: at least ``hosts`` distinct hosts probed without an answer within ``window``, or
  ``slow_hosts`` within ``slow_window``. TCP RSTs do not count as answers (a sweep for port 80 is
  still a sweep); UDP is left out here (replies are not probes' answers we can see cheaply).

One alert per scanner and kind; its victims are the hosts probed. Each scanner keeps at most
``max_targets`` hosts and ports (beyond that it is only counted), and at most ``max_state`` scanners.

A source's first probe costs only one small record (``first``, at most ``max_state`` of them, oldest
evicted and counted): a full ``Scanner`` (a few KB of tables) is made, and that first probe replayed into
it, when the source probes a second time or its probe is answered. A flood of forged sources (macof, a
spoofed SYN flood: a million addresses, one probe each) then fills only the small table; no threshold
can be crossed by a single probe (unless a threshold is tuned to 1, when every probe goes straight in).

Decoys (``nmap -D``): on a bridge every frame carries the scanner's own MAC, whatever source address it
forges. Probes from an inventory VM's MAC with a source address of the same family that is not one of
that VM's are the VM's own, keyed by its address; the forged sources are listed in ``evidence.decoys``.
The host's MACs are left out (the host routes other machines' traffic onto the bridge).
"""

from __future__ import annotations

from collections import deque

from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ACK, ICMP, ICMP6, SYN, TCP, UDP, ip_text

ZERO_IP = b"\x00\x00\x00\x00"
MAX_DECOYS = 64  # forged source addresses listed per scanner


class Window:
    """How many things were new within a sliding time window, kept as (time, how many) pairs: a record
    with a hundred new ports is one entry, not a hundred."""

    __slots__ = ("entries", "total")

    def __init__(self) -> None:
        self.entries: deque = deque()
        self.total = 0

    def add(self, ts: float, count: int) -> None:
        self.entries.append((ts, count))
        self.total += count

    def expire(self, now: float, span: float) -> None:
        entries = self.entries
        while entries and now - entries[0][0] > span:
            self.total -= entries.popleft()[1]

    def first(self) -> float:
        return self.entries[0][0]

    def __len__(self) -> int:
        return self.total


class Scanner:
    __slots__ = (
        "mac",
        "ports",
        "recent_ports",
        "opened",
        "hosts",
        "recent_hosts",
        "answered",
        "size",
        "methods",
        "overflow",
        "tries",
        "lost",
        "decoys",
    )

    def __init__(self, mac) -> None:
        self.mac = mac
        self.ports: dict = {}  # dst -> {port: first ts}
        self.recent_ports: dict = {}  # dst -> Window of new ports by first-seen time (fast window)
        self.opened: dict = {}  # dst -> set of ports that answered SYN-ACK
        self.hosts: dict = {}  # dst -> first ts (probes that count for sweeps)
        self.recent_hosts: deque = deque()
        self.answered: set = set()
        self.size = 0
        self.methods: dict = {}
        self.overflow = 0  # hosts not remembered (beyond max_targets)
        self.tries: dict = {}  # dst -> attempts on its ports
        self.lost: dict = {}  # dst -> distinct ports not remembered (beyond max_targets)
        self.decoys: set = set()  # forged source addresses its probes carried (nmap -D)


class Scan(Detector):
    name = "scan"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.scanners = Bounded(tun.max_state, "scan.scanners", sink)
        # source -> its first probe (ts, mac, dst, ports, method, sweep), until it has a Scanner
        self.first = Bounded(tun.max_state, "scan.first_probes", sink)
        self.first_only = min(tun.ports, tun.hosts, tun.slow_ports, tun.slow_hosts) > 1
        self.pruned = float("-inf")
        self.dirty: dict = {}  # (kind, src, dst) -> (ts, method): thresholds to check at the batch's end
        # (VM MAC, address length) -> (its own addresses of that family, the one a decoy is counted under):
        # worked out once, since every probe from a VM's MAC asks (the host's MACs route others' traffic)
        self.own_addresses: dict = {}
        for mac in truth.vm_of_mac:
            if mac in truth.host_macs:
                continue
            for size in (4, 16):
                own = frozenset(ip for ip in truth.ips_of_mac.get(mac, ()) if len(ip) == size)
                if own:
                    self.own_addresses[(mac, size)] = (own, min(own))

    def end_batch(self) -> None:
        """Thresholds are checked once the whole batch is in, so that answers later in the batch (a
        SYN-ACK after its SYN) count before a probe is called failed."""
        dirty, self.dirty = self.dirty, {}
        tun = self.tun
        for (kind, src, dst), (ts, method) in dirty.items():
            sc = self.scanners.get(src)
            if sc is None:
                continue
            if kind == "ports":
                known = sc.ports.get(dst)
                if not known:
                    continue
                opened = len(sc.opened.get(dst, ()))
                fast = len(sc.recent_ports[dst]) - opened >= tun.ports
                if fast or len(known) - opened >= tun.slow_ports:
                    self._ports(ts, src, sc, dst, fast)
            else:
                recent = sc.recent_hosts
                while recent and ts - recent[0] > tun.window:
                    recent.popleft()
                fast = len(recent) >= tun.hosts
                if fast or len(sc.hosts) + sc.overflow >= tun.slow_hosts:
                    self._sweep(ts, src, sc, dst, method, fast)

    def finish(self) -> None:
        self.end_batch()

    # --- events -------------------------------------------------------------------------------------
    def on_probes(self, ev) -> None:
        if ev.proto == TCP:
            self._probe(ev.last, ev.src_ip, ev.src_mac, ev.dst_ip, ev.ports, "tcp", True)
        elif not _multicast(ev.dst_ip):
            self._probe(ev.last, ev.src_ip, ev.src_mac, ev.dst_ip, ev.ports, "udp", False)

    def on_packet(self, ev) -> None:
        proto = ev.proto
        if proto == TCP:
            flags = ev.flags
            if flags & SYN:
                if flags & ACK:
                    self._answer(ev.dst_ip, ev.src_ip, ev.sport, opened=True)
                else:  # SYNs come as Probes, except from logs / all_packets
                    self._probe(ev.ts, ev.src_ip, ev.src_mac, ev.dst_ip, (ev.dport,), "tcp", True)
        elif proto == UDP:
            if not _multicast(ev.dst_ip):
                self._probe(ev.ts, ev.src_ip, ev.src_mac, ev.dst_ip, (ev.dport,), "udp", False)
        elif proto in (ICMP, ICMP6):
            itype = ev.sport
            if itype in (8, 128) and not _multicast(ev.dst_ip):
                self._probe(ev.ts, ev.src_ip, ev.src_mac, ev.dst_ip, (), "icmp", True)
            elif itype in (0, 129):
                self._answer(ev.dst_ip, ev.src_ip, None, opened=False)

    def on_arp(self, ev) -> None:
        ts, _, _, op, sha, spa, _, tpa = ev  # (one unpacking: this runs for every ARP)
        if op == 1:
            if spa != tpa and tpa != ZERO_IP:
                self._probe(ts, spa if spa != ZERO_IP else sha, sha, tpa, (), "arp", True)
        elif op == 2 and (tpa in self.scanners or tpa in self.first):
            self._answer(tpa, spa, None, opened=False)

    # --- bookkeeping --------------------------------------------------------------------------------
    def _probe(self, ts, src, mac, dst, ports, method, sweep: bool) -> None:
        """Attempts from ``src`` to ``dst``: one per port in ``ports``, or one without a port (ARP, ping)."""
        tun = self.tun
        decoy = None
        own = self.own_addresses.get((mac, len(src)))
        if own is not None and src not in own[0]:  # a decoy: the probe is the VM's own, from a forged source
            decoy, src = src, own[1]
        sc = self.scanners.get(src)
        if sc is None:
            if decoy is None and self.first_only and len(ports) <= 1 and src not in self.first:
                self.first.put(src, (ts, mac, dst, tuple(ports), method, sweep))
                return
            sc = self._scanner(src, mac)
        if decoy is not None and len(sc.decoys) < MAX_DECOYS:
            sc.decoys.add(ip_text(decoy))
            for kind in ("ports", "sweep"):  # an alert raised before the first decoy showed lists them too
                alert = self.open.get((kind, src))
                if alert is not None:
                    alert.evidence.setdefault("decoys", sc.decoys)
        count = len(ports) or 1
        sc.methods[method] = sc.methods.get(method, 0) + count
        if sweep:
            self._host(ts, src, sc, dst, method, count)
        if not ports:
            return
        known = sc.ports.get(dst)
        if known is None:
            if sc.size >= tun.max_targets:
                return
            known = sc.ports[dst] = {}
            sc.recent_ports[dst] = Window()
        sc.tries[dst] = sc.tries.get(dst, 0) + count
        recent = sc.recent_ports[dst]
        # the ports not seen on dst before, each once (a record holds thousands on a big scan)
        new = ([] if ports[0] in known else list(ports)) if count == 1 else list(set(ports).difference(known))
        if new:
            room = tun.max_targets - sc.size
            if room >= len(new):
                known.update(dict.fromkeys(new, ts))
                sc.size += len(new)
            else:
                if room > 0:
                    known.update(dict.fromkeys(new[:room], ts))
                    sc.size += room
                sc.lost[dst] = sc.lost.get(dst, 0) + len(new) - max(room, 0)
            recent.add(ts, len(new))
        recent.expire(ts, tun.window)
        alert = self.open.get(("ports", src))
        if alert is not None and ts - alert.last_seen <= tun.suppress:  # an open incident: grow it
            alert.seen(ts, count)
            if new:
                alert.ports_seen(new)
                alert.victim_once(dst, lambda: self.truth.endpoint(dst, None))
                alert.evidence["distinct_ports"] = alert.ports_total
                if alert.ports_total >= 1000:
                    alert.raise_to("high")
            return
        if new:
            self.dirty[("ports", src, dst)] = (ts, method)

    def _scanner(self, src, mac) -> Scanner:
        """A new Scanner for ``src``, with its first probe (if one was kept) replayed into it."""
        sc = Scanner(mac)
        self.scanners.put(src, sc)
        first = self.first.pop(src, None)
        if first is not None:
            ts, mac, dst, ports, method, sweep = first
            self._probe(ts, src, mac, dst, ports, method, sweep)
        return sc

    def _host(self, ts, src, sc, dst, method, count) -> None:
        tun = self.tun
        alert = self.open.get(("sweep", src))
        if alert is not None and ts - alert.last_seen > tun.suppress:
            alert = None
        if dst in sc.hosts or dst in sc.answered:
            if alert is not None:
                alert.seen(ts, count)
            return
        if sc.size < tun.max_targets:
            sc.hosts[dst] = ts
            sc.size += 1
        else:
            sc.overflow += 1
        sc.recent_hosts.append(ts)
        if alert is not None:  # an open incident: grow it
            alert.seen(ts, count)
            alert.victim_once(dst, lambda: self.truth.endpoint(dst, None))
            alert.evidence["distinct_hosts"] = alert.victims_total
            return
        self.dirty[("sweep", src, None)] = (ts, method)

    def _answer(self, scanner_ip, target, port, opened: bool) -> None:
        sc = self.scanners.get(scanner_ip)
        if sc is None:
            first = self.first.get(scanner_ip)
            if first is None:
                return
            sc = self._scanner(scanner_ip, first[1])
        if opened and port is not None:
            sc.opened.setdefault(target, set()).add(port)
            alert = self.open.get(("ports", scanner_ip))
            if alert is not None and len(alert.evidence["open_ports"]) < 20:
                alert.evidence["open_ports"].add(port)
        if target in sc.hosts:
            del sc.hosts[target]
            sc.size -= 1
            if sc.recent_hosts:
                sc.recent_hosts.pop()
        sc.answered.add(target)

    def tick(self, now: float) -> None:
        """Forget targets older than the slow window (scanners that went quiet age out with them); at most
        once a minute of stream time, as it walks every scanner."""
        if now - self.pruned < 60.0:
            return
        self.pruned = now
        horizon = now - self.tun.slow_window
        first = self.first
        while first and next(iter(first.values()))[0] < horizon:  # (kept in about the order of time)
            first.popitem(last=False)
        for src in list(self.scanners):
            sc = self.scanners[src]
            for dst in [d for d, t in sc.hosts.items() if t < horizon]:
                del sc.hosts[dst]
                sc.size -= 1
            for dst, ports in list(sc.ports.items()):
                if ports and max(ports.values()) < horizon:
                    sc.size -= len(ports)
                    del sc.ports[dst]
                    for table in (sc.recent_ports, sc.opened, sc.tries, sc.lost):
                        table.pop(dst, None)
            if not sc.hosts and not sc.ports:
                del self.scanners[src]

    # --- alerts -------------------------------------------------------------------------------------
    def _attacker(self, src, sc) -> dict:
        if len(src) == 6:  # an ARP prober without an address: only its MAC
            return self.truth.endpoint(None, src)
        return self.truth.endpoint(src, sc.mac)

    def _ports(self, ts, src, sc, dst, fast: bool) -> None:
        known = sc.ports[dst]
        recent = sc.recent_ports[dst]
        first = recent.first() if fast and len(recent) else min(known.values())

        def make() -> Alert:
            return Alert(
                "port_scan",
                "medium",
                first,
                self._attacker(src, sc),
                0.9 if fast else 0.7,
                _describe_ports,
                {
                    "window_seconds": self.tun.window if fast else self.tun.slow_window,
                    "open_ports": set(),
                    "methods": sc.methods,
                    **({"decoys": sc.decoys} if sc.decoys else {}),
                },
            )

        alert = self.incident(("ports", src), ts, make)
        # count: every attempt of this scanner, whatever batch the threshold was crossed in (the ones
        # before the alert from its tries, the ones after as they come)
        alert.seen(ts, sum(sc.tries.values()) if alert.count == 0 else 0)
        alert.first_seen = min(alert.first_seen, first)
        for port in known:
            alert.port(port)
        alert.ports_total += sc.lost.get(dst, 0)
        alert.victim_once(dst, lambda: self.truth.endpoint(dst, None))
        alert.evidence["open_ports"].update(list(sc.opened.get(dst, ()))[:20])
        alert.evidence["distinct_ports"] = alert.ports_total
        if self.truth.is_host(dst) or alert.ports_total >= 1000:
            alert.raise_to("high")

    def _sweep(self, ts, src, sc, dst, method, fast: bool) -> None:
        def make() -> Alert:
            return Alert(
                "host_sweep",
                "medium",
                min(sc.hosts.values(), default=ts),
                self._attacker(src, sc),
                0.9 if fast else 0.7,
                _describe_sweep,
                {
                    "window_seconds": self.tun.window if fast else self.tun.slow_window,
                    "methods": {},
                    **({"decoys": sc.decoys} if sc.decoys else {}),
                },
            )

        alert = self.incident(("sweep", src), ts, make)
        new = alert.count == 0
        if new:
            alert.seen(ts, len(sc.hosts) + sc.overflow)
            for host in sc.hosts:
                alert.victim_once(host, lambda host=host: self.truth.endpoint(host, None))
            alert.victims_total += sc.overflow
        else:
            alert.seen(ts)
            alert.victim_once(dst, lambda: self.truth.endpoint(dst, None))
        alert.evidence["methods"] = sc.methods  # live: grows with the scanner
        alert.evidence["distinct_hosts"] = alert.victims_total


def _multicast(ip: bytes) -> bool:
    if len(ip) == 4:
        return ip[0] >= 224 or ip[3] == 255
    return ip[0] == 0xFF


def _describe_ports(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip") or a.attacker.get("mac")
    hosts = ", ".join(v.get("vm") or v.get("ip") or "?" for v in list(a.victims.values())[:3])
    span = a.last_seen - a.first_seen
    opened = sorted(a.evidence.get("open_ports", ()))
    found = f"; open: {', '.join(map(str, opened[:10]))}" if opened else ""
    return f"{who} scanned {a.ports_total} ports on {hosts} in {span:.1f} s ({a.count} probes{found}{_decoys(a)})"


def _describe_sweep(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip") or a.attacker.get("mac")
    methods = ", ".join(f"{m} {n}" for m, n in sorted(a.evidence.get("methods", {}).items()))
    span = a.last_seen - a.first_seen
    return f"{who} swept {a.victims_total} hosts without answer in {span:.1f} s ({methods}{_decoys(a)})"


def _decoys(a: Alert) -> str:
    decoys = a.evidence.get("decoys")
    return f"; decoy sources: {', '.join(sorted(decoys)[:5])}" if decoys else ""
