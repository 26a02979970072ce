"""A namespace lab for the live traffic tests (after ../shared/reference/lab-scripts/topo.sh):

    netns <p>br    : bridge br-test (STP off, forward delay 0), the one vmsentry watches
    netns <p>host  : 10.99.0.1  52:54:00:99:00:01  "the host" (dnsmasq DNS, HTTP on 8080)
    netns <p>vm1   : 10.99.0.11 52:54:00:99:00:11
    netns <p>vm2   : 10.99.0.12 52:54:00:99:00:12  (HTTP on 8000)
    netns <p>vm3   : 10.99.0.13 52:54:00:99:00:13

each attached by a veth pair to br-test, as tests/fixtures/traffic/lab-inventory.json describes. IPv6 is
turned off in every namespace, as the inventory says it is. The namespace names carry a per-process
prefix so that the lab never collides with another one; traffic stays inside the namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

NODES = {
    "host": ("10.99.0.1", "52:54:00:99:00:01"),
    "vm1": ("10.99.0.11", "52:54:00:99:00:11"),
    "vm2": ("10.99.0.12", "52:54:00:99:00:12"),
    "vm3": ("10.99.0.13", "52:54:00:99:00:13"),
}
BRIDGE = "br-test"
TOOLS = ("ip", "arpspoof", "macof", "nmap", "dnsmasq", "dig", "curl", "ping", "trafgen", "tcpdump", "taskset")


class Lab:
    bridge = BRIDGE  # (a subclass may name its own)

    def __init__(self, prefix: str | None = None, ipv6: bool = False) -> None:
        self.prefix = prefix or f"vsd{os.getpid() % 100000}"
        self.ipv6 = ipv6  # IPv6 left on in the "VMs" (neighbour-discovery attacks need it)
        self.procs: list[subprocess.Popen] = []

    def ns(self, node: str) -> str:
        return f"{self.prefix}{node}"

    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}br"

    @staticmethod
    def missing_tools() -> list[str]:
        return [t for t in TOOLS if shutil.which(t) is None]

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    def bridge_up(self) -> str:
        """A fresh bridge namespace holding ``self.bridge`` (STP off, no forward delay, IPv6 off); its name."""
        self.down()
        br = self.bridge_ns
        self._ip("netns", "add", br)
        self.sh(br, "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        self._ip("-n", br, "link", "add", self.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        self._ip("-n", br, "link", "set", "lo", "up")
        self._ip("-n", br, "link", "set", self.bridge, "up")
        return br

    def up(self) -> Lab:
        br = self.bridge_up()
        for node, (ip, mac) in NODES.items():
            ns = self.ns(node)
            self._ip("netns", "add", ns)
            off = 0 if self.ipv6 else 1
            self.sh(
                ns,
                f"sysctl -qw net.ipv6.conf.all.disable_ipv6={off} net.ipv6.conf.default.disable_ipv6={off} "
                "net.ipv4.ip_forward=0",
            )
            self._ip("link", "add", f"p-{node}", "netns", br, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self._ip("-n", ns, "link", "set", "eth0", "address", mac)
            self._ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._ip("-n", br, "link", "set", f"p-{node}", "master", BRIDGE, "up")
        return self

    def services(self) -> None:
        """DNS (dnsmasq) and HTTP on the host, HTTP on vm2: what the benign traffic talks to."""
        self.spawn(
            "host",
            [
                "dnsmasq",
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=10.99.0.1",
                "--bind-interfaces",
                "--address=/lab.test/10.99.0.12",
                "--user=root",
                "--pid-file=",
            ],
        )
        self.spawn("host", ["python3", "-m", "http.server", "8080", "--bind", "10.99.0.1", "--directory", "/tmp"])
        self.spawn("vm2", ["python3", "-m", "http.server", "8000", "--bind", "10.99.0.12", "--directory", "/tmp"])
        deadline = time.time() + 10
        while time.time() < deadline:
            ok = self.sh(
                "vm1",
                "curl -s -o /dev/null --max-time 1 http://10.99.0.12:8000/ && "
                "curl -s -o /dev/null --max-time 1 http://10.99.0.1:8080/ && "
                "dig +short +time=1 +tries=1 @10.99.0.1 www.lab.test",
                check=False,
            )
            if ok.returncode == 0 and "10.99.0.12" in ok.stdout:
                return
            time.sleep(0.2)
        raise RuntimeError("lab services did not come up")

    def sh(self, node_or_ns: str, command: str, check: bool = True, timeout: float = 30):
        ns = node_or_ns if node_or_ns.startswith(self.prefix) else self.ns(node_or_ns)
        return subprocess.run(
            ["ip", "netns", "exec", ns, "sh", "-c", command],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def spawn(self, node_or_ns: str, argv: list[str], **kw) -> subprocess.Popen:
        ns = node_or_ns if node_or_ns.startswith(self.prefix) else self.ns(node_or_ns)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, sig: int = 15, timeout: float = 10) -> int | None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def down(self) -> None:
        for proc in self.procs:
            self.stop(proc, timeout=3)
        self.procs.clear()
        for name in [self.bridge_ns] + [self.ns(n) for n in NODES]:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()
