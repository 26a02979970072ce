"""The recent frames of every VM, kept so that an incident's capture can start before its first alert.

The watcher hands every block of captured frames to ``RecentFrames.add`` (the arrays ``RingReader``'s
``on_frames`` and ``BulkDecoder.frames`` take: the buffer, each frame's offset, time stamp, captured and
wire length), up to a million frames a second, so the work per block is a handful of numpy operations and
one copy, never a Python step per frame:

* the block's bytes from its first frame to the end of its last are copied once (``memcpy`` speed) into a
  **chunk**; the kernel's ring block is handed back right after;
* each frame's source and destination MAC are read in one gather (the first 12 bytes of every frame) and
  looked up at once (a table of the known MACs' low 16 bits, then the whole MAC compared);
* each VM whose MAC is the source or destination of some frames of the block gets one **entry** in its
  ring: the chunk and the arrays of those frames (offset in the chunk, time, lengths). A frame between two
  VMs is in both rings but its bytes are in the chunk once. Frames of no known VM go to one shared ring.
  Every entry keeps its frames' MACs, so that ``frames`` can pick out a MAC that is no VM's (a forged or
  flooding one) wherever its frames are.

Every ring is bounded in bytes: a frame costs its share of its chunk (its captured bytes and the capture
header before it) plus the bookkeeping of its entry; past the bound the oldest frames are dropped (counted
in ``evicted``). A chunk lives while some ring still holds one of its frames. A quiet VM may keep a few
frames of many blocks a busy one has already dropped: when all chunks together take more than twice what
the rings hold of them, the chunks held least are copied down to their held frames until they take 1.5
times. So the frame memory is at most ``2 x (per_vm_bytes x rings + shared_bytes)``; rings are at most
``max_vms`` (a VM that left the inventory keeps its ring until its place is needed; VMs past ``max_vms``
go to the shared ring, counted in ``refused_vms``).

Cost (``benchmarks/bench_recent.py``: gen_traffic.py's typical mix, 1,000,000 packets in 4 MB blocks, 30 VMs,
8 MB per VM, one core of a shared 2-core machine): about 0.15 s per million packets once the rings are full
(0.25-0.35 s while they fill: the new memory's page faults), so about a sixth of a core at 1 M packets/s;
taking one VM's frames out for a bundle, about 0.05 s for 40,000 frames.
"""

from __future__ import annotations

from collections import deque
from itertools import count

import numpy as np

from vmsentry.collect.traffic.pcap_bulk import _keep_freed_memory, _rows

U = np.uint64
NO_MAC = U(1 << 48)  # a frame too short to hold its MACs: matches no VM
ENTRY_COST = 512  # bytes charged per entry (the Python objects of one block's frames in one ring)
FRAME_COST = 48  # bytes of arrays per frame held (offset, time, captured and wire length, both MACs)
COMPACT_ABOVE = 2.0  # chunks are compacted when they take more than this many times what is held of them ...
COMPACT_TO = 1.5  # ... until they take less than this many times (the worst-held chunks first)
FEW_FRAMES = 4096  # compaction by slices below this many frames, by a byte mask above


class _Pool:
    """The chunks alive and what rings hold of them (frames held by two rings count twice)."""

    __slots__ = ("chunks", "size", "held")

    def __init__(self) -> None:
        self.chunks: set[_Chunk] = set()
        self.size = 0  # bytes of all chunks alive
        self.held = 0  # of which rings hold this much


class _Chunk:
    """A copy of one block's frames; ``held`` is the cost of its frames that rings still hold."""

    __slots__ = ("data", "held", "entries", "seq", "pool")

    def __init__(self, data: bytes, seq: int, pool: _Pool) -> None:
        self.data, self.seq, self.pool = data, seq, pool
        self.held = 0
        self.entries: list[_Entry] = []
        pool.chunks.add(self)
        pool.size += len(data)

    def hold(self, delta: int) -> None:
        self.held += delta
        self.pool.held += delta

    def forget(self, entry: _Entry) -> None:
        self.entries.remove(entry)
        if not self.entries:  # nothing held of it any more: it goes
            self.pool.chunks.discard(self)
            self.pool.size -= len(self.data)


