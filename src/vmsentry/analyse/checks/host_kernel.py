"""Host-side predicates: kernel sysctls, bridges, firewall, listening sockets and hardware isolation of a
Linux KVM host. They read ``Host.facts`` (layout written by ``collect/linux_host.py``) and, for context,
the networks and VMs of the same scan, so that settings which are required by design (IP forwarding on a
NAT host, promiscuous bridge ports) are only reported when they really expose something.

Every group of facts may be absent or ``None``: a predicate then answers ``unknown`` and says which fact
is missing. It never answers ``pass`` for something it could not see.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.context import ScanContext
from vmsentry.model import Host

# --------------------------------------------------------------------------------------- fact access

_GATEWAY_MODES = ("nat", "routed", "isolated", "open")   # libvirt networks where the host is the guests' router
_BRIDGE_MODES = _GATEWAY_MODES + ("bridged",)
SS = "ss -ltnup"


def facts_of(host: Host) -> dict[str, Any]:
    return host.facts if isinstance(host.facts, dict) else {}


def group(host: Host, name: str) -> dict[str, Any] | None:
    value = facts_of(host).get(name)
    return value if isinstance(value, dict) else None


def items(host: Host, name: str) -> list[dict[str, Any]] | None:
    value = facts_of(host).get(name)
    if not isinstance(value, list):
        return None
    return [v for v in value if isinstance(v, dict)]


def missing(what: str, host: Host) -> Outcome:
    errors = facts_of(host).get("collection_errors") or []
    related = [e for e in errors if isinstance(e, str) and what.split()[0].lower() in e.lower()]
    extra = f" (collector said: {related[0]})" if related else ""
    return unknown(f"{what} not collected for this host{extra}")


_CONF_RE = re.compile(r"^(net\.ipv[46]\.conf)\.(.+)\.([a-z0-9_]+)$")


def proc_path(name: str) -> str:
    """/proc/sys path of a sysctl; an interface name keeps its dots (eth0.100)."""
    m = _CONF_RE.match(name)
    if m:
        return "/proc/sys/" + m.group(1).replace(".", "/") + f"/{m.group(2)}/{m.group(3)}"
    return "/proc/sys/" + name.replace(".", "/")


def sysctl_int(sysctl: dict[str, Any], name: str) -> int | None:
    value = sysctl.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip().split()[0])
    except (ValueError, IndexError):
        return None


def sysctl_fail(name: str, value: Any, message: str) -> Outcome:
    return fail(name, value, file=proc_path(name), locator=name, message=message)


def sysctl_pass(name: str, value: Any, message: str | None = None) -> Outcome:
    return passed(name, value, file=proc_path(name), locator=name, message=message)


def on(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in ("1", "yes", "true", "on", "y")


# --------------------------------------------------------------------------------------- addresses

def bare_ip(address: str | None) -> str | None:
    """'192.168.122.1/24' -> '192.168.122.1'; 'fe80::1%virbr0' -> 'fe80::1'; '[::]' -> '::'."""
    if address is None:
        return None
    text = str(address).strip().strip("[]").split("/")[0].split("%")[0]
    return text or None


def ip_obj(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = bare_ip(address)
    if text in (None, "*"):
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_wildcard(address: str | None) -> bool:
    text = bare_ip(address)
    return text in (None, "*", "0.0.0.0", "::", "0")


def is_loopback(address: str | None) -> bool:
    text = bare_ip(address)
    if text in ("localhost",):
        return True
    ip = ip_obj(text)
    if ip is None:
        return False
    if ip.is_loopback:
        return True
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback


# --------------------------------------------------------------------------------------- guest bridges

@dataclass
class GuestBridge:
    """A host bridge that carries guest traffic."""
    name: str
    gateway: bool = False            # host is the guests' router (libvirt nat/routed/isolated/open)
    addresses: set[str] = field(default_factory=set)
    physical: bool = False           # has a physical uplink (guests share L2 with the LAN)
    why: list[str] = field(default_factory=list)


def _mine(ctx: ScanContext, host: Host, obj: Any) -> bool:
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
        if net.bridge and net.mode in _BRIDGE_MODES and _mine(ctx, host, net):
            gb = add(net.bridge, net.mode in _GATEWAY_MODES, f"network:{net.name} ({net.mode})")
            if net.host_address and net.mode in _GATEWAY_MODES:
                gb.addresses.add(bare_ip(net.host_address))
    for vm in ctx.inventory.vms:
        if not _mine(ctx, host, vm):
            continue
        for nic in vm.nics:
            if nic.bridge and nic.mode in _BRIDGE_MODES:
                add(nic.bridge, nic.mode in _GATEWAY_MODES, f"vm:{vm.name}")
    ifaces = {i.get("name"): i for i in items(host, "interfaces") or []}
    for br in items(host, "bridges") or []:
        name = br.get("name")
        if not name:
            continue
        ports = [p for p in br.get("ports") or [] if isinstance(p, str)]
        taps = [p for p in ports if (ifaces.get(p) or {}).get("kind") in ("tun", "macvtap") or p.startswith("vnet")]
        if taps and name not in out:
            add(name, False, f"tap ports {', '.join(taps[:4])}")
        if name in out:
            gb = out[name]
            gb.physical = gb.physical or bool(br.get("physical_ports"))
            for addr in br.get("addresses") or []:
                if bare_ip(addr):
                    gb.addresses.add(bare_ip(addr))
    for name, gb in out.items():
        for addr in (ifaces.get(name) or {}).get("addresses") or []:
            if bare_ip(addr):
                gb.addresses.add(bare_ip(addr))
    present = {b.get("name") for b in items(host, "bridges") or []} | set(ifaces)
    if items(host, "bridges") is not None or items(host, "interfaces") is not None:
        # a network or VM whose bridge does not exist on the host is not running: nothing to reach
        out = {name: gb for name, gb in out.items() if name in present}
    return out


def host_addresses(host: Host) -> set[str]:
    out: set[str] = set()
    for iface in items(host, "interfaces") or []:
        for addr in iface.get("addresses") or []:
            if bare_ip(addr):
                out.add(bare_ip(addr))
    for br in items(host, "bridges") or []:
        for addr in br.get("addresses") or []:
            if bare_ip(addr):
                out.add(bare_ip(addr))
    return out


# --------------------------------------------------------------------------------------- sockets

def sock_label(sock: dict[str, Any]) -> str:
    proc = sock.get("process") or "?"
    addr = sock.get("address")
    shown = f"[{addr}]" if addr and ":" in str(addr) else addr
    iface = f"%{sock['interface']}" if sock.get("interface") else ""
    return f"{sock.get('proto', 'tcp')} {shown}{iface}:{sock.get('port')} ({proc})"


def _int(value: Any, default: int) -> int:
    try:
        return int(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return default


def mgmt_purpose(sock: dict[str, Any], host: Host) -> str | None:
    """What virtualization management/console/migration service a socket is, or None."""
    if sock.get("proto", "tcp") != "tcp":
        return None
    port = sock.get("port")
    if not isinstance(port, int):
        port = _int(port, -1)
    proc = str(sock.get("process") or "").lower()
    qemu = (group(host, "qemu_conf") or {}).get("values") or {}
    daemon = (group(host, "libvirtd_conf") or {}).get("values") or {}
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
_EXPECTED_UDP_ANY = {67, 547}        # DHCP/DHCPv6 servers bind the wildcard address by design
_CLIENT_UDP = {68, 546}


def expected_guest_service(sock: dict[str, Any], bridges: dict[str, GuestBridge]) -> bool:
    proc = str(sock.get("process") or "").lower()
    port = sock.get("port")
    proto = sock.get("proto", "tcp")
    if proto == "udp" and port in _CLIENT_UDP:
        return True
    if proc in ("dnsmasq", "") and port in _EXPECTED_UDP_ANY and proto == "udp":
        return proc == "dnsmasq" or sock.get("interface") in bridges
    if port == 53 and proc in ("dnsmasq", ""):
        addr = bare_ip(sock.get("address"))
        return sock.get("interface") in bridges or any(addr in gb.addresses for gb in bridges.values() if gb.gateway)
    return False


def guest_reach(sock: dict[str, Any], bridges: dict[str, GuestBridge]) -> str | None:
    """Why guests on the given bridges can reach this listening socket, or None when they cannot."""
    addr = sock.get("address")
    iface = sock.get("interface")
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
    obj = ip_obj(ip)
    if gateways and obj is not None and not obj.is_link_local:
        return (f"bound to host address {ip}; guests routed by the host through {gateways[0].name} reach any "
                f"local address (Linux weak host model)")
    return None


# --------------------------------------------------------------------------------------- firewall

def _nft_families(obj: Any, out: set[str] | None = None) -> set[str]:
    out = set() if out is None else out
    if isinstance(obj, dict):
        fam = obj.get("family")
        if isinstance(fam, str):
            out.add(fam.lower())
        for key, value in obj.items():
            if isinstance(key, str) and key.lower() in ("inet", "ip", "ip6", "bridge", "arp", "netdev"):
                out.add(key.lower())
            _nft_families(value, out)
    elif isinstance(obj, list):
        for value in obj:
            _nft_families(value, out)
    elif isinstance(obj, str):
        m = re.match(r"\s*table\s+(inet|ip6|ip|bridge|arp|netdev)\b", obj)
        if m:
            out.add(m.group(1))
    return out


def _chains(obj: Any) -> list[dict[str, Any]]:
    if not isinstance(obj, dict):
        return []
    return [c for t in obj.get("tables") or [] if isinstance(t, dict)
            for c in t.get("chains") or [] if isinstance(c, dict)]


def _leftovers_only(backend: dict[str, Any]) -> bool:
    """Every rule of the ruleset is a jump from a base chain into an empty LIBVIRT_* chain: what libvirt
    leaves behind when its networks stop (lab notes 2.4). Such a ruleset filters nothing."""
    tables = [t for t in backend.get("tables") or [] if isinstance(t, dict)]
    if not tables:
        return False
    for table in tables:
        chains = [c for c in table.get("chains") or [] if isinstance(c, dict)]
        hook_rules, libvirt_empty = 0, 0
        for chain in chains:
            count = chain.get("rules")
            if not isinstance(count, int) or str(chain.get("policy") or "").lower() == "drop":
                return False
            if chain.get("hook"):
                hook_rules += count
            elif str(chain.get("name") or "").startswith("LIBVIRT_") and count == 0:
                libvirt_empty += 1
            elif count:
                return False
        if hook_rules > libvirt_empty:
            return False
    return True


def ruleset_present(obj: Any) -> bool:
    """Whether one backend's ruleset filters anything: it has rules, or a base chain whose policy is
    drop. Empty tables, and libvirt's leftover jumps into empty chains, do not count."""
    if obj is None:
        return False
    if isinstance(obj, dict):
        chains = _chains(obj)
        if any(str(c.get("policy") or "").lower() == "drop" for c in chains):
            return True
        if _leftovers_only(obj):
            return False
        for key in ("ruleset_rules", "rules", "rule_count"):
            if isinstance(obj.get(key), int):
                return obj[key] > 0
        if "tables" in obj:
            return any(isinstance(c.get("rules"), int) and c["rules"] > 0 for c in chains)
        return bool(obj)
    return bool(obj)


