"""What a Linux host's network facts mean for its guests: which bridges carry guests, which listening
sockets guests can reach and which are virtualization management, and whether the firewall filters the
forward path. Host predicates (analyse/checks/host_*.py) and the exposure graph share these answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsentry.analyse.addresses import bare_ip, is_loopback, is_wildcard, parse_ip
from vmsentry.analyse.context import ScanContext
from vmsentry.model import Firewall, Host, ListeningSocket, Ruleset

GATEWAY_MODES = ("nat", "routed", "isolated", "open")  # libvirt networks where the host is the guests' router
_BRIDGE_MODES = GATEWAY_MODES + ("bridged",)


# --------------------------------------------------------------------------------------- guest bridges


@dataclass
class GuestBridge:
    """A host bridge that carries guest traffic."""

    name: str
    gateway: bool = False  # host is the guests' router (libvirt nat/routed/isolated/open)
    addresses: set[str] = field(default_factory=set)
    physical: bool = False  # has a physical uplink (guests share L2 with the LAN)
    why: list[str] = field(default_factory=list)


def on_host(ctx: ScanContext, host: Host, obj: Any) -> bool:
    """Whether a VM or network of the scan runs on ``host``."""
    return ctx.host_of(obj) is host


def guest_bridges(host: Host, ctx: ScanContext) -> dict[str, GuestBridge]:
    """Bridges that carry guests, from the networks and VMs of the scan and from the host's own bridge
    facts (a bridge with tap ports). Addresses come from the network definition and the host facts."""
    out: dict[str, GuestBridge] = {}

    def add(name: str, gateway: bool, why: str) -> GuestBridge:
        gb = out.setdefault(name, GuestBridge(name))
        gb.gateway = gb.gateway or gateway
        if why not in gb.why:
            gb.why.append(why)
        return gb

    for net in ctx.inventory.networks:
        if net.bridge and net.mode in _BRIDGE_MODES and on_host(ctx, host, net):
            gb = add(net.bridge, net.mode in GATEWAY_MODES, f"network:{net.name} ({net.mode})")
            if net.host_address and net.mode in GATEWAY_MODES:
                gb.addresses.add(bare_ip(net.host_address))
    for vm in ctx.inventory.vms:
        if not on_host(ctx, host, vm):
            continue
        for nic in vm.nics:
            if nic.bridge and nic.mode in _BRIDGE_MODES:
                add(nic.bridge, nic.mode in GATEWAY_MODES, f"vm:{vm.name}")
    ifaces = {i.name: i for i in host.interfaces or []}
    for br in host.bridges or []:
        name = br.name
        if not name:
            continue
        ports = [p for p in br.ports or [] if isinstance(p, str)]
        taps = [p for p in ports if (p in ifaces and ifaces[p].kind in ("tun", "macvtap")) or p.startswith("vnet")]
        if taps and name not in out:
            add(name, False, f"tap ports {', '.join(taps[:4])}")
        if name in out:
            gb = out[name]
            gb.physical = gb.physical or bool(br.physical_ports)
            for addr in br.addresses or []:
                if bare_ip(addr):
                    gb.addresses.add(bare_ip(addr))
    for name, gb in out.items():
        for addr in (ifaces[name].addresses if name in ifaces else None) or []:
            if bare_ip(addr):
                gb.addresses.add(bare_ip(addr))
    present = {b.name for b in host.bridges or []} | set(ifaces)
    if host.bridges is not None or host.interfaces is not None:
        # a network or VM whose bridge does not exist on the host is not running: nothing to reach
        out = {name: gb for name, gb in out.items() if name in present}
    return out


def host_addresses(host: Host) -> set[str]:
    """The host's own IP addresses (without prefix)."""
    return {bare_ip(addr) for addr in host.addresses or [] if bare_ip(addr)}


# --------------------------------------------------------------------------------------- sockets


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return default


