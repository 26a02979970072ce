"""After every input is read: join what one libvirt file says with what another says.

- host facts from several files (qemu.conf, libvirtd.conf, ``--host``) describe one host: merge them;
- a NIC on ``<source network='X'/>`` takes its real mode, bridge and isolation from network X, and so
  does a ``type='bridge'`` NIC on the bridge network X creates (``virbr0``);
- a graphics listener without an address takes qemu.conf's ``vnc_listen``/``spice_listen``
  (built-in 127.0.0.1) once qemu.conf was read, and its authentication from qemu.conf's TLS/SASL/
  password settings; ``network:X`` becomes X's host address;
- static DHCP leases name a NIC's address; snapshot documents join their domain.

This is platform knowledge (libvirt's defaults), so it lives in *collect*, not in the rules.
"""

from __future__ import annotations

import os

from vmsentry.model import VM, Host, Inventory, Network, NwFilter

# qemu.conf keys and their built-in defaults (libvirt src/qemu/qemu.conf.in)
_LISTEN_KEY = {"vnc": "vnc_listen", "websocket": "vnc_listen", "spice": "spice_listen", "rdp": "rdp_listen"}
_BUILTIN_LISTEN = "127.0.0.1"


def link(inv: Inventory) -> None:
    _merge_hosts(inv)
    _merge_snapshot_documents(inv)
    libvirt_networks = [n for n in inv.networks if n.platform == "libvirt"]
    views: dict[str | None, tuple[dict[str, Network], dict[str, Network]]] = {}
    confs = {h.name: conf for h in inv.hosts if (conf := _qemu_conf(h)) is not None}
    filters = {**BUILTIN_FILTERS, **{f.name: f for f in inv.nwfilters}}
    for vm in inv.vms:
        if vm.platform != "libvirt":
            continue
        if vm.host not in views:
            views[vm.host] = _network_view(libvirt_networks, vm.host)
        networks, own_bridges = views[vm.host]
        # the VM's own host's qemu.conf; one read for a single host applies to every VM (as before hosts
        # were told apart); with several, a VM of no known host has none
        qemu_conf = confs.get(vm.host) if vm.host in confs or len(confs) > 1 else next(iter(confs.values()), None)
        _resolve_nics(vm, networks, own_bridges, filters)
        _resolve_listeners(vm, networks, qemu_conf)
        _resolve_confinement(vm, qemu_conf, inv)


def _network_view(networks: list[Network], host: str | None) -> tuple[dict[str, Network], dict[str, Network]]:
    """Networks by name and the bridges they own, as a VM of ``host`` sees them: where two hosts define a
    network of the same name ("default"), its own host's wins (else the last read, as always)."""
    by_name = {n.name: n for n in sorted(networks, key=lambda n: host is not None and n.host == host)}
    own_bridges = {n.bridge: n for n in by_name.values() if n.bridge and n.mode in _OWNS_ITS_BRIDGE}
    return by_name, own_bridges


def merge_hosts_by_folder(inv: Inventory, origins: dict[int, str]) -> None:
    """Before the link pass, while the file each host was read from is known (``origins``: id(host) ->
    path): a host's configuration files (unnamed hosts: qemu.conf, libvirtd.conf) merge into the named
    host read from the nearest folder (``lab/host/qemu.conf`` into the host of ``lab/host/host-facts.json``),
    when one is nearer than every other. So a host keeps its name when another folder with another host
    is scanned beside it, instead of its settings going to a host called 'host'. Named hosts read twice
    under one name (the same facts file given twice) become one. With several named hosts, VMs and
    networks whose definition names no host are given the nearest one the same way."""
    named: dict[str, Host] = {}
    for host in inv.hosts:
        if host.name and id(host) in origins and host.name not in named:
            named[host.name] = host
    keep: list[Host] = []
    for host in inv.hosts:
        if host.name:
            first = named.get(host.name)
            if first is not None and first is not host and id(host) in origins:
                _merge_facts(first, host)
                continue
            keep.append(host)
            continue
        target = _nearest(origins.get(id(host)), [(h, origins[id(h)]) for h in named.values()])
        if target is None:
            keep.append(host)
        else:
            _merge_facts(target, host)
    inv.hosts = keep
    if len(named) > 1:
        # with one host, the rules take it as every VM's host anyway; with several, a VM or network read
        # from a file runs on the host read from its folder (its host facts then apply to it, as alone)
        candidates = [(h, origins[id(h)]) for h in named.values()]
        for record in [*inv.vms, *inv.networks]:
            if not record.host and record.source.file and not record.source.uri:
                target = _nearest(record.source.file, candidates)
                if target is not None:
                    record.host = target.name


