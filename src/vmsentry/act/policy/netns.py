"""Create a socket inside a named network namespace from this process (setns on a helper thread: the
namespace applies to that thread only, and the socket keeps the namespace it was created in)."""

from __future__ import annotations

import ctypes
import os
import threading

CLONE_NEWNET = 0x40000000


def open_in_netns(netns: str, factory):
    box: dict = {}

    def body():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, f"setns({netns}): {os.strerror(e)}")
            finally:
                os.close(fd)
            box["r"] = factory()
        except BaseException as exc:
            box["e"] = exc

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["r"]