def mgmt_purpose(sock: ListeningSocket, host: Host) -> str | None:
    """What virtualization management/console/migration service a socket is, or None."""
    if sock.proto != "tcp":
        return None
    port = sock.port if isinstance(sock.port, int) else _int(sock.port, -1)
    proc = str(sock.process or "").lower()
    qemu = host.config_values("qemu_conf")
    daemon = host.config_values("libvirtd_conf")
    tcp_port = _int(daemon.get("tcp_port"), 16509)
    tls_port = _int(daemon.get("tls_port"), 16514)
    mig_lo = _int(qemu.get("migration_port_min"), 49152)
    mig_hi = _int(qemu.get("migration_port_max"), 49215)
    if port == tcp_port or (proc in ("libvirtd", "virtproxyd") and port != tls_port):
        return "libvirt remote API over TCP (SASL or no auth, no TLS)"
    if port == tls_port:
        return "libvirt remote API over TLS"
    if 5900 <= port <= 5999:
        return "VNC/SPICE console"
    if 5700 <= port <= 5799:
        return "VNC websocket console"
    if mig_lo <= port <= mig_hi:
        return "QEMU live-migration listener"
    if proc.startswith("qemu"):
        return "socket opened by QEMU (console, chardev, monitor or migration)"
    return None


# DHCP/DNS that libvirt's dnsmasq serves on its bridges, and client sockets that are not services
_EXPECTED_UDP_ANY = {67, 547}  # DHCP/DHCPv6 servers bind the wildcard address by design
_CLIENT_UDP = {68, 546}


def expected_guest_service(sock: ListeningSocket, bridges: dict[str, GuestBridge]) -> bool:
    proc = str(sock.process or "").lower()
    port, proto = sock.port, sock.proto
    if proto == "udp" and port in _CLIENT_UDP:
        return True
    if proc in ("dnsmasq", "") and port in _EXPECTED_UDP_ANY and proto == "udp":
        return proc == "dnsmasq" or sock.interface in bridges
    if port == 53 and proc in ("dnsmasq", ""):
        addr = bare_ip(sock.address)
        return sock.interface in bridges or any(addr in gb.addresses for gb in bridges.values() if gb.gateway)
    return False


def guest_reach(sock: ListeningSocket, bridges: dict[str, GuestBridge]) -> str | None:
    """Why guests on the given bridges can reach this listening socket, or None when they cannot."""
    addr, iface = sock.address, sock.interface
    if is_loopback(addr):
        return None
    if iface and iface not in bridges:
        return None
    if iface:
        return f"bound to guest bridge {iface}"
    addressed = [gb for gb in bridges.values() if gb.addresses]
    gateways = [gb for gb in bridges.values() if gb.gateway]
    if is_wildcard(addr):
        if addressed:
            return f"wildcard address, host has {sorted(addressed[0].addresses)[0]} on guest bridge {addressed[0].name}"
        if gateways:
            return f"wildcard address, host routes guests of {gateways[0].name}"
        return None
    ip = bare_ip(addr)
    for gb in bridges.values():
        if ip in gb.addresses:
            return f"bound to {ip}, the host's address on guest bridge {gb.name}"
    obj = parse_ip(ip)
    if gateways and obj is not None and not obj.is_link_local:
        return (
            f"bound to host address {ip}; guests routed by the host through {gateways[0].name} reach any "
            f"local address (Linux weak host model)"
        )
    return None


# --------------------------------------------------------------------------------------- firewall


def leftovers_only(ruleset: Ruleset) -> bool:
    """Every rule of the ruleset is a jump from a base chain into an empty LIBVIRT_* chain: what libvirt
    leaves behind when its networks stop (lab notes 2.4). Such a ruleset filters nothing."""
    if not ruleset.tables:
        return False
    for table in ruleset.tables:
        hook_rules, libvirt_empty = 0, 0
        for chain in table.chains:
            count = chain.rules
            if not isinstance(count, int) or str(chain.policy or "").lower() == "drop":
                return False
            if chain.hook:
                hook_rules += count
            elif str(chain.name or "").startswith("LIBVIRT_") and count == 0:
                libvirt_empty += 1
            elif count:
                return False
        if hook_rules > libvirt_empty:
            return False
    return True


