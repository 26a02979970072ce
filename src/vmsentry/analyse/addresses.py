"""What a listen address means for reachability. Shared by every rule that asks 'who can connect?'."""
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
        return "address"          # a host name: resolves to something on the network
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
MANAGEMENT_PORT_LIST = (22, 23, 139, 445, 902, 2375, 2376, 3389, 5985, 5986, 8006, 16509, 16514) + tuple(range(5900, 6000))
MANAGEMENT_PORTS = frozenset(MANAGEMENT_PORT_LIST)


def ports_in(first: int, last: int, ports: frozenset[int] = MANAGEMENT_PORTS) -> list[int]:
    if last - first > 70000:
        return sorted(ports)
    return sorted(p for p in ports if first <= p <= last)
