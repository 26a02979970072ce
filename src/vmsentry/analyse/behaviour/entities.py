"""Who a frame is about: the entity table of the feature extractor.

Entities named beforehand come from a truth file (``GroundTruth``: VMs with names and roles), a list of
``Entity`` records, or the detectors' ``Truth`` built from an inventory (VMs and host addresses by MAC; no
roles). Frames are attributed by source MAC (the sender) and destination MAC (the receiver); a frame
without MACs (raw-IP captures) by its IPv4 address where a named entity has it.

Other source MACs are learned: a MAC becomes an entity of its own (named by the MAC) once it has sent
``admit_after`` frames. Until then, and for every MAC once the table holds ``limit`` learned entities,
its frames go to one entity, ``(unattributed)``, so that a MAC flood (every frame from a new random MAC) is
one entity with a huge new-MAC rate, not a million entities. The MACs waiting for admission are counted
exactly in a bounded candidate list (``candidates`` MACs; past it, the ones with the fewest frames, then
the oldest, are forgotten: ``forgotten``); MACs refused because the table is full are counted (``refused``).
"""

from __future__ import annotations

import numpy as np

from vmsentry.model.behaviour import Entity, GroundTruth
from vmsentry.model.traffic import ip_bytes, mac_bytes, mac_text

UNATTRIBUTED = "(unattributed)"
LIMIT = 4096
ADMIT_AFTER = 4
CANDIDATES = 1 << 16
MULTICAST = np.uint64(1 << 40)  # the group bit of a MAC as a 48-bit integer


def named_entities(source) -> list[Entity]:
    """The entities named by ``source``: a ``GroundTruth``, ``Entity`` records, the detectors' ``Truth``
    (anything with ``vm_of_mac``/``host_of_mac``/``ips_of_mac``), or None (none named)."""
    if source is None:
        return []
    if isinstance(source, GroundTruth):
        return list(source.vms)
    if hasattr(source, "vm_of_mac"):
        by_name: dict[str, Entity] = {}
        for kind, table in (("vm", source.vm_of_mac), ("host", source.host_of_mac)):
            for mac, name in table.items():
                if name in by_name:
                    continue
                ips = sorted(source.ips_of_mac.get(mac, ()))
                ip = ".".join(map(str, ips[0])) if ips and len(ips[0]) == 4 else None
                by_name[name] = Entity(name, mac_text(mac), ip, None if kind == "vm" else "host")
        return list(by_name.values())
    return [e if isinstance(e, Entity) else Entity(*e) for e in source]


def _macs_of(source, entities: list[Entity]) -> list[tuple[int, int]]:
    """(MAC as an integer, entity index) for every MAC an entity has (a VM with several NICs: all)."""
    index = {e.name: i for i, e in enumerate(entities)}
    pairs = []
    if source is not None and hasattr(source, "vm_of_mac"):
        for table in (source.vm_of_mac, source.host_of_mac):
            pairs += [(int.from_bytes(mac, "big"), index[name]) for mac, name in table.items() if name in index]
    for i, e in enumerate(entities):
        mac = mac_bytes(e.mac)
        if mac:
            pairs.append((int.from_bytes(mac, "big"), i))
    return pairs


