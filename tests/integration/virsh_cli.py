"""``virsh`` against the real libvirtd, for the integration tests (one copy for conftest and tests)."""

from __future__ import annotations

import os
import subprocess

from lxml import etree

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


def interface_xml(domain: str, mac: str, *flags: str) -> str:
    """The domain's <interface> with ``mac`` as libvirt reports it (``flags``: e.g. ``--inactive``), without the
    network port's id (a new port is made each time a NIC joins a network)."""
    root = etree.fromstring(virsh("dumpxml", domain, *flags).stdout.encode())
    for nic in root.iterfind("devices/interface"):
        if nic.xpath("string(mac/@address)") == mac:
            source = nic.find("source")
            if source is not None:
                source.attrib.pop("portid", None)
            nic.tail = None
            return etree.tostring(nic, encoding="unicode")
    raise AssertionError(f"{domain} has no NIC {mac}")
