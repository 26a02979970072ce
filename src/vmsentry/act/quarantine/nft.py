"""Quarantine by nftables: a bridge-family table of vmsentry's own, ``bridge vmsentry_quarantine``.

    table bridge vmsentry_quarantine {
        set ports      { type ifname; }        # held VMs' bridge ports (vnetN), element comment = the Held record
        set macs       { type ether_addr; }    # held VMs' MACs, element comment = the Held record
        set port_macs  { type ifname . ether_addr; }      # held port . the MAC its NIC owns
        set arp_senders { type ether_addr . ipv4_addr; }  # held MAC . its inventory IPv4 (what its ARP may claim)
        set arp_any    { type ether_addr; }    # held MACs whose IPv4 the inventory does not give: any sender IP
        set nd_senders { type ether_addr . ipv6_addr; }   # held MAC . its inventory IPv6 (besides fe80::/10, ::)
        set host_ip4s / host_ip6s              # the host's own addresses (the forensics destination)
        set host_ports { type ifname; }        # bridge ports behind which the host sits (none on a hypervisor,
                                               # whose addresses are on the bridge device itself)
        chain prerouting (hook prerouting) frames from a held port (or MAC): dropped before the bridge learns
                                     their source MAC, unless from the NIC's own MAC and the forensics exchange,
                                     or ARP / neighbour discovery to the host claiming only the NIC's own address
        chain input   (hook input)   frames from a held VM to the host: the same exchange only
        chain forward (hook forward) frames from a held VM to any port, and from any port to a held VM: dropped
                                     (to / from a host port: the forensics exchange only)
        chain output  (hook output)  frames from the host to a held VM: ARP replies and forensics replies only
    }

A frame is matched by its bridge port (``iifname``/``oifname``: what a guest cannot forge) and by MAC
(``ether saddr``/``ether daddr``: what works when only the MAC is known). Learning happens in the bridge after
the prerouting hook (br_handle_frame_finish): without the prerouting chain a held VM sending from vm2's MAC
would move vm2's MAC to its own port and draw vm2's traffic into the drop. A hold by MAC only (no port known)
stops the frames from that MAC, not those from a MAC the VM makes up, and lets broadcasts reach it
(``no_port_warning``). Not checked: an IPv6 neighbour advertisement's target address and link-layer option
(nft has no match for them). Only ``drop`` is used: this kernel has no bridge ``reject`` and no bridge
conntrack (lab notes §3.3), so the forensics exemption is by address and port both ways (host address, tcp
dport 22 out; host address, tcp sport 22 back).

The table is created, in one transaction, by the first hold, and deleted by the release of the last one: after
``release`` the ruleset is exactly what it was before the first ``hold``. Other tables are never read for
changes nor touched. Every element carries the Held record (compact JSON, at most ``COMMENT_MAX`` bytes:
the kernel keeps 256 bytes of user data per element; a long reason is cut to fit) in its comment, so ``held()``
reads the holds back from the kernel (the ``macs`` set) after a restart, and ``release`` deletes exactly the
elements its hold added (``_members`` of the same record). Holds and releases of several processes (the watcher
and a person at the shell) are serialised by a lock file per namespace.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from vmsentry.act.libnft import Nft
from vmsentry.act.policy import nftruleset
from vmsentry.act.policy.nftexec import NftError
from vmsentry.act.policy.nftruleset import (
    ACCEPT,
    COUNTER,
    DROP,
    NChain,
    NftRuleset,
    NSet,
    NTable,
    jump,
    match,
    meta,
    pl,
)
from vmsentry.act.policy.resolve import IFNAME_RE
from vmsentry.act.quarantine import Held, QuarantineError, Target, compact, find_held, from_compact, normalise_mac

TABLE = "vmsentry_quarantine"
FAMILY = "bridge"
PRIORITY = -300  # before the usual filter chains (-200): held frames are gone before anyone else looks
COMMENT_MAX = 240  # bytes; the kernel refuses an element whose comment, with its framing, exceeds 256
LOCK_ROOT = "/run/vmsentry/quarantine"
ND_TYPES = ("nd-router-solicit", "nd-neighbor-solicit", "nd-neighbor-advert")
ND_SOURCES = ("fe80::/10", "::/128")  # link-local, and the unspecified address of duplicate address detection


class NftQuarantine:
    """The ``nft`` method. ``netns``: act inside this network namespace (``ip netns``). ``forensics``: (proto,
    port) a held VM may still reach on the host. ``host_ips``: the host's own addresses (default: every
    address of the namespace, read when the table is created). ``host_ports``: bridge ports leading to the
    host, when the host is not the bridge device itself (a namespace lab). ``prefer_library``: False forces
    the ``nft`` command (the fallback when libnftables cannot be loaded)."""

    method = "nft"

    def __init__(
        self,
        netns: str | None = None,
        forensics: tuple[str, int] = ("tcp", 22),
        host_ips: Iterable[str] = (),
        host_ports: Iterable[str] = (),
        prefer_library: bool = True,
        lock_dir: str = LOCK_ROOT,
    ) -> None:
        proto, port = forensics
        if proto not in ("tcp", "udp") or not (isinstance(port, int) and 0 < port < 65536):
            raise QuarantineError(f"forensics port {proto}/{port}: give tcp or udp and a port 1-65535")
        self.forensics = (proto, port)
        self.host_ips = [_address(a) for a in host_ips]
        self.host_ports = [_ifname(p) for p in host_ports]
        if netns is not None and ("/" in netns or netns in ("", ".", "..")):
            raise QuarantineError(f"{netns!r} is not a network namespace name")
        try:
            self.nft = Nft(netns, prefer_library)
        except NftError as exc:
            raise QuarantineError(str(exc)) from None
        self.netns = netns
        self.lock_path = os.path.join(lock_dir, f"{netns or 'host'}.lock")

    # ----------------------------------------------------------------------------------------- protocol
    def hold(self, target: Target, reason: str, ttl: float | None = None, alert_id: str | None = None) -> Held:
        mac = normalise_mac(target.mac or "")
        if not mac:
            raise QuarantineError(f"{target.vm}: {target.mac!r} is not a MAC address")
        port = _ifname(target.port) if target.port else None
        target = Target(target.vm, mac, port, target.bridge, target.network, _inventory_ip(target.ip))
        now = round(time.time(), 3)  # as the record keeps it: what held() reads back equals what hold() returns
        held = Held(target, self.method, reason, now, round(now + ttl, 3) if ttl else None, alert_id)
        comment = _fit(held)
        held = from_compact(comment, self.method) or held  # as stored (a long reason cut): as held() will read it
        with self._locked():
            state = self._read()
            if state is not None:
                same = find_held(state, mac)  # by MAC: a VM with two NICs is two holds
                if same is not None:
                    return same  # idempotent: the first hold stays, with its reason and time
            elements = [_element(name, value, comment) for name, value in _members(held.target)]
            commands = self._create() if state is None else []
            self._apply(commands + elements, f"hold {target.vm}")
        return held

    def release(self, vm_or_mac: str) -> Held:
        with self._locked():
            state = self._read() or []
            held = find_held(state, vm_or_mac)
            if held is None:
                raise QuarantineError(f"{vm_or_mac} is not held by the nft quarantine")
            if all(h.target.mac == held.target.mac for h in state):
                # the last one: the table goes, and the ruleset is what it was before the first hold
                commands = [{"delete": {"table": {"family": FAMILY, "name": TABLE}}}]
            else:  # exactly the elements its hold added (the same list, from the record in the comment)
                commands = [{"delete": _element(name, value)["add"]} for name, value in _members(held.target)]
            self._apply(commands, f"release {held.target.vm}")
        return held

    def held(self) -> list[Held]:
        return self._read() or []

    def ruleset(self) -> str:
        """Our table as ``nft list`` prints it ("" when nothing is held); other tables are not ours to show."""
        try:
            return self.nft.text(f"list table {FAMILY} {TABLE}")
        except NftError as exc:
            if _missing(exc):
                return ""
            raise QuarantineError(f"cannot list table {FAMILY} {TABLE}: {exc}") from None

    # -------------------------------------------------------------------------------------------- state
    def _read(self) -> list[Held] | None:
        """The holds in force; None when our table does not exist. Every hold has its element in ``macs``: that
        set alone is read (the whole table, with its rules, takes three times as long to list and parse)."""
        try:
            out = self.nft.json([{"list": {"set": {"family": FAMILY, "table": TABLE, "name": "macs"}}}])
        except NftError as exc:
            if _missing(exc):
                return None
            raise QuarantineError(f"cannot read table {FAMILY} {TABLE}: {exc}") from None
        by_mac: dict[str, Held] = {}
        for obj in out:
            s = obj.get("set")
            if not s or s.get("name") != "macs":
                continue
            for e in s.get("elem", []):
                elem = e.get("elem") if isinstance(e, dict) else None
                held = from_compact(elem.get("comment", ""), self.method) if isinstance(elem, dict) else None
                if held is not None:
                    by_mac.setdefault(held.target.mac, held)
        return sorted(by_mac.values(), key=lambda h: (h.since, h.target.vm))

    def _apply(self, commands: list[dict], what: str) -> None:
        try:
            self.nft.json(commands)
        except NftError as exc:
            raise QuarantineError(f"nft refused to {what}, nothing was changed: {exc}") from None

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            os.makedirs(os.path.dirname(self.lock_path), mode=0o700, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise QuarantineError(f"cannot open the lock {self.lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # ------------------------------------------------------------------------------------------- ruleset
    def _create(self) -> list[dict]:
        """The table, its sets, chains and rules (JSON commands; elements added by the caller)."""
        ips = self.host_ips or _local_addresses(self.netns)
        t = NTable(FAMILY, TABLE)
        t.add_set(NSet("ports", "ifname"))
        t.add_set(NSet("macs", "ether_addr"))
        t.add_set(NSet("port_macs", ["ifname", "ether_addr"]))
        t.add_set(NSet("arp_senders", ["ether_addr", "ipv4_addr"]))  # held MAC . its inventory IPv4
        t.add_set(NSet("arp_any", "ether_addr"))  # held MACs whose IPv4 the inventory does not give
        t.add_set(NSet("nd_senders", ["ether_addr", "ipv6_addr"]))  # held MAC . its inventory IPv6
        t.add_set(NSet("host_ports", "ifname", list(self.host_ports)))
        t.add_set(NSet("host_ip4s", "ipv4_addr", [a for a in ips if ":" not in a], ["interval"]))
        t.add_set(NSet("host_ip6s", "ipv6_addr", [a for a in ips if ":" in a], ["interval"]))
        for hook in ("prerouting", "input", "forward", "output"):
            t.chains.append(NChain(hook, hook, PRIORITY))
        for name in ("held_port", "from_held", "to_held", "held_to_host", "host_to_held"):
            t.chains.append(NChain(name))
        # Before the bridge learns the source MAC (br_handle_frame_finish, after the prerouting hook): what a
        # held port sends from any MAC but its own, and what it sends beyond the forensics exchange, is gone
        # here, so a held VM forging another VM's MAC never draws that VM's traffic to its own port.
        t.rule("prerouting", match(meta("iifname"), "@ports"), jump("held_port"))
        t.rule("prerouting", match(pl("ether", "saddr"), "@macs"), jump("held_to_host"))
        t.drop("held_port", match(nftruleset.cat(meta("iifname"), pl("ether", "saddr")), "@port_macs", "!="))
        t.rule("held_port", jump("held_to_host"))
        # from a held VM (its port, or its MAC) ...
        for chain, target in (("input", "held_to_host"), ("forward", "from_held")):
            t.rule(chain, match(meta("iifname"), "@ports"), jump(target))
            t.rule(chain, match(pl("ether", "saddr"), "@macs"), jump(target))
        # ... and to a held VM
        for chain, target in (("forward", "to_held"), ("output", "host_to_held")):
            t.rule(chain, match(meta("oifname"), "@ports"), jump(target))
            t.rule(chain, match(pl("ether", "daddr"), "@macs"), jump(target))
        t.rule("from_held", match(meta("oifname"), "@host_ports"), jump("held_to_host"))
        t.drop("from_held")
        t.rule("to_held", match(meta("iifname"), "@host_ports"), jump("host_to_held"))
        t.drop("to_held")
        proto, port = self.forensics
        for ipf, hostset in (("ip", "@host_ip4s"), ("ip6", "@host_ip6s")):
            t.rule("held_to_host", match(pl(ipf, "daddr"), hostset), match(pl(proto, "dport"), port), ACCEPT)
            t.rule("host_to_held", match(pl(ipf, "saddr"), hostset), match(pl(proto, "sport"), port), ACCEPT)
        # Address resolution with the host only (the forensics exchange needs it), and only about the held VM
        # itself: its ARP must carry its own MAC and inventory address as sender (what the host's neighbour
        # cache takes in), and its neighbour discovery its own MAC and a link-local, unspecified or inventory
        # source. Router advertisements, redirects and every other ICMPv6 type from it are dropped.
        # (Plain hash sets, no interval flag: an unknown IPv4 is the separate set arp_any, not a 0.0.0.0/0 range.)
        to_host = match(pl("arp", "daddr ip"), "@host_ip4s")
        arp_sender = nftruleset.cat(pl("arp", "saddr ether"), pl("arp", "saddr ip"))
        t.rule("held_to_host", to_host, match(arp_sender, "@arp_senders"), ACCEPT)
        t.rule("held_to_host", to_host, match(pl("arp", "saddr ether"), "@arp_any"), ACCEPT)
        t.rule("host_to_held", match(pl("arp", "saddr ip"), "@host_ip4s"), ACCEPT)
        nd = match(pl("icmpv6", "type"), nftruleset.aset(ND_TYPES))
        nd_sources = (
            match(pl("ip6", "saddr"), nftruleset.aset(_prefix(a) for a in ND_SOURCES)),
            match(nftruleset.cat(pl("ether", "saddr"), pl("ip6", "saddr")), "@nd_senders"),
        )
        for to_host in ("@host_ip6s", {"prefix": {"addr": "ff02::", "len": 16}}):
            for source in nd_sources:
                t.rule("held_to_host", match(pl("ip6", "daddr"), to_host), nd, source, ACCEPT)
        t.rule(
            "host_to_held", match(pl("ip6", "saddr"), "@host_ip6s"), match(pl("ip6", "nexthdr"), "ipv6-icmp"), ACCEPT
        )
        t.rule("held_to_host", COUNTER, DROP)
        t.rule("host_to_held", COUNTER, DROP)
        return NftRuleset([t]).commands(replace=False)["nftables"]


def _members(target: Target) -> list[tuple[str, object]]:
    """(set, element) for every element a hold of ``target`` adds; its release deletes the same ones. The
    Held record goes in the comment of each (``_read`` takes it from ``macs`` and ``ports``)."""
    mac, port, ip = target.mac, target.port, target.ip
    members: list[tuple[str, object]] = [("macs", mac)]
    if port:
        members += [("ports", port), ("port_macs", {"concat": [port, mac]})]
    if ip and ":" not in ip:
        members.append(("arp_senders", {"concat": [mac, ip]}))
    else:
        members.append(("arp_any", mac))
    if ip and ":" in ip:
        members.append(("nd_senders", {"concat": [mac, ip]}))
    return members


def _prefix(text: str):
    """An address, or a prefix in nft JSON's form."""
    if "/" not in text:
        return text
    net = ipaddress.ip_network(text)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def _inventory_ip(text: str | None) -> str | None:
    """The NIC's address as the inventory gives it (``10.0.0.5`` or ``10.0.0.5/24``), or None if it is not one."""
    try:
        return str(ipaddress.ip_address(text.split("/")[0].strip())) if text else None
    except ValueError:
        return None