class EntityTable:
    def __init__(
        self, source=None, limit: int = LIMIT, admit_after: int = ADMIT_AFTER, candidates: int = CANDIDATES
    ) -> None:
        self.entities = named_entities(source)
        self.named = len(self.entities)
        self.unattributed = len(self.entities)
        self.entities.append(Entity(UNATTRIBUTED, None, None, None))
        self.limit, self.admit_after, self.candidates = limit, admit_after, candidates
        pairs = dict(_macs_of(source, self.entities[: self.named]))
        self.mac_key = np.array(sorted(pairs), np.uint64)
        self.mac_entity = np.array([pairs[k] for k in sorted(pairs)], np.int64)
        ips = {}
        for i, e in enumerate(self.entities[: self.named]):
            raw = ip_bytes(e.ip)
            if raw and len(raw) == 4:
                ips.setdefault(int.from_bytes(raw, "big"), i)
        self.ip_key = np.array(sorted(ips), np.uint32)
        self.ip_entity = np.array([ips[k] for k in sorted(ips)], np.int64)
        self.cand_key = np.zeros(0, np.uint64)
        self.cand_count = np.zeros(0, np.int64)
        self.cand_seen = np.zeros(0, np.float64)
        self.forgotten = self.refused = 0

    def __len__(self) -> int:
        return len(self.entities)

    @property
    def learned(self) -> int:
        return len(self.entities) - self.named - 1

    def senders(self, mac: np.ndarray, ip: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """The entity of each frame's sender (learning new MACs on the way); never -1."""
        found = _lookup(self.mac_key, self.mac_entity, mac)
        miss = (found < 0) & (mac != 0) & ((mac & MULTICAST) == 0)
        if miss.any():
            self._admit(mac[miss], ts[miss])
            found = _lookup(self.mac_key, self.mac_entity, mac)
        return self._by_ip(found, mac, ip, self.unattributed)

    def receivers(self, mac: np.ndarray, ip: np.ndarray) -> np.ndarray:
        """The entity of each frame's receiver where there is one (else -1): never learns."""
        return self._by_ip(_lookup(self.mac_key, self.mac_entity, mac), mac, ip, -1)

    def _by_ip(self, found: np.ndarray, mac: np.ndarray, ip: np.ndarray, default: int) -> np.ndarray:
        bare = found < 0
        if len(self.ip_key) and bare.any():
            no_mac = bare & (mac == 0)
            found[no_mac] = _lookup(self.ip_key, self.ip_entity, ip[no_mac])
        found[found < 0] = default
        return found

    def _admit(self, macs: np.ndarray, ts: np.ndarray) -> None:
        keys, first, counts = np.unique(macs, return_index=True, return_counts=True)
        seen = ts[first]
        at = np.searchsorted(self.cand_key, keys)
        at_clipped = np.minimum(at, max(len(self.cand_key) - 1, 0))
        old = (at < len(self.cand_key)) & (self.cand_key[at_clipped] == keys) if len(self.cand_key) else at < 0
        self.cand_count[at[old]] += counts[old]
        self.cand_seen[at[old]] = seen[old]
        key = np.concatenate([self.cand_key, keys[~old]])
        count = np.concatenate([self.cand_count, counts[~old]])
        last = np.concatenate([self.cand_seen, seen[~old]])
        ready = count >= self.admit_after
        if ready.any():
            room = self.limit - self.learned
            chosen = np.flatnonzero(ready)
            chosen = chosen[np.argsort(-count[chosen], kind="stable")]
            self.refused += max(0, len(chosen) - max(room, 0))
            chosen = np.sort(chosen[: max(room, 0)])
            if len(chosen):
                first_new = len(self.entities)
                self.entities += [Entity(_mac_name(int(k)), _mac_name(int(k)), None, None) for k in key[chosen]]
                merged = np.concatenate([self.mac_key, key[chosen]])
                entity = np.concatenate([self.mac_entity, np.arange(first_new, first_new + len(chosen))])
                order = np.argsort(merged, kind="stable")
                self.mac_key, self.mac_entity = merged[order], entity[order]
            keep = ~ready  # admitted or refused: off the list (a refused MAC is tried again after ``admit_after``)
            key, count, last = key[keep], count[keep], last[keep]
        if len(key) > self.candidates:  # the fewest frames, then the oldest, go
            keep = np.lexsort((last, count))[len(key) - self.candidates :]
            self.forgotten += len(key) - self.candidates
            key, count, last = key[keep], count[keep], last[keep]
        order = np.argsort(key, kind="stable")
        self.cand_key, self.cand_count, self.cand_seen = key[order], count[order], last[order]


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``values`` of each ``query`` found in the sorted ``keys``, else -1."""
    if not len(keys):
        return np.full(len(query), -1, np.int64)
    at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[at] == query, values[at], -1)


def _mac_name(mac: int) -> str:
    return mac.to_bytes(6, "big").hex(":")
