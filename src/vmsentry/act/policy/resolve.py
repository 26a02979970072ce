"""A parsed policy + an inventory -> the resolved policy every back end compiles from.

The resolved policy (``vmsentry.model.policy``: its records and chains) is target-neutral: VM NICs become
*endpoints* (bridge port, MAC, addresses, a packet mark), zones become sets of endpoints and addresses, and
allow rules, roles, jump hosts and defaults become one ordered list of ``Rule`` per decision point ("chain").
The nftables compiler turns each rule into nft rules, and the ``policy_violation`` detector
(``vmsentry.analyse.policy_decision``) evaluates the same list in Python, so the two cannot drift.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import re
from datetime import UTC, datetime

from vmsentry.act.policy import timewin
from vmsentry.act.policy.problems import PolicyError, Problem
from vmsentry.act.policy.schema import Defaults, Named, Policy, Role, Service
from vmsentry.model.policy import Endpoint, Resolved, Rule, Sel
from vmsentry.model.text import printable

MARK_BASE = 0x76000000  # 'v' in the top byte: a frame that entered through a VM port
MARK_PREFIX_MASK = 0xFF000000
QUARANTINE_BIT = 0x00800000
MARK_INDEX_MASK = 0x007FFFFF


# --------------------------------------------------------------------------------------------- resolve
def resolve(policy: Policy, inventory, now: datetime | None = None) -> Resolved:
    """Check the policy against the inventory and build the resolved model. Raises PolicyError."""
    now = now or datetime.now(UTC)
    problems: list[Problem] = list(policy.warnings)
    file = policy.file

    def err(line, msg):
        problems.append(Problem("error", msg, file, line))

    def warn(line, msg):
        problems.append(Problem("warning", msg, file, line))

    vms = {vm.name: vm for vm in inventory.vms}
    nets = {n.name: n for n in inventory.networks}

    def vm_ref(n: Named, where: str) -> bool:
        if n.name in vms:
            return True
        import difflib

        close = difflib.get_close_matches(n.name, list(vms), n=1)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (
                f" (inventory has: {', '.join(sorted(vms)[:8])}{', ...' if len(vms) > 8 else ''})"
                if vms
                else " (the inventory has no VMs)"
            )
        )
        err(n.line, f"{where}: unknown VM {n.name!r}{hint}")
        return False

    # --- zones ----------------------------------------------------------------------------------------
    zones: dict[str, list[str]] = {}
    for z in policy.zones.values():
        errors_before = len(problems)
        members: list[str] = []
        for n in z.vms:
            if vm_ref(n, f"zones.{z.name}.vms"):
                members.append(n.name)
        for n in z.networks:
            if n.name not in nets and not any(nic.network == n.name for vm in vms.values() for nic in vm.nics):
                err(
                    n.line,
                    f"zones.{z.name}.networks: unknown network {n.name!r} "
                    f"(inventory has: {', '.join(sorted(nets)) or 'none'})",
                )
                continue
            members += [vm.name for vm in vms.values() if any(nic.network == n.name for nic in vm.nics)]
        for n in z.match:
            hit = [name for name in vms if fnmatch.fnmatchcase(name, n.name)]
            if not hit:
                warn(n.line, f"zones.{z.name}.match: {n.name!r} matches no VM in the inventory")
            members += hit
        seen: set[str] = set()
        zones[z.name] = [m for m in members if not (m in seen or seen.add(m))]
        if not zones[z.name] and len(problems) == errors_before:
            warn(z.line, f"zones.{z.name}: no VM is in this zone")

    jumps: dict[str, str] = {}
    for j in policy.jump_hosts.values():
        if vm_ref(j.vm, f"jump_hosts.{j.name}.vm"):
            jumps[j.name] = j.vm.name
    quarantined = []
    for n in policy.quarantine:
        if vm_ref(n, "quarantine"):
            quarantined.append(n.name)

    # --- endpoints --------------------------------------------------------------------------------------
    endpoints: list[Endpoint] = []
    anti = policy.defaults.anti_spoofing
    ip_owner: dict[str, str] = {}
    mac_owner: dict[str, str] = {}
    port_owner: dict[str, str] = {}
    for vm in sorted(vms.values(), key=lambda v: v.name):
        for nic in vm.nics:
            if nic.mode in ("user", "passthrough", "disconnected") or not nic.connected:
                continue  # not on a host bridge: nothing on the host sees its frames
            bad = _untrusted_names(nic)
            if bad:
                # these names go into nft text and nwfilter XML: one that is not a real interface name or
                # MAC is refused, never quoted around (a crafted name could otherwise add rules)
                err(None, f"inventory: VM {printable(vm.name)} NIC {printable(nic.id)}: {bad}")
                continue
            ep = _endpoint(vm.name, nic, nets.get(nic.network or ""))
            label = ep.label
            for ip in ep.ip4 + [a for a in ep.ip6 if not a.startswith("fe80:")]:
                if ip in ip_owner and ip_owner[ip].split("/")[0] != vm.name:
                    err(
                        None,
                        f"inventory: VMs {ip_owner[ip]} and {label} both have address {ip}; "
                        f"anti-spoofing and zones need unique addresses",
                    )
                ip_owner.setdefault(ip, label)
            if ep.mac:
                if ep.mac in mac_owner:
                    err(None, f"inventory: VMs {mac_owner[ep.mac]} and {label} both have MAC {ep.mac}")
                mac_owner.setdefault(ep.mac, label)
            if ep.port:
                if ep.port in port_owner:
                    err(None, f"inventory: VMs {port_owner[ep.port]} and {label} both name host port {ep.port}")
                port_owner.setdefault(ep.port, label)
            endpoints.append(ep)
    _assign_marks(endpoints)
    used = {vm for members in zones.values() for vm in members} | set(jumps.values())
    for ep in endpoints:
        if ep.vm not in used and not anti:
            continue
        if not ep.port:
            warn(
                None,
                f"VM {ep.label}: the inventory does not name its host port (target dev): it is "
                f"identified by MAC {ep.mac or '?'}, which a guest can forge; run with a live "
                f"inventory (vmsentry inventory --libvirt ...) or give the NIC a fixed <target dev=...>",
            )
        if not ep.ip4 and not [a for a in ep.ip6 if not a.startswith("fe80:")]:
            warn(
                None,
                f"VM {ep.label}: no IP address in the inventory: zone rules cannot name it as a "
                f"destination{' and its source address is not checked' if anti else ''}",
            )
        if anti and not ep.mac:
            warn(None, f"VM {ep.label}: no MAC address in the inventory: MAC anti-spoofing is off for it")
    vm_endpoints = {ep.vm for ep in endpoints}
    for name in sorted(used):
        if name in vms and name not in vm_endpoints:
            warn(
                None,
                f"VM {name}: has no NIC on a host bridge (user-mode, passthrough or none): "
                f"this policy cannot filter it",
            )

    # --- roles, windows, jump hosts ------------------------------------------------------------------------
    windows: dict[str, list[timewin.UtcPiece]] = {}
    role_sources: dict[str, list[str]] = {}
    for role in policy.roles.values():
        role_sources[role.name] = [str(n) for n in role.sources]
        if role.window is not None:
            windows[role.name] = timewin.to_utc(role.window, now)
            change = timewin.next_offset_change(role.window.tz, now)
            if change is not None:
                warn(
                    role.line,
                    f"roles.{role.name}: timezone {role.window.tz} changes its UTC offset on "
                    f"{change.date()}: nftables matches UTC hours, so apply the policy again after "
                    f"that date or the window shifts",
                )
        if role.via is not None:
            jvm = jumps.get(role.via.name)
            if jvm is not None:
                if jvm in quarantined:
                    err(
                        role.via.line,
                        f"roles.{role.name}.via: jump host {role.via.name} (VM {jvm}) is "
                        f"quarantined: nobody in this role could get in",
                    )
                if not any(ep.ip4 or ep.ip6 for ep in endpoints if ep.vm == jvm):
                    err(
                        role.via.line,
                        f"roles.{role.name}.via: jump host {role.via.name} (VM {jvm}) has no "
                        f"address in the inventory, so nobody could be let through to it",
                    )

    host_addresses = sorted(
        {n.host_address for n in inventory.networks if n.host_address} | {str(a) for a in policy.host_addresses}
    )
    rules = _build_rules(policy, zones, err)
    _lockout_check(policy, jumps, quarantined, err, warn)

    if any(p.severity == "error" for p in problems):
        raise PolicyError(problems)
    has_ipv6 = any(ep.ipv6 for ep in endpoints) or any(
        ipaddress.ip_network(s).version == 6 for srcs in role_sources.values() for s in srcs
    )
    return Resolved(
        policy,
        endpoints,
        zones,
        jumps,
        quarantined,
        host_addresses,
        rules,
        role_sources,
        windows,
        [p for p in problems if p.severity == "warning"],
        has_ipv6,
        now,
    )


# Linux interface names (dev_valid_name): 1 to IFNAMSIZ-1 = 15 bytes, not "." or "..", no "/", ":" or white
# space. We accept the characters real tools create (libvirt vnetN, Proxmox tapNiM/fwpr, OVS, VLAN "eth0.100").
IFNAME_RE = re.compile(r"[A-Za-z0-9_.@+-]{1,15}")
MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def _untrusted_names(nic) -> str | None:
    """Why the NIC's host port or MAC cannot go into a ruleset, or None."""
    target = nic.target
    if target and target != "-" and (not IFNAME_RE.fullmatch(target) or target in (".", "..")):
        return f"host port {printable(target)!r} is not a valid interface name (1-15 of A-Z a-z 0-9 _ . @ + -)"
    if nic.mac and not MAC_RE.fullmatch(nic.mac):
        return f"MAC {printable(nic.mac)!r} is not six hexadecimal bytes"
    return None