def bridge_filtering(fw: dict[str, Any]) -> bool:
    """An nftables/ebtables-nft bridge-family table with rules or a drop policy (filters at layer 2)."""
    nft = fw.get("nftables")
    if not isinstance(nft, dict):
        return False
    for table in nft.get("tables") or []:
        if not isinstance(table, dict) or table.get("family") != "bridge":
            continue
        for chain in table.get("chains") or []:
            if isinstance(chain, dict) and ((isinstance(chain.get("rules"), int) and chain["rules"] > 0)
                                            or str(chain.get("policy") or "").lower() == "drop"):
                return True
    return False


def _only_empty_libvirt_jumps(fw: dict[str, Any], rules: int, v6: bool) -> bool:
    """The FORWARD hook's rules are all jumps into libvirt's own chains, and those are empty: libvirt
    leaves them behind after its networks stop (lab notes 2.4), so nothing filters."""
    families = ("ip6", "inet") if v6 else ("ip", "inet")
    hook_rules = empty_fw = 0
    for backend in (fw.get("nftables"), fw.get("iptables_legacy")):
        if not isinstance(backend, dict):
            continue
        for table in backend.get("tables") or []:
            if not isinstance(table, dict) or table.get("family") not in families:
                continue
            for chain in table.get("chains") or []:
                if not isinstance(chain, dict):
                    continue
                name, count = str(chain.get("name") or ""), chain.get("rules")
                if not isinstance(count, int):
                    return False
                if chain.get("hook") == "forward":
                    hook_rules += count
                elif name.startswith("LIBVIRT_FW"):
                    if count:
                        return False
                    empty_fw += 1
    return empty_fw > 0 and hook_rules == rules and rules <= empty_fw