def _nearest(path: str | None, candidates: list[tuple[Host, str]]) -> Host | None:
    """The candidate read from the folder sharing the most leading components with ``path``'s, if unique."""
    if path is None or not candidates:
        return None
    folder = _components(path)
    scored = sorted(((_shared(folder, _components(p)), i) for i, (_, p) in enumerate(candidates)), reverse=True)
    if len(scored) > 1 and scored[0][0] == scored[1][0]:
        return None
    return candidates[scored[0][1]][0]


def _components(path: str) -> list[str]:
    return os.path.dirname(os.path.abspath(path)).split(os.sep)


def _shared(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _merge_facts(target: Host, host: Host) -> None:
    for key, value in host.facts.items():
        if key == "collection_errors":
            target.facts.setdefault(key, []).extend(value)
        else:
            target.facts.setdefault(key, value)


def _merge_hosts(inv: Inventory) -> None:
    """Unnamed hosts (from config files) left after ``merge_hosts_by_folder`` merge into the named live
    host, or into one called 'host'."""
    unnamed = [h for h in inv.hosts if not h.name]
    if not unnamed:
        return
    named = [h for h in inv.hosts if h.name]
    target = named[0] if len(named) == 1 else Host(name="host", platform=unnamed[0].platform)
    for host in unnamed:
        _merge_facts(target, host)
    inv.hosts = named if target in named else named + [target]


def _merge_snapshot_documents(inv: Inventory) -> None:
    placeholders = [vm for vm in inv.vms if "libvirt.snapshot.only" in vm.facts]
    if not placeholders:
        return
    by_name = {vm.name: vm for vm in inv.vms if vm.platform == "libvirt" and "libvirt.snapshot.only" not in vm.facts}
    keep = []
    for vm in inv.vms:
        if vm in placeholders and vm.name in by_name:
            owner = by_name[vm.name]
            owner.snapshots.extend(vm.snapshots)
            owner.facts.update({k: v for k, v in vm.facts.items() if k != "libvirt.snapshot.only"})
        else:
            keep.append(vm)
    inv.vms = keep


def _qemu_conf(host: Host) -> dict | None:
    conf = host.facts.get("qemu_conf")
    return (conf.get("values") or {}) if isinstance(conf, dict) else None


def _resolve_nics(
    vm: VM, networks: dict[str, Network], own_bridges: dict[str, Network], filters: dict[str, NwFilter]
) -> None:
    for nic in vm.nics:
        nic.spoof_protection = _spoof_protection(nic.filter, filters)
        if nic.type == "bridge" and nic.bridge:
            # <interface type='bridge'><source bridge='virbr0'/> on a bridge a libvirt network read in this
            # run creates: the guest sits on that network (its NAT, DHCP and firewall), not on a host bridge
            # to the LAN. A host bridge no network owns stays "bridged".
            owner = own_bridges.get(nic.bridge)
            if owner is not None:
                nic.mode, nic.network = owner.mode, owner.name
                nic.detail = f"bridge {nic.bridge} belongs to libvirt network {owner.name} ({owner.mode})"
                if nic.port_isolated is None:
                    nic.port_isolated = owner.port_isolated
            continue
        if nic.type != "network" or not nic.network:
            continue
        net = networks.get(nic.network)
        if net is None:
            continue  # stays "unknown": the network definition was not read
        nic.mode = net.mode
        if nic.bridge is None and net.mode not in ("direct", "passthrough"):
            nic.bridge = net.bridge
        if nic.port_isolated is None:
            nic.port_isolated = net.port_isolated
        if nic.ip is None and nic.mac:
            leases = net.facts.get("libvirt.dhcp.hosts", {}).get("value") or {}
            nic.ip = leases.get(nic.mac)


# modes of networks whose bridge libvirt creates and owns (a forward mode='bridge' network uses a host bridge)
_OWNS_ITS_BRIDGE = ("nat", "routed", "isolated", "open")


def _spoof_protection(name: str | None, filters: dict[str, NwFilter]) -> bool | None:
    """True when the NIC's filter (with what it includes) stops MAC and IP spoofing; None when it
    names a filter whose definition was not read."""
    if not name:
        return False
    included = _filter_closure(name, filters)
    if included is None:
        return None
    return {"no-mac-spoofing", "no-ip-spoofing"} <= included


def _filter_closure(name: str, filters: dict[str, NwFilter], seen: frozenset[str] = frozenset()) -> set[str] | None:
    flt = filters.get(name)
    if flt is None:
        return None if not seen else {name}
    out = {name}
    for inc in flt.includes:
        if inc not in seen:
            out |= _filter_closure(inc, filters, seen | {name}) or {inc}
    return out


def _resolve_listeners(vm: VM, networks: dict[str, Network], qemu_conf: dict | None) -> None:
    for listener in vm.listeners:
        if listener.address == "default" and qemu_conf is not None and listener.kind in _LISTEN_KEY:
            if listener.kind in ("vnc", "websocket") and _on(qemu_conf.get("vnc_auto_unix_socket")):
                listener.transport, listener.address = "unix", "auto"
            else:
                value = qemu_conf.get(_LISTEN_KEY[listener.kind], _BUILTIN_LISTEN)
                listener.address = "0.0.0.0" if value in ("0", "") else value
        elif listener.address and listener.address.startswith("network:"):
            net = networks.get(listener.address.split(":", 1)[1])
            if net is not None and net.host_address:
                listener.address = net.host_address
        if listener.auth == "unknown" and qemu_conf is not None:
            listener.auth = _auth_from_conf(listener.kind, qemu_conf)


def _auth_from_conf(kind: str, conf: dict) -> str:
    if kind in ("vnc", "websocket"):
        if _on(conf.get("vnc_sasl")):
            return "sasl"
        if _on(conf.get("vnc_tls")):
            return "tls"
        return "password" if conf.get("vnc_password") else "none"
    if kind == "spice":
        if _on(conf.get("spice_sasl")):
            return "sasl"
        # SPICE TLS encrypts but does not authenticate clients: without a ticket anyone may connect
        return "ticket" if conf.get("spice_password") else "none"
    if kind in ("serial", "chardev", "usbredir"):
        return "tls" if _on(conf.get("chardev_tls")) else "none"
    return "unknown"


def _resolve_confinement(vm: VM, qemu_conf: dict | None, inv: Inventory) -> None:
    if vm.security.confinement != "unknown" or qemu_conf is None:
        return
    driver = qemu_conf.get("security_driver")
    if driver == "none" or driver == [] or str(qemu_conf.get("security_default_confined", 1)) == "0":
        vm.security.confinement = "none"
    elif driver in ("selinux", "apparmor"):
        vm.security.confinement = driver


def _on(value: object) -> bool:
    return str(value).strip().lower() in ("1", "yes", "true")


# libvirt's stock filters (src/nwfilter/xml/*.xml) and what they include, so a domain that names
# clean-traffic is understood even when /etc/libvirt/nwfilter was not collected.
_LEAF_FILTERS = (
    "no-mac-spoofing",
    "no-ip-spoofing",
    "no-ipv6-spoofing",
    "no-arp-mac-spoofing",
    "no-arp-ip-spoofing",
    "allow-incoming-ipv4",
    "allow-incoming-ipv6",
    "no-other-l2-traffic",
    "qemu-announce-self",
    "qemu-announce-self-rarp",
    "allow-arp",
    "allow-dhcp",
    "allow-dhcp-server",
    "allow-dhcpv6",
    "allow-dhcpv6-server",
    "allow-ipv4",
    "allow-ipv6",
    "no-ip-multicast",
    "no-ipv6-multicast",
    "no-mac-broadcast",
    "no-other-rarp-traffic",
)
_CLEAN = [
    "no-mac-spoofing",
    "no-ip-spoofing",
    "allow-incoming-ipv4",
    "no-arp-spoofing",
    "no-other-l2-traffic",
    "qemu-announce-self",
]
BUILTIN_FILTERS: dict[str, NwFilter] = {
    **{name: NwFilter(name) for name in _LEAF_FILTERS},
    "clean-traffic": NwFilter("clean-traffic", _CLEAN),
    "clean-traffic-gateway": NwFilter("clean-traffic-gateway", _CLEAN),
    "no-arp-spoofing": NwFilter("no-arp-spoofing", ["no-arp-mac-spoofing", "no-arp-ip-spoofing"]),
}
