"""One watcher per bridge: a lock file per (network namespace, bridge), held with flock for the watcher's life.

Two watchers responding on one bridge would race each other's quarantines and double every alert, so the
second one says which watcher holds the bridge (its pid, from the lock file) and exits 3. The kernel drops
the lock when the holder dies, so a crashed watcher never leaves a bridge locked. The lock lives in
``/run/vmsentry`` (tmpfs: gone at reboot), or under the evidence folder when /run is not writable
(a hardened unit without RuntimeDirectory=). The namespace is named by the inode of ``/proc/self/ns/net``,
so bridges of the same name in two namespaces are two locks.
"""

from __future__ import annotations

import fcntl
import os

RUN_DIR = "/run/vmsentry"


class LockError(Exception):
    pass


class BridgeLocks:
    def __init__(self, bridges: list[str], fallback_dir: str | None = None, run_dir: str = RUN_DIR) -> None:
        self.bridges = bridges
        self.dirs = [run_dir] + ([os.path.join(fallback_dir, ".locks")] if fallback_dir else [])
        self.held: list[int] = []

    def acquire(self) -> None:
        try:
            netns = os.stat("/proc/self/ns/net").st_ino
        except OSError:
            netns = 0
        folder = self._folder()
        for bridge in self.bridges:
            path = os.path.join(folder, f"watch-{netns}-{bridge}.lock")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                self.release()
                raise LockError(
                    f"{bridge}: another watcher (pid {holder}) watches this bridge ({path}); stop it first"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.held.append(fd)

    def _folder(self) -> str:
        problems = []
        for folder in self.dirs:
            try:
                os.makedirs(folder, mode=0o755, exist_ok=True)
                if os.access(folder, os.W_OK):
                    return folder
                problems.append(f"{folder}: not writable")
            except OSError as exc:
                problems.append(f"{folder}: {exc.strerror}")
        raise LockError("no place for the bridge locks: " + "; ".join(problems))

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held.clear()
