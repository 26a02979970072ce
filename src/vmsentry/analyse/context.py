"""What a predicate may look up beyond its own asset: the networks, filters and host facts the same
scan collected. Built once per scan; lookups are dictionary reads."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsentry.model import Host, Inventory, Network, NwFilter, VM


@dataclass
class ScanContext:
    inventory: Inventory
    networks: dict[str, Network] = field(default_factory=dict)
    nwfilters: dict[str, NwFilter] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    def of(cls, inventory: Inventory) -> "ScanContext":
        ctx = cls(inventory)
        for net in inventory.networks:
            ctx.networks.setdefault(net.name, net)
        for flt in inventory.nwfilters:
            ctx.nwfilters.setdefault(flt.name, flt)
        for host in inventory.hosts:
            ctx.hosts.setdefault(host.name, host)
        return ctx

    def host_of(self, vm: VM | Network) -> Host | None:
        """The host a VM or network runs on: named, or the only host collected."""
        if vm.host and vm.host in self.hosts:
            return self.hosts[vm.host]
        if len(self.hosts) == 1:
            return next(iter(self.hosts.values()))
        return None

    def host_fact(self, vm: VM | Network, *path: str) -> Any:
        host = self.host_of(vm)
        value: Any = host.facts if host else None
        for key in path:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    def filter_includes(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        """Every filter a named nwfilter pulls in, itself included (libvirt's built-ins are known
        by name even when their definitions were not read)."""
        out = {name}
        flt = self.nwfilters.get(name) or BUILTIN_FILTERS.get(name)
        if flt is None or name in seen:
            return out
        for inc in flt.includes:
            out |= self.filter_includes(inc, seen | {name})
        return out


# libvirt's stock filters (src/nwfilter/xml/*.xml), so a domain that names clean-traffic is understood
# even when /etc/libvirt/nwfilter was not collected.
BUILTIN_FILTERS: dict[str, NwFilter] = {
    "clean-traffic": NwFilter("clean-traffic", ["no-mac-spoofing", "no-ip-spoofing", "allow-incoming-ipv4",
                                                "no-arp-spoofing", "no-other-l2-traffic", "qemu-announce-self"]),
    "clean-traffic-gateway": NwFilter("clean-traffic-gateway", ["no-mac-spoofing", "no-ip-spoofing",
                                                                "allow-incoming-ipv4", "no-arp-spoofing",
                                                                "no-other-l2-traffic", "qemu-announce-self"]),
    "no-arp-spoofing": NwFilter("no-arp-spoofing", ["no-arp-mac-spoofing", "no-arp-ip-spoofing"]),
}
