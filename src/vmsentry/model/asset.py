"""What every audited record (a VM, a network, a host) shares: its asset id, ``KIND:name``, the ``asset`` of
CONTRACTS.md's Finding and the node name in the exposure graph."""

from __future__ import annotations

from typing import ClassVar


class AssetRecord:
    __slots__ = ()
    KIND: ClassVar[str] = ""
    name: str

    @property
    def asset(self) -> str:
        return f"{self.KIND}:{self.name}"
