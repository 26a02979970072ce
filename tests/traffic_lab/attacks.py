"""Attack scenarios recorded in the namespace lab with the real tools (thc-ipv6 parasite6 and fake_advertise6,
dsniff arpspoof, nmap -D). Each records the bridge with tcpdump into a small pcap: the fixtures in
tests/fixtures/traffic/ were made with these functions, and the `lab` tests run them again live.

    sudo PYTHONPATH=src:tests python -m traffic_lab.attacks OUTDIR     # re-record every fixture

Everything stays inside the lab's namespaces (10.99.0.0/24, fe80::/64 on br-test).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from traffic_lab.lab import BRIDGE, NODES, Lab

HOST_LL = "fe80::5054:ff:fe99:1"  # the lab host's link-local address (EUI-64 of 52:54:00:99:00:01)
VM2_LL = "fe80::5054:ff:fe99:12"
TOOLS = ("atk6-parasite6", "atk6-fake_advertise6", "arpspoof", "nmap", "tcpdump", "ping")


class Recording:
    """tcpdump on the lab bridge into ``path`` while the ``with`` block runs."""

    def __init__(self, lab: Lab, path: Path) -> None:
        self.lab, self.path = lab, path

    def __enter__(self) -> Recording:
        self.proc = self.lab.spawn(
            self.lab.bridge_ns,
            ["tcpdump", "-i", BRIDGE, "--immediate-mode", "-U", "-s", "0", "-w", str(self.path)],
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = self.proc.stderr.readline()  # "listening on br-test, ...": the capture has started
        assert "listening on" in ready, ready
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)
        self.lab.stop(self.proc, signal.SIGINT)


def wait_ipv6(lab: Lab) -> None:
    """Until every node's link-local address has passed duplicate address detection."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(
            "tentative" not in lab.sh(n, "ip -6 addr show dev eth0", check=False).stdout
            and "fe80" in lab.sh(n, "ip -6 addr show dev eth0", check=False).stdout
            for n in NODES
        ):
            return
        time.sleep(0.2)
    raise RuntimeError("IPv6 link-local addresses did not come up")


def parasite6(lab: Lab, path: Path) -> None:
    """vm1 runs parasite6 (answers every neighbour solicitation with its own MAC); vm2 then looks up the
    host's link-local address (ping6 with an empty neighbour cache) and gets both answers."""
    wait_ipv6(lab)
    with Recording(lab, path):
        tool = lab.spawn("vm1", ["atk6-parasite6", "eth0"])
        time.sleep(1.5)
        lab.sh("vm2", "ip -6 neigh flush dev eth0", check=False)
        lab.sh("vm2", f"ping -6 -c 2 -i 0.5 -W 1 {HOST_LL}%eth0 >/dev/null", check=False)
        time.sleep(0.5)
        lab.stop(tool, signal.SIGINT)


def fake_advertise6(lab: Lab, path: Path) -> None:
    """vm1 advertises the host's link-local address as its own, unsolicited, to every node (3 times)."""
    wait_ipv6(lab)
    with Recording(lab, path):
        lab.sh("vm1", f"atk6-fake_advertise6 -n 3 -w 1 eth0 {HOST_LL} >/dev/null 2>&1", check=False, timeout=20)


def arpspoof_first_reply(lab: Lab, path: Path) -> None:
    """arpspoof from vm1 while the host stays silent: vm1 has spoken from its own address first (a ping
    to vm3), the host's address was never seen, so only the forged replies claim it until arpspoof
    restores the caches (SIGINT)."""
    lab.sh("vm1", "ping -c 1 -W 1 10.99.0.12 >/dev/null; ping -c 1 -W 1 10.99.0.1 >/dev/null", check=False)
    with Recording(lab, path):
        lab.sh("vm1", "ping -c 1 -W 1 10.99.0.13 >/dev/null", check=False)
        tool = lab.spawn("vm1", ["arpspoof", "-i", "eth0", "-t", "10.99.0.12", "10.99.0.1"])
        time.sleep(5.0)
        lab.stop(tool, signal.SIGINT)
        tool.wait(15)


def nmap_decoy(lab: Lab, path: Path) -> None:
    """nmap -sS from vm1 at the host with three decoy source addresses (nmap -D): every frame carries vm1's
    MAC."""
    with Recording(lab, path):
        lab.sh(
            "vm1",
            "nmap -sS -n -Pn -p 1-100 --max-retries 0 -T4 -D 10.99.0.50,10.99.0.51,ME,10.99.0.52 10.99.0.1 >/dev/null",
            check=False,
            timeout=60,
        )


def benign_ipv6(lab: Lab, path: Path) -> None:
    """No attack: vm3's interface comes up (duplicate address detection, MLD, router solicitation), the
    nodes resolve each other's link-local addresses and ping over IPv6."""
    wait_ipv6(lab)
    with Recording(lab, path):
        lab.sh("vm3", "ip link set eth0 down; ip link set eth0 up", check=False)
        wait_ipv6(lab)
        for node, peer in (("vm2", "fe80::5054:ff:fe99:13"), ("vm3", HOST_LL), ("host", VM2_LL), ("vm1", VM2_LL)):
            lab.sh(node, f"ip -6 neigh flush dev eth0; ping -6 -c 2 -i 0.3 -W 1 {peer}%eth0 >/dev/null", check=False)


SCENARIOS = {
    "parasite6-vm1.pcap": (parasite6, True),
    "fake-advertise6-vm1.pcap": (fake_advertise6, True),
    "arpspoof-first-reply-vm1.pcap": (arpspoof_first_reply, False),
    "nmap-decoy-vm1.pcap": (nmap_decoy, False),
    "benign-ipv6-nd.pcap": (benign_ipv6, True),
}


def record(name: str, out: Path, prefix: str | None = None) -> Path:
    """Run scenario ``name`` in a fresh lab and write its capture to ``out``/``name``."""
    scenario, ipv6 = SCENARIOS[name]
    path = out / name
    with Lab(prefix, ipv6=ipv6) as lab:
        scenario(lab, path)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1])
    for name in sys.argv[2:] or SCENARIOS:
        print(record(name, target))
