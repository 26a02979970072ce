"""``policy check``: which flows in some traffic does the policy forbid? -> ``policy_violation`` alerts.

The input is an iterable of ``Flow`` records (one per *new* connection attempt, or per ARP packet), so
any traffic reader can feed it: ``flows.py`` adapts the project's traffic readers (pcap, pcapng, live bridge).
Decisions come from the resolved policy's ordered rules (``resolve.Rule``), the same list the nftables
compiler turns into nft rules, evaluated the same way (first match wins, defaults last).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from vmsentry.act.policy.resolve import Endpoint, Resolved, Rule


@dataclass(frozen=True, slots=True)
class Flow:
    ts: float
    src_mac: str | None
    src_ip: str | None
    dst_ip: str | None
    proto: str                 # tcp | udp | icmp | arp | ip (any other packet: judged for a forged source only)
    dport: int | None = None
    dst_mac: str | None = None
    arp_op: int | None = None  # for proto arp: 1 request, 2 reply
    arp_sha: str | None = None # for proto arp: sender MAC in the ARP body (src_mac is the Ethernet source)


@dataclass(slots=True)
class Decision:
    action: str                # accept | drop | ignore (not traffic this policy governs)
    why: str
    line: int | None = None
    kind: str = "flow"         # flow | spoof | ipv6 | quarantine
    src_vm: str | None = None
    dst_vm: str | None = None
    dst_kind: str = "external"


class Evaluator:
    def __init__(self, res: Resolved):
        self.res = res
        self.by_mac: dict[str, Endpoint] = {e.mac: e for e in res.endpoints if e.mac}
        self.by_ip: dict[str, Endpoint] = {}
        for e in res.endpoints:
            for a in e.ip4 + e.ip6:
                self.by_ip.setdefault(a, e)
        self.host = set(res.host_addresses)
        self.zone_of: dict[str, set[str]] = {}
        for z, members in res.zones.items():
            for vm in members:
                self.zone_of.setdefault(vm, set()).add(z)
        self.role_nets = {r: [ipaddress.ip_network(c) for c in cidrs] for r, cidrs in res.role_sources.items()}
        self.quarantined = set(res.quarantined)
        self.anti = res.policy.defaults.anti_spoofing
        self.chains = {c: res.chain(c) for c in ("vm_to_host", "ext_to_host", "vm_fwd", "ext_to_vm")}

    def decide(self, f: Flow) -> Decision:
        src_ep = self.by_mac.get((f.src_mac or "").lower()) if f.src_mac else None
        if f.proto == "arp":
            if src_ep and self.anti:
                if f.arp_sha and f.arp_sha.lower() != src_ep.mac:
                    return Decision("drop", f"ARP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) sends ARP as "
                                            f"{f.arp_sha} for {f.src_ip}", None, "spoof", src_ep.vm)
                if f.src_ip and f.src_ip != "0.0.0.0" and src_ep.ip4 and f.src_ip not in src_ep.ip4:
                    return Decision("drop", f"ARP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) claims {f.src_ip}, "
                                            f"which is not its address ({', '.join(src_ep.ip4)})", None, "spoof",
                                    src_ep.vm)
            return Decision("ignore", "ARP")
        if f.src_ip in self.host and src_ep is None:
            return Decision("ignore", "from the host itself (not filtered: the host is trusted)")
        if src_ep is not None:
            own = src_ep.ip4 + src_ep.ip6
            if self.anti and f.src_ip and ":" in f.src_ip and not src_ep.ipv6:
                return Decision("drop", f"IPv6 from VM {src_ep.vm} ({f.src_ip}): IPv6 is not enabled for it (no IPv6 "
                                        f"address in the inventory, network without IPv6)", None, "ipv6", src_ep.vm)
            if self.anti and f.src_ip and f.src_ip not in ("0.0.0.0", "::") and own and f.src_ip not in own:
                return Decision("drop", f"IP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) sends from {f.src_ip}, "
                                        f"not its address ({', '.join(own)})", None, "spoof", src_ep.vm)
        elif f.src_ip in self.by_ip and f.src_ip not in self.host:
            src_ep = self.by_ip[f.src_ip]          # routed from another VM network: source is its address
        if f.proto == "ip":
            return Decision("ignore", "not the start of a connection")
        dst_ep = self.by_ip.get(f.dst_ip or "")
        try:
            dst_addr = ipaddress.ip_address(f.dst_ip) if f.dst_ip else None
        except ValueError:
            dst_addr = None
        if f.dst_ip in self.host or (f.dst_ip == "255.255.255.255" and f.proto == "udp" and f.dport == 67):
            dst_kind = "host"
        elif dst_ep is not None:
            dst_kind = "vm"
        elif dst_addr is None or dst_addr.is_multicast or f.dst_ip == "255.255.255.255":
            return Decision("ignore", "broadcast or multicast")
        else:
            dst_kind = "external"
        src_vm = src_ep.vm if src_ep else None
        dst_vm = dst_ep.vm if dst_ep and dst_kind == "vm" else None

        # quarantine first, as in nft
        if src_vm in self.quarantined:
            fx = self.res.policy.defaults.forensics
            if dst_kind == "host" and fx is not None and fx.matches(f.proto, f.dport):
                return Decision("accept", "quarantine: forensics service", None, "quarantine", src_vm, dst_vm, dst_kind)
            return Decision("drop", f"VM {src_vm} is quarantined", None, "quarantine", src_vm, dst_vm, dst_kind)
        if dst_vm in self.quarantined:
            return Decision("drop", f"VM {dst_vm} is quarantined", None, "quarantine", src_vm, dst_vm, dst_kind)

        if src_ep is not None:
            chain = "vm_to_host" if dst_kind == "host" else "vm_fwd"
        elif dst_kind == "host":
            chain = "ext_to_host"
        elif dst_kind == "vm":
            chain = "ext_to_vm"
        else:
            return Decision("ignore", "neither end is a VM or the host")
        rules = self.chains[chain]
        for i, r in enumerate(rules):
            # the last rule of a chain is its default and matches everything (as in nft)
            if i == len(rules) - 1 or self._matches(r, f, src_ep, dst_ep, dst_kind):
                return Decision(r.action, r.why, r.line, "flow", src_vm, dst_vm, dst_kind)
        raise AssertionError("a chain always ends with its default")

    def _matches(self, r: Rule, f: Flow, src_ep, dst_ep, dst_kind) -> bool:
        s = r.src
        if s.kind == "zone" and not (src_ep and s.name in self.zone_of.get(src_ep.vm, ())):
            return False
        if s.kind == "jump" and not (src_ep and src_ep.vm == self.res.jumps.get(s.name)):
            return False
        if s.kind == "role":
            try:
                a = ipaddress.ip_address(f.src_ip)
            except (TypeError, ValueError):
                return False
            if not any(a in n for n in self.role_nets[s.name]):
                return False
            if r.window is not None and not r.window.contains(f.ts):
                return False
        d = r.dst
        if d.kind == "zone" and not (dst_kind == "vm" and d.name in self.zone_of.get(dst_ep.vm, ())):
            return False
        if d.kind == "jump" and not (dst_kind == "vm" and dst_ep.vm == self.res.jumps.get(d.name)):
            return False
        if d.kind == "any-vm" and dst_kind != "vm":
            return False
        if d.kind == "external" and dst_kind != "external":
            return False
        if d.kind == "host" and dst_kind != "host":
            return False
        if r.service is not None and not r.service.matches(f.proto, f.dport):
            return False
        return True


@dataclass
class CheckResult:
    alerts: list[dict]
    stats: dict
    judged: int = 0
    allowed: int = 0
    forbidden: int = 0
    errors: list[str] = field(default_factory=list)


def check_flows(res: Resolved, flows, stats: dict | None = None) -> CheckResult:
    """Evaluate every flow; aggregate the forbidden ones into policy_violation alerts."""
    ev = Evaluator(res)
    groups: dict[tuple, dict] = {}
    judged = allowed = forbidden = 0
    for f in flows:
        d = ev.decide(f)
        if d.action == "ignore":
            continue
        judged += 1
        if d.action == "accept":
            allowed += 1
            continue
        forbidden += 1
        key = (d.kind, d.src_vm, f.src_mac if d.kind in ("spoof", "ipv6") else None, f.src_ip,
               None if d.kind == "ipv6" else f.dst_ip, None if d.kind == "ipv6" else f.proto, d.why)
        g = groups.get(key)
        if g is None:
            g = groups[key] = {"first": f.ts, "last": f.ts, "count": 0, "ports": set(), "flow": f, "d": d}
        g["first"] = min(g["first"], f.ts)
        g["last"] = max(g["last"], f.ts)
        g["count"] += 1
        if f.dport is not None:
            g["ports"].add(f.dport)
    alerts = [_alert(res, ev, g) for g in groups.values()]
    alerts.sort(key=lambda a: (a["first_seen"], a["summary"]))
    st = dict(stats or {})
    st.update({"flows_judged": judged, "flows_allowed": allowed, "flows_forbidden": forbidden})
    return CheckResult(alerts, st, judged, allowed, forbidden)


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


def _alert(res: Resolved, ev: Evaluator, g: dict) -> dict:
    f: Flow = g["flow"]
    d: Decision = g["d"]
    dst_desc = {"host": "the host", "vm": f"VM {d.dst_vm}", "external": "outside"}.get(d.dst_kind, "")
    who = f"VM {d.src_vm}" if d.src_vm else f"{f.src_ip}"
    ports = sorted(g["ports"])
    if d.kind == "ipv6":
        summary = f"{who} sent {g['count']} IPv6 packet(s), which the policy drops: {d.why}"
        severity = "low"
    elif d.kind == "spoof":
        summary = f"{who} sent {g['count']} {'ARP packet(s)' if f.proto == 'arp' else 'packet(s)'} with a forged source the policy forbids: {d.why}"
        severity = "high"
    elif d.kind == "quarantine":
        summary = f"{who} -> {f.dst_ip} {f.proto}{'/' + port_text(ports) if ports else ''} while quarantined: {d.why}"
        severity = "high"
    else:
        svc = f"{f.proto}{'/' + port_text(ports) if ports else ''}"
        summary = f"{who} -> {dst_desc} ({f.dst_ip}) {svc}: forbidden by {d.why}"
        severity = "high" if d.dst_kind == "host" and d.src_vm else "medium"
    dst_ep = ev.by_ip.get(f.dst_ip or "")
    return {
        "type": "policy_violation", "severity": severity,
        "first_seen": round(g["first"], 6), "last_seen": round(g["last"], 6), "count": g["count"],
        "attacker": {"mac": f.src_mac, "ip": f.src_ip, "vm": d.src_vm},
        "victims": [] if f.dst_ip is None else [{"ip": f.dst_ip, "mac": dst_ep.mac if dst_ep else f.dst_mac,
                                                 "vm": d.dst_vm}],
        "ports": ports, "confidence": 0.95 if d.kind in ("flow", "quarantine") else 0.99, "summary": summary,
        "evidence": {"rule": d.why, "policy_file": res.policy.file, "policy_line": d.line,
                     "proto": f.proto, "kind": d.kind, "destination": d.dst_kind},
    }