def ruleset_present(ruleset: Ruleset | None) -> bool:
    """Whether one backend's ruleset filters anything: it has rules, or a base chain whose policy is
    drop. Empty tables, and libvirt's leftover jumps into empty chains, do not count."""
    if ruleset is None:
        return False
    chains = ruleset.chains()
    if any(str(c.policy or "").lower() == "drop" for c in chains):
        return True
    if leftovers_only(ruleset):
        return False
    if isinstance(ruleset.ruleset_rules, int):
        return ruleset.ruleset_rules > 0
    return any(isinstance(c.rules, int) and c.rules > 0 for c in chains)


def bridge_filtering(fw: Firewall) -> bool:
    """An nftables/ebtables-nft bridge-family table with rules or a drop policy (filters at layer 2)."""
    for table in fw.nftables.tables if fw.nftables else ():
        if table.family != "bridge":
            continue
        for chain in table.chains:
            if (isinstance(chain.rules, int) and chain.rules > 0) or str(chain.policy or "").lower() == "drop":
                return True
    return False


def _only_empty_libvirt_jumps(fw: Firewall, rules: int, v6: bool) -> bool:
    """The FORWARD hook's rules are all jumps into libvirt's own chains, and those are empty: libvirt
    leaves them behind after its networks stop (lab notes 2.4), so nothing filters."""
    families = ("ip6", "inet") if v6 else ("ip", "inet")
    hook_rules = empty_fw = 0
    for backend in (fw.nftables, fw.iptables_legacy):
        for table in backend.tables if backend else ():
            if table.family not in families:
                continue
            for chain in table.chains:
                name, count = str(chain.name or ""), chain.rules
                if not isinstance(count, int):
                    return False
                if chain.hook == "forward":
                    hook_rules += count
                elif name.startswith("LIBVIRT_FW"):
                    if count:
                        return False
                    empty_fw += 1
    return empty_fw > 0 and hook_rules == rules and rules <= empty_fw


def forward_state(fw: Firewall, v6: bool = False) -> tuple[str, str]:
    """('filtered'|'unfiltered'|'unknown', explanation) for the FORWARD path."""
    policy = fw.forward_policy_v6 if v6 else fw.forward_policy
    rules = fw.forward_rules_v6 if v6 else fw.forward_rules
    if v6 and policy is None and rules is None:
        policy, rules = fw.forward_policy, fw.forward_rules
        families = fw.nftables.families() if fw.nftables else set()
        v4_only = "ip6" not in families and "inet" not in families
        if policy == "accept" and rules == 0:
            return "unfiltered", "FORWARD policy accept and no FORWARD rules in any family"
        if v4_only:
            return "unknown", (
                "IPv6 FORWARD state not collected (no ip6/inet nftables table seen; ip6tables policy not in the facts)"
            )
    chains = fw.libvirt_chains or []
    if policy != "drop" and isinstance(rules, int) and rules > 0 and _only_empty_libvirt_jumps(fw, rules, v6):
        return "unfiltered", (
            f"FORWARD policy {policy or 'unknown'}; its {rules} rules only jump into empty "
            "LIBVIRT_FW* chains (left behind when libvirt's networks stopped)"
        )
    if policy == "drop":
        return "filtered", f"FORWARD policy drop ({rules if isinstance(rules, int) else '?'} rules)"
    if isinstance(rules, int) and rules > 0:
        more = f"; libvirt chains {', '.join(map(str, chains[:6]))}" if chains else ""
        return "filtered", f"FORWARD policy {policy or 'unknown'} with {rules} rules{more}"
    if policy == "accept" and rules == 0:
        return "unfiltered", "FORWARD policy accept and no FORWARD rules"
    return "unknown", f"FORWARD policy {policy!r}, rule count {rules!r}"