class _Entry:
    """The frames of one chunk that one ring holds, in capture order."""

    __slots__ = ("chunk", "at", "ts", "incl", "orig", "span", "src", "dst", "cost", "ring")

    def __init__(self, chunk: _Chunk, at, ts, incl, orig, span, src, dst) -> None:
        self.chunk, self.at, self.ts, self.incl, self.orig, self.span = chunk, at, ts, incl, orig, span
        self.src, self.dst = src, dst
        self.ring: _Ring | None = None
        held = int(span.sum())
        self.cost = held + FRAME_COST * len(at) + ENTRY_COST
        chunk.hold(held)
        chunk.entries.append(self)

    def drop_front(self, k: int) -> int:
        """Forget the first ``k`` frames; returns the cost freed."""
        freed_span = int(self.span[:k].sum())
        self.chunk.hold(-freed_span)
        for name in ("at", "ts", "incl", "orig", "span", "src", "dst"):
            setattr(self, name, getattr(self, name)[k:])
        freed = freed_span + FRAME_COST * k
        self.cost -= freed
        return freed

    def release(self) -> int:
        self.chunk.hold(-int(self.span.sum()))
        self.chunk.forget(self)
        return self.cost


class _Ring:
    __slots__ = ("limit", "entries", "bytes", "evicted")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: deque[_Entry] = deque()
        self.bytes = 0
        self.evicted = 0  # frames dropped to stay within the bound

    def push(self, entry: _Entry) -> None:
        entry.ring = self
        self.entries.append(entry)
        self.bytes += entry.cost
        while self.bytes > self.limit and self.entries:
            oldest = self.entries[0]
            excess = self.bytes - self.limit
            if excess < oldest.cost - ENTRY_COST:  # a part of it is enough: its first k frames
                k = int(np.searchsorted(np.cumsum(oldest.span + FRAME_COST), excess)) + 1
                if k < len(oldest.at):
                    self.evicted += k
                    self.bytes -= oldest.drop_front(k)
                    return
            self.entries.popleft()
            self.evicted += len(oldest.at)
            self.bytes -= oldest.release()