def _endpoint(vm: str, nic, net) -> Endpoint:
    ip4, ip6 = [], []
    if nic.ip:
        try:
            addr = ipaddress.ip_address(nic.ip.split("/")[0])
            (ip4 if addr.version == 4 else ip6).append(str(addr))
        except ValueError:
            pass
    mac = nic.mac.lower() if nic.mac else None
    ipv6 = bool(ip6) or bool(net is not None and getattr(net, "ipv6", False))
    if ipv6 and mac:
        ll = eui64_link_local(mac)
        if ll not in ip6:
            ip6.append(ll)
    port = nic.target if nic.target and nic.target != "-" else None
    return Endpoint(vm, nic.id, mac, port, ip4, ip6, ipv6, nic.network, nic.bridge)


def eui64_link_local(mac: str) -> str:
    b = bytes(int(x, 16) for x in mac.split(":"))
    iid = bytes([b[0] ^ 0x02]) + b[1:3] + b"\xff\xfe" + b[3:6]
    return str(ipaddress.IPv6Address(b"\xfe\x80" + b"\x00" * 6 + iid))


def _assign_marks(endpoints: list[Endpoint]) -> None:
    """Marks are derived from a hash of VM/NIC so that adding a VM does not renumber every other one
    (small ruleset diffs); collisions probe to the next free index."""
    taken: set[int] = set()
    for ep in sorted(endpoints, key=lambda e: e.label):
        h = int.from_bytes(hashlib.sha256(ep.label.encode()).digest()[:4], "big") & MARK_INDEX_MASK
        idx = h or 1
        while idx in taken:
            idx = (idx % MARK_INDEX_MASK) + 1
        taken.add(idx)
        ep.mark = MARK_BASE | idx


