"""What a predicate may look up beyond its own asset: the networks, filters and host facts the same
scan collected. Built once per scan; lookups are dictionary reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsentry.model import VM, Host, Inventory, Network, NwFilter


@dataclass
class ScanContext:
    inventory: Inventory
    networks: dict[str, Network] = field(default_factory=dict)
    nwfilters: dict[str, NwFilter] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)  # per-scan results predicates share (computed once)

    @classmethod
    def of(cls, inventory: Inventory) -> ScanContext:
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

    def host_fact(self, vm: VM | Network, attribute: str) -> Any:
        """A typed group of the host a VM or network runs on (``iommu``, ``memory_encryption`` ...); None
        when the host or the group is not known."""
        host = self.host_of(vm)
        return getattr(host, attribute) if host else None
