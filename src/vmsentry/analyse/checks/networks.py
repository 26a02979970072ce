"""Virtual networks as a whole: forwarding mode, isolation between members, DNS and IPv6."""

from __future__ import annotations

from vmsentry.analyse.checks import check, fail, not_applicable, passed
from vmsentry.model import Network


def _fact(net: Network, key: str):
    fact = net.facts.get(key) or {}
    return fact.get("value"), fact.get("at") or net.locator


def _mode_is(net: Network, modes: tuple[str, ...]):
    value, at = _fact(net, "libvirt.forward.mode")
    if net.mode in modes:
        return fail("forward/@mode", value or net.mode, locator=at)
    return passed("forward/@mode", value or "none (isolated)", locator=at)


@check("network_open")
def network_open(net: Network, ctx):
    return _mode_is(net, ("open",))


@check("network_routed")
def network_routed(net: Network, ctx):
    return _mode_is(net, ("routed",))


@check("network_bridged")
def network_bridged(net: Network, ctx):
    return _mode_is(net, ("bridged", "direct"))


@check("network_hostdev")
def network_hostdev(net: Network, ctx):
    return _mode_is(net, ("passthrough",))


@check("network_members_not_isolated")
def network_members_not_isolated(net: Network, ctx):
    members = _members(ctx).get(net.name, 0)
    if members < 2:
        return not_applicable(f"{members} VM NIC(s) attached in this scan")
    if net.port_isolated:
        return passed("port/@isolated", "yes", locator=net.locator)
    return fail("port/@isolated", f"absent; {members} VM NICs can reach each other", locator=net.locator)


def _members(ctx) -> dict[str, int]:
    if "network_members" not in ctx.memo:
        counts: dict[str, int] = {}
        for vm in ctx.inventory.vms:
            for nic in vm.nics:
                if nic.network and nic.port_isolated is not True:
                    counts[nic.network] = counts.get(nic.network, 0) + 1
        ctx.memo["network_members"] = counts
    return ctx.memo["network_members"]


@check("network_dns_plain_names")
def network_dns_plain_names(net: Network, ctx):
    value, at = _fact(net, "libvirt.dns.forwardPlainNames")
    if not net.dns_servers:
        return not_applicable("no libvirt DNS service on this network")
    if value == "yes":
        return fail("dns/@forwardPlainNames", value, locator=at)
    return passed("dns/@forwardPlainNames", value or "absent (libvirt default: no)")


@check("network_dns_disabled")
def network_dns_disabled(net: Network, ctx):
    if net.mode not in ("nat", "routed", "isolated", "open") or not net.host_address:
        return not_applicable("no libvirt-managed addressing on this network")
    if net.dns_servers:
        return passed("dns", f"served by {', '.join(net.dns_servers)}")
    return fail("dns/@enable", "no", locator=net.locator)


@check("network_ipv6")
def network_ipv6(net: Network, ctx):
    v6 = [s for s in net.subnets if ":" in s]
    if net.ipv6 or v6:
        return fail("ip[@family='ipv6'] / @ipv6", ", ".join(v6) or "ipv6='yes'", locator=net.locator)
    return passed("ipv6", "not enabled")
