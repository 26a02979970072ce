"""Synthetic inventories and policies for scale tests and the benchmark: N VMs in Z zones, R allow rules."""

from __future__ import annotations

import random

from vmsentry.model import VM, Inventory, Network, Nic


def inventory(n_vms: int, n_nets: int = 4, ipv6: bool = False, ports: bool = True) -> Inventory:
    inv = Inventory()
    for k in range(n_nets):
        inv.networks.append(
            Network(
                name=f"net{k}",
                platform="libvirt",
                mode="nat",
                bridge=f"virbr{k}",
                subnets=[f"10.{100 + k}.0.0/16"],
                host_address=f"10.{100 + k}.0.1",
                ipv6=ipv6,
            )
        )
    for i in range(n_vms):
        k = i % n_nets
        ip = f"10.{100 + k}.{(i // 250) % 250}.{i % 250 + 2}"
        mac = f"52:54:00:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}"
        nic = Nic(
            id="net0",
            mode="nat",
            mac=mac,
            ip=ip,
            target=f"vnet{i}" if ports else None,
            network=f"net{k}",
            bridge=f"virbr{k}",
        )
        inv.vms.append(VM(name=f"vm{i:05d}", platform="libvirt", nics=[nic]))
    return inv


def policy_text(n_vms: int, n_zones: int = 50, n_rules: int = 200, seed: int = 7) -> str:
    rnd = random.Random(seed)
    lines = ["version: 1", "defaults: {vm_to_host: deny, vm_to_vm: deny, anti_spoofing: true}", "zones:"]
    for z in range(n_zones):
        members = [f"vm{i:05d}" for i in range(z, n_vms, n_zones)]
        lines.append(f"  z{z:02d}: {{vms: [{', '.join(members)}]}}")
    lines.append("allow:")
    lines.append("  - {from: any-vm, to: host, proto: udp, ports: [53, 67]}")
    for _ in range(n_rules - 1):
        a, b = rnd.randrange(n_zones), rnd.randrange(n_zones)
        proto = rnd.choice(["tcp", "tcp", "udp"])
        ports = sorted(rnd.sample([22, 80, 443, 5432, 6379, 8080, 9000, 9090, 3306, 27017], rnd.randint(1, 3)))
        lines.append(f"  - {{from: z{a:02d}, to: z{b:02d}, proto: {proto}, ports: {ports}}}")
    lines += [
        "roles:",
        "  admin: {sources: [10.77.0.5/32], via: jump, to: [host, any-vm], proto: tcp, ports: [22]}",
        '  developer: {sources: [10.77.0.0/24], hours: "08:00-20:00", timezone: "Asia/Shanghai", to: [z01, z02], proto: tcp, ports: [22]}',
        "  tester: {sources: [10.77.0.64/26], to: [z03], proto: tcp, ports: [80, 443]}",
        "jump_hosts:",
        "  jump: {vm: vm00000}",
    ]
    return "\n".join(lines) + "\n"
