"""Host predicates on kernel settings (sysctls) of a Linux KVM host: forwarding and whether the firewall
filters it, bridge netfilter, reverse-path filtering, ARP, router advertisements, redirects and source
routing. They read ``Host.sysctls`` and, for context, the networks and VMs of the same scan, so that
settings which are required by design (IP forwarding on a NAT host) are only reported when they really
expose something.

Every group of facts may be ``None`` (not collected): a predicate then answers ``unknown`` and says which
fact is missing. It never answers ``pass`` for something it could not see.
"""

from __future__ import annotations

from typing import Any

from vmsentry.analyse.addresses import is_loopback, parse_ip
from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.checks.host_facts import needs, with_guest_bridges
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import bridge_filtering, forward_state, guest_bridges, host_addresses, on_host
from vmsentry.model import Host, sysctl_path


def sysctl_fail(name: str, value: Any, message: str) -> Outcome:
    return fail(name, value, file=sysctl_path(name), locator=name, message=message)


def sysctl_pass(name: str, value: Any, message: str | None = None) -> Outcome:
    return passed(name, value, file=sysctl_path(name), locator=name, message=message)


@check("host_ipv4_forward_unfiltered")
@needs("sysctls", "sysctl values")
def ipv4_forward_unfiltered(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = host.sysctls
    keys = [k for k in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding") if k in sysctl]
    if not keys:
        return unknown("net.ipv4.ip_forward not in the collected sysctls", "net.ipv4.ip_forward")
    on_keys = [k for k in keys if host.sysctl_int(k) == 1]
    if not on_keys:
        return sysctl_pass(keys[0], sysctl[keys[0]], "IPv4 forwarding is off: the host routes no guest traffic")
    key = on_keys[0]
    fw = host.firewall
    if fw is None:
        return unknown(
            "IPv4 forwarding is on; whether FORWARD is filtered is unknown: firewall facts not collected",
            key,
            file=sysctl_path(key),
        )
    state, why = forward_state(fw)
    routed = [n.name for n in ctx.inventory.networks if n.mode == "routed" and on_host(ctx, host, n)]
    note = f"; routed networks {', '.join(routed)} admit LAN-initiated traffic by design" if routed else ""
    if state == "filtered":
        return sysctl_pass(
            key, sysctl[key], f"forwarding on (required for NAT/routed guests) and filtered: {why}{note}"
        )
    if state == "unfiltered":
        return sysctl_fail(
            key,
            sysctl[key],
            f"forwarding on and nothing filters it: {why}; the host routes "
            f"any guest traffic to any network it reaches{note}",
        )
    return unknown(f"IPv4 forwarding is on; FORWARD filtering undetermined: {why}", key, file=sysctl_path(key))


@check("host_ipv6_forward_unfiltered")
@needs("sysctls", "sysctl values")
def ipv6_forward_unfiltered(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = host.sysctls
    key = "net.ipv6.conf.all.forwarding"
    if key not in sysctl:
        return unknown(f"{key} not in the collected sysctls (IPv6 may be disabled)", key)
    if host.sysctl_int(key) != 1:
        return sysctl_pass(key, sysctl[key], "IPv6 forwarding is off")
    fw = host.firewall
    if fw is None:
        return unknown("IPv6 forwarding is on; firewall facts not collected", key, file=sysctl_path(key))
    state, why = forward_state(fw, v6=True)
    if state == "filtered":
        return sysctl_pass(key, sysctl[key], f"IPv6 forwarding on and filtered: {why}")
    if state == "unfiltered":
        return sysctl_fail(key, sysctl[key], f"IPv6 forwarding on and nothing filters it: {why}")
    return unknown(f"IPv6 forwarding is on; {why}", key, file=sysctl_path(key))


_BRNF = (
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.bridge.bridge-nf-call-arptables",
)


@check("host_bridge_nf_call")
@with_guest_bridges("sysctls", "sysctl values")
def bridge_nf_call(host: Host, ctx: ScanContext, sysctl, bridges) -> Outcome | list[Outcome]:
    host_bridged = {n: gb for n, gb in bridges.items() if not gb.gateway}
    if not bridges:
        return not_applicable("no bridge carries guests")
    if not host_bridged:
        return not_applicable(
            "guests are only on libvirt NAT/isolated/routed bridges "
            f"({', '.join(sorted(bridges))}), where libvirt's own FORWARD rules already accept "
            "traffic between guests of one network"
        )
    fw = host.firewall
    if fw is not None:
        if bridge_filtering(fw):
            return passed(
                "firewall.nftables",
                "bridge family table",
                message="an nftables bridge-family table filters bridged frames regardless of bridge-nf-call",
            )
        state, why = forward_state(fw)
        if state == "unfiltered":
            return not_applicable(
                f"FORWARD has no rules ({why}): bridge-nf-call would change nothing; "
                "see the forwarding and firewall rules"
            )
    out: list[Outcome] = []
    names = ", ".join(sorted(host_bridged))
    for key in _BRNF:
        value = sysctl.get(key)
        if value is None:
            out.append(
                fail(
                    key,
                    None,
                    file=sysctl_path(key),
                    locator=key,
                    message=f"{key} absent: br_netfilter not loaded, so frames bridged on {names} never "
                    "reach the host's iptables/ip6tables/arptables rules",
                )
            )
        elif host.sysctl_int(key) == 0:
            out.append(
                sysctl_fail(
                    key,
                    value,
                    f"frames bridged between guests/LAN on {names} bypass the host's "
                    f"{key.rsplit('-', 1)[1]} FORWARD rules",
                )
            )
    if not out:
        return sysctl_pass(_BRNF[0], sysctl.get(_BRNF[0]), f"bridged frames on {names} traverse the host firewall")
    return out


@check("host_rp_filter")
@needs("sysctls", "sysctl values")
def rp_filter(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = host.sysctls
    all_v = host.sysctl_int("net.ipv4.conf.all.rp_filter")
    if all_v is None:
        return unknown("net.ipv4.conf.all.rp_filter not collected", "net.ipv4.conf.all.rp_filter")
    bridges = guest_bridges(host, ctx)
    out: list[Outcome] = []
    checked = False
    for name in sorted(bridges):
        key = f"net.ipv4.conf.{name}.rp_filter"
        own = host.sysctl_int(key)
        if own is None:
            continue
        checked = True
        eff = max(all_v, own)
        if eff == 0:
            out.append(
                sysctl_fail(
                    key,
                    sysctl[key],
                    f"effective rp_filter on guest bridge {name} is 0 "
                    "(max of all and the bridge): spoofed guest sources accepted",
                )
            )
    if not checked:
        dkey = "net.ipv4.conf.default.rp_filter"
        dflt = host.sysctl_int(dkey)
        if dflt is None:
            if all_v == 0:
                return sysctl_fail(
                    "net.ipv4.conf.all.rp_filter",
                    sysctl["net.ipv4.conf.all.rp_filter"],
                    "rp_filter off for all interfaces (per-interface values not collected)",
                )
            return sysctl_pass("net.ipv4.conf.all.rp_filter", sysctl["net.ipv4.conf.all.rp_filter"])
        if max(all_v, dflt) == 0:
            return sysctl_fail(
                dkey, sysctl[dkey], "rp_filter is 0 in all and default: new (guest) bridges do no source validation"
            )
        return sysctl_pass(dkey, sysctl[dkey], f"effective rp_filter {max(all_v, dflt)}")
    return out or sysctl_pass(
        "net.ipv4.conf.all.rp_filter",
        sysctl["net.ipv4.conf.all.rp_filter"],
        f"source validation on guest bridges {', '.join(sorted(bridges))}",
    )


@check("host_arp_flux")
@needs("sysctls", "sysctl values")
def arp_flux(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = host.sysctls
    bridges = {n: gb for n, gb in guest_bridges(host, ctx).items() if gb.addresses}
    if not bridges:
        return not_applicable("the host has no address on a bridge that carries guests")
    ign_key, flt_key = "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_filter"
    ign, flt = host.sysctl_int(ign_key), host.sysctl_int(flt_key)
    per_bridge = [host.sysctl_int(f"net.ipv4.conf.{n}.arp_ignore") for n in bridges]
    if ign is None and flt is None:
        return unknown("arp_ignore/arp_filter not collected", ign_key)
    if (ign or 0) >= 1 or any((v or 0) >= 1 for v in per_bridge):
        return sysctl_pass(
            ign_key, sysctl.get(ign_key), "the host answers ARP only for addresses on the asking interface"
        )
    if (flt or 0) == 1:
        return sysctl_pass(flt_key, sysctl.get(flt_key))
    own = set().union(*(gb.addresses for gb in bridges.values()))
    others = sorted(
        a for a in host_addresses(host) - own if not is_loopback(a) and parse_ip(a) and parse_ip(a).version == 4
    )
    if not others:
        return not_applicable("the host has no IPv4 address besides those on the guest bridges")
    return sysctl_fail(
        ign_key,
        sysctl.get(ign_key),
        f"arp_ignore=0 and arp_filter=0: guests on {', '.join(sorted(bridges))} get ARP replies for "
        f"the host's other addresses ({', '.join(others[:4])})",
    )


@check("host_bridge_accept_ra")
@with_guest_bridges("sysctls", "sysctl values")
def bridge_accept_ra(host: Host, ctx: ScanContext, sysctl, bridges) -> Outcome | list[Outcome]:
    if not bridges:
        return not_applicable("no bridge carries guests")
    out: list[Outcome] = []
    seen = []
    for name in sorted(bridges):
        gb = bridges[name]
        dis = host.sysctl_int(f"net.ipv6.conf.{name}.disable_ipv6")
        if dis == 1:
            seen.append(f"{name}: IPv6 disabled")
            continue
        key = f"net.ipv6.conf.{name}.accept_ra"
        ra = host.sysctl_int(key)
        if ra is None:
            key = "net.ipv6.conf.default.accept_ra"
            ra = host.sysctl_int(key)
        if ra is None:
            if dis is None and "net.ipv6.conf.all.forwarding" not in sysctl:
                seen.append(f"{name}: no IPv6")
                continue
            out.append(unknown(f"accept_ra of guest bridge {name} not collected", f"net.ipv6.conf.{name}.accept_ra"))
            continue
        fwd = host.sysctl_int(f"net.ipv6.conf.{name}.forwarding")
        if fwd is None:
            fwd = host.sysctl_int("net.ipv6.conf.all.forwarding") or 0
        accepts = ra == 2 or (ra == 1 and fwd == 0)
        if accepts:
            lan = (
                " (bridge also has a physical uplink: the host may rely on LAN RAs; filter RAs from guest ports)"
                if gb.physical
                else ""
            )
            out.append(
                sysctl_fail(
                    key,
                    sysctl[key],
                    f"the host accepts IPv6 Router Advertisements on guest bridge "
                    f"{name} (accept_ra={ra}, forwarding={fwd}): a guest can set "
                    f"the host's IPv6 routes and addresses{lan}",
                )
            )
        else:
            seen.append(f"{name}: accept_ra={ra}, forwarding={fwd}")
    return out or passed("accept_ra", "; ".join(seen), message="no guest bridge accepts Router Advertisements")


@check("host_accept_redirects")
@needs("sysctls", "sysctl values")
def accept_redirects(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = host.sysctls
    a4, d4 = "net.ipv4.conf.all.accept_redirects", "net.ipv4.conf.default.accept_redirects"
    a6 = "net.ipv6.conf.all.accept_redirects"
    if all(k not in sysctl for k in (a4, d4, a6)):
        return unknown("accept_redirects sysctls not collected", a4)
    out: list[Outcome] = []
    fwd4 = host.sysctl_int("net.ipv4.ip_forward") == 1 or host.sysctl_int("net.ipv4.conf.all.forwarding") == 1
    va, vd = host.sysctl_int(a4), host.sysctl_int(d4)
    if va is not None or vd is not None:
        # kernel: with forwarding, both all and the interface must be on; without, either one suffices
        effective = (bool(va) and (vd is None or bool(vd))) if fwd4 else (bool(va) or bool(vd))
        if effective:
            key = a4 if va else d4
            out.append(
                sysctl_fail(
                    key,
                    sysctl[key],
                    "the host accepts ICMP redirects; a guest can rewrite the host's routes toward itself",
                )
            )
    fwd6 = host.sysctl_int("net.ipv6.conf.all.forwarding") == 1
    v6 = host.sysctl_int(a6)
    if v6 and not fwd6:
        out.append(sysctl_fail(a6, sysctl[a6], "the host accepts IPv6 redirects (forwarding off)"))
    if out:
        return out
    shown = a4 if a4 in sysctl else a6
    return sysctl_pass(shown, sysctl.get(shown))