def forward_state(fw: dict[str, Any], v6: bool = False) -> tuple[str, str]:
    """('filtered'|'unfiltered'|'unknown', explanation) for the FORWARD path."""
    policy = fw.get("forward_policy_v6" if v6 else "forward_policy")
    rules = fw.get("forward_rules_v6" if v6 else "forward_rules")
    if v6 and policy is None and rules is None:
        policy, rules = fw.get("forward_policy"), fw.get("forward_rules")
        v4_only = "ip6" not in _nft_families(fw.get("nftables")) and "inet" not in _nft_families(fw.get("nftables"))
        if policy == "accept" and rules == 0:
            return "unfiltered", "FORWARD policy accept and no FORWARD rules in any family"
        if v4_only:
            return "unknown", ("IPv6 FORWARD state not collected (no ip6/inet nftables table seen; ip6tables "
                               "policy not in the facts)")
    chains = fw.get("libvirt_chains") or []
    if policy != "drop" and isinstance(rules, int) and rules > 0 and _only_empty_libvirt_jumps(fw, rules, v6):
        return "unfiltered", (f"FORWARD policy {policy or 'unknown'}; its {rules} rules only jump into empty "
                              "LIBVIRT_FW* chains (left behind when libvirt's networks stopped)")
    if policy == "drop":
        return "filtered", f"FORWARD policy drop ({rules if isinstance(rules, int) else '?'} rules)"
    if isinstance(rules, int) and rules > 0:
        more = f"; libvirt chains {', '.join(map(str, chains[:6]))}" if chains else ""
        return "filtered", f"FORWARD policy {policy or 'unknown'} with {rules} rules{more}"
    if policy == "accept" and rules == 0:
        return "unfiltered", "FORWARD policy accept and no FORWARD rules"
    return "unknown", f"FORWARD policy {policy!r}, rule count {rules!r}"


# =============================================================================================== rules

