"""``virsh`` against the real libvirtd, for the integration tests (one copy for conftest and tests)."""

from __future__ import annotations

import os
import subprocess

URI = "qemu:///system"


def virsh(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    r = subprocess.run(
        ["virsh", "-c", URI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "LC_ALL": "C"},
    )
    if check and r.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)} failed (rc {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r
