"""Configuration changes that matter between two readings of a VM or an inventory, and the ``config_drift``
alert for one.

``vm_changes(old, new)`` compares two readings of one VM (either may be None: the VM appeared or went);
``inventory_changes(old, new)`` pairs the VMs (by UUID, else platform and name) and networks of two
inventories and compares each pair. The watcher calls it after every libvirt event; ``vmsentry drift OLD
NEW`` calls it on two saved inventories. What counts: a NIC's network, mode, bridge or filter changed, a NIC
added or removed, a host listener added or moved to another address or authentication, a share or port
forward added, a VM or network appeared or went, a network's mode changed, and the VM's state (lifecycle,
not drift: ``is_drift`` tells them apart).

A listener's port alone is not compared: with ``autoport`` (the default for VNC and SPICE) libvirt picks
another port at every start, so a port-only change is noise; its address and authentication are what
decide who can connect.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from vmsentry.analyse.addresses import network_reachable
from vmsentry.model import VM, Inventory, Listener, Network, Nic
from vmsentry.model.alert import Alert
from vmsentry.model.drift import Change

ALERT_TYPE = "config_drift"
# modes that put a guest straight on a host LAN or route it there without NAT
EXPOSED_MODES = frozenset({"bridged", "open", "direct"})


def vm_changes(old: VM | None, new: VM | None) -> list[Change]:
    if old is None and new is None:
        return []
    if old is None:
        return [Change(new.name, "vm_added", None, _vm_value(new), _where(new))]
    if new is None:
        return [Change(old.name, "vm_removed", _vm_value(old), None, _where(old), where_before=_where(old))]
    name = new.name
    at, was_at = _where(new), _where(old)
    out: list[Change] = []
    if old.state and new.state and old.state != new.state:
        out.append(Change(name, "state", old.state, new.state, at, where_before=was_at))
    out.extend(_nic_changes(name, old.nics, new.nics, at, was_at))
    out.extend(_listener_changes(name, old.listeners, new.listeners, at, was_at))
    old_shares = {_share_value(s) for s in old.shares}
    for share in new.shares:
        value = _share_value(share)
        if value not in old_shares:
            out.append(Change(name, "share_added", None, value, _at(at, share.locator), item=share.guest_tag))
    old_forwards = {_forward_value(f) for f in old.forwards}
    for fwd in new.forwards:
        value = _forward_value(fwd)
        if value not in old_forwards:
            out.append(Change(name, "forward_added", None, value, _at(at, fwd.locator), item=fwd.nic))
    return out


def inventory_changes(old: Inventory | None, new: Inventory | None) -> list[Change]:
    old_vms = old.vms if old is not None else []
    new_vms = new.vms if new is not None else []
    out: list[Change] = []
    for before, after in _pairs(old_vms, new_vms):
        out.extend(vm_changes(before, after))
    old_nets = old.networks if old is not None else []
    new_nets = new.networks if new is not None else []
    for before, after in _pairs(old_nets, new_nets):
        out.extend(network_changes(before, after))
    return out


def network_changes(old: Network | None, new: Network | None) -> list[Change]:
    if old is None and new is None:
        return []
    if old is None:
        return [Change(new.name, "network_added", None, _network_value(new), _where(new), kind="network")]
    if new is None:
        where = _where(old)
        return [Change(old.name, "network_removed", _network_value(old), None, where, None, "network", where)]
    if old.mode != new.mode:
        return [Change(new.name, "network_mode", old.mode, new.mode, _where(new), None, "network", _where(old))]
    return []


def is_drift(change: Change) -> bool:
    """A configuration change (an alert and an audit entry), not a VM merely started or stopped."""
    return change.what != "state"


def drift_severity(change: Change) -> str:
    """high: a filter removed, a NIC (or a whole network) now bridged/open/direct onto the host's LAN, or a
    host listener that other machines can reach appeared; medium otherwise."""
    what, after = change.what, change.after
    if what == "nic_filter" and change.before and not after:
        return "high"
    if what in ("nic_mode", "network_mode") and after in EXPOSED_MODES and change.before not in EXPOSED_MODES:
        return "high"
    if what == "nic_added" and isinstance(after, dict) and after.get("mode") in EXPOSED_MODES:
        return "high"
    listener = what in ("listener_added", "listener_changed") and isinstance(after, dict)
    if listener and network_reachable(after.get("address"), after.get("transport") or "tcp"):
        return "high"
    return "medium"


def drift_alert(change: Change, ts: float) -> Alert:
    """One ``config_drift`` alert for one change; ``ts`` is when the change was seen."""
    vm = change.asset if change.kind == "vm" else None
    mac = _item_mac(change.item)
    attacker = {"mac": mac, "ip": None, "vm": vm}
    if change.kind == "network":
        attacker["network"] = change.asset
    alert = Alert(ALERT_TYPE, drift_severity(change), ts, attacker, 1.0, _summary(change), {"change": change.to_dict()})
    alert.seen(ts)
    return alert


# ---------------------------------------------------------------------------------------------- NICs
def _keyed(nics: list[Nic]) -> dict[tuple[str, int], Nic]:
    """NICs by MAC (by id when there is none); a MAC that repeats (copied definitions do) by its order."""
    out: dict[tuple[str, int], Nic] = {}
    seen: dict[str, int] = {}
    for nic in nics:
        key = nic.mac or f"id:{nic.id}"
        seen[key] = seen.get(key, -1) + 1
        out[(key, seen[key])] = nic
    return out


def _nic_item(nic: Nic) -> str:
    return f"{nic.id} {nic.mac}" if nic.mac else nic.id


def _item_mac(item: str | None) -> str | None:
    if not item:
        return None
    last = item.rsplit(" ", 1)[-1]
    return last if last.count(":") == 5 else None


def _filter_value(nic: Nic) -> str | None:
    if not nic.filter:
        return None
    params = " ".join(f"{k}={v}" for k, v in sorted(nic.filter_params.items()))
    return f"{nic.filter} {params}".strip()


def _nic_value(nic: Nic) -> dict:
    return {**_fields(nic, ("id", "mac", "mode", "network", "bridge")), "filter": _filter_value(nic)}


def _fields(record, names: tuple[str, ...]) -> dict:
    return {name: getattr(record, name) for name in names}


def _nic_changes(
    vm: str, old: list[Nic], new: list[Nic], at: str | None, was_at: str | None = None
) -> Iterator[Change]:
    before, after = _keyed(old), _keyed(new)
    for key, nic in after.items():
        prev = before.get(key)
        item = _nic_item(nic)
        where = _at(at, nic.locator)
        if prev is None:
            yield Change(vm, "nic_added", None, _nic_value(nic), where, item)
            continue
        was = _at(was_at, prev.locator)
        if prev.network != nic.network:
            yield Change(vm, "nic_network", prev.network, nic.network, where, item, where_before=was)
        elif prev.bridge != nic.bridge and prev.bridge and nic.bridge:
            # the network says the bridge when both name one; a bridge only on one side is the live XML
            # naming what the stored definition leaves to the network
            yield Change(vm, "nic_bridge", prev.bridge, nic.bridge, where, item, where_before=was)
        if prev.mode != nic.mode:
            yield Change(vm, "nic_mode", prev.mode, nic.mode, where, item, where_before=was)
        if _filter_value(prev) != _filter_value(nic):
            yield Change(vm, "nic_filter", _filter_value(prev), _filter_value(nic), where, item, where_before=was)
    for key, nic in before.items():
        if key not in after:
            # where: the old place (nothing new to point at), as for every removal
            was = _at(was_at or at, nic.locator)
            yield Change(vm, "nic_removed", _nic_value(nic), None, was, _nic_item(nic), where_before=was)


# ----------------------------------------------------------------------------------------- listeners
def _listener_value(listener: Listener) -> dict:
    return _fields(listener, ("kind", "transport", "address", "port", "auth", "tls"))


def _listener_identity(listener: Listener) -> tuple:
    return (listener.kind, listener.transport, listener.address, listener.auth, listener.tls)


def _listener_changes(
    vm: str, old: list[Listener], new: list[Listener], at: str | None, was_at: str | None = None
) -> Iterator[Change]:
    before = {_listener_identity(x) for x in old}
    after = {_listener_identity(x) for x in new}
    # a listener of the same kind and transport that went away is the one that moved
    gone = [x for x in old if _listener_identity(x) not in after]
    for listener in new:
        if _listener_identity(listener) in before:
            continue
        moved = next((g for g in gone if (g.kind, g.transport) == (listener.kind, listener.transport)), None)
        value = _listener_value(listener)
        if moved is not None:
            gone.remove(moved)
            was = _at(was_at or at, moved.locator)
            where = _at(at, listener.locator)
            yield Change(vm, "listener_changed", _listener_value(moved), value, where, listener.kind, where_before=was)
        else:
            yield Change(vm, "listener_added", None, value, _at(at, listener.locator), listener.kind)


# ------------------------------------------------------------------------------------------- values
def _share_value(share) -> str:
    mode = "rw" if share.writable else "ro"
    return f"{share.kind} {share.host_path or '?'} -> {share.guest_tag or '?'} ({mode})"


def _forward_value(fwd) -> str:
    host = f"{fwd.host_address or '*'}:{_span(fwd.host_ports)}"
    return f"{fwd.protocol} {host} -> guest {_span(fwd.guest_ports)}"


def _span(ports: list[int]) -> str:
    if not ports:
        return "?"
    return str(ports[0]) if len(ports) == 1 or ports[0] == ports[-1] else f"{ports[0]}-{ports[-1]}"


def _vm_value(vm: VM) -> dict:
    return {"platform": vm.platform, "uuid": vm.uuid, "state": vm.state, "nics": [_nic_value(n) for n in vm.nics]}


def _network_value(net: Network) -> dict:
    return {"platform": net.platform, "mode": net.mode, "bridge": net.bridge}


def _where(record: VM | Network) -> str | None:
    source = record.source
    return source.uri or source.file


def _at(source: str | None, locator: str | None) -> str | None:
    """The file or URI and the place in it: "qemu:///system#domain=web: line 24, /domain/devices/interface"."""
    if source and locator:
        return f"{source}: {locator}"
    return source or locator


def _pairs(old: Iterable, new: Iterable) -> Iterator[tuple]:
    """(old, new) records of the same asset: by UUID where both have one, else by platform and name; among
    several candidates (copied definitions share both), one read from the same file or URI first, then in
    order. (x, None) for a record that went, (None, y) for one that appeared."""
    new = list(new)
    by_uuid: dict[str, list] = {}
    by_name: dict[tuple, list] = {}
    for r in new:
        if getattr(r, "uuid", None):
            by_uuid.setdefault(r.uuid, []).append(r)
        by_name.setdefault((r.platform, r.name), []).append(r)
    matched: set[int] = set()
    for before in old:
        uuid = getattr(before, "uuid", None)
        free = [r for r in by_uuid.get(uuid, ()) if id(r) not in matched] if uuid else []
        if not free:
            free = [
                r
                for r in by_name.get((before.platform, before.name), ())
                if id(r) not in matched and not (uuid and getattr(r, "uuid", None))
            ]
        same_source = [r for r in free if _where(r) == _where(before)]
        after = (same_source or free or [None])[0]
        if after is not None:
            matched.add(id(after))
        yield before, after
    for after in new:
        if id(after) not in matched:
            yield None, after


# ------------------------------------------------------------------------------------------ summary
_WHAT = {
    "vm_added": "appeared",
    "vm_removed": "went away",
    "state": "changed state",
    "nic_added": "gained a NIC",
    "nic_removed": "lost a NIC",
    "nic_network": "NIC {item} moved to another network",
    "nic_mode": "NIC {item} changed mode",
    "nic_bridge": "NIC {item} moved to another bridge",
    "nic_filter": "NIC {item} changed filter",
    "listener_added": "gained a host listener",
    "listener_changed": "moved a host listener",
    "share_added": "gained a share",
    "forward_added": "gained a port forward",
    "network_added": "appeared",
    "network_removed": "went away",
    "network_mode": "changed mode",
}


def show_value(value) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        if "kind" in value and "transport" in value:  # a listener
            where = value.get("address") or "every address"
            port = f":{value['port']}" if value.get("port") is not None else ""
            return f"{value['kind']} on {value['transport']} {where}{port} (auth {value.get('auth')})"
        if "nics" in value:  # a VM that appeared or went
            nics = "; ".join(show_value(n) for n in value["nics"]) or "no NIC"
            state = f", {value['state']}" if value.get("state") else ""
            return f"{value.get('platform')} VM{state}: {nics}"
        if "mode" in value and "id" in value:  # a NIC
            on = value.get("network") or value.get("bridge") or "?"
            return f"{value.get('id')} {value.get('mac') or ''} {value['mode']} on {on}".replace("  ", " ")
        if "mode" in value:
            return f"{value['mode']} ({value.get('platform')})"
        return ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
    return str(value)


def describe(change: Change, *, where: bool = True) -> str:
    """One sentence: "vm web NIC net0 ... changed mode: nat -> bridged (read at ...)." (``where``: the
    place the new value was read, in brackets)."""
    text = _WHAT.get(change.what, change.what).format(item=change.item or "?")
    sentence = f"{change.kind} {change.asset} {text}: {show_value(change.before)} -> {show_value(change.after)}"
    if where and change.where:
        sentence += f" (read at {change.where})"
    return sentence + "."


def _summary(change: Change):
    sentence = describe(change)
    return lambda _alert: sentence
