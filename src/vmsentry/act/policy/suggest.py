"""``policy suggest``: a default policy generated from the inventory, for the admin to edit.

* one zone per network the VMs are attached to (VMs on the same network share a zone and may talk to
  each other; VMs on different networks may not): ``vm_to_vm: deny`` + ``same_zone: allow``;
* guests reach the host only for DHCP (udp/67) and DNS (udp+tcp/53): ``vm_to_host: deny`` + allow rules;
* anti-spoofing everywhere; outside-to-VM traffic denied; an example admin role (commented out).
"""

from __future__ import annotations

import re

import yaml


def _zone_name(net: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_]", "_", net or "unattached").strip("_") or "net"
    if base in ("host", "external", "any", "all") or not re.match(r"[A-Za-z0-9_]", base):
        base = "net_" + base
    return base[:40]


def suggest(inventory, source: str = "") -> str:
    zones: dict[str, list[str]] = {}
    notes: list[str] = []
    for vm in sorted(inventory.vms, key=lambda v: v.name):
        nics = [n for n in vm.nics if n.mode not in ("user", "passthrough", "disconnected") and n.connected]
        if not nics:
            notes.append(f"VM {vm.name}: no NIC on a host bridge (user-mode/passthrough/none): not covered")
            continue
        for nic in nics:
            z = _zone_name(nic.network or nic.bridge)
            if vm.name not in zones.setdefault(z, []):
                zones[z].append(vm.name)
            if not nic.ip:
                notes.append(
                    f"VM {vm.name} NIC {nic.id}: no IP address in the inventory: its source address "
                    f"cannot be checked and zones cannot name it as a destination"
                )
            if not nic.target:
                notes.append(
                    f"VM {vm.name} NIC {nic.id}: host port unknown (offline inventory): it is identified "
                    f"by MAC; apply with a live inventory (vmsentry inventory --libvirt ...)"
                )
    doc = {
        "version": 1,
        "defaults": {
            "vm_to_host": "deny",
            "vm_to_vm": "deny",
            "same_zone": "allow",
            "anti_spoofing": True,
            "external_to_vm": "deny",
        },
        "zones": {z: {"vms": vms} for z, vms in sorted(zones.items())},
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
