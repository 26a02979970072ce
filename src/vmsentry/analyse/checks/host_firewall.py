"""Host predicates on the firewall and the bridges of a Linux KVM host: is any ruleset loaded, which
interfaces sniff outside a bridge, and does the host's own address share a bridge with guests and the LAN.
They read ``Host.firewall``, ``Host.interfaces`` and ``Host.bridges``; a group not collected gives
``unknown``, never ``pass``.
"""

from __future__ import annotations

from vmsentry.analyse.addresses import parse_ip
from vmsentry.analyse.checks import Outcome, check, fail, passed, unknown
from vmsentry.analyse.checks.host_facts import needs, with_guest_bridges
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import leftovers_only, ruleset_present
from vmsentry.model import Host, Interface


@check("host_firewall_absent")
@needs("firewall", "firewall state")
def firewall_absent(host: Host, ctx: ScanContext) -> Outcome:
    fw = host.firewall
    backends = (("nftables", fw.nftables), ("iptables-legacy", fw.iptables_legacy))
    leftovers = [n for n, v in backends if v is not None and leftovers_only(v)]
    which = [n for n, v in backends if ruleset_present(v)]
    if which:
        return passed(
            "firewall",
            ", ".join(which),
            file="nft list ruleset",
            message=f"ruleset loaded ({', '.join(which)}); INPUT {_or(fw.input_policy, 'unknown')}, "
            f"FORWARD {_or(fw.forward_policy, 'unknown')} with {_or(fw.forward_rules, '?')} rules",
        )
    unread = [n for n, v in backends if v is None]
    if unread:
        return unknown(
            f"no rules in what was read, but the {' and '.join(unread)} ruleset could not be read",
            "firewall",
            file="nft list ruleset",
        )
    extra = (
        (
            f" ({', '.join(leftovers)} holds only jumps into libvirt's empty LIBVIRT_* chains, left behind "
            "when its networks stopped)"
        )
        if leftovers
        else ""
    )
    return fail(
        "firewall",
        "no filtering rule",
        file="nft list ruleset",
        message="neither nftables nor legacy iptables holds a filtering rule or a drop policy: nothing "
        f"filters guest-to-host or guest-to-LAN traffic{extra}",
    )


def _or(value: object, default: str) -> object:
    return default if value is None else value


def _bridge_ancestor(name: str, ifaces: dict[str, Interface], bridge_names: set[str]) -> str | None:
    seen = set()
    cur = ifaces[name].master if name in ifaces else None
    while cur and cur not in seen:
        seen.add(cur)
        if cur in bridge_names or (cur in ifaces and ifaces[cur].kind == "bridge") or cur == "ovs-system":
            return cur
        cur = ifaces[cur].master if cur in ifaces else None
    return None


@check("host_promiscuous_interfaces")
@needs("interfaces", "interfaces")
def promiscuous_interfaces(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    ifaces = {i.name: i for i in host.interfaces if i.name}
    bridge_names = {b.name for b in host.bridges or [] if b.name}
    bridge_names |= {n for n, i in ifaces.items() if i.kind == "bridge"}
    out: list[Outcome] = []
    expected = []
    for name, iface in sorted(ifaces.items()):
        promisc = iface.promiscuity
        if not isinstance(promisc, int) or promisc <= 0:
            continue
        anc = _bridge_ancestor(name, ifaces, bridge_names)
        if anc:
            expected.append(f"{name} (port of {anc})")
            continue
        out.append(
            fail(
                f"interfaces[{name}].promiscuity",
                promisc,
                file="ip -d link show",
                locator=name,
                message=f"{_or(iface.kind, 'interface')} {name} is promiscuous and not a bridge port: a "
                "capture tool or sniffer sees all traffic on it",
            )
        )
    if out:
        return out
    msg = "no promiscuous interface outside a bridge"
    if expected:
        msg += f"; bridge ports are promiscuous by design: {', '.join(expected[:6])}"
    return passed("interfaces.promiscuity", len(expected), file="ip -d link show", message=msg)


@check("host_mgmt_address_on_guest_bridge")
@with_guest_bridges("bridges", "bridges")
def mgmt_on_guest_bridge(host: Host, ctx: ScanContext, brs, bridges) -> Outcome | list[Outcome]:
    out: list[Outcome] = []
    for br in brs:
        name = br.name
        gb = bridges.get(name)
        if gb is None or gb.gateway or not br.physical_ports:
            continue
        addrs = [a for a in br.addresses or [] if parse_ip(a) and not parse_ip(a).is_link_local]
        if not addrs:
            continue
        out.append(
            fail(
                f"bridges[{name}].addresses",
                ", ".join(addrs),
                file="ip -d link show",
                locator=name,
                message=f"the host's own address sits on {name}, which bridges physical port(s) "
                f"{', '.join(br.physical_ports or [])} with guests ({'; '.join(gb.why[:3])}): "
                "guests share the L2 segment of the host's management traffic",
            )
        )
    return out or passed(
        "bridges",
        len(brs),
        file="ip -d link show",
        message="no host address on a bridge that joins guests to a physical network",
    )
