"""How many devices of one kind a reader takes from one VM definition (the cap and its message are
``MAX_DEVICES_PER_KIND`` and ``capped_message`` in model/inventory.py, where the saved-inventory loader
uses them too).

Past the cap the reader reads no more of that kind and says so, once per kind, as an input error naming
the file and where the cap was reached; everything before it is kept. ``capped`` is that rule for a
reader's loop over one kind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from vmsentry.model.inventory import MAX_DEVICES_PER_KIND, InputError, capped_message

__all__ = [
    "MAX_ADDRESSES_PER_FILE",
    "MAX_DEVICES_PER_KIND",
    "MAX_RULES_PER_FILE",
    "MAX_VMS_PER_HOST",
    "DeviceCap",
    "capped",
    "capped_message",
]

T = TypeVar("T")

# Rules in one firewall file and static hosts in one network: more than devices in a VM (a cluster-wide
# firewall or a /16 with reservations holds thousands), still far below what a 16 MiB file can declare
MAX_RULES_PER_FILE = 4096
# VMs in one host's export: Hyper-V runs at most 1,024 VMs on a host
MAX_VMS_PER_HOST = 1024
# Addresses in one file's IP sets and aliases: blocklists are long, so the cap is higher again
MAX_ADDRESSES_PER_FILE = 65536


class DeviceCap:
    """Devices taken so far from one VM (or one file), by kind: a kind read in several loops (forwarding
    rules under each of a VM's NAT adapters) shares one count."""

    def __init__(
        self,
        path: str,
        errors: list[InputError] | None,
        limit: int = MAX_DEVICES_PER_KIND,
        unit: str = "devices in one VM",
    ) -> None:
        self.path, self.errors, self.limit, self.unit = path, errors, limit, unit
        self.taken: dict[str, int] = {}

    def admit(self, kind: str, where: str) -> bool:
        """Whether one more ``kind`` is under the cap; the first time it is not, one error naming the
        file and ``where``."""
        return self._count(kind) or self._refuse(kind, where)

    def take(self, items: Iterable[T], kind: str, where: Callable[[T], str]) -> Iterator[T]:
        """Items while ``kind`` is under the cap; past it nothing more is taken from ``items`` (an
        iterator is not read on). ``where`` is called only for the item past the cap (a locator costs)."""
        for item in items:
            if not self._count(kind):
                self._refuse(kind, where(item))
                return
            yield item

    def _count(self, kind: str) -> bool:
        count = self.taken.get(kind, 0)
        if count < self.limit:
            self.taken[kind] = count + 1
            return True
        return False

    def _refuse(self, kind: str, where: str) -> bool:
        if self.taken[kind] == self.limit:  # said once per kind
            self.taken[kind] += 1
            if self.errors is not None:
                self.errors.append(InputError(self.path, capped_message(where, kind, self.limit, self.unit)))
        return False


def capped(
    items: Iterable[T],
    kind: str,
    path: str,
    errors: list[InputError] | None,
    where: Callable[[T], str],
    limit: int = MAX_DEVICES_PER_KIND,
    unit: str = "devices in one VM",
) -> Iterator[T]:
    """One loop's items under the cap (``DeviceCap.take`` for a kind read in one place)."""
    return DeviceCap(path, errors, limit, unit).take(items, kind, where)
