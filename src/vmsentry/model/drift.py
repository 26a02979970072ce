"""A configuration change between two readings of an asset (``vmsentry watch`` follows libvirt; ``vmsentry
drift OLD NEW`` compares saved inventories): what changed, both values, and where the value was read.

Made by ``analyse/drift.py``; read by the watcher (a ``config_drift`` alert and an audit entry per change)
and by reports, so it is a model record.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# what: the kinds of change. Lifecycle ("state") is not configuration drift but rides the same list so the
# watcher learns of a VM started or stopped in the same call.
CHANGE_KINDS = (
    "vm_added",
    "vm_removed",
    "state",
    "nic_added",
    "nic_removed",
    "nic_network",
    "nic_mode",
    "nic_bridge",
    "nic_filter",
    "listener_added",
    "listener_changed",
    "share_added",
    "forward_added",
    "network_added",
    "network_removed",
    "network_mode",
)


@dataclass(frozen=True, slots=True)
class Change:
    asset: str  # the VM's (or network's) name
    what: str  # one of CHANGE_KINDS
    before: Any  # a plain JSON value; None when something was added
    after: Any  # None when something was removed
    where: str | None = None  # where the new value (the old one when removed) was read: locator or source
    item: str | None = None  # which NIC ("net0 52:54:00:..."), listener, share or forward
    kind: str = "vm"  # the asset's kind: vm | network
    where_before: str | None = None  # where the old value was read (None when something was added)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
