"""A Linux bridge's forwarding database, read from sysfs: on which port each source MAC was last seen.

``/sys/class/net/BR/brforward`` is an array of the kernel's ``struct __fdb_entry``; ``brif/*/port_no`` maps
port numbers to port names. The watcher names an attacker by the port its MAC was learned on
(watch/attribution.py); ``vmsentry quarantine MAC`` and the watcher find the bridge port of a MAC-only hold
here. sysfs shows the bridges of the network namespace it was mounted in (``ip netns exec`` remounts it).
"""

from __future__ import annotations

import os

import numpy as np

SYSFS_NET = "/sys/class/net"
# struct __fdb_entry (include/uapi/linux/if_bridge.h): 16 bytes, host byte order
FDB_ENTRY = np.dtype(
    [
        ("mac", "u1", 6),
        ("port_no", "u1"),
        ("is_local", "u1"),
        ("ageing", "=u4"),  # centiseconds since the MAC was last seen
        ("port_hi", "u1"),
        ("pad", "u1"),
        ("unused", "=u2"),
    ]
)
MAX_FDB_BYTES = 64 << 20  # 4 M entries: a flooded bridge's table is read whole, never without bound


def bridges(sysfs: str = SYSFS_NET) -> list[str]:
    """The bridge devices sysfs shows (those with a ``bridge`` directory)."""
    try:
        names = os.listdir(sysfs)
    except OSError:
        return []
    return sorted(n for n in names if os.path.isdir(os.path.join(sysfs, n, "bridge")))


def port_names(bridge: str, sysfs: str = SYSFS_NET) -> dict[int, str]:
    """Port number -> port name, from ``brif/*/port_no`` ("0x1")."""
    names = {}
    brif = os.path.join(sysfs, bridge, "brif")
    try:
        ports = os.listdir(brif)
    except OSError:
        return names
    for name in ports:
        try:
            with open(os.path.join(brif, name, "port_no")) as f:
                names[int(f.read().strip(), 0)] = name
        except (OSError, ValueError):
            continue
    return names


def fdb(bridge: str, sysfs: str = SYSFS_NET) -> np.ndarray:
    """The bridge's learned (non-local) entries; empty when the bridge or its table cannot be read."""
    try:
        with open(os.path.join(sysfs, bridge, "brforward"), "rb") as f:
            data = f.read(MAX_FDB_BYTES)
    except OSError:
        return np.zeros(0, FDB_ENTRY)
    table = np.frombuffer(data[: len(data) - len(data) % FDB_ENTRY.itemsize], FDB_ENTRY)
    return table[table["is_local"] == 0]


def learned(macs: list[bytes], bridge_names: list[str], sysfs: str = SYSFS_NET) -> dict[bytes, tuple[str, str, int]]:
    """MAC -> (bridge, port name, age in centiseconds) for each of ``macs`` the bridges have learned; where
    several bridges know a MAC, the one that saw it last."""
    found: dict[bytes, tuple[str, str, int]] = {}
    if not macs:
        return found
    wanted = _mac_keys(np.frombuffer(b"".join(macs), "u1").reshape(-1, 6))
    for bridge in bridge_names:
        table = fdb(bridge, sysfs)
        if not len(table):
            continue
        names = None
        for i in np.flatnonzero(np.isin(_mac_keys(table["mac"]), wanted)):
            entry = table[i]
            mac = bytes(entry["mac"])
            age = int(entry["ageing"])
            if mac in found and found[mac][2] <= age:
                continue
            names = names if names is not None else port_names(bridge, sysfs)
            name = names.get(int(entry["port_no"]) | int(entry["port_hi"]) << 8)
            if name:
                found[mac] = (bridge, name, age)
    return found


_SHIFTS = np.array([40, 32, 24, 16, 8, 0], np.uint64)


def _mac_keys(macs: np.ndarray) -> np.ndarray:
    """(n, 6) MAC bytes -> n integers (comparable with np.isin)."""
    return (macs.astype(np.uint64) << _SHIFTS).sum(axis=1, dtype=np.uint64)
