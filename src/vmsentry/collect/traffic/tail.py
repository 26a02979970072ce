"""``detect --follow``: read an input as it grows, like ``tail -f``, so alerts come as the traffic does.

A followed input is read with small reads of whatever has arrived (``os.readv`` on the descriptor), never
by filling a whole chunk first: a trickle on a pipe is decoded as it comes. A pipe, a FIFO or stdin ends
when its writer closes it; a regular file is read to its end and then watched for more (``poll`` seconds
between looks) until ``stop()`` says so (the CLI sets it on SIGINT/SIGTERM). A FIFO is opened without
blocking, so a FIFO nobody writes to yet does not hold the run (or its signals) in ``open``.

Files read whole (no ``--follow``) do not come here: they keep the big-buffer reads of ``pcap.py``.
"""

from __future__ import annotations

import os
import select
import stat
import time
from collections.abc import Callable


class Follow:
    """How to follow: ``stop()`` ends every followed input (checked at least every ``poll`` seconds)."""

    def __init__(self, stop: Callable[[], bool], poll: float = 0.2) -> None:
        self.stop = stop
        self.poll = poll


class TailStream:
    """A descriptor read as it grows. ``read``/``readinto`` return what has arrived (at least one byte),
    or nothing at the end: the writer closed the pipe, or ``stop()`` (then ``stopped`` is True)."""

    eager = True  # readers hand on what they decoded after every read instead of filling a chunk

    def __init__(self, fd: int, follow: Follow) -> None:
        self.fd, self.follow = fd, follow
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        self.stopped = False  # (stdin keeps its blocking mode, shared with the shell: poll says when to read)
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def readinto(self, view) -> int:
        wait_ms = int(self.follow.poll * 1000)
        while True:
            if self.follow.stop():
                self.stopped = True
                return 0
            if not self.regular and not self.poller.poll(wait_ms):
                continue  # nothing yet (a FIFO without a writer so far waits here too)
            try:
                n = os.readv(self.fd, [view])
            except BlockingIOError:
                continue
            if n:
                return n
            if not self.regular:
                return 0  # the writer closed the pipe
            time.sleep(self.follow.poll)  # the end of a growing file: look again

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(n if n and n > 0 else 1 << 16)
        got = self.readinto(buf)
        return bytes(buf[:got])


def open_tail(path: str, follow: Follow) -> TailStream:
    """``path`` (``-``: stdin) as a TailStream; OSError when it cannot be opened."""
    fd = os.dup(0) if path == "-" else os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    return TailStream(fd, follow)


def read_head(stream, size: int, decided: Callable[[bytes], bool]) -> bytes:
    """Up to ``size`` first bytes, stopping early once ``decided(head)`` (the format is known): a trickle
    is not held back until a whole head has come."""
    head = b""
    while len(head) < size:
        data = stream.read(size - len(head))
        if not data:
            break
        head += data
        if decided(head):
            break
    return head
