"""A bare bridge lab for replaying traffic into (the live ring's tests and ``benchmarks/bench_watch.py``):

    netns <p>br    : bridge br-test (STP off, forward delay 0, no firewall), what is captured
    netns <p>gen<i>: eth0, a port of br-test, no address, IPv6 off: only what is sent there is seen

Senders have no address, no ARP and no multicast (no IGMP report when a link comes up), and nothing
listens behind the bridge, so the bridge carries exactly the frames replayed (no ARP answers, no TCP
resets from a namespace that owns a replayed address). Names carry a
per-process prefix, like ``lab.py``'s; only this lab's namespaces are ever deleted.
"""

from __future__ import annotations

import os
import re
import subprocess

BRIDGE = "br-test"


class ReplayLab:
    def __init__(self, senders: int = 1, prefix: str | None = None) -> None:
        self.prefix = prefix or f"vsr{os.getpid() % 100000}"
        self.senders = senders
        self.procs: list[subprocess.Popen] = []

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}br"

    def gen(self, i: int = 0) -> str:
        return f"{self.prefix}gen{i}"

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=10)

    def sh(self, ns: str, command: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def spawn(self, ns: str, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def up(self) -> ReplayLab:
        self.down()
        br = self.bridge_ns
        self.ip("netns", "add", br)
        self.ip("-n", br, "link", "set", "lo", "up")
        self.sh(br, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        self.make_bridge()
        for i in range(self.senders):
            ns = self.gen(i)
            self.ip("netns", "add", ns)
            self.sh(ns, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
            self.ip("link", "add", f"p-gen{i}", "netns", br, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.ip("-n", ns, "link", "set", "eth0", "arp", "off", "multicast", "off", "up")
            self.ip("-n", br, "link", "set", f"p-gen{i}", "multicast", "off")
            self.ip("-n", br, "link", "set", f"p-gen{i}", "master", BRIDGE, "up")
        return self

    def make_bridge(self) -> None:
        """(Re)create br-test and put the sender ports back on it (after ``delete_bridge``)."""
        br = self.bridge_ns
        self.ip(
            "-n",
            br,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        )
        self.sh(
            br,
            "sysctl -qw net.bridge.bridge-nf-call-iptables=0 net.bridge.bridge-nf-call-arptables=0 "
            "net.bridge.bridge-nf-call-ip6tables=0",
            check=False,  # (br_netfilter not loaded: nothing to turn off)
        )
        self.ip("-n", br, "link", "set", BRIDGE, "multicast", "off", "up")
        for i in range(self.senders):
            self.ip("-n", br, "link", "set", f"p-gen{i}", "master", BRIDGE, "up", check=False)

    def delete_bridge(self) -> None:
        self.ip("-n", self.bridge_ns, "link", "del", BRIDGE)

    def replay(self, pcap: str, i: int = 0, *extra: str, cpu: int | None = None) -> tuple[int, float]:
        """``tcpreplay --topspeed`` (or ``extra`` options) of ``pcap`` (one file or several) from sender
        ``i``, on CPU ``cpu`` if given: (packets sent, its own rate in packets/s)."""
        options = list(extra) or ["--topspeed"]
        pin = f"taskset -c {cpu} " if cpu is not None else ""
        out = self.sh(self.gen(i), f"{pin}tcpreplay -i eth0 {' '.join(options)} {pcap} 2>&1").stdout
        sent = re.search(r"Actual: (\d+) packets", out)
        rate = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", out)
        assert sent and rate, out
        return int(sent.group(1)), float(rate.group(1))

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()
        for name in [self.bridge_ns] + [self.gen(i) for i in range(self.senders)]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def __enter__(self) -> ReplayLab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
