"""Resolved policy -> nftables: two tables of our own, ``bridge vmsentry`` and ``inet vmsentry``.

bridge vmsentry (layer 2, every frame entering the host's bridges):
  * ``prerouting`` (priority -300) marks each frame with its VM port (``meta mark set iifname map
    @port_mark``), sets the quarantine bit for quarantined MACs, and sends frames from guarded VM ports
    through ``antispoof``: MAC, ARP sender MAC/IP, IPv4 source, IPv6 source and neighbour advertisements
    must be the port's own (named sets keyed by port), DHCP/DHCPv6 server answers, router advertisements,
    redirects and other ethertypes (VLAN tags, ...) are dropped. Only ``drop`` is used: this kernel has
    no bridge ``reject`` and no bridge ``ct state`` (lab notes §3.3).
  * ``forward`` (priority -200) drops bridged frames from and to quarantined MACs.

inet vmsentry (layer 3, stateful):
  * ``input`` (to the host itself) and ``forward`` (VM to VM through the bridge via br_netfilter, and
    routed traffic) accept established/related traffic, then judge new connections by the mark the bridge
    table set (so by the port a frame came in on, not by a source address a guest could forge) and by
    destination address sets per zone. Roles match source address sets, time windows ``meta hour`` /
    ``meta day`` in UTC.

The ruleset grows with zones, roles and allow rules, not with VMs: every per-VM fact is an element of a
named set or map (the one exception: IPv6 neighbour-advertisement target checks, one rule per IPv6-enabled
port, because nft 1.0.6's JSON input cannot type a raw-payload set key).

The nft objects, the expression builders and the JSON/text renderings are in ``nftruleset``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from vmsentry.act.policy.nftruleset import (
    ACCEPT,
    COUNTER,
    DROP,
    RETURN,
    NChain,
    NftRuleset,
    NSet,
    NTable,
    Q,
    aset,
    cat,
    ct,
    jump,
    mark_prefix,
    match,
    meta,
    pl,
    raw,
    rng,
)
from vmsentry.act.policy.problems import Problem
from vmsentry.act.policy.resolve import MARK_BASE, MARK_PREFIX_MASK, QUARANTINE_BIT
from vmsentry.model.policy import Endpoint, Resolved, Rule, Sel, Service

TABLE = "vmsentry"


@dataclass(frozen=True, slots=True)
class Caps:
    """What the target kernel supports (see ``nftexec.probe_caps``)."""

    meta_time: bool = True  # meta hour / meta day


# ------------------------------------------------------------------------------------------------ compile
def compile_nft(res: Resolved, caps: Caps = Caps(), table: str = TABLE) -> NftRuleset:
    warnings: list[Problem] = []
    br = _bridge_table(res, table)
    inet = _inet_table(res, caps, table, warnings)
    return NftRuleset([br, inet], warnings)


def _setname(prefix: str, name: str, suffix: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if safe != name:
        safe += "_" + hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{prefix}_{safe}_{suffix}"


def _bridge_table(res: Resolved, table: str) -> NTable:
    t = NTable("bridge", table)
    eps = res.endpoints
    ported = [e for e in eps if e.port]
    portless = [e for e in eps if not e.port and e.mac]
    t.add_set(NSet("vm_ports", "ifname", sorted({Q(e.port) for e in ported}), comment="host ports of VM NICs"))
    t.add_set(
        NSet(
            "port_mark",
            "ifname",
            [[Q(e.port), e.mark] for e in sorted(ported, key=lambda e: e.port)],
            map="mark",
            comment="VM port -> packet mark",
        )
    )
    if portless:
        t.add_set(
            NSet(
                "mac_mark",
                "ether_addr",
                [[e.mac, e.mark] for e in sorted(portless, key=lambda e: e.mac)],
                map="mark",
                comment="VM MAC -> packet mark (host port unknown)",
            )
        )
    qmacs = sorted({e.mac for e in eps if e.vm in res.quarantined and e.mac})
    t.add_set(NSet("quarantine_macs", "ether_addr", qmacs, comment="quarantined VMs"))

    t.chains.append(NChain("prerouting", "prerouting", -300))
    t.chains.append(NChain("forward", "forward", -200))
    t.rule(
        "prerouting",
        {"mangle": {"key": meta("mark"), "value": {"map": {"key": meta("iifname"), "data": "@port_mark"}}}},
        comment="mark frames with the VM port they entered on",
    )
    if portless:
        t.rule(
            "prerouting",
            match(meta("iifname"), "@vm_ports", "!="),
            {"mangle": {"key": meta("mark"), "value": {"map": {"key": pl("ether", "saddr"), "data": "@mac_mark"}}}},
            comment="VMs whose host port is unknown: mark by source MAC",
        )
    t.rule(
        "prerouting",
        match(pl("ether", "saddr"), "@quarantine_macs"),
        {"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), QUARANTINE_BIT]}}},
        comment="quarantine bit",
    )
    t.drop("forward", match(pl("ether", "saddr"), "@quarantine_macs"), comment="quarantined VM: no bridged traffic out")
    t.drop("forward", match(pl("ether", "daddr"), "@quarantine_macs"), comment="quarantined VM: no bridged traffic in")
    if res.policy.defaults.anti_spoofing:
        _antispoof_by_port(t, sorted(ported, key=lambda e: e.port))
        if portless:
            _antispoof_by_mac(t, portless)
    return t


def _antispoof_by_port(t: NTable, guarded: list[Endpoint]) -> None:
    """Chain ``antispoof``: a frame from a VM port may carry only the port's own MAC and addresses, and no
    DHCP server answer, router advertisement or other layer-2 protocol."""
    t.add_set(NSet("guarded_ports", "ifname", [Q(e.port) for e in guarded]))
    t.add_set(NSet("mac_ports", "ifname", [Q(e.port) for e in guarded if e.mac]))
    t.add_set(NSet("port_mac", ["ifname", "ether_addr"], [cat(Q(e.port), e.mac) for e in guarded if e.mac]))
    t.add_set(NSet("ip4_ports", "ifname", [Q(e.port) for e in guarded if e.ip4]))
    t.add_set(NSet("port_ip4", ["ifname", "ipv4_addr"], [cat(Q(e.port), ip) for e in guarded for ip in e.ip4]))
    t.add_set(NSet("noip6_ports", "ifname", [Q(e.port) for e in guarded if not e.ipv6]))
    v6 = [e for e in guarded if e.ipv6]
    if v6:
        t.add_set(NSet("ip6_ports", "ifname", [Q(e.port) for e in v6]))
        t.add_set(NSet("port_ip6", ["ifname", "ipv6_addr"], [cat(Q(e.port), ip) for e in v6 for ip in e.ip6]))
    chain = "antispoof"
    t.chains.append(NChain(chain))
    t.rule("prerouting", match(meta("iifname"), "@guarded_ports"), jump(chain), comment="anti-spoofing on VM ports")
    t.drop(
        chain,
        match(meta("iifname"), "@mac_ports"),
        match(cat(meta("iifname"), pl("ether", "saddr")), "@port_mac", "!="),
        comment="MAC spoofing: source MAC is not the port's",
    )
    t.drop(
        chain,
        match(meta("iifname"), "@mac_ports"),
        match(cat(meta("iifname"), pl("arp", "saddr ether")), "@port_mac", "!="),
        comment="ARP spoofing: sender MAC is not the port's",
    )
    t.drop(
        chain,
        match(meta("iifname"), "@ip4_ports"),
        match(pl("arp", "saddr ip"), "0.0.0.0", "!="),
        match(cat(meta("iifname"), pl("arp", "saddr ip")), "@port_ip4", "!="),
        comment="ARP spoofing: sender IP is not the port's",
    )
    t.rule(
        chain,
        match(pl("ip", "saddr"), "0.0.0.0"),
        match(pl("udp", "sport"), 68),
        match(pl("udp", "dport"), 67),
        RETURN,
        comment="DHCP client without an address yet",
    )
    t.drop(
        chain,
        match(meta("iifname"), "@ip4_ports"),
        match(cat(meta("iifname"), pl("ip", "saddr")), "@port_ip4", "!="),
        comment="IPv4 source spoofing",
    )
    t.drop(chain, match(pl("udp", "sport"), aset([67, 547])), comment="DHCP server answers from a VM")
    t.drop(
        chain,
        match(meta("iifname"), "@noip6_ports"),
        match(pl("ether", "type"), "ip6"),
        comment="IPv6 is not enabled for this VM",
    )
    if v6:
        t.drop(
            chain,
            match(pl("ip6", "saddr"), "::"),
            match(
                pl("icmpv6", "type"), aset(["nd-neighbor-solicit", "mld-listener-report", "mld2-listener-report"]), "!="
            ),
            comment="unspecified source only for DAD and MLD",
        )
        t.drop(
            chain,
            match(meta("iifname"), "@ip6_ports"),
            match(pl("ip6", "saddr"), "::", "!="),
            match(cat(meta("iifname"), pl("ip6", "saddr")), "@port_ip6", "!="),
            comment="IPv6 source spoofing",
        )
        for e in v6:
            targets = sorted(hex(int(ipaddress.IPv6Address(x))) for x in e.ip6)
            t.drop(
                chain,
                match(meta("iifname"), Q(e.port)),
                match(pl("icmpv6", "type"), "nd-neighbor-advert"),
                match(raw("th", 64, 128), aset(targets), "!="),
                comment=f"ND spoofing: {e.label} advertises an address that is not its own",
            )
    t.drop(
        chain,
        match(pl("icmpv6", "type"), aset(["nd-router-advert", "nd-redirect"])),
        comment="router advertisements and redirects from a VM",
    )
    t.drop(
        chain,
        match(pl("ether", "type"), aset(["ip", "arp", "ip6"]), "!="),
        comment="other layer-2 protocols and VLAN tags from a VM",
    )


def _antispoof_by_mac(t: NTable, portless: list[Endpoint]) -> None:
    """Chain ``antispoof_mac``: VMs whose host port is unknown, guarded by their source MAC instead (so
    MAC spoofing itself cannot be caught for them)."""
    t.add_set(NSet("guarded_macs", "ether_addr", sorted({e.mac for e in portless})))
    t.add_set(NSet("ip4_macs", "ether_addr", sorted({e.mac for e in portless if e.ip4})))
    t.add_set(NSet("mac_ip4", ["ether_addr", "ipv4_addr"], [cat(e.mac, ip) for e in portless for ip in e.ip4]))
    t.add_set(NSet("noip6_macs", "ether_addr", sorted({e.mac for e in portless if not e.ipv6})))
    chain = "antispoof_mac"
    t.chains.append(NChain(chain))
    t.rule(
        "prerouting",
        match(meta("iifname"), "@vm_ports", "!="),
        match(pl("ether", "saddr"), "@guarded_macs"),
        jump(chain),
        comment="anti-spoofing by MAC for VMs whose host port is unknown",
    )
    t.drop(
        chain,
        match(pl("ether", "saddr"), "@ip4_macs"),
        match(pl("arp", "saddr ip"), "0.0.0.0", "!="),
        match(cat(pl("ether", "saddr"), pl("arp", "saddr ip")), "@mac_ip4", "!="),
        comment="ARP spoofing: sender IP is not this MAC's",
    )
    t.rule(
        chain,
        match(pl("ip", "saddr"), "0.0.0.0"),
        match(pl("udp", "dport"), 67),
        RETURN,
        comment="DHCP client without an address yet",
    )
    t.drop(
        chain,
        match(pl("ether", "saddr"), "@ip4_macs"),
        match(cat(pl("ether", "saddr"), pl("ip", "saddr")), "@mac_ip4", "!="),
        comment="IPv4 source spoofing",
    )
    t.drop(
        chain,
        match(pl("ether", "saddr"), "@noip6_macs"),
        match(pl("ether", "type"), "ip6"),
        comment="IPv6 is not enabled for this VM",
    )
    t.drop(chain, match(pl("udp", "sport"), aset([67, 547])), comment="DHCP server answers from a VM")
    t.drop(
        chain,
        match(pl("icmpv6", "type"), aset(["nd-router-advert", "nd-redirect"])),
        comment="router advertisements and redirects from a VM",
    )


def _prefix_elems(cidrs: list[str]) -> list:
    out = []
    for c in cidrs:
        n = ipaddress.ip_network(c)
        if n.prefixlen == n.max_prefixlen:
            out.append(str(n.network_address))
        else:
            out.append({"prefix": {"addr": str(n.network_address), "len": n.prefixlen}})
    return out


def _inet_table(res: Resolved, caps: Caps, table: str, warnings: list[Problem]) -> NTable:
    t = NTable("inet", table)
    fams = ["ip", "ip6"] if res.has_ipv6 else ["ip"]
    v6 = res.has_ipv6
    ip4 = lambda eps: sorted({a for e in eps for a in e.ip4}, key=ipaddress.ip_address)
    ip6 = lambda eps: sorted({a for e in eps for a in e.ip6}, key=ipaddress.ip_address)

    t.add_set(NSet("vm_ip4", "ipv4_addr", ip4(res.endpoints), comment="every VM address"))
    if v6:
        t.add_set(NSet("vm_ip6", "ipv6_addr", ip6(res.endpoints)))
    q_eps = res.endpoints_of(res.quarantined)
    t.add_set(NSet("quarantine_ip4", "ipv4_addr", ip4(q_eps), comment="quarantined VMs"))
    if v6:
        t.add_set(NSet("quarantine_ip6", "ipv6_addr", ip6(q_eps)))

    # selector sets, created on first use
    made: dict[tuple, str] = {}

    def src_set(sel: Sel) -> str:
        key = ("marks", sel.kind, sel.name)
        if key not in made:
            name = _setname("z" if sel.kind == "zone" else "j", sel.name, "marks")
            made[key] = t.add_set(
                NSet(name, "mark", sorted({e.mark for e in res.sel_endpoints(sel)}), comment=f"marks of {sel.text()}")
            )
        return made[key]

    def dst_set(sel: Sel, fam: str) -> str:
        if sel.kind == "any-vm":
            return "@vm_ip4" if fam == "ip" else "@vm_ip6"
        key = ("addr", sel.kind, sel.name, fam)
        if key not in made:
            name = _setname("z" if sel.kind == "zone" else "j", sel.name, "ip4" if fam == "ip" else "ip6")
            eps = res.sel_endpoints(sel)
            made[key] = t.add_set(
                NSet(
                    name,
                    "ipv4_addr" if fam == "ip" else "ipv6_addr",
                    ip4(eps) if fam == "ip" else ip6(eps),
                    comment=f"addresses of {sel.text()}",
                )
            )
        return made[key]

    def role_set(role: str, fam: str) -> str | None:
        key = ("role", role, fam)
        if key not in made:
            cidrs = [c for c in res.role_sources[role] if ipaddress.ip_network(c).version == (4 if fam == "ip" else 6)]
            if not cidrs:
                made[key] = None
            else:
                made[key] = t.add_set(
                    NSet(
                        _setname("r", role, "src4" if fam == "ip" else "src6"),
                        "ipv4_addr" if fam == "ip" else "ipv6_addr",
                        _prefix_elems(cidrs),
                        flags=["interval"],
                        comment=f"sources of role {role}",
                    )
                )
        return made[key]

    for name in ("input", "forward"):
        t.chains.append(NChain(name, name, 0))
    for name in ("quarantined", "vm_to_host", "ext_to_host", "vm_fwd", "ext_to_vm"):
        t.chains.append(NChain(name))

    vm_mark = mark_prefix(MARK_BASE, MARK_PREFIX_MASK)
    q_mark = mark_prefix(MARK_BASE | QUARANTINE_BIT, MARK_PREFIX_MASK | QUARANTINE_BIT)
    est = match(ct("state"), ["established", "related"], "in")
    # input
    t.rule("input", match(meta("iifname"), Q("lo")), ACCEPT)
    t.rule("input", q_mark, jump("quarantined"), comment="from a quarantined VM")
    t.rule("input", est, ACCEPT)
    t.rule("input", vm_mark, jump("vm_to_host"), comment="from a VM port")
    t.rule("input", jump("ext_to_host"), comment="from anything else")
    # forward
    t.drop("forward", match(pl("ip", "daddr"), "@quarantine_ip4"), comment="to a quarantined VM")
    if v6:
        t.drop("forward", match(pl("ip6", "daddr"), "@quarantine_ip6"), comment="to a quarantined VM")
    t.drop("forward", q_mark, comment="from a quarantined VM")
    t.rule("forward", est, ACCEPT)
    t.rule("forward", vm_mark, jump("vm_fwd"), comment="from a VM port")
    t.rule("forward", match(pl("ip", "daddr"), "@vm_ip4"), jump("ext_to_vm"), comment="from outside to a VM")
    if v6:
        t.rule("forward", match(pl("ip6", "daddr"), "@vm_ip6"), jump("ext_to_vm"), comment="from outside to a VM")
    # quarantined VMs: replies to what the host started, and the forensics service
    t.rule("quarantined", match(ct("direction"), "reply"), ACCEPT, comment="replies to connections the host opened")
    if res.policy.defaults.forensics:
        t.rule(
            "quarantined",
            *_service(res.policy.defaults.forensics),
            COUNTER,
            ACCEPT,
            comment="forensics service on the host",
        )
    t.drop("quarantined", comment="quarantine")
    if v6:
        t.rule(
            "vm_to_host",
            match(
                pl("icmpv6", "type"),
                aset(
                    [
                        "nd-neighbor-solicit",
                        "nd-neighbor-advert",
                        "nd-router-solicit",
                        "mld-listener-report",
                        "mld2-listener-report",
                    ]
                ),
            ),
            ACCEPT,
            comment="IPv6 neighbour discovery",
        )

    for chain in ("vm_to_host", "ext_to_host", "vm_fwd", "ext_to_vm"):
        rules = res.chain(chain)
        for i, r in enumerate(rules):
            last = i == len(rules) - 1
            for expr in _expand(r, chain, last, fams, src_set, dst_set, role_set, res, caps, warnings):
                t.rule(chain, *expr, comment=r.why)
    return t


def _service(svc: Service | None) -> list:
    if svc is None or svc.proto == "any":
        return []
    if svc.proto == "icmp":
        return [match(meta("l4proto"), aset(["icmp", "ipv6-icmp"]))]
    if not svc.ports:
        return [match(meta("l4proto"), svc.proto)]
    if len(svc.ports) == 1 and svc.ports[0][0] == svc.ports[0][1]:
        return [match(pl(svc.proto, "dport"), svc.ports[0][0])]
    return [match(pl(svc.proto, "dport"), aset(a if a == b else rng(a, b) for a, b in svc.ports))]


def _expand(
    r: Rule,
    chain: str,
    last: bool,
    fams,
    src_set,
    dst_set,
    role_set,
    res: Resolved,
    caps: Caps,
    warnings: list[Problem],
) -> list[list]:
    verdict = [COUNTER, ACCEPT if r.action == "accept" else DROP]
    svc = _service(r.service)
    # the last rule of a chain is its default: unconditional
    if last:
        return [svc + verdict]
    src_common: list = []
    if r.src.kind in ("zone", "jump"):
        src_common = [match(meta("mark"), src_set(r.src))]
    pieces: list[list] = [[]]
    if r.window is not None:
        if not caps.meta_time:
            warnings.append(
                Problem(
                    "warning",
                    f"{r.why}: this kernel cannot match time of day (meta hour): the "
                    f"rule is left out, so the role is denied at all times",
                    res.policy.file,
                    r.line,
                )
            )
            return []
        pieces = []
        for p in res.windows[r.role]:
            hours = p.nft_hours()
            right = rng(Q(hours[0][0]), Q(hours[0][1])) if len(hours) == 1 else aset(rng(Q(a), Q(b)) for a, b in hours)
            ms = [match(meta("hour"), right)]
            days = p.nft_days()
            if days:
                ms.append(match(meta("day"), aset(days) if len(days) > 1 else days[0]))
            pieces.append(ms)
    fam_specific = (
        r.src.kind == "role"
        or r.dst.kind in ("zone", "jump", "external")
        or (r.dst.kind == "any-vm" and chain == "vm_fwd")
    )
    out = []
    for fam in fams if fam_specific else [None]:
        fm: list = []
        if r.src.kind == "role":
            s = role_set(r.src.name, fam)
            if s is None:
                continue
            fm.append(match(pl(fam, "saddr"), s))
        if r.dst.kind in ("zone", "jump") or (r.dst.kind == "any-vm" and chain == "vm_fwd"):
            fm.append(match(pl(fam, "daddr"), dst_set(r.dst, fam)))
        elif r.dst.kind == "external":
            fm.append(match(pl(fam, "daddr"), dst_set(Sel("any-vm"), fam), "!="))
        for win in pieces:
            out.append(src_common + fm + svc + win + verdict)
    return out