def _element(set_name: str, value, comment: str | None = None) -> dict:
    elem: dict = {"val": value}
    if comment is not None:
        elem["comment"] = comment
    return {"add": {"element": {"family": FAMILY, "table": TABLE, "name": set_name, "elem": [{"elem": elem}]}}}


def _fit(held: Held) -> str:
    """The compact record as element comment; a reason too long is cut (marked "...") to fit ``COMMENT_MAX``."""
    record = compact(held)
    while True:
        text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
        over = len(text.encode()) - COMMENT_MAX
        if over <= 0:
            return text
        reason = record.pop("r", "").removesuffix("...")
        if not reason:
            raise QuarantineError(f"{held.target.vm[:60]}...: the VM name is too long to record in nft")
        cut = reason.encode()[: max(0, len(reason.encode()) - over - 3)].decode(errors="ignore")
        if cut:
            record["r"] = cut + "..."


def _missing(exc: Exception) -> bool:
    return "No such file or directory" in str(exc)


def _ifname(name: str) -> str:
    if not IFNAME_RE.fullmatch(name) or name in (".", ".."):
        raise QuarantineError(f"{name!r} is not a network interface name (1-15 of A-Z a-z 0-9 _ . @ + -)")
    return name


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False)) if "/" in text else str(ipaddress.ip_address(text))
    except ValueError:
        raise QuarantineError(f"host address {text!r} is not an IP address or prefix") from None


def _local_addresses(netns: str | None) -> list[str]:
    """Every address of the namespace's interfaces but loopback (``ip -j addr``): the host's own."""
    cmd = (["ip", "-n", netns] if netns else ["ip"]) + ["-j", "addr", "show"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
        links = json.loads(p.stdout) if p.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return []
    return sorted(
        {
            a["local"]
            for link in links
            for a in link.get("addr_info", [])
            if a.get("local") and a.get("scope") != "host" and link.get("ifname") != "lo"
        }
    )
