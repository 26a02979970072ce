"""Bounded memories of the feature extractor, updated a whole batch at a time with numpy.

* ``SeenSet``: "seen before?" for 64-bit keys (an entity's peer, a source MAC): two bitmaps of hashed keys,
  one being filled and the previous one; a key counts as seen if either holds it. When the current one has
  taken ``capacity`` new keys it becomes the previous one and a fresh one starts, so memory is fixed
  (2 x bits/8 bytes), old keys are forgotten after one or two generations, and the false "seen" rate stays
  below about 1 - exp(-2 x capacity / bits) (about 3 % with the defaults) however long a flood lasts.
* ``BeaconTable``: per (entity, peer) slot of a hashed table, the time of the last new connection and
  running sums of the gaps between connections, for a regularity score (beacons are regular).
"""

from __future__ import annotations

import numpy as np

U = np.uint64


def mix(keys: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each key (splitmix64's finaliser): nearby keys land far apart."""
    h = np.asarray(keys, np.uint64).copy()
    h ^= h >> U(33)
    h *= U(0xFF51AFD7ED558CCD)
    h ^= h >> U(33)
    h *= U(0xC4CEB9FE1A85EC53)
    h ^= h >> U(33)
    return h


class SeenSet:
    def __init__(self, bits: int = 1 << 23, capacity: int = 1 << 18) -> None:
        self.bits = bits
        self.capacity = capacity
        self.current = np.zeros(bits // 8, np.uint8)
        self.previous = np.zeros(bits // 8, np.uint8)
        self.filled = 0  # keys added to the current bitmap
        self.rotations = 0

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Remember distinct ``keys``; returns which of them were not seen before."""
        h = mix(keys) % U(self.bits)
        byte, bit = (h >> U(3)).astype(np.int64), (np.uint8(1) << (h & U(7)).astype(np.uint8))
        new = ((self.current[byte] & bit) == 0) & ((self.previous[byte] & bit) == 0)
        np.bitwise_or.at(self.current, byte[new], bit[new])
        self.filled += int(new.sum())
        if self.filled >= self.capacity:
            self.previous, self.current = self.current, self.previous
            self.current[:] = 0
            self.filled = 0
            self.rotations += 1
        return new


BEACON_SLOTS = 1 << 16
BEACON_MEMORY = 32  # gaps remembered (older ones weigh less, by rescaling the sums)
BEACON_MIN_GAPS = 3
MIN_GAP = 0.5  # seconds: closer connections are retries or bursts, not a beacon's period


class BeaconTable:
    def __init__(self, slots: int = BEACON_SLOTS) -> None:
        self.slots = slots
        self.key = np.zeros(slots, np.uint64)
        self.last = np.full(slots, -np.inf)
        self.n = np.zeros(slots)
        self.s1 = np.zeros(slots)
        self.s2 = np.zeros(slots)

    def update(self, pair: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New connections (``pair`` = entity/peer key, time ``ts``); returns, per distinct pair, the
        position (in the input) of its last connection and its regularity score 0..1 (1 - the
        coefficient of variation of the gaps, with at least ``BEACON_MIN_GAPS`` gaps)."""
        order = np.lexsort((ts, pair))
        pair, ts, where = pair[order], ts[order], order
        starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
        ends = np.r_[starts[1:], len(pair)] - 1
        keys = pair[starts]
        slot = (mix(keys) % U(self.slots)).astype(np.int64)
        known = self.key[slot] == keys
        previous = np.where(known, self.last[slot], -np.inf)
        prev_ts = np.r_[-np.inf, ts[:-1]]
        prev_ts[starts] = previous
        gap = ts - prev_ts
        real = np.isfinite(gap) & (gap >= MIN_GAP)
        group = np.cumsum(np.r_[True, pair[1:] != pair[:-1]]) - 1
        n = np.bincount(group, real, len(keys))
        s1 = np.bincount(group, np.where(real, gap, 0.0), len(keys))
        s2 = np.bincount(group, np.where(real, gap * gap, 0.0), len(keys))
        n0 = np.where(known, self.n[slot], 0.0)
        total_n = n0 + n
        total_s1 = np.where(known, self.s1[slot], 0.0) + s1
        total_s2 = np.where(known, self.s2[slot], 0.0) + s2
        shrink = np.minimum(1.0, BEACON_MEMORY / np.maximum(total_n, 1.0))
        self.key[slot], self.last[slot] = keys, ts[ends]
        self.n[slot], self.s1[slot], self.s2[slot] = total_n * shrink, total_s1 * shrink, total_s2 * shrink
        mean = total_s1 / np.maximum(total_n, 1.0)
        var = np.maximum(total_s2 / np.maximum(total_n, 1.0) - mean * mean, 0.0)
        score = np.where(
            (total_n >= BEACON_MIN_GAPS) & (mean > 0), np.clip(1.0 - np.sqrt(var) / np.maximum(mean, 1e-9), 0, 1), 0.0
        )
        return where[ends], score


ARP_BINDINGS = 65536


class ArpBindings:
    """Which MAC holds each IPv4 address, learned as arpwatch learns it: from the first ARP frame that
    claims the address (or from the inventory, ``bind``). A later ARP frame (reply or request) whose sender
    claims an address bound to another MAC is a foreign claim: ARP poisoning, or a VM that took over an
    address. Bounded: beyond ``limit`` addresses the oldest half is forgotten (counted in ``forgotten``).
    ARP frames are few, so a dict is enough; only an ARP flood makes many, and it stays bounded."""

    def __init__(self, limit: int = ARP_BINDINGS) -> None:
        self.limit = limit
        self.mac_of: dict[int, int] = {}
        self.forgotten = 0

    def bind(self, ip: int, mac: int) -> None:
        if len(self.mac_of) >= self.limit:
            drop = list(self.mac_of)[: self.limit // 2]
            for old in drop:
                del self.mac_of[old]
            self.forgotten += len(drop)
        self.mac_of[ip] = mac

    def claims(self, ips: list[int], macs: list[int]) -> np.ndarray:
        """Per ARP frame (sender address, sender MAC), in order: True where it claims another MAC's address."""
        foreign = np.zeros(len(ips), bool)
        mac_of = self.mac_of
        for i, (ip, mac) in enumerate(zip(ips, macs)):
            if not ip:
                continue  # (an ARP probe: "who has", sender address 0.0.0.0)
            held = mac_of.get(ip)
            if held is None:
                self.bind(ip, mac)
            elif held != mac:
                foreign[i] = True
        return foreign
