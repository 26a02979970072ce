"""``/etc/network/interfaces`` (ifupdown2 as Proxmox VE uses it): the Linux bridges guests attach to.

A bridge with ``bridge-ports none`` (or no ports) has no uplink: only the host and its guests are on it
(mode ``host-only``); a bridge with ports is bridged onto the physical LAN. ``bridge-vlan-aware yes``
makes the bridge pass VLAN tags (a guest NIC's ``tag=``/``trunks=`` then decide what it sees).
Each bridge becomes a ``Network`` of platform ``proxmox``.
"""

from __future__ import annotations

import ipaddress

from vmsentry.model import InputError, Inventory, Network, Source

_STANZAS = ("iface", "auto", "allow-hotplug", "allow-auto", "source", "source-directory", "mapping")


def looks_like(text_head: str) -> bool:
    return any(line.lstrip().startswith("iface ") for line in text_head.splitlines())


def parse(path: str, text: str) -> Inventory:
    inv = Inventory()
    ifaces: dict[str, dict] = {}
    current = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, rest = line.partition(" ")
        if word == "iface":
            parts = rest.split()
            if not parts:
                inv.errors.append(InputError(path, f"line {number}: 'iface' without a name; skipped"))
                current = None
                continue
            current = ifaces.setdefault(
                parts[0], {"line": number, "method": parts[2] if len(parts) > 2 else None, "opts": {}}
            )
        elif word in _STANZAS:
            current = None
        elif current is not None:
            current["opts"][word.replace("_", "-")] = (rest.strip(), number)
        else:
            inv.errors.append(InputError(path, f"line {number}: option outside an 'iface' stanza; skipped"))
    for name, info in ifaces.items():
        opts = info["opts"]
        if "bridge-ports" not in opts and not name.startswith("vmbr"):
            continue
        ports_raw, ports_line = opts.get("bridge-ports", ("none", info["line"]))
        ports = [p for p in ports_raw.split() if p != "none"]
        locator = f"line {info['line']}, iface {name}"
        net = Network(
            name=name,
            platform="proxmox",
            mode="bridged" if ports else "host-only",
            bridge=name,
            source=Source(file=path),
            locator=locator,
        )
        net.forwards = ports
        net.facts["interfaces.bridge-ports"] = {"value": ports_raw, "at": f"line {ports_line}, iface {name}"}
        vlan = opts.get("bridge-vlan-aware")
        net.facts["interfaces.bridge-vlan-aware"] = {
            "value": vlan[0] if vlan else "no",
            "at": f"line {vlan[1]}, iface {name}" if vlan else locator,
        }
        address = opts.get("address")
        if address:
            try:
                iface = ipaddress.ip_interface(
                    address[0] if "/" in address[0] or "netmask" not in opts else f"{address[0]}/{opts['netmask'][0]}"
                )
                net.host_address = str(iface.ip)
                net.subnets.append(str(iface.network))
            except ValueError:
                inv.errors.append(InputError(path, f"line {address[1]}: invalid address {address[0]!r}"))
        inv.networks.append(net)
    return inv