class RecentFrames:
    """Per-VM byte-bounded rings of recent frames (see the module text). Not thread-safe: the capture
    thread calls ``add``; ``frames`` is called between blocks."""

    def __init__(self, per_vm_bytes: int = 8 << 20, max_vms: int = 1024, shared_bytes: int = 32 << 20) -> None:
        self.per_vm_bytes, self.max_vms = per_vm_bytes, max_vms
        self.shared = _Ring(shared_bytes)
        self.rings: dict[str, _Ring] = {}
        self.names: list[str] = []  # VM index -> name
        self.keys = np.zeros(0, U)  # the known MACs, sorted, as 48-bit integers
        self.owner = np.zeros(0, np.int64)  # the VM index of each key
        self.low = np.full(1 << 16, -1, np.int64)
        self.by_mac: dict[bytes, str] = {}
        self.seq = count()
        self.pool = _Pool()
        self.refused_vms = 0  # VMs beyond max_vms whose frames went to the shared ring
        _keep_freed_memory()  # the chunks of dropped blocks are reused, not mapped fresh each time

    # --- the inventory ------------------------------------------------------------------------------
    def set_macs(self, macs: dict[bytes, str]) -> None:
        """The MAC (6 bytes) -> VM name map; replaces the previous one. The rings of VMs no longer named
        stay until their place is needed."""
        names = sorted(set(macs.values()))
        if len(names) > self.max_vms:
            self.refused_vms = len(names) - self.max_vms
            names = names[: self.max_vms]
        else:
            self.refused_vms = 0
        index = {name: i for i, name in enumerate(names)}
        pairs = sorted((int.from_bytes(mac, "big"), index[vm]) for mac, vm in macs.items() if vm in index)
        self.keys = np.array([k for k, _ in pairs], U)
        self.owner = np.array([v for _, v in pairs], np.int64)
        low_bits = self.keys & U(0xFFFF)
        self.low = np.full(1 << 16, -1, np.int64)  # low 16 bits -> key index, -2 if several keys have them
        self.low[low_bits.astype(np.int64)] = np.arange(len(self.keys))
        values, counts = np.unique(low_bits, return_counts=True)
        self.low[values[counts > 1].astype(np.int64)] = -2
        self.names = names
        self.by_mac = {mac: vm for mac, vm in macs.items() if vm in index}

    def _ring(self, name: str) -> _Ring:
        ring = self.rings.get(name)
        if ring is None:
            if len(self.rings) >= self.max_vms:  # make room: the first ring of a VM no longer known
                current = set(self.names)
                gone = next((n for n in self.rings if n not in current), None)
                if gone is not None:
                    for entry in self.rings.pop(gone).entries:
                        entry.release()
            ring = self.rings[name] = _Ring(self.per_vm_bytes)
        return ring

    def _owners(self, macs: np.ndarray) -> np.ndarray:
        """The VM index of each MAC (48-bit integers), -1 for none: one gather from a table of the keys'
        low 16 bits (a binary search per frame costs ten times more), then a check of the whole MAC;
        MACs whose low bits more than one key shares are looked up by binary search."""
        if not len(self.keys):
            return np.full(len(macs), -1, np.int64)
        cand = self.low[(macs & U(0xFFFF)).astype(np.int64)]
        found = cand >= 0
        owners = np.full(len(macs), -1, np.int64)
        hit = found.copy()
        hit[found] = self.keys[cand[found]] == macs[found]
        owners[hit] = self.owner[cand[hit]]
        shared = np.flatnonzero(cand == -2)
        if len(shared):
            pos = np.minimum(np.searchsorted(self.keys, macs[shared]), len(self.keys) - 1)
            same = self.keys[pos] == macs[shared]
            owners[shared[same]] = self.owner[pos[same]]
        return owners

    # --- the capture side -----------------------------------------------------------------------------
    def add(self, interface: str, buf, frame: np.ndarray, ts: np.ndarray, incl: np.ndarray, orig: np.ndarray) -> None:
        """One block of frames (``RingReader``'s ``on_frames``): frames at offsets ``frame`` of ``buf``, in
        capture order, each with 16 readable bytes of ``buf`` from its start."""
        n = len(frame)
        if not n:
            return
        frame = frame.astype(np.int64, copy=False)
        incl = incl.astype(np.int64, copy=False)
        ends = frame + incl
        lo, hi = int(frame.min()), int(ends.max())
        chunk = _Chunk(bytes(memoryview(buf)[lo:hi]), next(self.seq), self.pool)
        at = frame - lo
        # each frame's share of the chunk: its bytes and the gap (capture header) before it
        span = incl.copy()
        span[1:] += np.maximum(frame[1:] - ends[:-1], 0)
        head = _rows(buf, frame, 16).view(">u8")
        dst = head[:, 0] >> U(16)
        src = ((head[:, 0] & U(0xFFFF)) << U(32)) | (head[:, 1] >> U(32))
        short = incl < 12
        if short.any():
            dst[short] = src[short] = NO_MAC
        by_src, by_dst = self._owners(src), self._owners(dst)

        src_idx = np.flatnonzero(by_src >= 0)
        dst_idx = np.flatnonzero((by_dst >= 0) & (by_dst != by_src))
        if len(src_idx) or len(dst_idx):
            # one sort of VM x n + frame: each VM's frames together, in capture order
            pairs = np.sort(np.concatenate((by_src[src_idx] * n + src_idx, by_dst[dst_idx] * n + dst_idx)))
            vm, idx = np.divmod(pairs, n)
            cuts = np.flatnonzero(np.diff(vm)) + 1
            firsts = np.concatenate(([0], cuts)).tolist()
            for first, group in zip(firsts, np.split(idx, cuts)):
                ring = self._ring(self.names[int(vm[first])])
                ring.push(
                    _Entry(chunk, at[group], ts[group], incl[group], orig[group], span[group], src[group], dst[group])
                )
        rest = np.flatnonzero((by_src < 0) & (by_dst < 0))
        if len(rest):
            entry = _Entry(chunk, at[rest], ts[rest], incl[rest], orig[rest], span[rest], src[rest], dst[rest])
            self.shared.push(entry)
        pool = self.pool
        if pool.size > COMPACT_ABOVE * pool.held:
            # the chunks of which least is held first, until the chunks take COMPACT_TO times what is held
            for old in sorted(pool.chunks, key=lambda c: c.held / len(c.data)):
                if pool.size <= COMPACT_TO * pool.held:
                    break
                _compact(old)

    # --- the incident side ----------------------------------------------------------------------------
    def frames(
        self, vms: set[str], macs: set[bytes] = frozenset(), since: float | None = None, until: float | None = None
    ) -> list[tuple[float, bytes, int]]:
        """The frames held of ``vms`` and of ``macs`` (6 bytes each: a known VM's MAC means its whole ring;
        any other MAC, every frame it sent or received, in whatever ring), time stamped in ``[since, until]``,
        in time order (capture order among equal times), each once: ``(ts, frame bytes, wire length)``."""
        names = set(vms) | {self.by_mac[m] for m in macs if m in self.by_mac}
        unknown = np.array(sorted(int.from_bytes(m, "big") for m in macs if m not in self.by_mac), U)
        low = -np.inf if since is None else since
        high = np.inf if until is None else until
        picked: dict[tuple[int, int], tuple[float, bytes, int]] = {}
        whole = [self.rings[n] for n in sorted(names) if n in self.rings]
        scanned = [*self.rings.values(), self.shared] if len(unknown) else []
        for ring, by_mac in [*((r, False) for r in whole), *((r, True) for r in scanned)]:
            for entry in ring.entries:
                if entry.ts.max() < low or entry.ts.min() > high:
                    continue
                sel = (entry.ts >= low) & (entry.ts <= high)
                if by_mac:
                    sel &= np.isin(entry.src, unknown) | np.isin(entry.dst, unknown)
                data, seq = entry.chunk.data, entry.chunk.seq
                for at, t, n, o in zip(
                    entry.at[sel].tolist(), entry.ts[sel].tolist(), entry.incl[sel].tolist(), entry.orig[sel].tolist()
                ):
                    if (seq, at) not in picked:
                        picked[(seq, at)] = (t, data[at : at + n], o)
        return [picked[key] for key in sorted(picked, key=lambda key: (picked[key][0], key))]

    def stats(self) -> dict:
        """Frames and bytes held, rings, frames evicted (per VM and shared), chunk bytes in memory."""
        chunks = {id(e.chunk): len(e.chunk.data) for r in (*self.rings.values(), self.shared) for e in r.entries}
        return {
            "rings": len(self.rings),
            "held_bytes": sum(r.bytes for r in self.rings.values()) + self.shared.bytes,
            "chunk_bytes": sum(chunks.values()),
            "frames": sum(len(e.at) for r in (*self.rings.values(), self.shared) for e in r.entries),
            "evicted": {"vms": sum(r.evicted for r in self.rings.values()), "shared": self.shared.evicted},
            "refused_vms": self.refused_vms,
        }


