"""What a labelled capture is written with: the truth file (``model/behaviour.GroundTruth``'s shape), an
inventory the detectors and the model read (tests/fixtures/traffic/lab-inventory.json's format, with a
``role`` per VM: the inventory loader ignores keys it does not know), and the summary of the capture.

A *sample* is counted as the brief and the baseline define it: one VM's traffic in one 1-second window
with at least one frame, i.e. the distinct (VM MAC as source or destination, whole second) pairs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path

from scapy.utils import RawPcapReader

from vmsentry.model.behaviour import Incident

from traffic_lab.behaviour.topology import BRIDGE, GATEWAY_IP, GATEWAY_MAC, SUBNET, Vm


def write_json(path: Path, doc: dict) -> None:
    """Atomically (a temporary file beside it, renamed): never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=1)
        out.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def truth_doc(split: str, capture: str, vms: list[Vm], incidents: list[Incident]) -> dict:
    return {
        "split": split,
        "capture": capture,
        "vms": [{"name": vm.name, "mac": vm.mac, "ip": vm.ip, "role": vm.role} for vm in vms],
        "incidents": [{**i._asdict(), "victims": list(i.victims)} for i in sorted(incidents, key=lambda i: i.start)],
    }


def inventory_doc(vms: list[Vm]) -> dict:
    source = {"file": "tests/traffic_lab/behaviour/topology.py", "uri": None}
    return {
        "schema": "vmsentry.inventory/1",
        "hosts": [{"name": "hv-lab", "platform": "linux", "facts": {}}],
        "networks": [
            {
                "name": "lab",
                "platform": "libvirt",
                "mode": "bridged",
                "bridge": BRIDGE,
                "subnets": [SUBNET],
                "host_address": GATEWAY_IP,
                "host_mac": GATEWAY_MAC,
                "dhcp": False,
                "dhcp_servers": [],
                "dns_servers": [GATEWAY_IP],
                "forwards": [],
                "host": "hv-lab",
                "ipv6": False,
                "source": source,
            }
        ],  # fmt: skip
        "vms": [
            {
                "name": vm.name,
                "platform": "libvirt",
                "host": "hv-lab",
                "role": vm.role,
                "source": source,
                "nics": [
                    {
                        "id": "net0",
                        "mac": vm.mac,
                        "ip": vm.ip,
                        "mode": "bridged",
                        "network": "lab",
                        "bridge": BRIDGE,
                        "target": vm.port,
                    }
                ],
            }
            for vm in vms
        ],  # fmt: skip
        "errors": [],
    }


def summarise(pcap: Path, vms: list[Vm]) -> dict:
    """Frames, span, and samples (distinct (VM, second) pairs) per VM and per role, read back from the
    capture itself."""
    role_of = {bytes.fromhex(vm.mac.replace(":", "")): vm for vm in vms}
    seen: set[tuple[str, int]] = set()
    frames = size = 0
    first = last = None
    for data, meta in RawPcapReader(str(pcap)):
        ts = meta.sec + meta.usec / 1e6 if hasattr(meta, "usec") else meta.tshigh
        frames += 1
        size += meta.wirelen
        first = ts if first is None else first
        last = ts
        second = int(ts)
        for mac in (data[0:6], data[6:12]):
            vm = role_of.get(mac)
            if vm is not None:
                seen.add((vm.name, second))
    per_vm = Counter(name for name, _ in seen)
    by_name = {vm.name: vm for vm in vms}
    per_role = Counter()
    for name, n in per_vm.items():
        per_role[by_name[name].role] += n
    return {
        "frames": frames,
        "bytes": size,
        "first": first,
        "last": last,
        "span": (last - first) if frames else 0.0,
        "samples": len(seen),
        "samples_per_role": dict(per_role),
        "samples_per_vm_mean": round(len(seen) / max(1, len(vms)), 1),
        "vms_without_traffic": sorted(vm.name for vm in vms if vm.name not in per_vm),
    }


def check_truth(doc: dict, first: float, last: float) -> list[str]:
    """Problems with a truth document against its capture's span: an incident outside it, an attacker
    that is not one of the VMs."""
    names = {vm["name"] for vm in doc["vms"]}
    problems = []
    for i, inc in enumerate(doc["incidents"]):
        if inc["attacker"] not in names:
            problems.append(f"incidents[{i}]: attacker {inc['attacker']} is not a VM of the file")
        if not (first <= inc["start"] <= inc["end"] <= last):
            problems.append(f"incidents[{i}] ({inc['kind']}): {inc['start']}..{inc['end']} outside {first}..{last}")
    return problems
