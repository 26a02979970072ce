"""Live capture from a Linux interface (a bridge such as virbr0) through a raw AF_PACKET socket.

The bridge is put in promiscuous mode (PACKET_ADD_MEMBERSHIP, undone when the socket closes), otherwise
frames between two VMs never reach it. The socket gets a large receive buffer (SO_RCVBUFFORCE, 64 MB by
default) so that a burst is queued in the kernel rather than dropped while Python works through it;
frames are read without blocking in batches, and each batch is handed on at once (alerts within
milliseconds). The kernel's own counters (PACKET_STATISTICS: packets seen, packets dropped for want of
buffer space) are read after every batch and reported as ``stats.kernel_drops``.

Capture ends when ``stop()`` returns True (checked at least every ``poll`` seconds: the CLI sets it on
SIGINT/SIGTERM), after ``duration`` seconds, or after ``max_packets`` packets.

``stats.capture_busy_seconds`` is the CPU time spent reading, decoding and detecting (not waiting for
packets); ``stats.capture_capacity_pps`` = packets / that time is the rate this process could sustain.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable, Iterator

from vmsentry.collect.traffic.decode import FrameDecoder

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
BATCH = 2048


class LiveError(Exception):
    pass


class LiveReader:
    format = "live"

    def __init__(
        self,
        interface: str,
        *,
        stop: Callable[[], bool] = lambda: False,
        duration: float | None = None,
        max_packets: int | None = None,
        rcvbuf: int = 64 << 20,
        poll: float = 0.1,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.name = f"live:{interface}"
        self.interface = interface
        self.stop = stop
        self.duration = duration
        self.max_packets = max_packets
        self.rcvbuf = rcvbuf
        self.poll = poll
        self.on_ready = on_ready
        self.kernel_packets = 0
        self.kernel_drops = 0

    def open(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise LiveError(f"{self.interface}: capturing needs root (CAP_NET_RAW)") from None
        except OSError as exc:
            raise LiveError(f"{self.interface}: cannot open a packet socket: {exc.strerror}") from None
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            sock.bind((self.interface, 0))
            index = socket.if_nametoindex(self.interface)
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b""))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise LiveError(f"{self.interface}: {exc.strerror or exc}") from None
        self._counters(sock)  # start the kernel's counters from zero
        self.kernel_packets = self.kernel_drops = 0
        return sock

    def run(self, dec: FrameDecoder) -> Iterator[None]:
        sock = self.open()
        stats = dec.stats
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        started = time.time()
        end = started + self.duration if self.duration else None
        limit = self.max_packets
        recv, frame, clock, cpu = sock.recv, dec.ethernet_frame, time.time, time.process_time
        if self.on_ready:
            self.on_ready()
        busy = 0.0
        try:
            while not self.stop():
                wait = self.poll if end is None else max(0.0, min(self.poll, end - clock()))
                poller.poll(int(wait * 1000))
                woke = cpu()
                n = 0
                while n < BATCH:
                    try:
                        data = recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    now = clock()
                    n += 1
                    stats.bytes += len(data)
                    frame(now, data)
                if n:
                    stats.packets += n
                    stats.see_time(started if stats.first_ts is None else None, clock())
                self._counters(sock)
                stats.extra["kernel_packets"] = self.kernel_packets
                stats.extra["kernel_drops"] = self.kernel_drops
                yield
                if n:
                    busy += cpu() - woke
                    stats.extra["capture_busy_seconds"] = round(busy, 3)
                    stats.extra["capture_capacity_pps"] = round(stats.packets / busy) if busy else 0
                if (end is not None and clock() >= end) or (limit is not None and stats.packets >= limit):
                    break
        finally:
            stats.see_time(None, clock())
            sock.close()

    def _counters(self, sock: socket.socket) -> None:
        """Add the kernel's counters since the last read (reading them resets them)."""
        try:
            packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
        except OSError:
            return
        self.kernel_packets += packets
        self.kernel_drops += drops