@check("host_ipv4_forward_unfiltered")
def ipv4_forward_unfiltered(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    keys = [k for k in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding") if k in sysctl]
    if not keys:
        return unknown("net.ipv4.ip_forward not in the collected sysctls", "net.ipv4.ip_forward")
    on_keys = [k for k in keys if sysctl_int(sysctl, k) == 1]
    if not on_keys:
        return sysctl_pass(keys[0], sysctl[keys[0]], "IPv4 forwarding is off: the host routes no guest traffic")
    key = on_keys[0]
    fw = group(host, "firewall")
    if fw is None:
        return unknown("IPv4 forwarding is on; whether FORWARD is filtered is unknown: firewall facts not collected",
                       key, file=proc_path(key))
    state, why = forward_state(fw)
    routed = [n.name for n in ctx.inventory.networks if n.mode == "routed" and _mine(ctx, host, n)]
    note = f"; routed networks {', '.join(routed)} admit LAN-initiated traffic by design" if routed else ""
    if state == "filtered":
        return sysctl_pass(key, sysctl[key], f"forwarding on (required for NAT/routed guests) and filtered: {why}{note}")
    if state == "unfiltered":
        return sysctl_fail(key, sysctl[key], f"forwarding on and nothing filters it: {why}; the host routes "
                                             f"any guest traffic to any network it reaches{note}")
    return unknown(f"IPv4 forwarding is on; FORWARD filtering undetermined: {why}", key, file=proc_path(key))


@check("host_ipv6_forward_unfiltered")
def ipv6_forward_unfiltered(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    key = "net.ipv6.conf.all.forwarding"
    if key not in sysctl:
        return unknown(f"{key} not in the collected sysctls (IPv6 may be disabled)", key)
    if sysctl_int(sysctl, key) != 1:
        return sysctl_pass(key, sysctl[key], "IPv6 forwarding is off")
    fw = group(host, "firewall")
    if fw is None:
        return unknown("IPv6 forwarding is on; firewall facts not collected", key, file=proc_path(key))
    state, why = forward_state(fw, v6=True)
    if state == "filtered":
        return sysctl_pass(key, sysctl[key], f"IPv6 forwarding on and filtered: {why}")
    if state == "unfiltered":
        return sysctl_fail(key, sysctl[key], f"IPv6 forwarding on and nothing filters it: {why}")
    return unknown(f"IPv6 forwarding is on; {why}", key, file=proc_path(key))


_BRNF = ("net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables",
         "net.bridge.bridge-nf-call-arptables")


@check("host_bridge_nf_call")
def bridge_nf_call(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    bridges = guest_bridges(host, ctx)
    host_bridged = {n: gb for n, gb in bridges.items() if not gb.gateway}
    if not bridges:
        return not_applicable("no bridge carries guests")
    if not host_bridged:
        return not_applicable("guests are only on libvirt NAT/isolated/routed bridges "
                              f"({', '.join(sorted(bridges))}), where libvirt's own FORWARD rules already accept "
                              "traffic between guests of one network")
    fw = group(host, "firewall")
    if fw is not None:
        if bridge_filtering(fw):
            return passed("firewall.nftables", "bridge family table",
                          message="an nftables bridge-family table filters bridged frames regardless of bridge-nf-call")
        state, why = forward_state(fw)
        if state == "unfiltered":
            return not_applicable(f"FORWARD has no rules ({why}): bridge-nf-call would change nothing; "
                                  "see the forwarding and firewall rules")
    out: list[Outcome] = []
    names = ", ".join(sorted(host_bridged))
    for key in _BRNF:
        value = sysctl.get(key)
        if value is None:
            out.append(fail(key, None, file=proc_path(key), locator=key,
                            message=f"{key} absent: br_netfilter not loaded, so frames bridged on {names} never "
                                    "reach the host's iptables/ip6tables/arptables rules"))
        elif sysctl_int(sysctl, key) == 0:
            out.append(sysctl_fail(key, value, f"frames bridged between guests/LAN on {names} bypass the host's "
                                               f"{key.rsplit('-', 1)[1]} FORWARD rules"))
    if not out:
        return sysctl_pass(_BRNF[0], sysctl.get(_BRNF[0]), f"bridged frames on {names} traverse the host firewall")
    return out


@check("host_rp_filter")
def rp_filter(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    all_v = sysctl_int(sysctl, "net.ipv4.conf.all.rp_filter")
    if all_v is None:
        return unknown("net.ipv4.conf.all.rp_filter not collected", "net.ipv4.conf.all.rp_filter")
    bridges = guest_bridges(host, ctx)
    out: list[Outcome] = []
    checked = False
    for name in sorted(bridges):
        key = f"net.ipv4.conf.{name}.rp_filter"
        own = sysctl_int(sysctl, key)
        if own is None:
            continue
        checked = True
        eff = max(all_v, own)
        if eff == 0:
            out.append(sysctl_fail(key, sysctl[key], f"effective rp_filter on guest bridge {name} is 0 "
                                                     "(max of all and the bridge): spoofed guest sources accepted"))
    if not checked:
        dkey = "net.ipv4.conf.default.rp_filter"
        dflt = sysctl_int(sysctl, dkey)
        if dflt is None:
            if all_v == 0:
                return sysctl_fail("net.ipv4.conf.all.rp_filter", sysctl["net.ipv4.conf.all.rp_filter"],
                                   "rp_filter off for all interfaces (per-interface values not collected)")
            return sysctl_pass("net.ipv4.conf.all.rp_filter", sysctl["net.ipv4.conf.all.rp_filter"])
        if max(all_v, dflt) == 0:
            return sysctl_fail(dkey, sysctl[dkey], "rp_filter is 0 in all and default: new (guest) bridges do no "
                                                   "source validation")
        return sysctl_pass(dkey, sysctl[dkey], f"effective rp_filter {max(all_v, dflt)}")
    if out:
        return out
    return sysctl_pass("net.ipv4.conf.all.rp_filter", sysctl["net.ipv4.conf.all.rp_filter"],
                       f"source validation on guest bridges {', '.join(sorted(bridges))}")


@check("host_arp_flux")
def arp_flux(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    bridges = {n: gb for n, gb in guest_bridges(host, ctx).items() if gb.addresses}
    if not bridges:
        return not_applicable("the host has no address on a bridge that carries guests")
    ign_key, flt_key = "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_filter"
    ign, flt = sysctl_int(sysctl, ign_key), sysctl_int(sysctl, flt_key)
    per_bridge = [sysctl_int(sysctl, f"net.ipv4.conf.{n}.arp_ignore") for n in bridges]
    if ign is None and flt is None:
        return unknown("arp_ignore/arp_filter not collected", ign_key)
    if (ign or 0) >= 1 or any((v or 0) >= 1 for v in per_bridge):
        return sysctl_pass(ign_key, sysctl.get(ign_key), "the host answers ARP only for addresses on the asking interface")
    if (flt or 0) == 1:
        return sysctl_pass(flt_key, sysctl.get(flt_key))
    own = set().union(*(gb.addresses for gb in bridges.values()))
    others = sorted(a for a in host_addresses(host) - own if not is_loopback(a) and ip_obj(a) and ip_obj(a).version == 4)
    if not others:
        return not_applicable("the host has no IPv4 address besides those on the guest bridges")
    return sysctl_fail(ign_key, sysctl.get(ign_key),
                       f"arp_ignore=0 and arp_filter=0: guests on {', '.join(sorted(bridges))} get ARP replies for "
                       f"the host's other addresses ({', '.join(others[:4])})")


@check("host_bridge_accept_ra")
def bridge_accept_ra(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    bridges = guest_bridges(host, ctx)
    if not bridges:
        return not_applicable("no bridge carries guests")
    out: list[Outcome] = []
    seen = []
    for name in sorted(bridges):
        gb = bridges[name]
        dis = sysctl_int(sysctl, f"net.ipv6.conf.{name}.disable_ipv6")
        if dis == 1:
            seen.append(f"{name}: IPv6 disabled")
            continue
        key = f"net.ipv6.conf.{name}.accept_ra"
        ra = sysctl_int(sysctl, key)
        if ra is None:
            key = "net.ipv6.conf.default.accept_ra"
            ra = sysctl_int(sysctl, key)
        if ra is None:
            if dis is None and "net.ipv6.conf.all.forwarding" not in sysctl:
                seen.append(f"{name}: no IPv6")
                continue
            out.append(unknown(f"accept_ra of guest bridge {name} not collected", f"net.ipv6.conf.{name}.accept_ra"))
            continue
        fwd = sysctl_int(sysctl, f"net.ipv6.conf.{name}.forwarding")
        if fwd is None:
            fwd = sysctl_int(sysctl, "net.ipv6.conf.all.forwarding") or 0
        accepts = ra == 2 or (ra == 1 and fwd == 0)
        if accepts:
            lan = " (bridge also has a physical uplink: the host may rely on LAN RAs; filter RAs from guest ports)" \
                if gb.physical else ""
            out.append(sysctl_fail(key, sysctl[key], f"the host accepts IPv6 Router Advertisements on guest bridge "
                                                     f"{name} (accept_ra={ra}, forwarding={fwd}): a guest can set "
                                                     f"the host's IPv6 routes and addresses{lan}"))
        else:
            seen.append(f"{name}: accept_ra={ra}, forwarding={fwd}")
    if out:
        return out
    return passed("accept_ra", "; ".join(seen), message="no guest bridge accepts Router Advertisements")


@check("host_accept_redirects")
def accept_redirects(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    a4, d4 = "net.ipv4.conf.all.accept_redirects", "net.ipv4.conf.default.accept_redirects"
    a6 = "net.ipv6.conf.all.accept_redirects"
    if all(k not in sysctl for k in (a4, d4, a6)):
        return unknown("accept_redirects sysctls not collected", a4)
    out: list[Outcome] = []
    fwd4 = sysctl_int(sysctl, "net.ipv4.ip_forward") == 1 or sysctl_int(sysctl, "net.ipv4.conf.all.forwarding") == 1
    va, vd = sysctl_int(sysctl, a4), sysctl_int(sysctl, d4)
    if va is not None or vd is not None:
        # kernel: with forwarding, both all and the interface must be on; without, either one suffices
        effective = (bool(va) and (vd is None or bool(vd))) if fwd4 else (bool(va) or bool(vd))
        if effective:
            key = a4 if va else d4
            out.append(sysctl_fail(key, sysctl[key], "the host accepts ICMP redirects; a guest can rewrite the host's "
                                                     "routes toward itself"))
    fwd6 = sysctl_int(sysctl, "net.ipv6.conf.all.forwarding") == 1
    v6 = sysctl_int(sysctl, a6)
    if v6 and not fwd6:
        out.append(sysctl_fail(a6, sysctl[a6], "the host accepts IPv6 redirects (forwarding off)"))
    if out:
        return out
    shown = a4 if a4 in sysctl else a6
    return sysctl_pass(shown, sysctl.get(shown))


@check("host_send_redirects")
def send_redirects(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    key = "net.ipv4.conf.all.send_redirects"
    value = sysctl_int(sysctl, key)
    if value is None:
        return unknown(f"{key} not collected", key)
    if value:
        return sysctl_fail(key, sysctl[key], "the host sends ICMP redirects to guests, disclosing routes and letting "
                                             "guests bypass the host on the shared bridge")
    return sysctl_pass(key, sysctl[key], "per-interface send_redirects (default 1) is not in the facts; "
                                         "ComplianceAsCode also requires the default key to be 0")


@check("host_accept_source_route")
def accept_source_route(host: Host, ctx: ScanContext) -> Outcome:
    sysctl = group(host, "sysctl")
    if sysctl is None:
        return missing("sysctl values", host)
    key = "net.ipv4.conf.all.accept_source_route"
    value = sysctl_int(sysctl, key)
    if value is None:
        return unknown(f"{key} not collected", key)
    if value:
        return sysctl_fail(key, sysctl[key], "source-routed packets from guests are accepted on every interface")
    return sysctl_pass(key, sysctl[key], "all=0 disables source routing on every interface")


@check("host_firewall_absent")
def firewall_absent(host: Host, ctx: ScanContext) -> Outcome:
    fw = facts_of(host).get("firewall")
    if not isinstance(fw, dict):
        return missing("firewall state", host)
    nft, ipt = fw.get("nftables"), fw.get("iptables_legacy")
    leftovers = [n for n, v in (("nftables", nft), ("iptables-legacy", ipt)) if isinstance(v, dict) and _leftovers_only(v)]
    if ruleset_present(nft) or ruleset_present(ipt):
        which = [n for n, v in (("nftables", nft), ("iptables-legacy", ipt)) if ruleset_present(v)]
        return passed("firewall", ", ".join(which), file="nft list ruleset",
                      message=f"ruleset loaded ({', '.join(which)}); INPUT {fw.get('input_policy', 'unknown')}, "
                              f"FORWARD {fw.get('forward_policy', 'unknown')} with {fw.get('forward_rules', '?')} rules")
    unread = [n for n, v in (("nftables", nft), ("iptables-legacy", ipt)) if v is None]
    if unread:
        return unknown(f"no rules in what was read, but the {' and '.join(unread)} ruleset could not be read",
                       "firewall", file="nft list ruleset")
    extra = (f" ({', '.join(leftovers)} holds only jumps into libvirt's empty LIBVIRT_* chains, left behind "
             "when its networks stopped)") if leftovers else ""
    return fail("firewall", "no filtering rule", file="nft list ruleset",
                message="neither nftables nor legacy iptables holds a filtering rule or a drop policy: nothing "
                        f"filters guest-to-host or guest-to-LAN traffic{extra}")


def _bridge_ancestor(name: str, ifaces: dict[str, dict[str, Any]], bridge_names: set[str]) -> str | None:
    seen = set()
    cur = ifaces.get(name, {}).get("master")
    while cur and cur not in seen:
        seen.add(cur)
        if cur in bridge_names or ifaces.get(cur, {}).get("kind") == "bridge" or cur == "ovs-system":
            return cur
        cur = ifaces.get(cur, {}).get("master")
    return None


@check("host_promiscuous_interfaces")
def promiscuous_interfaces(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    ifaces_list = items(host, "interfaces")
    if ifaces_list is None:
        return missing("interfaces", host)
    ifaces = {i.get("name"): i for i in ifaces_list if i.get("name")}
    bridge_names = {b.get("name") for b in items(host, "bridges") or [] if b.get("name")}
    bridge_names |= {n for n, i in ifaces.items() if i.get("kind") == "bridge"}
    out: list[Outcome] = []
    expected = []
    for name, iface in sorted(ifaces.items()):
        promisc = iface.get("promiscuity")
        if not isinstance(promisc, int) or promisc <= 0:
            continue
        anc = _bridge_ancestor(name, ifaces, bridge_names)
        if anc:
            expected.append(f"{name} (port of {anc})")
            continue
        out.append(fail(f"interfaces[{name}].promiscuity", promisc, file="ip -d link show", locator=name,
                        message=f"{iface.get('kind', 'interface')} {name} is promiscuous and not a bridge port: a "
                                "capture tool or sniffer sees all traffic on it"))
    if out:
        return out
    msg = "no promiscuous interface outside a bridge"
    if expected:
        msg += f"; bridge ports are promiscuous by design: {', '.join(expected[:6])}"
    return passed("interfaces.promiscuity", len(expected), file="ip -d link show", message=msg)


@check("host_services_reachable_from_guests")
def services_reachable(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    bridges = guest_bridges(host, ctx)
    if not bridges:
        return not_applicable("no bridge carries guests, so no guest reaches the host over a bridge")
    socks = items(host, "listening")
    if socks is None:
        return missing("listening sockets", host)
    fw = group(host, "firewall") or {}
    input_drop = fw.get("input_policy") == "drop"
    out: list[Outcome] = []
    for sock in socks:
        if mgmt_purpose(sock, host) or expected_guest_service(sock, bridges):
            continue
        why = guest_reach(sock, bridges)
        if not why:
            continue
        label = sock_label(sock)
        if input_drop:
            out.append(unknown(f"{label} is {why}, but INPUT policy is drop; which ports the rules open to guest "
                               "bridges was not collected", f"{sock.get('proto')}/{sock.get('port')}", file=SS,
                               locator=label))
        else:
            out.append(fail(f"{sock.get('proto')}/{sock.get('port')}", label, file=SS, locator=label,
                            message=f"guests can connect: {why}; INPUT policy {fw.get('input_policy', 'unknown')}"))
    if out:
        return out
    return passed("listening", len(socks), file=SS,
                  message=f"no host service other than libvirt's DNS/DHCP is reachable from guest bridges "
                          f"{', '.join(sorted(bridges))}")


@check("host_virt_mgmt_sockets_exposed")
def virt_mgmt_exposed(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    socks = items(host, "listening")
    if socks is None:
        return missing("listening sockets", host)
    bridges = guest_bridges(host, ctx)
    out: list[Outcome] = []
    seen = 0
    for sock in socks:
        purpose = mgmt_purpose(sock, host)
        if not purpose:
            continue
        seen += 1
        if is_loopback(sock.get("address")):
            continue
        label = sock_label(sock)
        guest = guest_reach(sock, bridges)
        where = f"reachable from guests ({guest})" if guest else "reachable from the networks the host is on"
        out.append(fail(f"tcp/{sock.get('port')}", label, file=SS, locator=label,
                        message=f"{purpose} on a non-loopback address, {where}"))
    if out:
        return out
    return passed("listening", seen, file=SS, message=f"{seen} virtualization management/console sockets, all on "
                                                       "loopback" if seen else "no virtualization management, console "
                                                                               "or migration socket is listening")


@check("host_mgmt_address_on_guest_bridge")
def mgmt_on_guest_bridge(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    brs = items(host, "bridges")
    if brs is None:
        return missing("bridges", host)
    bridges = guest_bridges(host, ctx)
    out: list[Outcome] = []
    for br in brs:
        name = br.get("name")
        gb = bridges.get(name)
        if gb is None or gb.gateway or not br.get("physical_ports"):
            continue
        addrs = [a for a in br.get("addresses") or [] if ip_obj(a) and not ip_obj(a).is_link_local]
        if not addrs:
            continue
        out.append(fail(f"bridges[{name}].addresses", ", ".join(addrs), file="ip -d link show", locator=name,
                        message=f"the host's own address sits on {name}, which bridges physical port(s) "
                                f"{', '.join(br.get('physical_ports') or [])} with guests ({'; '.join(gb.why[:3])}): "
                                "guests share the L2 segment of the host's management traffic"))
    if out:
        return out
    return passed("bridges", len(brs), file="ip -d link show",
                  message="no host address on a bridge that joins guests to a physical network")


@check("host_lsm_enforcing")
def lsm_enforcing(host: Host, ctx: ScanContext) -> Outcome:
    lsm = group(host, "lsm")
    if lsm is None:
        return missing("LSM state", host)
    selinux, apparmor = lsm.get("selinux"), lsm.get("apparmor")
    if selinux is None and apparmor is None:
        return unknown("neither SELinux nor AppArmor state collected", "lsm")
    if selinux == "enforcing":
        return passed("lsm.selinux", selinux, file="/sys/fs/selinux/enforce")
    if apparmor == "enabled":
        return passed("lsm.apparmor", apparmor, file="/sys/module/apparmor/parameters/enabled")
    if selinux is None or apparmor is None:
        return unknown(f"SELinux {selinux!r}, AppArmor {apparmor!r}: one of them was not collected", "lsm")
    return fail("lsm", f"selinux={selinux}, apparmor={apparmor}", file="/sys/kernel/security/lsm",
                message="no mandatory access control enforces sVirt: a QEMU process compromised from a guest can "
                        "open every file its user can, including other guests' disks")


@check("host_iommu_for_passthrough")
def iommu_for_passthrough(host: Host, ctx: ScanContext) -> Outcome:
    devices = [(vm.name, d) for vm in ctx.inventory.vms if _mine(ctx, host, vm)
               for d in vm.devices if d.kind == "pci-passthrough"]
    if not devices:
        return not_applicable("no VM of this host has a PCI passthrough device")
    iommu = group(host, "iommu")
    names = ", ".join(f"{n} ({d.detail or 'pci'})" for n, d in devices[:4])
    if iommu is None or iommu.get("enabled") is None:
        return unknown(f"PCI passthrough in use ({names}) but IOMMU state not collected", "iommu.enabled")
    if iommu.get("enabled"):
        return passed("iommu.groups", iommu.get("groups"), file="/sys/kernel/iommu_groups")
    return fail("iommu.enabled", False, file="/proc/cmdline", locator="/sys/kernel/iommu_groups",
                message=f"PCI devices are passed to guests ({names}) while the IOMMU is off: a guest-driven DMA "
                        f"device can read and write host memory; cmdline flags {iommu.get('cmdline_flags') or []}")


@check("host_nested_virt")
def nested_virt(host: Host, ctx: ScanContext) -> Outcome:
    kvm = group(host, "kvm")
    if kvm is None:
        return missing("KVM module state", host)
    nested = kvm.get("nested")
    if nested is None:
        cpu = group(host, "cpu") or {}
        if kvm.get("dev_kvm") is False:
            return not_applicable("/dev/kvm absent: no KVM, no nested virtualization")
        if cpu.get("vmx") is False and cpu.get("svm") is False:
            return not_applicable("no VT-x/AMD-V: kvm_intel/kvm_amd (and their nested parameter) are not in use")
        return unknown("kvm_intel/kvm_amd 'nested' parameter not collected", "kvm.nested")
    path = "/sys/module/kvm_intel/parameters/nested"
    cpu = group(host, "cpu") or {}
    if "amd" in str(cpu.get("vendor") or "").lower() or cpu.get("svm"):
        path = "/sys/module/kvm_amd/parameters/nested"
    if str(nested).strip().upper() in ("Y", "1"):
        return fail("nested", nested, file=path, message="guests can run their own hypervisors: larger KVM attack "
                                                         "surface and VMs hidden from the host's inventory")
    return passed("nested", nested, file=path)


@check("host_ksm")
def ksm(host: Host, ctx: ScanContext) -> Outcome:
    kvm = group(host, "kvm")
    if kvm is None:
        return missing("KVM module state", host)
    run = kvm.get("ksm_run")
    if run is None:
        return unknown("/sys/kernel/mm/ksm/run not collected", "ksm_run")
    if str(run).strip() == "1":
        return fail("ksm_run", run, file="/sys/kernel/mm/ksm/run",
                    message="KSM merges identical pages across guests: a cross-VM timing side channel")
    return passed("ksm_run", run, file="/sys/kernel/mm/ksm/run")


@check("host_libvirt_groups")
def libvirt_groups(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    groups = group(host, "groups")
    if groups is None:
        return missing("group membership", host)
    daemon = (group(host, "libvirtd_conf") or {}).get("values") or {}
    sock_group = str(daemon.get("unix_sock_group") or "libvirt").strip('"')
    out: list[Outcome] = []
    for name, why in ((sock_group, "root-equivalent control of every VM through the libvirt socket"),
                      ("libvirt-qemu", "access to guest disk images and QEMU sockets")):
        if name not in groups:
            out.append(unknown(f"membership of group '{name}' not collected", f"groups.{name}", file="/etc/group"))
            continue
        members = [m for m in groups.get(name) or [] if m not in ("root", "libvirt-qemu")]
        if members:
            out.append(fail(f"groups.{name}", ", ".join(members), file="/etc/group", locator=name,
                            message=f"{len(members)} account(s) in '{name}' have {why}"))
    if any(o.status == "fail" for o in out):
        return [o for o in out if o.status == "fail"]
    if out:
        return out
    return passed(f"groups.{sock_group}", "", file="/etc/group",
                  message=f"no non-root member in '{sock_group}' or 'libvirt-qemu'")


@check("host_hw_virtualization")
def hw_virtualization(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    cpu, kvm = group(host, "cpu"), group(host, "kvm")
    if cpu is None and kvm is None:
        return missing("CPU and KVM facts", host)
    out: list[Outcome] = []
    dev_kvm = (kvm or {}).get("dev_kvm")
    if cpu is not None:
        vmx, svm = cpu.get("vmx"), cpu.get("svm")
        if vmx is None and svm is None:
            out.append(unknown("CPU virtualization flags not collected", "cpu.vmx"))
        elif not vmx and not svm:
            vendor = str(cpu.get("vendor") or "")
            if vendor and not re.search(r"intel|amd|hygon", vendor, re.I):
                return not_applicable(f"CPU vendor {vendor}: VT-x/AMD-V flags do not apply")
            extra = " (/dev/kvm exists: a software or paravirtual KVM, not VT-x/AMD-V)" if dev_kvm else ""
            out.append(fail("cpu.flags", "no vmx/svm", file="/proc/cpuinfo",
                            message=f"the CPU offers no hardware-assisted virtualization{extra}"))
    if dev_kvm is False:
        out.append(fail("kvm.dev_kvm", False, file="/dev/kvm",
                        message="no /dev/kvm: guests run under QEMU TCG emulation, which QEMU does not treat as a "
                                "security boundary"))
    elif dev_kvm is None and kvm is not None:
        out.append(unknown("/dev/kvm presence not collected", "kvm.dev_kvm"))
    if any(o.status == "fail" for o in out):
        return [o for o in out if o.status == "fail"]
    if out:
        return out
    if cpu is None:
        return unknown("CPU virtualization flags not collected", "cpu.vmx")
    return passed("cpu.flags", "vmx" if cpu.get("vmx") else "svm", file="/proc/cpuinfo",
                  message=f"/dev/kvm {'present' if dev_kvm else 'state unknown'}")


@check("host_memory_encryption_unused")
def memory_encryption_unused(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    mem = group(host, "memory_encryption")
    if mem is None:
        return missing("memory_encryption capabilities", host)
    caps = {k: mem.get(k) for k in ("sev", "sev_es", "sev_snp", "tdx")}
    if all(v is None for v in caps.values()):
        flags = mem.get("cpu_flags")
        if isinstance(flags, list) and not {"sev", "sev_es", "sev_snp", "tdx_host_platform"} & set(flags):
            return not_applicable("no SEV/TDX parameter in kvm_amd/kvm_intel and no SEV/TDX host CPU flag")
        return unknown("SEV/SEV-ES/SEV-SNP/TDX capability not collected (kvm_amd/kvm_intel parameters absent)",
                       "memory_encryption")
    available = [k for k, v in caps.items() if v]
    if not available:
        return not_applicable("the host offers no SEV, SEV-SNP or TDX")
    vms = [vm for vm in ctx.inventory.vms if _mine(ctx, host, vm)]
    if not vms:
        return not_applicable(f"host offers {', '.join(available)} but no VM of this host was collected")
    param = "/sys/module/kvm_intel/parameters/tdx" if available == ["tdx"] else \
        f"/sys/module/kvm_amd/parameters/{next(a for a in available if a != 'tdx')}"
    out = [fail(f"vm:{vm.name}.memory_encryption", None, file=param,
                locator=f"vm:{vm.name}",
                message=f"host offers {', '.join(available)}; VM {vm.name} runs without memory encryption")
           for vm in vms if not vm.security.memory_encryption]
    return out or passed("memory_encryption", ", ".join(available), message="every VM uses memory encryption")


@check("host_hypervisor_versions")
def hypervisor_versions(host: Host, ctx: ScanContext) -> Outcome:
    versions = group(host, "versions")
    if versions is None:
        return missing("versions of QEMU, libvirt and kernel", host)
    known = {k: versions.get(k) for k in ("qemu", "libvirt", "kernel") if versions.get(k)}
    if not versions.get("qemu") and not versions.get("libvirt"):
        return unknown("neither the QEMU nor the libvirt version was collected", "versions.qemu")
    return passed("versions", ", ".join(f"{k} {v}" for k, v in known.items()), file="virsh version",
                  message="hypervisor versions recorded for vulnerability matching")
