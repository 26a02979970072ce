"""What a listen address means for reachability. Shared by every rule that asks 'who can connect?'.

``exposure`` classifies an address a VM definition asks for (it knows ``default`` and ``network:NAME``);
``bare_ip``, ``is_wildcard`` and ``is_loopback`` read the addresses a host's sockets and interfaces have
(``ip addr`` notation with a prefix, ``%device`` suffixes, ``localhost``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

ALL_ADDRESSES = (None, "0.0.0.0", "::", "[::]", "*")


@lru_cache(maxsize=4096)
def exposure(address: str | None, transport: str = "tcp") -> str:
    """'all' (every host address), 'address' (a specific non-loopback address or a libvirt network's),
    'loopback', 'local' (a UNIX socket), or 'unknown' (falls back to a host default not collected)."""
    if transport == "unix":
        return "local"
    if address in ALL_ADDRESSES:
        return "all"
    if address in ("default", "auto"):
        return "unknown"
    if address.startswith("network:"):
        return "address"
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%")[0])
    except ValueError:
        return "address"  # a host name: resolves to something on the network
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "all"
    return "address"


def network_reachable(address: str | None, transport: str = "tcp") -> bool | None:
    """True when other machines (guests included) can connect; None when it depends on a default."""
    kind = exposure(address, transport)
    if kind == "unknown":
        return None
    return kind in ("all", "address")


# Services an attacker wants on a host or guest: remote shells/desktops, file sharing, hypervisor and
# container management. The audit's rules and the traffic detectors' mgmt_access default both use this list.
MANAGEMENT_PORT_LIST = (22, 23, 139, 445, 902, 2375, 2376, 3389, 5985, 5986, 8006, 16509, 16514) + tuple(
    range(5900, 6000)
)
MANAGEMENT_PORTS = frozenset(MANAGEMENT_PORT_LIST)


def ports_in(first: int, last: int, ports: frozenset[int] = MANAGEMENT_PORTS) -> list[int]:
    if last - first > 70000:
        return sorted(ports)
    return sorted(p for p in ports if first <= p <= last)


def bare_ip(address: str | None) -> str | None:
    """'192.168.122.1/24' -> '192.168.122.1'; 'fe80::1%virbr0' -> 'fe80::1'; '[::]' -> '::'."""
    if address is None:
        return None
    text = str(address).strip().strip("[]").split("/")[0].split("%")[0]
    return text or None


def parse_ip(address: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address in ``address`` (see ``bare_ip``), or None when it holds none."""
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
    ip = parse_ip(text)
    if ip is None:
        return False
    if ip.is_loopback:
        return True
    return isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback
