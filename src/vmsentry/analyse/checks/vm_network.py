"""How each NIC is attached, and whether a guest can lie on the layer-2 segment it shares."""

from __future__ import annotations

from collections import Counter

from vmsentry.analyse.checks import check, fail, not_applicable, passed, unknown
from vmsentry.model import VM

# modes where the guest shares an Ethernet segment with other guests or the host bridge
SHARED_SEGMENT_MODES = ("nat", "bridged", "routed", "isolated", "open", "host-only", "internal", "private")


def _nic_text(nic) -> str:
    where = nic.network or nic.bridge or nic.detail or nic.type or "?"
    return f"{nic.id} {nic.mode} via {where}"


@check("nic_mode_resolved")
def nic_mode_resolved(vm: VM, ctx):
    if not vm.nics:
        return not_applicable("no NICs")
    out = []
    for nic in vm.nics:
        if nic.mode == "unknown":
            why = (
                f"network {nic.network!r} was not read: add its definition (virsh net-dumpxml) or --libvirt"
                if nic.network
                else f"attachment type {nic.type!r} depends on host-side set-up"
            )
            out.append(unknown(why, "interface", locator=nic.locator))
    return out or passed("interface", ", ".join(_nic_text(n) for n in vm.nics))


def _mode_rule(vm: VM, modes: tuple[str, ...], what: str):
    if not vm.nics:
        return not_applicable("no NICs")
    out = [fail("interface", _nic_text(n), locator=n.locator) for n in vm.nics if n.mode in modes and n.connected]
    if out:
        return out
    if any(n.mode == "unknown" for n in vm.nics):
        return unknown(f"a NIC's mode could not be resolved, so {what} cannot be ruled out", "interface")
    return passed("interface", ", ".join(_nic_text(n) for n in vm.nics))


@check("nic_bridged_to_lan")
def nic_bridged_to_lan(vm: VM, ctx):
    return _mode_rule(vm, ("bridged",), "a bridged attachment")


@check("nic_direct_macvtap")
def nic_direct_macvtap(vm: VM, ctx):
    return _mode_rule(vm, ("direct",), "a macvtap attachment")


@check("nic_passthrough")
def nic_passthrough(vm: VM, ctx):
    return _mode_rule(vm, ("passthrough",), "a passthrough NIC")


@check("nic_open_or_routed_network")
def nic_open_or_routed_network(vm: VM, ctx):
    return _mode_rule(vm, ("open", "routed"), "an open or routed network")


@check("nic_without_spoof_filter")
def nic_without_spoof_filter(vm: VM, ctx):
    nics = [n for n in vm.nics if n.mode in SHARED_SEGMENT_MODES]
    if not nics:
        if any(n.mode == "unknown" for n in vm.nics):
            return unknown("NIC mode unresolved", "interface")
        return not_applicable("no NIC on a shared segment")
    out = []
    for n in nics:
        if n.spoof_protection is False:
            out.append(
                fail(
                    "filterref",
                    f"{_nic_text(n)}: no anti-spoofing filter"
                    + (f" (filter {n.filter} does not block MAC and IP spoofing)" if n.filter else ""),
                    locator=n.locator,
                )
            )
        elif n.spoof_protection is None:
            out.append(
                unknown(
                    f"{_nic_text(n)}: filter {n.filter!r} was not read; cannot tell whether it blocks spoofing",
                    "filterref",
                    locator=n.locator,
                )
            )
    return out or passed("filterref", ", ".join(f"{n.id}={n.filter}" for n in nics))


@check("nic_filter_ip_learning")
def nic_filter_ip_learning(vm: VM, ctx):
    nics = [n for n in vm.nics if n.filter]
    if not nics:
        return not_applicable("no NIC with a traffic filter")
    out = []
    for n in nics:
        params = n.filter_params
        if "IP" in params or str(params.get("CTRL_IP_LEARNING", "")).lower() == "none":
            continue
        out.append(
            fail("filterref/parameter[@name='IP']", f"{n.id}: {n.filter} without IP (learning mode)", locator=n.locator)
        )
    return out or passed("filterref/parameter", ", ".join(f"{n.id}: IP={n.filter_params.get('IP')}" for n in nics))


@check("nic_trust_guest_rx_filters")
def nic_trust_guest_rx_filters(vm: VM, ctx):
    keys = [k for k in vm.facts if k.startswith("libvirt.interface.") and k.endswith(".trustGuestRxFilters")]
    if not keys:
        return passed("trustGuestRxFilters", "absent (no)")
    out = [
        fail("trustGuestRxFilters", vm.facts[k]["value"], locator=vm.facts[k]["at"])
        for k in keys
        if vm.facts[k]["value"] == "yes"
    ]
    return out or passed("trustGuestRxFilters", "no")


@check("nic_shared_segment_not_isolated")
def nic_shared_segment_not_isolated(vm: VM, ctx):
    nics = [n for n in vm.nics if n.mode in SHARED_SEGMENT_MODES and (n.network or n.bridge)]
    if not nics:
        return not_applicable("no NIC on a shared network or bridge")
    neighbours = _segment_members(ctx)
    out = []
    for n in nics:
        seg = _segment(n, vm)
        others = neighbours.get(seg, 0) - 1
        if others > 0 and n.port_isolated is not True:
            out.append(
                fail("port/@isolated", f"{_nic_text(n)} shares it with {others} other VM NIC(s)", locator=n.locator)
            )
    return out or passed("port/@isolated", ", ".join(f"{n.id}: isolated={n.port_isolated}" for n in nics))


def _segment(nic, vm: VM) -> tuple[str | None, str]:
    return (vm.host, f"net:{nic.network}" if nic.network else f"br:{nic.bridge}")


def _segment_members(ctx) -> Counter:
    """How many VM NICs sit on each (host, network or bridge): computed once per scan."""
    if "segment_members" not in ctx.memo:
        ctx.memo["segment_members"] = Counter(
            _segment(n, vm)
            for vm in ctx.inventory.vms
            for n in vm.nics
            if n.mode in SHARED_SEGMENT_MODES and (n.network or n.bridge)
        )
    return ctx.memo["segment_members"]
