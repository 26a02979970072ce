"""Helpers shared by the traffic tests (not a test module): run the decoder and detectors in-process on
files, and build saved inventories from short role descriptions."""

from __future__ import annotations

import json
from pathlib import Path

from vmsentry.analyse.detectors import Engine, Truth
from vmsentry.collect import collect
from vmsentry.collect.traffic import TrafficStream, open_inputs

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "traffic"


def detect(*paths, inventory=None, tunables=None, all_packets=False, bulk=True):
    """(alerts as dicts, stats dict) for the given inputs, with an optional Inventory; ``bulk=False``
    decodes capture files one packet at a time."""
    truth = Truth.from_inventory(inventory) if inventory is not None else Truth()
    engine = Engine(truth, tunables)
    stream = TrafficStream(all_packets=all_packets, bulk=bulk)
    readers = [r for p in paths for r in open_inputs(str(p))]
    for batch in stream.batches(readers):
        engine.feed(batch)
    alerts = engine.finish()
    stream.stats.finish()
    return [a.to_dict() for a in alerts], stream.stats.to_dict()


def events(path, **kw):
    """Every event the decoder passes up for ``path`` (copied out of the reused batch list)."""
    stream = TrafficStream(**kw)
    out = []
    for batch in stream.batches(open_inputs(str(path))):
        out.extend(batch)
    return out, stream.stats


def inventory_from_roles(roles: dict, tmp: Path):
    """A saved vmsentry inventory (read back through the real collector) from
    {"vms": {name: "ip/mac"}, "host": "ip/mac", "dhcp": [...], "dns": [...], "ipv6": bool}."""

    def split(text):
        ip, _, mac = text.partition("/")
        return (None if ip in ("", "-") else ip), (mac or None)

    host_ip, host_mac = split(roles.get("host", "-"))
    doc = {
        "schema": "vmsentry.inventory/1",
        "hosts": [{"name": "hv", "platform": "linux", "facts": {}}],
        "networks": [
            {
                "name": "seg",
                "platform": "libvirt",
                "mode": "bridged",
                "bridge": "br0",
                "subnets": [],
                "host_address": host_ip,
                "host_mac": host_mac,
                "dhcp": bool(roles.get("dhcp")),
                "dhcp_servers": roles.get("dhcp", []),
                "dns_servers": roles.get("dns", []),
                "host": "hv",
                "ipv6": roles.get("ipv6", False),
            }
        ],
        "vms": [],
        "errors": [],
    }
    for name, text in roles.get("vms", {}).items():
        ip, mac = split(text)
        doc["vms"].append(
            {
                "name": name,
                "platform": "libvirt",
                "host": "hv",
                "nics": [{"id": "net0", "mac": mac, "ip": ip, "mode": "bridged", "network": "seg"}],
            }
        )
    path = tmp / "roles-inventory.json"
    path.write_text(json.dumps(doc))
    return load_inventory([path])


def load_inventory(paths):
    inv, _ = collect([str(p) for p in paths], [])
    assert not inv.errors, inv.errors
    return inv


def found(alerts) -> set:
    """{(type, attacker ip or mac)} as the fixtures name them."""
    out = set()
    for a in alerts:
        who = a["attacker"].get("ip") or a["attacker"].get("mac")
        out.add((a["type"], who))
        if a["attacker"].get("mac"):
            out.add((a["type"], a["attacker"]["mac"]))
    return out


# --- crafting (scapy is used for test packets only) -------------------------------------------------------
LAB = {
    "host": ("10.99.0.1", "52:54:00:99:00:01"),
    "vm1": ("10.99.0.11", "52:54:00:99:00:11"),
    "vm2": ("10.99.0.12", "52:54:00:99:00:12"),
    "vm3": ("10.99.0.13", "52:54:00:99:00:13"),
}
T0 = 1_790_000_000.0


def write_pcap(path, packets, t0=T0, gap=0.001):
    """Write scapy packets; ``packets`` items are a packet or (seconds after t0, packet)."""
    from scapy.utils import wrpcap

    out = []
    for i, item in enumerate(packets):
        offset, pkt = item if isinstance(item, tuple) else (i * gap, item)
        pkt.time = t0 + offset
        out.append(pkt)
    wrpcap(str(path), out)
    return path


def lab_inventory(**changes):
    inv = load_inventory([FIXTURES / "lab-inventory.json"])
    for key, value in changes.items():
        setattr(inv.networks[0], key, value)
    return inv
