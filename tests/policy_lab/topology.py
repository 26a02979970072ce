"""The policy lab: a hypervisor, five VMs, an office with three people.

::

    netns admin  10.77.0.5  --o-admin--+                         +--p-vm1-- netns vm1 10.99.0.11  zone web
    netns dev    10.77.0.30 --o-dev----+ br-off       br-vsl     +--p-vm2-- netns vm2 10.99.0.12  zone app
    netns tester 10.77.0.70 -o-tester-+ 10.77.0.1    10.99.0.1  +--p-vm3-- netns vm3 10.99.0.13  zone app
                                       \\____ netns hv _____/   +--p-vm4-- netns vm4 10.99.0.14  jump host
                                          (ip_forward=1)         +--p-vm5-- netns vm5 10.99.0.15  zone db

(every namespace name is prefixed with ``vsl<pid>-``). ``hv`` plays the host: it owns the VM bridge ``br-vsl`` (like virbr0) with the host address 10.99.0.1,
and routes between it and the office bridge ``br-off``. A VM reaching 10.99.0.1 or 10.77.0.1 reaches the
host (nft ``input``); VM to VM is bridged (nft ``forward`` through br_netfilter); office to VM is routed
(``forward``). The policy is applied with ``--netns <prefix>-hv``. Nothing touches the root namespace.

The inventory of this lab is tests/fixtures/policy/lab-inventory.json (ports p-vmN are the NICs' targets).
"""

from __future__ import annotations

import os
import subprocess

# Namespace names carry this process's pid, so two test runs on one machine (developers share it) never
# share a lab. Interface names live inside the namespaces and need no prefix.
PREFIX = f"vsl{os.getpid()}"
HV = f"{PREFIX}-hv"
VMS = {  # name: (ip, mac)
    "vm1": ("10.99.0.11", "52:54:00:99:00:11"),
    "vm2": ("10.99.0.12", "52:54:00:99:00:12"),
    "vm3": ("10.99.0.13", "52:54:00:99:00:13"),
    "vm4": ("10.99.0.14", "52:54:00:99:00:14"),
    "vm5": ("10.99.0.15", "52:54:00:99:00:15"),
}
PEOPLE = {  # name: (ip, mac)
    "admin": ("10.77.0.5", "52:54:00:77:00:05"),
    "dev": ("10.77.0.30", "52:54:00:77:00:30"),
    "tester": ("10.77.0.70", "52:54:00:77:00:70"),
}
HOST_VM_IP, HOST_VM_MAC = "10.99.0.1", "52:54:00:99:00:01"
HOST_OFFICE_IP = "10.77.0.1"
HOST_TCP = (22, 8080, 9999)
HOST_UDP = (53,)
VM_TCP = (22, 80, 443, 8080, 5432)


def ns(name: str) -> str:
    return name if name.startswith(PREFIX + "-") else f"{PREFIX}-{name}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def namespaces() -> list[str]:
    return [HV] + [ns(n) for n in VMS] + [ns(n) for n in PEOPLE]


def down() -> None:
    for n in namespaces():
        sh("ip", "netns", "del", n, check=False)


def up() -> None:
    down()
    sh("ip", "netns", "add", HV)
    hv = ["ip", "-n", HV]
    sh(*hv, "link", "set", "lo", "up")
    for br, addr, mac in (
        ("br-vsl", f"{HOST_VM_IP}/24", HOST_VM_MAC),
        ("br-off", f"{HOST_OFFICE_IP}/24", "52:54:00:77:00:01"),
    ):
        sh(*hv, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sh(*hv, "link", "set", br, "address", mac)
        sh(*hv, "addr", "add", addr, "dev", br)
        sh(*hv, "link", "set", br, "up")
    sh("ip", "netns", "exec", HV, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for group, bridge, port_prefix, gw in ((VMS, "br-vsl", "p-", HOST_VM_IP), (PEOPLE, "br-off", "o-", HOST_OFFICE_IP)):
        for name, (ip, mac) in group.items():
            n = ns(name)
            port = f"{port_prefix}{name}"
            sh("ip", "netns", "add", n)
            sh("ip", "link", "add", port, "netns", HV, "type", "veth", "peer", "name", "eth0", "netns", n)
            sh("ip", "-n", n, "link", "set", "eth0", "address", mac)
            sh("ip", "-n", n, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", n, "link", "set", "lo", "up")
            sh("ip", "-n", n, "link", "set", "eth0", "up")
            sh("ip", "-n", n, "route", "add", "default", "via", gw)
            sh(*hv, "link", "set", port, "master", bridge, "up")


def neigh_mac(netns: str, ip: str) -> str | None:
    out = sh("ip", "-n", netns, "neigh", "show", ip).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def flush_neigh() -> None:
    for n in namespaces():
        sh("ip", "-n", n, "neigh", "flush", "all", check=False)
