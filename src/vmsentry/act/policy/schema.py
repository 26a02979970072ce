"""The segmentation policy file (CONTRACTS.md "Segmentation policy"): parsing and the checks that need
no inventory. Every problem names the line. Inventory-dependent checks (unknown VMs, jump host without an
address, ...) are in ``resolve``.

Extensions beyond the contract's example (all optional, documented in docs/policy.md):
``defaults.same_zone`` (allow), ``defaults.vm_to_external`` (allow), ``defaults.external_to_vm`` (deny),
``defaults.external_to_host`` (allow), ``defaults.forensics`` ({proto, ports}: what a quarantined VM may
still reach on the host), zone selectors ``networks`` and ``match`` besides ``vms``, ``days`` on roles,
``ports`` on jump hosts, ``comment`` on allow rules, ``host_addresses`` (extra host addresses for
``policy check``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from vmsentry.act.policy import timewin
from vmsentry.act.policy.problems import PolicyError, Problems
from vmsentry.model.files import BadInput, read_bounded
from vmsentry.model.policy import Service
from vmsentry.model.yaml_lines import LMap, Loc, LSeq, YamlError, describe, load

KEYWORDS_FROM = ("any-vm", "external")
KEYWORDS_TO = ("any-vm", "host", "external")
RESERVED = {"any-vm", "host", "external", "any", "all"}
PROTOS = ("tcp", "udp", "icmp", "any")
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}$")

DEFAULT_KEYS = {
    "vm_to_host": ("allow", "deny"),
    "vm_to_vm": ("allow", "deny"),
    "same_zone": ("allow", "deny"),
    "vm_to_external": ("allow", "deny"),
    "external_to_vm": ("allow", "deny"),
    "external_to_host": ("allow", "deny"),
    "anti_spoofing": None,
    "forensics": None,
}
DEFAULT_VALUES = {
    "vm_to_host": "deny",
    "vm_to_vm": "deny",
    "same_zone": "allow",
    "vm_to_external": "allow",
    "external_to_vm": "deny",
    "external_to_host": "allow",
}
TOP_KEYS = ("version", "defaults", "zones", "allow", "roles", "jump_hosts", "quarantine", "host_addresses")
ZONE_KEYS = ("vms", "networks", "match", "comment")
ALLOW_KEYS = ("from", "to", "proto", "ports", "comment")
ROLE_KEYS = ("sources", "to", "proto", "ports", "hours", "days", "timezone", "via", "comment")
JUMP_KEYS = ("vm", "ports", "comment")


@dataclass(slots=True)
class Named:
    name: str
    line: int


@dataclass(slots=True)
class Zone:
    name: str
    line: int
    vms: list[Named] = field(default_factory=list)
    networks: list[Named] = field(default_factory=list)
    match: list[Named] = field(default_factory=list)


@dataclass(slots=True)
class Allow:
    index: int
    line: int
    sources: list[Named]
    dests: list[Named]
    service: Service
    comment: str | None = None


@dataclass(slots=True)
class Role:
    name: str
    line: int
    sources: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    dests: list[Named]
    service: Service
    window: timewin.Window | None = None
    via: Named | None = None


@dataclass(slots=True)
class JumpHost:
    name: str
    line: int
    vm: Named
    service: Service | None = None  # what people reach on the jump host (default: each role's service)


@dataclass(slots=True)
class Defaults:
    vm_to_host: str = "deny"
    vm_to_vm: str = "deny"
    same_zone: str = "allow"
    vm_to_external: str = "allow"
    external_to_vm: str = "deny"
    external_to_host: str = "allow"
    anti_spoofing: bool = True
    forensics: Service | None = None
    lines: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Policy:
    file: str | None
    defaults: Defaults
    zones: dict[str, Zone]
    allow: list[Allow]
    roles: dict[str, Role]
    jump_hosts: dict[str, JumpHost]
    quarantine: list[Named]
    host_addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address]
    text: str = ""
    warnings: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------------- parse
MAX_POLICY_BYTES = 4 * 1024 * 1024


def load_policy(path: str) -> Policy:
    pr = Problems(path)
    try:
        raw = read_bounded(path, MAX_POLICY_BYTES)
    except BadInput as exc:
        pr.error(None, str(exc))
        raise PolicyError(pr.items) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        pr.error(None, f"not UTF-8 text (byte {exc.start})")
        raise PolicyError(pr.items) from None
    return parse_policy(text, path)


def parse_policy(text: str, file: str | None = None) -> Policy:
    """Parse and check a policy. Raises PolicyError listing every error (with warnings); returns the
    policy with ``.warnings`` otherwise."""
    pr = Problems(file)
    try:
        doc, dups = load(text)
    except YamlError as exc:
        pr.error(exc.line, str(exc))
        raise PolicyError(pr.items) from None
    for line, msg in dups:
        pr.error(line, msg)
    if doc is None or not isinstance(doc.value, LMap):
        pr.error(doc.line if doc else 1, "a policy is a YAML mapping with version, defaults, zones, allow, ...")
        raise PolicyError(pr.items)
    top: LMap = doc.value
    _unknown_keys(pr, top, TOP_KEYS, "top level")
    version = top.get("version")
    if version is None:
        pr.error(top.line, "missing 'version: 1'")
    elif version.value != 1 or isinstance(version.value, bool):
        pr.error(version.line, f"version {version.value!r} is not supported (only 1)")

    defaults = _defaults(pr, top.get("defaults"))
    zones = _zones(pr, top.get("zones"))
    jump_hosts = _jumps(pr, top.get("jump_hosts"))
    allow = _allows(pr, top.get("allow"), zones)
    roles = _roles(pr, top.get("roles"), zones, jump_hosts)
    quarantine = _names_list(pr, top.get("quarantine"), "quarantine", "VM name")
    host_addresses = []
    for item in _seq(pr, top.get("host_addresses"), "host_addresses"):
        try:
            host_addresses.append(ipaddress.ip_address(str(item.value)))
        except ValueError:
            pr.error(item.line, f"host_addresses: {item.value!r} is not an IP address")
    pr.raise_if_errors()
    pol = Policy(file, defaults, zones, allow, roles, jump_hosts, quarantine, host_addresses, text=text)
    pol.warnings = pr.warnings
    return pol


# ------------------------------------------------------------------------------------------------ helpers
def _unknown_keys(pr: Problems, m: LMap, allowed: tuple[str, ...], where: str) -> None:
    for key in m:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
            pr.error(m.key_lines[key], f"{where}: unknown key {key!r}{hint}")


def _map(pr: Problems, loc: Loc | None, where: str) -> LMap | None:
    if loc is None or loc.value is None:
        return None
    if not isinstance(loc.value, LMap):
        pr.error(loc.line, f"{where} must be a mapping, not {describe(loc.value)}")
        return None
    return loc.value


def _seq(pr: Problems, loc: Loc | None, where: str, allow_scalar: bool = False) -> list[Loc]:
    if loc is None or loc.value is None:
        return []
    if isinstance(loc.value, LSeq):
        return list(loc.value)
    if allow_scalar and not isinstance(loc.value, LMap):
        return [loc]
    pr.error(loc.line, f"{where} must be a list, not {describe(loc.value)}")
    return []


def _named_maps(pr: Problems, loc: Loc | None, section: str, what: str) -> Iterator[tuple[str, int, LMap | None]]:
    """The entries of a section of named things (zones, jump_hosts, roles) whose names are valid: (name, its
    line, its mapping or None if it is not one)."""
    m = _map(pr, loc, section)
    if m is None:
        return
    for name, sub in m.items():
        line = m.key_lines[name]
        if _check_name(pr, name, line, what):
            yield name, line, _map(pr, sub, f"{section}.{name}")


def _names_list(pr: Problems, loc: Loc | None, where: str, what: str, allow_scalar=False) -> list[Named]:
    out = []
    for item in _seq(pr, loc, where, allow_scalar=allow_scalar):
        if not isinstance(item.value, str) or not item.value.strip():
            pr.error(item.line, f"{where}: {describe(item.value)} is not a {what}")
            continue
        out.append(Named(item.value.strip(), item.line))
    return out


def _check_name(pr: Problems, name: str, line: int, what: str) -> bool:
    if name in RESERVED:
        pr.error(line, f"{what} name {name!r} is reserved ({', '.join(sorted(RESERVED))})")
        return False
    if not NAME_RE.match(name):
        pr.error(
            line, f"{what} name {name!r}: use letters, digits, '_', '-', '.' (at most 48, not starting with - or .)"
        )
        return False
    return True


def _service(pr: Problems, m: LMap, where: str, required_proto: bool = True) -> Service | None:
    proto_loc = m.get("proto")
    if proto_loc is None:
        if required_proto:
            pr.error(m.line, f"{where}: missing 'proto' (one of {', '.join(PROTOS)})")
        proto = "tcp" if "ports" in m else "any"
        if required_proto:
            return None
    else:
        proto = str(proto_loc.value).lower() if proto_loc.value is not None else ""
        if proto not in PROTOS:
            pr.error(proto_loc.line, f"{where}: proto {proto_loc.value!r} is not one of {', '.join(PROTOS)}")
            return None
    ports_loc = m.get("ports")
    ranges: list[tuple[int, int]] = []
    if ports_loc is not None:
        if proto in ("icmp", "any"):
            pr.error(ports_loc.line, f"{where}: proto {proto} has no ports; use tcp or udp")
            return None
        for item in _seq(pr, ports_loc, f"{where}: ports", allow_scalar=True):
            r = _port_range(item.value)
            if r is None:
                pr.error(item.line, f"{where}: {item.value!r} is not a port (1-65535) or range 'first-last'")
                return None
            ranges.append(r)
        if not ranges:
            pr.error(ports_loc.line, f"{where}: ports is empty; leave it out to mean every port")
            return None
    ranges.sort()
    merged: list[tuple[int, int]] = []
    for a, b in ranges:
        if merged and a <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return Service(proto, tuple(merged))


def _port_range(v: Any) -> tuple[int, int] | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return (v, v) if 1 <= v <= 65535 else None
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?", v)
        if not m:
            return None
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if 1 <= a <= b <= 65535:
            return (a, b)
    return None


# ------------------------------------------------------------------------------------------------ sections
def _defaults(pr: Problems, loc: Loc | None) -> Defaults:
    d = Defaults()
    m = _map(pr, loc, "defaults")
    if m is None:
        return d
    _unknown_keys(pr, m, tuple(DEFAULT_KEYS), "defaults")
    for key, choices in DEFAULT_KEYS.items():
        if key not in m:
            continue
        item = m[key]
        d.lines[key] = m.key_lines[key]
        if key == "anti_spoofing":
            if not isinstance(item.value, bool):
                pr.error(item.line, f"defaults.anti_spoofing must be true or false, not {item.value!r}")
            else:
                d.anti_spoofing = item.value
        elif key == "forensics":
            fm = _map(pr, item, "defaults.forensics")
            if fm is not None:
                _unknown_keys(pr, fm, ("proto", "ports"), "defaults.forensics")
                d.forensics = _service(pr, fm, "defaults.forensics")
        else:
            value = item.value
            if isinstance(value, bool):  # YAML 1.1: deny/allow are strings, but yes/no are booleans
                value = "allow" if value else "deny"
            if value not in choices:
                pr.error(item.line, f"defaults.{key} must be one of {', '.join(choices)}, not {item.value!r}")
            else:
                setattr(d, key, value)
    return d


def _zones(pr: Problems, loc: Loc | None) -> dict[str, Zone]:
    zones: dict[str, Zone] = {}
    for name, line, zm in _named_maps(pr, loc, "zones", "zone"):
        z = Zone(name, line)
        if zm is not None:
            _unknown_keys(pr, zm, ZONE_KEYS, f"zones.{name}")
            z.vms = _names_list(pr, zm.get("vms"), f"zones.{name}.vms", "VM name")
            z.networks = _names_list(pr, zm.get("networks"), f"zones.{name}.networks", "network name")
            z.match = _names_list(pr, zm.get("match"), f"zones.{name}.match", "glob pattern")
            if not (z.vms or z.networks or z.match):
                pr.error(line, f"zones.{name}: no selector: give vms, networks or match")
        else:
            pr.error(line, f"zones.{name}: expected {{vms: [...]}} (or networks / match)")
        zones[name] = z
    return zones


def _endpoints(
    pr: Problems, loc: Loc | None, where: str, allowed_kw: tuple[str, ...], zones: dict[str, Zone]
) -> list[Named]:
    out = []
    if loc is None:
        pr.error(None, f"{where}: missing")
        return out
    for n in _names_list(pr, loc, where, "zone name", allow_scalar=True):
        if n.name in allowed_kw or n.name in zones:
            out.append(n)
            continue
        if n.name in RESERVED:
            pr.error(n.line, f"{where}: {n.name!r} cannot be used here (allowed: {', '.join(allowed_kw)} or a zone)")
            continue
        close = difflib.get_close_matches(n.name, list(zones) + list(allowed_kw), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (zones: {', '.join(zones) or 'none'})"
        pr.error(n.line, f"{where}: unknown zone {n.name!r}{hint}")
    if not out and not pr.has_errors:
        pr.error(loc.line, f"{where}: empty")
    return out


def _allows(pr: Problems, loc: Loc | None, zones: dict[str, Zone]) -> list[Allow]:
    out = []
    for i, item in enumerate(_seq(pr, loc, "allow")):
        where = f"allow[{i}]"
        m = _map(pr, item, where)
        if m is None:
            continue
        _unknown_keys(pr, m, ALLOW_KEYS, where)
        if "from" not in m:
            pr.error(m.line, f"{where}: missing 'from'")
        if "to" not in m:
            pr.error(m.line, f"{where}: missing 'to'")
        src = _endpoints(pr, m.get("from"), f"{where}.from", KEYWORDS_FROM, zones) if "from" in m else []
        dst = _endpoints(pr, m.get("to"), f"{where}.to", KEYWORDS_TO, zones) if "to" in m else []
        svc = _service(pr, m, where)
        for s in src:
            if s.name == "external" and any(d.name == "external" for d in dst):
                pr.error(s.line, f"{where}: from external to external is not traffic this policy governs")
        comment = m["comment"].value if "comment" in m else None
        if src and dst and svc:
            out.append(Allow(i, m.line, src, dst, svc, str(comment) if comment is not None else None))
    return out


def _jumps(pr: Problems, loc: Loc | None) -> dict[str, JumpHost]:
    out: dict[str, JumpHost] = {}
    for name, line, jm in _named_maps(pr, loc, "jump_hosts", "jump host"):
        if jm is None:
            pr.error(line, f"jump_hosts.{name}: expected {{vm: VM-NAME}}")
            continue
        _unknown_keys(pr, jm, JUMP_KEYS, f"jump_hosts.{name}")
        vm = jm.get("vm")
        if vm is None or not isinstance(vm.value, str) or not vm.value.strip():
            pr.error(jm.line, f"jump_hosts.{name}: missing 'vm' (the VM people connect through)")
            continue
        svc = None
        if "ports" in jm:
            svc = _service(pr, jm, f"jump_hosts.{name}", required_proto=False)
        out[name] = JumpHost(name, line, Named(vm.value.strip(), vm.line), svc)
    return out


def _roles(pr: Problems, loc: Loc | None, zones: dict[str, Zone], jumps: dict[str, JumpHost]) -> dict[str, Role]:
    out: dict[str, Role] = {}
    for name, line, rm in _named_maps(pr, loc, "roles", "role"):
        where = f"roles.{name}"
        if rm is None:
            pr.error(line, f"{where}: expected {{sources: [...], to: [...], proto: ..., ports: [...]}}")
            continue
        _unknown_keys(pr, rm, ROLE_KEYS, where)
        sources = _cidrs(pr, rm.get("sources"), f"{where}.sources", rm.line)
        if "to" not in rm:
            pr.error(rm.line, f"{where}: missing 'to' (zones, any-vm or host)")
            dests = []
        else:
            dests = _endpoints(pr, rm["to"], f"{where}.to", ("any-vm", "host"), zones)
        svc = _service(pr, rm, where)
        window = None
        if "hours" in rm or "days" in rm or "timezone" in rm:
            window = _window(pr, rm, where)
        via = None
        if "via" in rm:
            v = rm["via"]
            if not isinstance(v.value, str) or v.value not in jumps:
                close = difflib.get_close_matches(str(v.value), list(jumps), n=1)
                hint = (
                    f"; did you mean {close[0]!r}?" if close else f" (jump_hosts: {', '.join(jumps) or 'none defined'})"
                )
                pr.error(v.line, f"{where}.via: unknown jump host {v.value!r}{hint}")
            else:
                via = Named(v.value, v.line)
        if sources and dests and svc:
            out[name] = Role(name, line, sources, dests, svc, window, via)
    return out


def _cidrs(pr: Problems, loc: Loc | None, where: str, line: int) -> list:
    if loc is None:
        pr.error(line, f"{where}: missing (the source addresses, as CIDRs, people in this role come from)")
        return []
    nets = []
    lines = []
    for item in _seq(pr, loc, where, allow_scalar=True):
        text = str(item.value).strip()
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            try:
                loose = ipaddress.ip_network(text, strict=False)
                pr.error(item.line, f"{where}: {text!r} has host bits set; did you mean {loose}?")
            except ValueError:
                pr.error(item.line, f"{where}: {text!r} is not an address or CIDR ({exc})")
            continue
        if net.prefixlen == 0:
            pr.warn(item.line, f"{where}: {text} is every address: the role no longer identifies anyone")
        for prev, pline in zip(nets, lines):
            if prev.version == net.version and prev.overlaps(net):
                pr.error(item.line, f"{where}: {net} overlaps {prev} (line {pline}); list each address range once")
        nets.append(net)
        lines.append(item.line)
    if not nets and not pr.has_errors:
        pr.error(loc.line, f"{where}: empty")
    return nets


def _window(pr: Problems, rm: LMap, where: str) -> timewin.Window | None:
    hours = rm.get("hours")
    tz = rm.get("timezone")
    days = rm.get("days")
    ok = True
    start, end = 0, 1440
    if hours is None:
        if days is None:
            pr.error(tz.line if tz else rm.line, f"{where}: timezone without hours or days")
            return None
    else:
        try:
            start, end = timewin.parse_hours(str(hours.value))
        except timewin.WindowError as exc:
            pr.error(hours.line, f"{where}: {exc}")
            ok = False
    tzname = "UTC"
    if tz is None:
        pr.warn(hours.line if hours else rm.line, f"{where}: no timezone given; hours are taken as UTC")
    else:
        try:
            timewin.check_timezone(str(tz.value))
            tzname = str(tz.value)
        except timewin.WindowError as exc:
            pr.error(tz.line, f"{where}: {exc}")
            ok = False
    dayset = None
    if days is not None:
        try:
            dayset = timewin.parse_days([str(x.value) for x in _seq(pr, days, f"{where}.days", allow_scalar=True)])
        except timewin.WindowError as exc:
            pr.error(days.line, f"{where}: {exc}")
            ok = False
    if not ok:
        return None
    text = (str(hours.value) if hours else "00:00-24:00") + f" {tzname}"
    if dayset is not None:
        text += " on " + ",".join(timewin.DAY_NAMES[d][:3] for d in sorted(dayset))
    return timewin.Window(start, end, dayset, tzname, text)
