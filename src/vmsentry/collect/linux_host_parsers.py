"""Parsers of what a Linux host prints or keeps in /proc: text in, facts out, in the ``Host.facts`` layout
that ``model/host.py`` reads into typed groups. ``collect/linux_host.py`` runs the commands and reads the
files; tests feed these parsers recorded output.
"""

from __future__ import annotations

import json
import re
import socket
from typing import Any

INTERFACE_KINDS = {"bridge", "veth", "tun", "macvtap", "macvlan", "vlan", "bond", "dummy"}
IOMMU_CMDLINE_PREFIXES = ("intel_iommu=", "amd_iommu=", "iommu=", "iommu.")
HOST_GROUPS = ("libvirt", "kvm", "libvirt-qemu")

# iptables built-in chains: the netfilter hook each is attached to
_LEGACY_HOOKS = {
    "PREROUTING": "prerouting",
    "INPUT": "input",
    "FORWARD": "forward",
    "OUTPUT": "output",
    "POSTROUTING": "postrouting",
}
# iptables tables: netfilter priority of their base chains (NF_IP_PRI_*); nat differs per hook
_LEGACY_PRIORITIES = {"raw": -300, "mangle": -150, "filter": 0, "security": 50}
_LEGACY_NAT_PRIORITIES = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}


class CollectionError(Exception):
    """One fact group could not be read; the message says why (without a traceback)."""


def is_libvirt_managed(argv: list[str]) -> bool:
    """libvirt starts QEMU with ``-name guest=NAME`` and its per-domain state under
    ``/var/lib/libvirt/qemu/`` (system) or ``~/.config/libvirt/qemu/`` (session)."""
    named = any(arg.startswith("guest=") for previous, arg in zip(argv, argv[1:]) if previous == "-name")
    return named and any("/libvirt/qemu/" in arg for arg in argv)


def confinement_of_label(label: str) -> str:
    """'selinux' / 'apparmor' / 'none' from /proc/PID/attr/current."""
    if label == "unconfined" or label.startswith("unconfined"):
        return "none"
    if re.fullmatch(r"[^:\s]+:[^:\s]+:[^:\s]+(:.*)?", label):  # user:role:type[:level]
        return "none" if ":unconfined_t" in label else "selinux"
    return "apparmor"  # "profile (enforce)"


