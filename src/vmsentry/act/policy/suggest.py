"""``policy suggest``: a default policy generated from the inventory, for the admin to edit.

* one zone per network the VMs are attached to (VMs on the same network share a zone and may talk to
  each other; VMs on different networks may not): ``vm_to_vm: deny`` + ``same_zone: allow``;
* guests reach the host only for DHCP (udp/67) and DNS (udp+tcp/53): ``vm_to_host: deny`` + allow rules;
* anti-spoofing everywhere; outside-to-VM traffic denied; an example admin role (commented out).

The output stays small whatever the inventory's size, so that what suggest writes, compile accepts (its
4 MiB limit): a zone whose members are exactly the VMs on a named network says ``networks: [NET]`` rather
than listing them (VMs only on a host bridge are listed by name), and the notes on the inventory are one
line per kind of gap with a count and the first few NICs, not one line per NIC.
"""

from __future__ import annotations

import re
from collections import defaultdict

import yaml

NOTE_EXAMPLES = 8  # NICs named per kind of note; the rest are counted
NOT_ON_A_BRIDGE = ("user", "passthrough", "disconnected")


def _zone_name(net: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", net or "unattached").strip("_") or "net"
    if base in ("host", "external", "any", "all") or not re.match(r"[A-Za-z0-9_]", base):
        base = "net_" + base
    return base[:40]


def _zones(vms: list) -> dict[str, dict]:
    """Zone name -> its selector: ``{networks: [NET]}`` when the zone's members are exactly the VMs that
    ``resolve`` puts on NET (any NIC whose network is NET), else ``{vms: [...]}``."""
    members: dict[str, list[str]] = {}
    sources: dict[str, set] = defaultdict(set)  # zone -> the networks (or bridges) it was made from
    on_network: dict[str, set[str]] = defaultdict(set)  # what resolve reads for `networks: [NET]`
    for vm in vms:
        for nic in vm.nics:
            if nic.network:
                on_network[nic.network].add(vm.name)
            if nic.mode in NOT_ON_A_BRIDGE or not nic.connected:
                continue
            zone = _zone_name(nic.network or nic.bridge)
            sources[zone].add(("network", nic.network) if nic.network else ("bridge", nic.bridge))
            if not members.get(zone) or members[zone][-1] != vm.name:
                members.setdefault(zone, []).append(vm.name)
    out = {}
    for zone, names in sorted(members.items()):
        [(kind, net)] = sources[zone] if len(sources[zone]) == 1 else [("mixed", None)]
        if kind == "network" and on_network[net] == set(names):
            out[zone] = {"networks": [net]}
        else:
            out[zone] = {"vms": names}
    return out


def _notes(vms: list) -> list[str]:
    """The inventory's gaps, one line per kind: how many, and the first few."""
    gaps: dict[str, list[str]] = defaultdict(list)
    for vm in vms:
        nics = [n for n in vm.nics if n.mode not in NOT_ON_A_BRIDGE and n.connected]
        if not nics:
            gaps["VMs with no NIC on a host bridge (user-mode/passthrough/none): not covered"].append(vm.name)
        for nic in nics:
            if not nic.ip:
                gaps[
                    "NICs with no IP address in the inventory: their source address cannot be checked and "
                    "zones cannot name them as a destination"
                ].append(f"{vm.name}/{nic.id}")
            if not nic.target:
                gaps[
                    "NICs whose host port is unknown (offline inventory): identified by MAC; apply with a live "
                    "inventory (vmsentry inventory --libvirt ...)"
                ].append(f"{vm.name}/{nic.id}")
    notes = []
    for what, names in gaps.items():
        shown = ", ".join(names[:NOTE_EXAMPLES]) + (
            f" and {len(names) - NOTE_EXAMPLES:,} more" if len(names) > NOTE_EXAMPLES else ""
        )
        notes.append(f"{what} ({len(names):,}): {shown}")
    return notes


def suggest(inventory, source: str = "") -> str:
    vms = sorted(inventory.vms, key=lambda v: v.name)
    notes = _notes(vms)
    doc = {
        "version": 1,
        "defaults": {
            "vm_to_host": "deny",
            "vm_to_vm": "deny",
            "same_zone": "allow",
            "anti_spoofing": True,
            "external_to_vm": "deny",
        },
        "zones": _zones(vms),
        "allow": [
            {"from": "any-vm", "to": "host", "proto": "udp", "ports": [53, 67]},
            {"from": "any-vm", "to": "host", "proto": "tcp", "ports": [53]},
        ],
        "quarantine": [],
    }
    head = [
        f"# Suggested by `vmsentry policy suggest`{' from ' + source if source else ''}. Edit, then:",
        "#   vmsentry policy compile THIS --inventory INV            (look at the nftables)",
        "#   vmsentry policy apply THIS --inventory INV --confirm-within 60   (then: vmsentry policy confirm)",
        "# Guests reach the host only for DHCP and DNS; VMs talk to each other only inside their zone",
        "# (one zone per network); every VM port may send only its own MAC and IP.",
    ]
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110)
    tail = [
        "# People (roles) reach VMs or the host from given source ranges, e.g.:",
        "# roles:",
        "#   admin:     {sources: [10.77.0.5/32], via: jump, to: [host, any-vm], proto: tcp, ports: [22]}",
        '#   developer: {sources: [10.77.0.0/24], hours: "08:00-20:00", timezone: "Asia/Shanghai", to: [ZONE], proto: tcp, ports: [22]}',
        "# jump_hosts:",
        "#   jump: {vm: SOME-VM}",
    ]
    if notes:
        tail += ["#", "# Notes on the inventory:"] + [f"#   {n}" for n in notes]
    return "\n".join(head) + "\n" + body + "\n".join(tail) + "\n"