def _compact(chunk: _Chunk) -> None:
    """Copy the frames of ``chunk`` that rings still hold into a new, smaller chunk."""
    starts = np.unique(np.concatenate([e.at for e in chunk.entries]))
    lengths = np.zeros(len(starts), np.int64)
    for e in chunk.entries:
        lengths[np.searchsorted(starts, e.at)] = e.incl
    if len(starts) < FEW_FRAMES:
        view = memoryview(chunk.data)
        data = b"".join([view[a : a + n] for a, n in zip(starts.tolist(), lengths.tolist())])
    else:  # a byte mask: +1 where a frame starts, -1 where it ends, summed up
        mask = np.zeros(len(chunk.data) + 1, np.int8)
        mask[starts] += 1  # (starts are distinct, and so are ends; a frame may end where the next starts)
        mask[starts + lengths] -= 1
        keep = np.cumsum(mask[:-1], dtype=np.int8).view(bool)
        data = np.frombuffer(chunk.data, np.uint8)[keep].tobytes()
    new_at = np.cumsum(lengths) - lengths
    pool = chunk.pool
    pool.chunks.discard(chunk)
    pool.size -= len(chunk.data)
    fresh = _Chunk(data, chunk.seq, pool)
    for e in chunk.entries:
        held = int(e.span.sum())
        e.at = new_at[np.searchsorted(starts, e.at)]
        e.span = e.incl.copy()  # (no capture headers between frames any more)
        change = int(e.span.sum()) - held
        e.cost += change
        e.ring.bytes += change
        chunk.hold(-held)
        fresh.hold(held + change)
        e.chunk = fresh
    fresh.entries = chunk.entries
    chunk.entries = []