def parse_os_release(text: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "PRETTY_NAME":
            return value.strip().strip("\"'") or None
    return None


_INTERFACE_FIELDS = ("name", "kind", "mac", "mtu", "state", "master", "promiscuity", "addresses")


def public_interface(interface: dict[str, Any]) -> dict[str, Any]:
    """An interface of ``parse_ip_json`` without its private details."""
    return {key: interface[key] for key in _INTERFACE_FIELDS}


def parse_ip_json(text: str, physical_names: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Interfaces from ``ip -j -d addr show``. Each has the public fields (name, kind, mac, mtu, state,
    master, promiscuity, addresses) plus private ``_``-prefixed details used to describe bridges."""
    try:
        links = json.loads(text or "[]")
    except json.JSONDecodeError as exc:
        raise CollectionError(f"ip printed malformed JSON: {exc.msg}") from None
    interfaces = []
    for link in links:
        info = link.get("linkinfo") or {}
        kind = info.get("info_kind")
        if link.get("link_type") == "loopback":
            kind = "loopback"
        elif kind in INTERFACE_KINDS:
            pass
        elif kind is None and (link.get("parentbus") or link.get("ifname") in physical_names):
            kind = "physical"
        else:
            kind = "other"
        interfaces.append(
            {
                "name": link.get("ifname"),
                "kind": kind,
                "mac": link.get("address") if link.get("link_type") != "none" else None,
                "mtu": link.get("mtu"),
                "state": (link.get("operstate") or "unknown").lower(),
                "master": link.get("master"),
                "promiscuity": int(link.get("promiscuity") or 0),
                "addresses": [
                    f"{a['local']}/{a['prefixlen']}"
                    for a in link.get("addr_info") or []
                    if "local" in a and "prefixlen" in a
                ],
                "_parent": link.get("link"),
                "_bridge": info.get("info_data") if kind == "bridge" else None,
                "_port": info.get("info_slave_data") if info.get("info_slave_kind") == "bridge" else None,
            }
        )
    return interfaces


def bridges_from_interfaces(interfaces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Bridges with their ports. A port counts as physical when it is a NIC, or a bond or VLAN over one:
    that is what puts the bridge's guests on the LAN."""
    by_name = {interface["name"]: interface for interface in interfaces}

    def physical(name: str | None, depth: int = 0) -> bool:
        interface = by_name.get(name or "")
        if interface is None or depth > 4:
            return False
        if interface["kind"] == "physical":
            return True
        if interface["kind"] == "vlan":
            return physical(interface["_parent"], depth + 1)
        if interface["kind"] == "bond":
            return any(physical(i["name"], depth + 1) for i in interfaces if i["master"] == name)
        return False

    bridges = []
    for interface in interfaces:
        if interface["kind"] != "bridge":
            continue
        data = interface["_bridge"] or {}
        ports = [i for i in interfaces if i["master"] == interface["name"]]
        bridges.append(
            {
                "name": interface["name"],
                "addresses": list(interface["addresses"]),
                "ports": [port["name"] for port in ports],
                "physical_ports": [port["name"] for port in ports if physical(port["name"])],
                "stp": bool(data.get("stp_state")),
                "vlan_filtering": bool(data.get("vlan_filtering")),
                # extension: ports isolated from each other (bridge_slave isolated on; libvirt <port isolated='yes'/>)
                "isolated_ports": [port["name"] for port in ports if (port["_port"] or {}).get("isolated")],
            }
        )
    return bridges


_SS_PROCESS = re.compile(r'users:\(\("((?:[^"\\]|\\.)*)",pid=(\d+)')


def parse_ss(text: str) -> list[dict[str, Any]]:
    """Listening sockets from ``ss -H -l -t -u -n -p``: TCP in LISTEN, UDP unconnected (UNCONN)."""
    sockets = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        proto, state, local = fields[0], fields[1], fields[4]
        if not ((proto == "tcp" and state == "LISTEN") or (proto == "udp" and state == "UNCONN")):
            continue
        address, interface, port = _split_ss_address(local)
        if port is None:
            continue
        match = _SS_PROCESS.search(line)
        sockets.append(
            {
                "proto": proto,
                "address": address,
                "port": port,
                "process": match.group(1) if match else None,
                "pid": int(match.group(2)) if match else None,
                "interface": interface,
            }
        )
    return sockets


def _split_ss_address(local: str) -> tuple[str, str | None, int | None]:
    """``0.0.0.0:22``, ``[::]:22``, ``*:22`` (IPv6 any, also accepting IPv4), ``10.0.0.1%virbr0:53``."""
    host, _, port = local.rpartition(":")
    host, _, interface = host.partition("%")
    if host == "*":
        host = "::"
    host = host.strip("[]")
    return host, interface or None, int(port) if port.isdigit() else None


def parse_proc_net(text: str, proto: str, ipv6: bool) -> list[dict[str, Any]]:
    """Listening sockets from /proc/net/{tcp,tcp6,udp,udp6} (the fallback without ``ss``)."""
    wanted_state = "0A" if proto == "tcp" else "07"  # TCP_LISTEN / TCP_CLOSE (an unconnected UDP socket)
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != wanted_state:
            continue
        address_hex, _, port_hex = fields[1].partition(":")
        if proto == "udp" and fields[2].split(":")[0].strip("0"):
            continue  # connected to a peer
        sockets.append(
            {
                "proto": proto,
                "address": _proc_net_address(address_hex, ipv6),
                "port": int(port_hex, 16),
                "process": None,
                "pid": None,
                "interface": None,
            }
        )
    return sockets


def _proc_net_address(hex_text: str, ipv6: bool) -> str:
    raw = bytes.fromhex(hex_text)
    # the kernel prints each 32-bit word in host (little-endian) byte order
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET, words)


def parse_nft_json(text: str) -> dict[str, Any]:
    """``nft -j list ruleset`` summarised: tables with their chains (hook, type, priority, policy, rule
    count), jump targets kept privately for the forward-rule count."""
    try:
        items = json.loads(text or "{}").get("nftables", [])
    except (json.JSONDecodeError, AttributeError) as exc:
        raise CollectionError(f"nft printed malformed JSON: {exc}") from None
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    total = 0
    for item in items:
        if "table" in item:
            table = item["table"]
            tables[(table["family"], table["name"])] = {"family": table["family"], "name": table["name"], "chains": []}
        elif "chain" in item:
            chain = item["chain"]
            entry = {
                "name": chain["name"],
                "hook": chain.get("hook"),
                "type": chain.get("type"),
                "priority": chain.get("prio"),
                "policy": chain.get("policy"),
                "rules": 0,
                "_jumps": set(),
            }
            chains[(chain["family"], chain["table"], chain["name"])] = entry
            tables.setdefault(
                (chain["family"], chain["table"]), {"family": chain["family"], "name": chain["table"], "chains": []}
            )["chains"].append(entry)
        elif "rule" in item:
            rule = item["rule"]
            total += 1
            entry = chains.get((rule["family"], rule["table"], rule["chain"]))
            if entry is not None:
                entry["rules"] += 1
                entry["_jumps"].update(_jump_targets(rule.get("expr")))
    return {"tables": list(tables.values()), "ruleset_rules": total}


def _jump_targets(expression: Any) -> set[str]:
    """Chains a rule jumps or goes to, including through verdict maps."""
    found: set[str] = set()
    if isinstance(expression, dict):
        for key, value in expression.items():
            if key in ("jump", "goto") and isinstance(value, dict) and "target" in value:
                found.add(value["target"])
            else:
                found |= _jump_targets(value)
    elif isinstance(expression, list):
        for item in expression:
            found |= _jump_targets(item)
    return found


def parse_iptables_save(text: str, family: str = "ip") -> dict[str, Any]:
    """``iptables-legacy-save`` (family ``ip``) or ``ip6tables-legacy-save`` (``ip6``) in the same shape
    as ``parse_nft_json``."""
    tables: list[dict[str, Any]] = []
    table: dict[str, Any] | None = None
    chains: dict[str, dict[str, Any]] = {}
    total = 0
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("*"):
            table = {"family": family, "name": line[1:], "chains": []}
            chains = {}
            tables.append(table)
        elif line.startswith(":") and table is not None:
            name, policy = (line[1:].split() + ["-"])[:2]
            hook = _LEGACY_HOOKS.get(name)
            priority = None
            if hook:
                priority = (
                    _LEGACY_NAT_PRIORITIES.get(hook)
                    if table["name"] == "nat"
                    else _LEGACY_PRIORITIES.get(table["name"])
                )
            chains[name] = {
                "name": name,
                "hook": hook,
                "type": table["name"] if hook else None,
                "priority": priority,
                "policy": policy.lower() if policy != "-" else None,
                "rules": 0,
                "_jumps": set(),
            }
            table["chains"].append(chains[name])
        elif line.startswith("-A ") and table is not None:
            parts = line.split()
            chain = chains.get(parts[1]) if len(parts) > 1 else None
            total += 1
            if chain is not None:
                chain["rules"] += 1
                for flag, target in zip(parts, parts[1:]):
                    if flag in ("-j", "-g", "--jump", "--goto") and target in chains:
                        chain["_jumps"].add(target)
    return {"tables": tables, "ruleset_rules": total}


def summarise_firewall(nftables: dict[str, Any] | None, iptables_legacy: dict[str, Any] | None) -> dict[str, Any]:
    """The ``firewall`` fact group: both rulesets plus the effective forward/input policy.

    Netfilter runs every base chain on a hook and a packet passes only if none drops it, so one
    ``policy drop`` chain on the forward hook (family ip or inet) makes IPv4 forwarding default-deny.
    With no such chain at all nothing filters the hook, which is "accept". When a ruleset could not be
    read (None) and the other has no drop chain, the policy is "unknown". The ``_v6`` keys are the same
    for IPv6 (families ip6 and inet), which an IPv4-only ruleset leaves wide open."""
    rulesets = [ruleset for ruleset in (nftables, iptables_legacy) if ruleset is not None]
    complete = len(rulesets) == 2
    summary: dict[str, Any] = {
        "nftables": _public(nftables),
        "iptables_legacy": _public(iptables_legacy),
        "libvirt_chains": sorted(
            {
                chain["name"]
                for ruleset in rulesets
                for table in ruleset["tables"]
                for chain in table["chains"]
                if chain["name"].startswith("LIBVIRT_")
            }
        ),
    }
    for suffix, families in (("", _IPV4_FAMILIES), ("_v6", _IPV6_FAMILIES)):
        summary["forward_policy" + suffix] = _hook_policy(rulesets, "forward", families, complete)
        summary["forward_rules" + suffix] = sum(_hook_rule_count(ruleset, "forward", families) for ruleset in rulesets)
        summary["input_policy" + suffix] = _hook_policy(rulesets, "input", families, complete)
    return summary


_IPV4_FAMILIES = ("ip", "inet")
_IPV6_FAMILIES = ("ip6", "inet")


def _hook_policy(rulesets: list[dict[str, Any]], hook: str, families: tuple[str, ...], complete: bool) -> str:
    policies = [
        chain["policy"]
        for ruleset in rulesets
        for table in ruleset["tables"]
        if table["family"] in families
        for chain in table["chains"]
        if chain["hook"] == hook
    ]
    if "drop" in policies:
        return "drop"
    return "accept" if complete else "unknown"


def _hook_rule_count(ruleset: dict[str, Any], hook: str, families: tuple[str, ...]) -> int:
    count = 0
    for table in ruleset["tables"]:
        if table["family"] not in families:
            continue
        by_name = {chain["name"]: chain for chain in table["chains"]}
        pending = [chain["name"] for chain in table["chains"] if chain["hook"] == hook]
        seen: set[str] = set()
        while pending:
            name = pending.pop()
            if name in seen or name not in by_name:
                continue
            seen.add(name)
            count += by_name[name]["rules"]
            pending.extend(by_name[name]["_jumps"])
    return count


def _public(ruleset: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ruleset without the private jump sets (the fact layout is plain JSON)."""
    if ruleset is None:
        return None
    return {
        "tables": [
            {
                "family": table["family"],
                "name": table["name"],
                "chains": [
                    {key: value for key, value in chain.items() if not key.startswith("_")} for chain in table["chains"]
                ],
            }
            for table in ruleset["tables"]
        ],
        "ruleset_rules": ruleset["ruleset_rules"],
    }


def parse_cpuinfo(text: str) -> tuple[dict[str, Any], set[str]]:
    """The first CPU's vendor, model and virtualisation flags, and all its flags."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor block is enough: all CPUs of a host are alike
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    cpu = {
        "vendor": fields.get("vendor_id") or fields.get("CPU implementer"),
        "vmx": "vmx" in flags,
        "svm": "svm" in flags,
        "model": fields.get("model name") or fields.get("Model") or fields.get("cpu model"),
    }
    return cpu, flags


def parse_iommu_flags(cmdline: str) -> list[str]:
    # arguments after "--" belong to init, not the kernel
    kernel_part = cmdline.split(" -- ", 1)[0]
    return [token for token in kernel_part.split() if token.startswith(IOMMU_CMDLINE_PREFIXES)]


def parse_group_file(group_text: str, passwd_text: str = "") -> dict[str, list[str] | None]:
    """Members of the groups that control VMs: listed members plus users whose primary group it is.
    A group that does not exist is None."""
    gids: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for line in group_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[0] in HOST_GROUPS:
            gids[parts[0]] = parts[2]
            members[parts[0]] = [name for name in parts[3].split(",") if name]
    for line in passwd_text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            for group, gid in gids.items():
                if parts[3] == gid and parts[0] not in members[group]:
                    members[group].append(parts[0])
    return {group: members.get(group) for group in HOST_GROUPS}


def parse_qemu_version(text: str) -> str | None:
    match = re.search(r"version (\d+(?:\.\d+)+)", text)
    return match.group(1) if match else None


def parse_libvirt_version(text: str) -> str | None:
    match = re.search(r"\(libvirt\) (\d+(?:\.\d+)+)", text) or re.search(r"(\d+\.\d+\.\d+)", text)
    return match.group(1) if match else None
