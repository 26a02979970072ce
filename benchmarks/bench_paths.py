"""Benchmark of `vmsentry paths`: exposure graph of N VMs on M networks with host facts, every VM's best
path to the host, and the smallest fix.

    .venv/bin/python benchmarks/bench_paths.py            # 10,000 VMs on 200 networks, plus a scaling run
    .venv/bin/python benchmarks/bench_paths.py --vms 2000 --networks 40 --no-scaling

The inventory is synthetic but uses the real model: a mix of NAT, isolated, routed and bridged networks,
VNC consoles (some on 0.0.0.0 without a password), writable shares, user-mode NICs with host forwards,
PCI passthrough and a QEMU version inside several CVE ranges, so every kind of edge is present.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from vmsentry.analyse.graph import analyse
from vmsentry.analyse.graph.build import build_graph
from vmsentry.model import VM, Channels, Device, Forward, Host, Inventory, Listener, Network, Nic, Share, Source

MODES = ("nat", "isolated", "routed", "nat", "bridged")


def inventory(n_vms: int, n_nets: int) -> Inventory:
    inv = Inventory()
    listening = [
        {"proto": "tcp", "address": "0.0.0.0", "port": p, "process": proc, "pid": 100 + i, "interface": None}
        for i, (p, proc) in enumerate(
            [(22, "sshd"), (16509, "libvirtd"), (445, "smbd"), (9100, "node_exporter"), (5432, "postgres")]
        )
    ]
    listening.append(
        {"proto": "tcp", "address": "127.0.0.1", "port": 6379, "process": "redis-server", "pid": 200, "interface": None}
    )
    bridges = []
    for j in range(n_nets):
        mode = MODES[j % len(MODES)]
        br = f"virbr{j}" if mode != "bridged" else f"br{j}"
        addr = f"10.{j // 250}.{j % 250}.1"
        inv.networks.append(
            Network(
                f"net{j}",
                "libvirt",
                mode=mode,
                bridge=br,
                subnets=[f"10.{j // 250}.{j % 250}.0/24"],
                host_address=None if mode == "bridged" else addr,
                source=Source(f"networks/net{j}.xml"),
                locator="line 1, /network",
                port_isolated=(j % 7 == 0),
            )
        )
        bridges.append(
            {
                "name": br,
                "addresses": [f"{addr}/24"],
                "physical_ports": ["eno1"] if mode == "bridged" else [],
                "ports": [],
                "isolated_ports": [],
            }
        )
    inv.hosts.append(
        Host(
            "bench-host",
            "linux",
            {
                "listening": listening,
                "bridges": bridges,
                "firewall": {"input_policy": "accept"},
                "iommu": {"enabled": False, "groups": 0},
                "versions": {"qemu": "5.1.0", "libvirt": "6.6.0", "kernel": "5.4.0"},
                "libvirtd_conf": {"values": {"listen_tcp": 1, "auth_tcp": "none"}},
                "qemu_conf": {"values": {"vnc_listen": "127.0.0.1"}},
            },
        )
    )
    for i in range(n_vms):
        net = inv.networks[i % n_nets]
        vm = VM(f"vm{i:05d}", "libvirt", source=Source(f"domains/vm{i:05d}.xml"))
        vm.nics.append(
            Nic(
                "net0",
                mode=net.mode,
                network=net.name,
                bridge=net.bridge,
                model="virtio",
                filter="clean-traffic" if i % 3 == 0 else None,
                spoof_protection=(i % 3 == 0),
                locator="line 20, /domain/devices/interface",
            )
        )
        if i % 10 == 0:
            vm.listeners.append(
                Listener("vnc", "tcp", "0.0.0.0", 5900 + i % 100, "none", "line 30, /domain/devices/graphics")
            )
        else:
            vm.listeners.append(Listener("vnc", "tcp", "127.0.0.1", None, "none", "line 30, /domain/devices/graphics"))
        if i % 20 == 0:
            vm.shares.append(
                Share("virtiofs", f"/srv/share{i % 50}", f"tag{i}", True, "line 25, /domain/devices/filesystem")
            )
        if i % 50 == 0:
            vm.nics.append(Nic("dbg0", mode="user", model="e1000", locator="qemu:commandline"))
            vm.forwards.append(Forward("tcp", [20000 + i % 1000] * 2, [22, 22], None, "dbg0", "qemu:commandline"))
        if i % 100 == 0:
            vm.devices.append(Device("pci-passthrough", f"0000:{i % 256:02x}:00.0", "line 40, /domain/devices/hostdev"))
            vm.channels = Channels("bidirectional", "host-to-guest")
        vm.facts["libvirt.disk.unencrypted"] = {"value": f"/var/lib/libvirt/images/vm{i:05d}.qcow2", "at": "line 10"}
        inv.vms.append(vm)
    return inv


def run(n_vms: int, n_nets: int) -> dict[str, float]:
    inv = inventory(n_vms, n_nets)
    gc.collect()
    t0 = time.perf_counter()
    eg = build_graph(inv)
    t1 = time.perf_counter()
    r = analyse(inv, "any-vm", "host", graph=eg)
    t2 = time.perf_counter()
    assert r.fix.verified, "fix does not cut every path"
    assert len({p.source for p in r.paths}) == n_vms
    return {
        "vms": n_vms,
        "networks": n_nets,
        "nodes": eg.g.number_of_nodes(),
        "edges": eg.g.number_of_edges(),
        "build": t1 - t0,
        "paths": r.seconds["paths"],
        "fix": r.seconds["fix"],
        "total": t2 - t0,
        "paths_found": len(r.paths),
        "fix_changes": len(r.fix.changes),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=10000)
    ap.add_argument("--networks", type=int, default=200)
    ap.add_argument("--no-scaling", action="store_true")
    args = ap.parse_args()
    gc.disable()  # as the CLI does
    sizes = [] if args.no_scaling else [(args.vms // 4, args.networks // 4), (args.vms // 2, args.networks // 2)]
    rows = [run(v, n) for v, n in sizes] + [run(args.vms, args.networks)]
    print(
        f"{'VMs':>6} {'nets':>5} {'nodes':>7} {'edges':>7} {'build s':>8} {'paths s':>8} {'fix s':>7} {'total s':>8} "
        f"{'paths':>6} {'fix':>4}"
    )
    for r in rows:
        print(
            f"{r['vms']:>6} {r['networks']:>5} {r['nodes']:>7} {r['edges']:>7} {r['build']:>8.2f} {r['paths']:>8.2f} "
            f"{r['fix']:>7.2f} {r['total']:>8.2f} {r['paths_found']:>6} {r['fix_changes']:>4}"
        )
    big = rows[-1]
    if len(rows) > 1:
        small = rows[0]
        print(
            f"time per VM: {1000 * small['total'] / small['vms']:.3f} ms at {small['vms']} VMs, "
            f"{1000 * big['total'] / big['vms']:.3f} ms at {big['vms']} VMs"
        )
    return 0 if big["total"] < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
