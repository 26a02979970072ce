"""Which VM an alert is about: named by the bridge port its frames came in on, never by a MAC address the
attacker chose.

The inventory says which MAC each VM was given and which bridge port (tap) each NIC is on. The bridge's
forwarding database (collect/bridge_fdb.py: ``/sys/class/net/BR/brforward``) says on which port each source
MAC was last seen. A MAC learned on a port that is not the port of the VM the MAC belongs to names the VM on
that port: an attacker that forges vm2's MAC from vm1's port is vm1. A MAC the bridge has not learned (aged
out, or no FDB to read) falls back to the inventory. A flood of random MACs (macof) is attributed by the port its sample
MACs were learned on.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmsentry.collect import bridge_fdb
from vmsentry.collect.bridge_fdb import SYSFS_NET
from vmsentry.model import Inventory
from vmsentry.model.traffic import mac_bytes, mac_text

__all__ = ["SYSFS_NET", "Attribution", "Attributor", "Port"]


@dataclass(frozen=True)
class Port:
    """A VM NIC's place: the VM, the MAC the inventory gave it, its bridge and port (tap) name."""

    vm: str
    mac: str | None
    bridge: str | None
    port: str | None
    network: str | None
    ip: str | None = None


@dataclass(frozen=True)
class Attribution:
    """The answer for one alert. ``vm`` None: nothing on a VM's port could be named (an alert only)."""

    vm: str | None
    mac: str | None  # the VM's own MAC (from the inventory), or the frames' MAC when no VM is known
    port: str | None
    bridge: str | None
    network: str | None
    why: str
    forged: bool = False  # the frames carried a MAC that belongs to another VM (or host)
    ip: str | None = None  # the VM NIC's address in the inventory


class Attributor:
    def __init__(self, sysfs: str = SYSFS_NET) -> None:
        self.sysfs = sysfs
        self.by_port: dict[tuple[str | None, str], Port] = {}
        self.by_mac: dict[bytes, Port] = {}
        self.host_macs: dict[bytes, str] = {}
        self.by_vm: dict[str, list[Port]] = {}

    def set_inventory(self, inv: Inventory) -> None:
        by_port, by_mac, by_vm = {}, {}, {}
        for vm in inv.vms:
            for nic in vm.nics:
                place = Port(vm.name, nic.mac, nic.bridge, nic.target, nic.network, nic.ip)
                by_vm.setdefault(vm.name, []).append(place)
                if nic.target:
                    by_port[(nic.bridge, nic.target)] = place
                    by_port.setdefault((None, nic.target), place)
                raw = mac_bytes(nic.mac)
                if raw:
                    by_mac[raw] = place
        hosts = {}
        for net in inv.networks:
            raw = mac_bytes(net.host_mac)
            if raw:
                hosts[raw] = net.host or (inv.hosts[0].name if inv.hosts else "host")
        self.by_port, self.by_mac, self.by_vm, self.host_macs = by_port, by_mac, by_vm, hosts

    # --- the bridge ------------------------------------------------------------------------------
    def learned(self, macs: list[bytes], bridges: list[str]) -> dict[bytes, tuple[str, str, int]]:
        """MAC -> (bridge, port name, age in centiseconds) for each of ``macs`` the bridges have learned."""
        return bridge_fdb.learned(macs, bridges, self.sysfs)

    # --- one alert -------------------------------------------------------------------------------
    def attribute(self, alert: dict, bridges: list[str]) -> Attribution:
        attacker = alert.get("attacker") or {}
        mac = mac_bytes(attacker.get("mac"))
        candidates = [mac] if mac else []
        if not candidates:  # a flood of random MACs: the port its sample MACs were learned on
            candidates = [m for m in map(mac_bytes, (alert.get("evidence") or {}).get("examples") or []) if m]
        if not candidates and attacker.get("vm") in self.by_vm:
            place = self.by_vm[attacker["vm"]][0]
            return self._named(place, None, f"{place.vm} named by its address {attacker.get('ip')}")
        learned = self.learned(candidates, bridges)
        for cand in candidates:
            if cand not in learned:
                continue
            bridge, port, _ = learned[cand]
            on_port = self.by_port.get((bridge, port)) or self.by_port.get((None, port))
            owner = self.by_mac.get(cand)
            owner_name = owner.vm if owner else self.host_macs.get(cand)
            if on_port is None:
                if cand in self.host_macs:
                    return Attribution(None, mac_text(cand), port, bridge, None, f"the host's MAC on port {port}")
                return Attribution(
                    None, mac_text(cand), port, bridge, None, f"{mac_text(cand)} learned on port {port} (no VM there)"
                )
            forged = owner_name is not None and owner_name != on_port.vm
            why = f"{mac_text(cand)} learned on bridge {bridge} port {port} ({on_port.vm}'s port)"
            if forged:
                why += f": the MAC belongs to {owner_name}, forged by {on_port.vm}"
            return self._named(on_port, bridge, why, forged)
        for cand in candidates:  # not in any forwarding table: the inventory's word
            owner = self.by_mac.get(cand)
            if owner:
                return self._named(owner, None, f"{mac_text(cand)} is {owner.vm}'s MAC (inventory; not in the FDB)")
            if cand in self.host_macs:
                return Attribution(None, mac_text(cand), None, None, None, "the host's own MAC")
        shown = mac_text(candidates[0]) if candidates else "no MAC"
        return Attribution(None, shown, None, None, None, f"{shown}: no VM found on any watched bridge port")

    def _named(self, place: Port, bridge: str | None, why: str, forged: bool = False) -> Attribution:
        return Attribution(
            place.vm, place.mac, place.port, bridge or place.bridge, place.network, why, forged, place.ip
        )