def _sel(n: Named, zones) -> Sel:
    if n.name == "any-vm":
        return Sel("any-vm")
    if n.name == "host":
        return Sel("host")
    if n.name == "external":
        return Sel("external")
    return Sel("zone", n.name)


def _build_rules(policy: Policy, zones: dict[str, list[str]], err) -> list[Rule]:
    d = policy.defaults
    vm_to_host: list[Rule] = []
    ext_to_host: list[Rule] = []
    vm_fwd: list[Rule] = []
    ext_to_vm: list[Rule] = []
    managed: list[Rule] = []

    # roles (people)
    for role in policy.roles.values():
        to_host = any(n.name == "host" for n in role.dests)
        targets = [n for n in role.dests if n.name != "host"]
        who = f"role {role.name}"
        if role.via is None:
            if to_host:
                ext_to_host.append(
                    _role_rule(role, "ext_to_host", Sel("host"), role.service, f"host {role.service.text()}", role.line)
                )
            for n in targets:
                ext_to_vm.append(
                    _role_rule(
                        role, "ext_to_vm", _sel(n, zones), role.service, f"{n.name} {role.service.text()}", n.line
                    )
                )
        else:
            jump = policy.jump_hosts[role.via.name]
            first_hop = jump.service or role.service
            ext_to_vm.append(
                _role_rule(
                    role,
                    "ext_to_vm",
                    Sel("jump", jump.name),
                    first_hop,
                    f"jump host {jump.name} {first_hop.text()}",
                    role.via.line,
                )
            )
            if to_host:
                vm_to_host.append(
                    Rule(
                        "vm_to_host",
                        Sel("jump", jump.name),
                        Sel("host"),
                        role.service,
                        "accept",
                        f"{who} via jump host {jump.name} -> host {role.service.text()}",
                        role.line,
                    )
                )
            for n in targets:
                vm_fwd.append(
                    Rule(
                        "vm_fwd",
                        Sel("jump", jump.name),
                        _sel(n, zones),
                        role.service,
                        "accept",
                        f"{who} via jump host {jump.name} -> {n.name} {role.service.text()}",
                        n.line,
                    )
                )
        if to_host:
            managed.append(
                Rule(
                    "ext_to_host",
                    Sel("any-ext"),
                    Sel("host"),
                    role.service,
                    "drop",
                    f"host {role.service.text()} is reserved for role {role.name}"
                    + (f" (through jump host {role.via.name})" if role.via else ""),
                    role.line,
                )
            )

    # allow rules
    for a in policy.allow:
        label = f"allow[{a.index}]"
        for s in a.sources:
            for t in a.dests:
                why = f"{label} {s.name} -> {t.name} {a.service.text()}" + (f" ({a.comment})" if a.comment else "")
                if s.name == "external":
                    if t.name == "host":
                        ext_to_host.append(
                            Rule("ext_to_host", Sel("any-ext"), Sel("host"), a.service, "accept", why, a.line)
                        )
                    else:
                        ext_to_vm.append(
                            Rule("ext_to_vm", Sel("any-ext"), _sel(t, zones), a.service, "accept", why, a.line)
                        )
                    continue
                src = _sel(s, zones)
                if t.name == "host":
                    vm_to_host.append(Rule("vm_to_host", src, Sel("host"), a.service, "accept", why, a.line))
                else:
                    vm_fwd.append(Rule("vm_fwd", src, _sel(t, zones), a.service, "accept", why, a.line))

    # same zone
    if d.same_zone == "allow":
        for z, members in zones.items():
            if len(members) > 1:
                vm_fwd.append(
                    Rule(
                        "vm_fwd",
                        Sel("zone", z),
                        Sel("zone", z),
                        None,
                        "accept",
                        f"zone {z}: members reach each other (defaults.same_zone: allow)",
                        policy.zones[z].line,
                    )
                )

    # defaults, after every more specific rule
    vm_to_host.append(_default_rule("vm_to_host", d, "vm_to_host", Sel("any-vm"), Sel("host")))
    ext_to_host += managed
    ext_to_host.append(_default_rule("ext_to_host", d, "external_to_host", Sel("any-ext"), Sel("host")))
    vm_fwd.append(_default_rule("vm_fwd", d, "vm_to_vm", Sel("any-vm"), Sel("any-vm")))
    vm_fwd.append(_default_rule("vm_fwd", d, "vm_to_external", Sel("any-vm"), Sel("external")))
    ext_to_vm.append(_default_rule("ext_to_vm", d, "external_to_vm", Sel("any-ext"), Sel("any-vm")))
    return vm_to_host + ext_to_host + vm_fwd + ext_to_vm


