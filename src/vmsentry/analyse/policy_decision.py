"""What a resolved segmentation policy decides for one connection attempt or packet source.

``Evaluator(resolved).decide(Flow(...))`` walks the resolved policy's ordered rules (``model.policy.Rule``),
the same list the nftables compiler turns into nft rules, the same way (quarantine first, then first match
wins, each chain's default last), so what ``policy check`` reports is what the applied ruleset drops. The
``policy_violation`` detector feeds it from traffic; ``policy apply`` asks it whether the caller's own SSH
source would be locked out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from vmsentry.model.policy import CHAINS, Endpoint, Resolved, Rule


@dataclass(frozen=True, slots=True)
class Flow:
    ts: float
    src_mac: str | None
    src_ip: str | None
    dst_ip: str | None
    proto: str  # tcp | udp | icmp | arp | ip (any other packet: judged for a forged source only)
    dport: int | None = None
    dst_mac: str | None = None
    arp_op: int | None = None  # for proto arp: 1 request, 2 reply
    arp_sha: str | None = None  # for proto arp: sender MAC in the ARP body (src_mac is the Ethernet source)


@dataclass(slots=True)
class Decision:
    action: str  # accept | drop | ignore (not traffic this policy governs)
    why: str
    line: int | None = None
    kind: str = "flow"  # flow | spoof | ipv6 | quarantine
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
        self.anti = res.anti_spoofing
        self.chains = {c: res.chain(c) for c in CHAINS}

    def decide(self, f: Flow) -> Decision:
        src_ep = self.by_mac.get((f.src_mac or "").lower()) if f.src_mac else None
        if f.proto == "arp":
            if src_ep and self.anti:
                if f.arp_sha and f.arp_sha.lower() != src_ep.mac:
                    return Decision(
                        "drop",
                        f"ARP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) sends ARP as {f.arp_sha} for {f.src_ip}",
                        None,
                        "spoof",
                        src_ep.vm,
                    )
                if f.src_ip and f.src_ip != "0.0.0.0" and src_ep.ip4 and f.src_ip not in src_ep.ip4:
                    return Decision(
                        "drop",
                        f"ARP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) claims {f.src_ip}, "
                        f"which is not its address ({', '.join(src_ep.ip4)})",
                        None,
                        "spoof",
                        src_ep.vm,
                    )
            return Decision("ignore", "ARP")
        if f.src_ip in self.host and src_ep is None:
            return Decision("ignore", "from the host itself (not filtered: the host is trusted)")
        if src_ep is not None:
            own = src_ep.ip4 + src_ep.ip6
            if self.anti and f.src_ip and ":" in f.src_ip and not src_ep.ipv6:
                return Decision(
                    "drop",
                    f"IPv6 from VM {src_ep.vm} ({f.src_ip}): IPv6 is not enabled for it (no IPv6 "
                    f"address in the inventory, network without IPv6)",
                    None,
                    "ipv6",
                    src_ep.vm,
                )
            if self.anti and f.src_ip and f.src_ip not in ("0.0.0.0", "::") and own and f.src_ip not in own:
                return Decision(
                    "drop",
                    f"IP spoofing: VM {src_ep.vm} (MAC {src_ep.mac}) sends from {f.src_ip}, "
                    f"not its address ({', '.join(own)})",
                    None,
                    "spoof",
                    src_ep.vm,
                )
        elif f.src_ip in self.by_ip and f.src_ip not in self.host:
            src_ep = self.by_ip[f.src_ip]  # routed from another VM network: source is its address
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
            fx = self.res.forensics
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
        return r.service is None or r.service.matches(f.proto, f.dport)
