"""Live capture that keeps up with a busy hypervisor: an AF_PACKET TPACKET_V3 ring per interface.

The kernel writes frames into a memory-mapped ring of blocks and hands a block to user space when it is
full or after ``retire_ms`` (10 ms: the wait an alert can add). A block retired by the timer is mostly
empty, so at moderate rates the ring holds ``block_count * retire_ms`` of traffic whatever the block
size. The default is 32 blocks of 1 MB (32 MB per bridge, counted in the watcher's resident memory once the
ring has filled): 0.3 s of stall at moderate rates, and about 200,000 small frames at any rate (1 MB holds
about 6,500 of them). Measured (docs/benchmarks.md, issue 12): 128 MB rings put the watcher at 230 MB under a
1,000,000-MAC flood against 168 MB with 32 MB; 256 KB blocks (more of them in the same memory, a longer
stall covered at low rates) cost 20 % of capacity in decoder calls; a flood the detectors cannot keep up
with (about 150,000 packets/s of new MACs) is dropped by the kernel once the ring is full (a 128 MB ring held
all of a 1,000,000-packet flood, a 32 MB ring a quarter of it), and counted (``kernel_drops``). Blocks already
handed over when the reader comes back (it fell behind) are decoded together, up to ``MERGE_BYTES``. Each
block handed over is copied out at once (one memcpy, well under a millisecond: the block goes back to the kernel before any decoding, so a slow batch of
detectors never holds the ring), its frames are located (``frame_offsets``) and decoded together by
``pcap_bulk.BulkDecoder.frames``, the same numpy fast path as capture files. One socket per interface,
every interface promiscuous, all polled together; a frame's interface is not an input to the detectors
(the events carry MACs and addresses), so frames of several bridges share one stream.

VLAN tags: the kernel strips an 802.1Q tag it has in the packet's metadata (a VLAN-filtering bridge, a NIC
with offload) and reports it in ``tp_vlan_tci``; the frame in the ring is then untagged. Such frames are
decoded as untagged and counted as ``vlan-tagged`` in ``stats.problems``, which is what the decoder does
with a tag it finds in a capture file (it steps over it), so a live bridge and a capture of it agree.

PACKET_FANOUT is not used: it spreads one interface's packets over several sockets, which helps only if
several processes or threads decode them; one Python process holds the GIL, and splitting the stream
by flow hash would split what the detectors correlate (a scan's SYNs open different flows). One socket
per interface is also the setup that can run ``detect`` twice on one bridge without either stealing
the other's packets (a fanout group shares them).

Problems while running never raise: an interface that disappears (deleted, or set down: ENODEV,
ENETDOWN, or its index changed) gives one ``on_problem`` line, is retried every second, and one more line
when it is back. Only at start, for a single named interface, an interface that cannot be opened is a
``LiveError`` (so ``detect -i nosuch`` fails at once, exit 3).

Stats (``stats.extra``): ``kernel_packets`` and ``kernel_drops`` (PACKET_STATISTICS, all interfaces;
the kernel's packets include its drops), ``kernel_freezes`` (times the ring was full), ``ring_fill`` (the
peak fraction of a ring's blocks that were waiting for user space when it was polled: near 1.0 means
drops are close), ``capture_busy_seconds`` (CPU time reading, decoding and detecting) and
``capture_capacity_pps`` (packets per busy second), and ``interfaces`` ({name: {packets, drops,
captured}}).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import time
from array import array
from collections.abc import Callable, Iterator

import numpy as np

from vmsentry.collect.traffic.live import ETH_P_ALL, PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC, LiveError
from vmsentry.collect.traffic.pcap_bulk import SLOT, BulkDecoder

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
TP_STATUS_VLAN_VALID = 1 << 4
SIOCGIFFLAGS, SIOCGIFINDEX = 0x8913, 0x8933
IFF_UP = 0x1
SO_ATTACH_FILTER, BPF_RET_K = 26, 0x06
FRAME_SIZE = 2048  # tp_frame_size: only a unit the kernel checks the ring's geometry with (V3 packs frames)
BLOCK_STATUS = struct.Struct("<I")
# tpacket_block_desc at offset 8: block_status, num_pkts, offset_to_first_pkt, blk_len (bytes used, header included)
BLOCK_FIELDS = struct.Struct("<IIII")
PAD = 64  # bytes readable past a block's last frame (BulkDecoder reads 48 from every frame's start)
SPARSE = 512  # bytes per frame above which the chain is walked in Python (see frame_offsets)
RETRY = 1.0  # seconds between attempts to reopen an interface that went away
TICK = 0.1  # on_tick at least this often, and the poll timeout
BLOCKS_PER_TURN = 4  # batches taken from one ring before the next ring's turn (fairness across bridges)
MERGE_BYTES = 4 << 20  # blocks already handed over (the reader fell behind) are decoded together up to this much


def frame_offsets(block, first: int, count: int, end: int) -> np.ndarray:
    """Where the ``count`` frame headers (tpacket3_hdr) of a block start, from ``first`` (the block's
    ``offset_to_first_pkt``), ``end`` = the block's used length; ``block`` holds at least ``end + 48``
    bytes.

    The headers form a chain (``tp_next_offset``), sequential by nature: a Python loop costs about 55 ns
    a frame. Dense blocks (small frames, the high-rate case) are instead scanned with numpy: every
    8-aligned place (the kernel's V3 alignment) whose ``tp_mac`` equals the first frame's is a candidate,
    about 0.1 ns a byte (14 ns a frame at 64 bytes). A candidate list is taken only if it is exactly the
    chain (as many as ``num_pkts``, each one's next offset landing on the next): a payload that mimics a
    header, or a frame with another link-header length (``tp_mac`` differs), sends the block to the loop.
    Sparse blocks (over ``SPARSE`` bytes a frame) go to the loop directly: scanning costs more there."""
    if count == 0:
        return np.empty(0, np.int64)
    if end - first < SPARSE * count:
        mac = struct.unpack_from("<H", block, first + 24)[0]
        u16 = np.frombuffer(block, np.uint16, (len(block) // 2))
        cand = first + 8 * np.flatnonzero(u16[(first + 24) // 2 : (end + 24) // 2 : 4] == mac)
        if len(cand) == count and cand[0] == first:
            nxt = np.frombuffer(block, np.uint32, len(block) // 4)[cand >> 2]
            if np.array_equal(cand[:-1] + nxt[:-1], cand[1:]):
                return cand
    words = memoryview(block).cast("B", (len(block),))[: len(block) & ~3].cast("I")
    out = array("q", bytes(8 * count))
    off = first
    for i in range(count):
        if off >= end or off & 7:  # a broken chain: keep what is sound
            return np.frombuffer(out, np.int64)[:i]
        out[i] = off
        off += words[off >> 2]
    return np.frombuffer(out, np.int64)


class _Ring:
    """One interface's packet socket and its mapped ring."""

    def __init__(self, name: str, sock: socket.socket, ring: mmap.mmap, block_size: int, block_count: int):
        self.name, self.sock, self.ring = name, sock, ring
        self.block_size, self.block_count = block_size, block_count
        self.index = _ifindex(sock, name)
        self.cur = 0  # the next block to look at (the kernel fills them in order)

    def ready(self, block: int) -> bool:
        return BLOCK_STATUS.unpack_from(self.ring, block * self.block_size + 8)[0] & TP_STATUS_USER != 0

    def held(self) -> int:
        """Blocks waiting for user space now."""
        size, ring = self.block_size, self.ring
        return sum(BLOCK_STATUS.unpack_from(ring, b * size + 8)[0] & TP_STATUS_USER for b in range(self.block_count))

    def take(self) -> tuple[bytes, int, int, int] | None:
        """The next block handed over, copied out (with at least 48 readable bytes past its last frame) and
        given back to the kernel: (copy, offset of the first frame, frames, used length); None if the
        kernel still has it."""
        base = self.cur * self.block_size
        status, count, first, used = BLOCK_FIELDS.unpack_from(self.ring, base + 8)
        if not status & TP_STATUS_USER:
            return None
        used = min(used, self.block_size)
        stop = base + used + PAD
        # the bytes after the block are the next block's (readable garbage); the ring's last block is padded
        data = self.ring[base:stop] if stop <= len(self.ring) else self.ring[base : base + used] + bytes(PAD)
        BLOCK_STATUS.pack_into(self.ring, base + 8, TP_STATUS_KERNEL)
        self.cur = (self.cur + 1) % self.block_count
        return data, first, count, used

    def take_ready(self, limit: int) -> list[tuple[bytes, int, int, int]]:
        """The blocks handed over one after the other, up to about ``limit`` bytes: decoded as one buffer,
        so that small blocks (little memory, short waits) do not cost a decoder call each."""
        blocks, size = [], 0
        while size < limit and len(blocks) < self.block_count:
            block = self.take()
            if block is None:
                break
            blocks.append(block)
            size += block[3]
        return blocks

    def counters(self) -> tuple[int, int, int]:
        """The kernel's (packets, drops, freezes) since the last read (reading resets them)."""
        try:
            return struct.unpack("III", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12))
        except OSError:
            return 0, 0, 0

    def error(self) -> int:
        try:
            return self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            return exc.errno or errno.EIO

    def close(self) -> None:
        try:
            self.ring.close()
        except (BufferError, ValueError):  # (a view still alive: the mapping goes with the socket's file)
            pass
        self.sock.close()


def _ifindex(sock: socket.socket, name: str) -> int:
    """The index of ``name`` in the socket's own network namespace (an ioctl on the socket, so a
    namespace entered only by the thread that made the socket is the one asked)."""
    req = struct.pack("16si", name.encode()[:15], 0)
    return struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, req))[1]


