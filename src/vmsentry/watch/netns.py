"""``watch --netns NS``: capture, read the bridge and quarantine inside a named network namespace, while the
metrics server (started before) keeps listening on the host's side.

Python 3.11 has no ``os.setns``: libc's ``setns`` through ctypes, on the main thread, so that every socket
the watcher opens afterwards (the capture ring, libnftables' netlink socket) is in the namespace. As
``ip netns exec`` does, the watcher first takes a private copy of the mount table and, once inside, mounts a
fresh sysfs on ``/sys``: ``/sys/class/net`` then shows the namespace's bridges (their forwarding tables are
read from there). Unsharing the mount table needs a single-threaded process, hence two steps:
``private_mounts()`` before any thread starts, ``enter(ns)`` after the metrics server is up.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_SLAVE = 1 << 19
MNT_DETACH = 2


class NetnsError(Exception):
    pass


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        e = ctypes.get_errno()
        raise NetnsError(f"{what}: {os.strerror(e)}")


def private_mounts() -> bool:
    """A private mount table for this process (mounts made here do not leak to the host). False if the
    kernel refused (then ``/sys`` is not remounted and the bridge tables are not read in the namespace)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        return False
    return libc.mount(b"none", b"/", None, MS_REC | MS_SLAVE, None) == 0


def enter(netns: str, remount_sys: bool) -> None:
    """Move the calling thread (the main thread) into ``/run/netns/NETNS``; with ``remount_sys``, mount a sysfs
    of that namespace on /sys (after ``private_mounts``)."""
    libc = _libc()
    try:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetnsError(f"--netns {netns}: {exc.strerror}") from None
    try:
        _check(libc.setns(fd, CLONE_NEWNET), f"--netns {netns}: setns")
    finally:
        os.close(fd)
    if remount_sys:
        libc.umount2(b"/sys", MNT_DETACH)  # (nothing mounted there is fine)
        _check(libc.mount(b"sysfs", b"/sys", b"sysfs", 0, None), f"--netns {netns}: mounting /sys")
