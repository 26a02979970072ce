"""Quarantine: cut a VM off its network, reversibly, except for the host's forensics port.

Two methods implement the ``Quarantine`` protocol:

* ``nft`` (``act/quarantine/nft.py`` ``NftQuarantine``): the VM's bridge port and MAC in the sets of a
  bridge-family table vmsentry owns; frames from and to it dropped. Fast (about a millisecond) and invisible
  to the guest.
* ``libvirt`` (``act/quarantine/libvirt.py`` ``LibvirtQuarantine``): the NIC moved live to an isolated
  libvirt network.

Both keep their state where the enforcement is (nft set element comments, libvirt domain metadata), so
``held()`` reads it back after a restart, and ``release`` undoes a hold exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Protocol

_MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")


class QuarantineError(Exception):
    """A hold or release that could not be done; the message is one line, and nothing was changed."""


@dataclass(frozen=True)
class Target:
    """What is held: a VM (its name from the inventory, never from a MAC the attacker chose), the MAC of its
    NIC, and where known the host side of that NIC (bridge port, e.g. vnet3), its bridge, its network and the
    NIC's address in the inventory (``ip``: the only sender address the nft method lets its ARP claim)."""

    vm: str
    mac: str
    port: str | None = None
    bridge: str | None = None
    network: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class Held:
    target: Target
    method: str
    reason: str
    since: float
    until: float | None = None  # when the TTL releases it by itself (None: never)
    alert_id: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Held:
        return cls(target=Target(**data["target"]), **{k: v for k, v in data.items() if k != "target"})

    def names(self) -> set[str]:
        """What ``release`` accepts for this hold: the VM name and the MAC."""
        return {self.target.vm, self.target.mac}


class Quarantine(Protocol):
    method: str  # "nft" | "libvirt"

    def hold(self, target: Target, reason: str, ttl: float | None, alert_id: str | None) -> Held:
        """Cut ``target`` off; idempotent (a VM already held keeps its first hold, which is returned)."""
        ...

    def release(self, vm_or_mac: str) -> Held:
        """Undo the hold exactly; QuarantineError if nothing with that VM name or MAC is held."""
        ...

    def held(self) -> list[Held]:
        """Every hold in force, read back from the kernel / libvirt (survives a restart)."""
        ...

    def ruleset(self) -> str:
        """What is in force, for an incident's ruleset-before/after.nft ("" if not applicable)."""
        ...


def no_port_warning(target: Target) -> str | None:
    """The line to show when a hold has no bridge port: it is by MAC only, so the VM can still send from a
    MAC it makes up (and receives broadcasts, with the nft method). None when the port is known."""
    if target.port:
        return None
    name = target.vm if target.vm == target.mac else f"{target.vm} ({target.mac})"
    return f"no bridge port known for {name}: frames it sends from other MACs are not stopped"


def normalise_mac(text: str) -> str | None:
    """``52-54-00-AA-BB-CC`` or ``52:54:00:aa:bb:cc`` -> ``52:54:00:aa:bb:cc``; None if it is not a MAC."""
    mac = text.strip().lower().replace("-", ":")
    return mac if _MAC_RE.fullmatch(mac) else None


def find_held(holds: list[Held], vm_or_mac: str) -> Held | None:
    """The hold named by a VM name or a MAC (any spelling), or None."""
    key = normalise_mac(vm_or_mac) or vm_or_mac
    return next((h for h in holds if key in h.names()), None)


def compact(held: Held) -> dict:
    """The Held record with short keys and no empty fields, for storage with a size limit (nft comments)."""
    t = held.target
    record = {
        "v": t.vm,
        "m": t.mac,
        "p": t.port,
        "b": t.bridge,
        "n": t.network,
        "i": t.ip,
        "r": held.reason,
        "s": round(held.since, 3),
        "u": None if held.until is None else round(held.until, 3),
        "a": held.alert_id,
    }
    return {k: v for k, v in record.items() if v is not None}


def from_compact(text: str, method: str) -> Held | None:
    """``compact``'s JSON back into a Held; None if ``text`` is not one (someone else's comment)."""
    try:
        r = json.loads(text)
        target = Target(
            vm=str(r["v"]), mac=str(r["m"]), port=r.get("p"), bridge=r.get("b"), network=r.get("n"), ip=r.get("i")
        )
        until = r.get("u")
        return Held(
            target=target,
            method=method,
            reason=str(r.get("r", "")),
            since=float(r["s"]),
            until=None if until is None else float(until),
            alert_id=r.get("a"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