def _is_up(sock: socket.socket, name: str) -> bool:
    req = struct.pack("16sH", name.encode()[:15], 0)
    return bool(struct.unpack("16sH", fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, req + bytes(22))[:18])[1] & IFF_UP)


class RingReader:
    """A traffic reader (``name``, ``format``, ``run(decoder)``) over TPACKET_V3 rings on ``interfaces``."""

    format = "live"

    def __init__(
        self,
        interfaces: list[str],
        *,
        stop: Callable[[], bool] = lambda: False,
        duration: float | None = None,
        max_packets: int | None = None,
        block_size: int = 1 << 20,
        block_count: int = 32,
        retire_ms: int = 10,
        snaplen: int = 0,
        on_frames: Callable | None = None,
        on_problem: Callable[[str, str], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_tick: Callable[[float], None] | None = None,
    ) -> None:
        if isinstance(interfaces, str):
            interfaces = [interfaces]
        self.interfaces = list(dict.fromkeys(interfaces))
        self.name = "live:" + ",".join(self.interfaces)
        self.stop, self.duration, self.max_packets = stop, duration, max_packets
        self.block_size = max(mmap.PAGESIZE, block_size // mmap.PAGESIZE * mmap.PAGESIZE)
        self.block_count = max(2, block_count)
        self.retire_ms, self.snaplen = retire_ms, snaplen
        self.on_frames, self.on_problem, self.on_ready, self.on_tick = on_frames, on_problem, on_ready, on_tick
        self.counts = {name: {"packets": 0, "drops": 0, "captured": 0} for name in self.interfaces}
        self.freezes = 0
        self.ring_fill = 0.0

    # --- opening -------------------------------------------------------------------------------------
    def open_socket(self, interface: str) -> socket.socket:
        """A packet socket for ``interface`` (made in the caller's network namespace; a subclass may make
        it elsewhere, as ``policy check --netns`` does)."""
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))

    def open(self, interface: str) -> _Ring:
        """The interface's ring, bound, promiscuous; OSError (errno set) or LiveError (a clear line)."""
        try:
            sock = self.open_socket(interface)
        except PermissionError:
            raise LiveError(f"{interface}: capturing needs root (CAP_NET_RAW)") from None
        try:
            index = _ifindex(sock, interface)
            if not _is_up(sock, interface):
                raise OSError(errno.ENETDOWN, "the interface is down")
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            if self.snaplen:  # a classic BPF filter of one instruction, ret #snaplen, cuts every frame
                prog = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, self.snaplen))
                sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(prog)))
            req = struct.pack(
                "7I",
                self.block_size,
                self.block_count,
                FRAME_SIZE,
                self.block_size // FRAME_SIZE * self.block_count,
                self.retire_ms,
                0,
                0,
            )
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            ring = mmap.mmap(sock.fileno(), self.block_size * self.block_count, mmap.MAP_SHARED)
            sock.bind((interface, ETH_P_ALL))
            mreq = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except BaseException:
            sock.close()
            raise
        r = _Ring(interface, sock, ring, self.block_size, self.block_count)
        r.counters()  # the kernel's counters from zero
        return r

    def _open_all(self) -> tuple[dict[str, _Ring], dict[str, str]]:
        rings, missing = {}, {}
        for name in self.interfaces:
            try:
                rings[name] = self.open(name)
            except OSError as exc:
                why = _why(exc)
                if len(self.interfaces) == 1 or exc.errno in (errno.EPERM, errno.EACCES):
                    for r in rings.values():
                        r.close()
                    raise LiveError(f"{name}: cannot capture: {why}") from None
                missing[name] = why
                self._problem(name, f"{name}: cannot capture ({why}); retrying every {RETRY:.0f} s")
            except LiveError:
                for r in rings.values():
                    r.close()
                raise
        return rings, missing

    def _problem(self, name: str, line: str) -> None:
        if self.on_problem:
            self.on_problem(name, line)

    # --- the loop ------------------------------------------------------------------------------------
    def run(self, dec) -> Iterator[None]:
        rings, missing = self._open_all()
        stats = dec.stats
        bulk = BulkDecoder(dec) if dec.bulk and not dec.flows.all_packets else None
        poller = select.poll()
        for r in rings.values():
            poller.register(r.sock, select.POLLIN)
        clock, cpu = time.time, time.process_time
        started = clock()
        end = started + self.duration if self.duration else None
        limit = self.max_packets
        next_check, last_tick, busy = started + RETRY, started, 0.0
        if self.on_ready:
            self.on_ready()
        try:
            while not self.stop():
                wait = TICK if end is None else max(0.0, min(TICK, end - clock()))
                events = poller.poll(int(wait * 1000))
                woke = cpu()
                captured = 0
                broken = {fd for fd, ev in events if ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL)}
                for r in list(rings.values()):
                    if r.sock.fileno() in broken:
                        code = r.error()
                        if code:
                            self._lost(r, code, rings, missing, poller)
                            continue
                    self.ring_fill = max(self.ring_fill, r.held() / r.block_count)
                    for _ in range(BLOCKS_PER_TURN):
                        blocks = r.take_ready(MERGE_BYTES)
                        if not blocks:
                            break
                        captured += self._blocks(r, blocks, dec, bulk)
                        stats.see_time(started, None)
                        yield  # the blocks' events go to the detectors now
                if captured:
                    busy += cpu() - woke
                now = clock()
                if now >= next_check:
                    next_check = now + RETRY
                    self._check(rings, missing, poller)
                self._stats(stats, rings, busy)
                if self.on_tick and now - last_tick >= TICK:
                    last_tick = now
                    self.on_tick(now)
                if not captured:
                    yield
                if (end is not None and now >= end) or (limit is not None and stats.packets >= limit):
                    break
        finally:
            self._stats(stats, rings, busy)
            stats.see_time(None, clock())
            for r in rings.values():
                r.close()

    def _blocks(self, r: _Ring, blocks: list[tuple], dec, bulk: BulkDecoder | None) -> int:
        """Decode the frames of blocks handed over together, as one buffer; returns how many."""
        if len(blocks) == 1:
            data, first, count, used = blocks[0]
            at = frame_offsets(data, first, count, used)
        else:
            located, base = [], 0
            for data, first, count, used in blocks:
                located.append(frame_offsets(data, first, count, used) + base)
                base += len(data)
            data, at = b"".join(b[0] for b in blocks), np.concatenate(located)
        if not len(at):
            return 0
        head = np.frombuffer(data, np.uint8)
        windows = np.lib.stride_tricks.as_strided(head, (len(head) - 47, 48), (1, 1), writeable=False)
        words = windows[at].view("<u4")  # tpacket3_hdr, twelve words each
        sec, incl, orig = words[:, 1], words[:, 3].astype(np.int64), words[:, 4].astype(np.int64)
        ts = sec.astype(np.float64) + words[:, 2] * 1e-9
        frame = at + (words[:, 6] & 0xFFFF)
        vlan = int(np.count_nonzero(words[:, 5] & TP_STATUS_VLAN_VALID))
        stats = dec.stats
        if vlan:
            stats.problems["vlan-tagged"] += vlan
        self.counts[r.name]["captured"] += len(at)
        if self.on_frames:
            self.on_frames(r.name, data, frame, ts, incl, orig)
        if bulk is not None:
            bulk.frames(data, frame, ts, (sec // SLOT).astype(np.uint64), incl, orig)
        else:
            stats.packets += len(at)
            stats.bytes += int(orig.sum())
            stats.see_time(float(ts.min()), float(ts.max()))
            decode = dec.frame
            for t, b, n, o in zip(ts.tolist(), frame.tolist(), incl.tolist(), orig.tolist()):
                decode(t, data, b, n, o)
        return len(at)

    def _lost(self, r: _Ring, code: int, rings: dict, missing: dict, poller) -> None:
        try:  # (the kernel says ENETDOWN for a deleted interface too)
            gone = _ifindex(r.sock, r.name) != r.index
        except OSError:
            gone = True
        why = "deleted" if gone else "down" if code == errno.ENETDOWN else _why(OSError(code, os.strerror(code)))
        self._account(r)
        poller.unregister(r.sock)
        r.close()
        del rings[r.name]
        missing[r.name] = why
        self._problem(r.name, f"{r.name}: capture lost (interface {why}); retrying every {RETRY:.0f} s")

    def _check(self, rings: dict, missing: dict, poller) -> None:
        """Once a second: an open interface whose index changed (deleted and made again between two
        polls) is lost; a lost one is tried again."""
        for r in list(rings.values()):
            try:
                same = _ifindex(r.sock, r.name) == r.index
            except OSError:
                same = False
            if not same:
                self._lost(r, errno.ENODEV, rings, missing, poller)
        for name in list(missing):
            try:
                rings[name] = r = self.open(name)
            except (OSError, LiveError):
                continue
            poller.register(r.sock, select.POLLIN)
            del missing[name]
            self._problem(name, f"{name}: capture resumed")

    def _account(self, r: _Ring) -> None:
        packets, drops, freezes = r.counters()
        c = self.counts[r.name]
        c["packets"] += packets
        c["drops"] += drops
        self.freezes += freezes

    def _stats(self, stats, rings: dict, busy: float) -> None:
        for r in rings.values():
            self._account(r)
        extra = stats.extra
        extra["kernel_packets"] = sum(c["packets"] for c in self.counts.values())
        extra["kernel_drops"] = sum(c["drops"] for c in self.counts.values())
        extra["kernel_freezes"] = self.freezes
        extra["ring_fill"] = round(self.ring_fill, 3)
        extra["capture_busy_seconds"] = round(busy, 3)
        extra["capture_capacity_pps"] = round(stats.packets / busy) if busy else 0
        extra["interfaces"] = {name: dict(c) for name, c in self.counts.items()}


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ENODEV, errno.ENXIO):
        return "no such interface"
    return exc.strerror or str(exc)
