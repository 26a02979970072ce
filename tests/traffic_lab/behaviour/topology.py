"""The lab's shape: a bridge in a namespace of its own, one namespace per VM (veth to the bridge), a gateway
namespace on the bridge that routes to an "internet" namespace and resolves names, and the internet
namespace, which owns two /24s through local routes (AnyIP: every address in them answers, so the
desktops can browse hundreds of "servers" without hundreds of interfaces).

    VM i      : 10.50.0.(10+i)/24   52:54:00:50:00:(10+i)   default route via the gateway
    gateway   : 10.50.0.1           52:54:00:50:00:01       (the inventory's host; dnsmasq on :53)
                100.64.0.1/30 -> internet 100.64.0.2/30
    internet  : local 203.0.113.0/24 and 198.51.100.0/24 (web sites, the build mirror, iodined, sinks)

The VM set depends only on the VM count, never on the seed, so that the three splits hold the same VMs
(a per-VM model trained on one split scores the others).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from traffic_lab.lab import Lab

BRIDGE = "br-lab"
SUBNET = "10.50.0.0/24"
GATEWAY_IP, GATEWAY_MAC = "10.50.0.1", "52:54:00:50:00:01"
UPLINK_GW, UPLINK_INET = "100.64.0.1", "100.64.0.2"
INTERNET = ("203.0.113.0/24", "198.51.100.0/24")
ROLES = ("web", "database", "build", "desktop")
SHORT = {"web": "web", "database": "db", "build": "build", "desktop": "desk"}
# share of the VMs per role (the rest are desktops)
SHARES = {"web": 0.3, "database": 0.15, "build": 0.15}
MAX_VMS = 200


@dataclass(frozen=True)
class Vm:
    name: str
    role: str
    ip: str
    mac: str

    @property
    def port(self) -> str:
        return f"p-{self.name}"  # the VM's port on the bridge (<= 15 characters)


def plan_vms(count: int) -> list[Vm]:
    """``count`` VMs, at least one per role, named by role (web-1, db-1, build-1, desk-1 ...)."""
    if not 4 <= count <= MAX_VMS:
        raise ValueError(f"--vms must be 4..{MAX_VMS}")
    per_role = {r: max(1, round(count * SHARES[r])) for r in SHARES}
    per_role["desktop"] = count - sum(per_role.values())
    vms, index = [], 0
    for role in ROLES:
        for n in range(1, per_role[role] + 1):
            host = 10 + index
            vms.append(Vm(f"{SHORT[role]}-{n}", role, f"10.50.0.{host}", f"52:54:00:50:00:{host:02x}"))
            index += 1
    return vms


class BehaviourLab(Lab):
    """The namespaces and links; ``sh``/``spawn``/``stop`` come from ``Lab``. ``node`` names: a VM's name,
    "gw", "inet" (prefixed into namespace names)."""

    bridge = BRIDGE

    def __init__(self, vms: list[Vm], prefix: str | None = None) -> None:
        super().__init__(prefix or f"bl{os.getpid() % 100000}")
        self.vms = vms

    def nodes(self) -> list[str]:
        return ["gw", "inet", *(vm.name for vm in self.vms)]

    def up(self) -> BehaviourLab:
        self.bridge_up()
        self._node("gw", GATEWAY_IP, GATEWAY_MAC, forward=True)
        self._ip("netns", "add", self.ns("inet"))
        self.sh("inet", "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")
        self._ip("link", "add", "uplink", "netns", self.ns("gw"), "type", "veth", "peer", "name", "eth0",
                 "netns", self.ns("inet"))  # fmt: skip
        self.sh("gw", f"ip addr add {UPLINK_GW}/30 dev uplink && ip link set uplink up")
        routes = " && ".join(f"ip route add local {net} dev lo" for net in INTERNET)
        self.sh(
            "inet",
            f"ip link set lo up && ip addr add {UPLINK_INET}/30 dev eth0 && ip link set eth0 up && "
            f"ip route add {SUBNET} via {UPLINK_GW} && {routes}",
        )
        self.sh("gw", " && ".join(f"ip route add {net} via {UPLINK_INET}" for net in INTERNET))
        for vm in self.vms:
            self._node(vm.name, vm.ip, vm.mac)
            self.sh(vm.name, f"ip route add default via {GATEWAY_IP}")
        return self

    def _node(self, node: str, ip: str, mac: str, forward: bool = False) -> None:
        ns = self.ns(node)
        self._ip("netns", "add", ns)
        self.sh(
            ns,
            "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 "
            f"net.ipv4.ip_forward={int(forward)} net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0",
        )
        self._ip("link", "add", f"p-{node}", "netns", self.bridge_ns, "type", "veth", "peer", "name", "eth0",
                 "netns", ns)  # fmt: skip
        self.sh(
            ns,
            f"ip link set eth0 address {mac} && ip addr add {ip}/24 dev eth0 && ip link set lo up && "
            "ip link set eth0 up",
        )
        self._ip("-n", self.bridge_ns, "link", "set", f"p-{node}", "master", BRIDGE, "up")

    def spawn(self, node_or_ns: str, argv: list[str], **kw) -> subprocess.Popen:
        """As ``Lab.spawn``, in a session of its own: ``stop`` signals the whole group, so that a shell's
        children (nc in a loop, sshd's per-connection processes) end with it."""
        kw.setdefault("start_new_session", True)
        return super().spawn(node_or_ns, argv, **kw)

    def stop(self, proc: subprocess.Popen, sig: int = 15, timeout: float = 10) -> int | None:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(5)
        else:
            try:
                os.killpg(proc.pid, 9)  # the leader is gone; its children may not be
            except ProcessLookupError:
                pass
        return proc.returncode

    def down(self) -> None:
        for proc in self.procs:
            self.stop(proc, timeout=3)
        self.procs.clear()
        names = [self.bridge_ns] + [self.ns(n) for n in self.nodes()]
        existing = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
        for name in names:
            if name in existing:
                subprocess.run(["ip", "netns", "del", name], capture_output=True)

    def netns_path(self, node: str) -> Path:
        return Path("/run/netns") / self.ns(node)
