"""The resolved segmentation policy: what ``act.policy.resolve`` builds from a policy file and an inventory,
and what both the nftables/nwfilter compilers (act) and the ``policy_violation`` detector (analyse) read.

VM NICs are *endpoints*, zones are sets of VM names, and allow rules, roles, jump hosts and defaults are one
ordered list of ``Rule`` per decision point ("chain"):

``vm_to_host``   a new connection from a VM to any address of the host
``ext_to_host``  a new connection from anything that is not a VM (office LAN, ...) to the host
``vm_fwd``       a new connection from a VM to another VM or beyond the host
``ext_to_vm``    a new connection from outside to a VM

First match wins; every chain ends with the default from ``defaults``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

CHAINS = ("vm_to_host", "ext_to_host", "vm_fwd", "ext_to_vm")


@dataclass(frozen=True, slots=True)
class Service:
    proto: str  # tcp | udp | icmp | any
    ports: tuple[tuple[int, int], ...] = ()  # inclusive ranges; () = every port

    def matches(self, proto: str, dport: int | None) -> bool:
        if self.proto == "any":
            return True
        if proto != self.proto:
            return False
        if not self.ports or self.proto == "icmp":
            return True
        return dport is not None and any(a <= dport <= b for a, b in self.ports)

    def text(self) -> str:
        if self.proto in ("any", "icmp") or not self.ports:
            return self.proto if self.proto != "any" else "any protocol"
        return f"{self.proto}/" + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in self.ports)


@dataclass(frozen=True, slots=True)
class Window:
    """[start, end) in minutes after local midnight; end < start means the window crosses midnight."""

    start: int
    end: int
    days: frozenset[int] | None  # Python weekdays (0 = Monday) on which the window *starts*; None = every day
    tz: str
    text: str

    def contains(self, ts: float) -> bool:
        """Is the instant ``ts`` (Unix time) inside the window, in the window's own timezone (DST-exact)?"""
        local = datetime.fromtimestamp(ts, ZoneInfo(self.tz))
        minute = local.hour * 60 + local.minute + local.second / 60.0
        day = local.weekday()
        if self.start < self.end:
            return self.start <= minute < self.end and (self.days is None or day in self.days)
        # crosses midnight: the part after midnight belongs to the window that started the day before
        if minute >= self.start:
            return self.days is None or day in self.days
        if minute < self.end:
            return self.days is None or (day - 1) % 7 in self.days
        return False


@dataclass(slots=True)
class Endpoint:
    """One VM NIC."""

    vm: str
    nic: str
    mac: str | None
    port: str | None  # host-side bridge port (tap / veth) if known
    ip4: list[str]
    ip6: list[str]  # includes the EUI-64 link-local address when IPv6 is on
    ipv6: bool  # IPv6 allowed from this port
    network: str | None
    bridge: str | None
    mark: int = 0

    @property
    def label(self) -> str:
        return f"{self.vm}/{self.nic}"


@dataclass(frozen=True, slots=True)
class Sel:
    """A source or destination selector. kind: zone | jump | role | any-vm | any-ext | host | external."""

    kind: str
    name: str | None = None

    def text(self) -> str:
        return self.kind if self.name is None else f"{self.kind} {self.name}"


@dataclass(slots=True)
class Rule:
    chain: str
    src: Sel
    dst: Sel
    service: Service | None  # None: everything
    action: str  # accept | drop
    why: str  # one human line: where the rule comes from
    line: int | None = None
    role: str | None = None  # role whose time window applies
    window: Window | None = None


@dataclass(slots=True)
class Resolved:
    policy: Any  # the parsed policy (act.policy.schema.Policy)
    endpoints: list[Endpoint]
    zones: dict[str, list[str]]  # zone -> VM names
    jumps: dict[str, str]  # jump host -> VM name
    quarantined: list[str]
    host_addresses: list[str]
    rules: list[Rule]
    role_sources: dict[str, list[str]]  # role -> CIDRs (text)
    windows: dict[str, list]  # role -> UTC pieces (act.policy.timewin.UtcPiece)
    warnings: list = field(default_factory=list)  # act.policy.problems.Problem, severity warning
    has_ipv6: bool = False
    compiled_at: datetime | None = None

    # --- views the compilers and the checker share ------------------------------------------------------
    def endpoints_of(self, vms) -> list[Endpoint]:
        wanted = set(vms)
        return [e for e in self.endpoints if e.vm in wanted]

    def zone_endpoints(self, zone: str) -> list[Endpoint]:
        return self.endpoints_of(self.zones[zone])

    def sel_endpoints(self, sel: Sel) -> list[Endpoint]:
        if sel.kind == "zone":
            return self.zone_endpoints(sel.name)
        if sel.kind == "jump":
            return self.endpoints_of([self.jumps[sel.name]])
        if sel.kind == "any-vm":
            return list(self.endpoints)
        return []

    def chain(self, name: str) -> list[Rule]:
        return [r for r in self.rules if r.chain == name]

    # --- what the policy's defaults say about every packet ----------------------------------------------
    @property
    def file(self) -> str | None:
        return self.policy.file

    @property
    def anti_spoofing(self) -> bool:
        return self.policy.defaults.anti_spoofing

    @property
    def forensics(self) -> Service | None:
        """What a quarantined VM may still reach on the host."""
        return self.policy.defaults.forensics