def _role_rule(role: Role, chain: str, dst: Sel, service: Service, what: str, line: int | None) -> Rule:
    """A rule that lets the role's people in: from its source addresses, only within its time window."""
    return Rule(
        chain,
        Sel("role", role.name),
        dst,
        service,
        "accept",
        f"role {role.name} -> {what}",
        line,
        role.name,
        role.window,
    )


def _default_rule(chain: str, defaults: Defaults, key: str, src: Sel, dst: Sel) -> Rule:
    """``defaults.<key>``: what happens to the rest of the traffic from ``src`` to ``dst``."""
    value = getattr(defaults, key)
    return Rule(chain, src, dst, None, _act(value), f"defaults.{key}: {value}", defaults.lines.get(key))


def _act(v: str) -> str:
    return "accept" if v == "allow" else "drop"


def _lockout_check(policy: Policy, jumps: dict[str, str], quarantined: list[str], err, warn) -> None:
    """A policy that restricts new connections to the host must leave the administrators a way in: some
    role that reaches the host at all hours, directly or through a usable jump host."""
    d = policy.defaults
    host_roles = [r for r in policy.roles.values() if any(n.name == "host" for n in r.dests)]

    def usable(r) -> bool:
        if r.window is not None and not (r.window.start == 0 and r.window.end == 1440 and r.window.days is None):
            return False
        if r.via is not None:
            jvm = jumps.get(r.via.name)
            return jvm is not None and jvm not in quarantined
        return True

    always = [r for r in host_roles if usable(r)]
    if d.external_to_host == "deny":
        external_in = any(
            s.name == "external" and any(t.name == "host" for t in a.dests) for a in policy.allow for s in a.sources
        )
        if not always and not external_in:
            err(
                d.lines.get("external_to_host"),
                "defaults.external_to_host is deny, but no role reaches the host at all hours, directly or "
                "through a usable jump host: applying this would cut the administrators' own access to the host; "
                "add a role such as admin: {sources: [...], via: JUMP, to: [host], proto: tcp, ports: [22]}",
            )
    for r in host_roles:
        if usable(r):
            continue
        if any(_covers(o.service, r.service) for o in always):
            continue
        why = "only in its time window" if r.window is not None else "through a jump host that cannot be used"
        warn(
            r.line,
            f"roles.{r.name}: host {r.service.text()} becomes reachable {why}; at other times nobody, "
            f"administrators included, can open a new connection to it: add an always-on admin role "
            f"(via a jump host) for the same port",
        )


def _covers(a: Service, b: Service) -> bool:
    if a.proto == "any":
        return True
    if a.proto != b.proto:
        return False
    if not a.ports:
        return True
    return bool(b.ports) and all(any(x <= lo and hi <= y for x, y in a.ports) for lo, hi in b.ports)
