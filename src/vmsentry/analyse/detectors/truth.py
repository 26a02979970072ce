"""What the hypervisor knows, in the form the detectors use: which MAC and IP each VM and host was given,
which DHCP and DNS servers and IPv6 routers are sanctioned, and whether IPv6 is meant to be on.

Built from an ``Inventory`` (a saved ``vmsentry inventory`` JSON or a live libvirt URI). Without one,
``Truth()`` is empty and ``known`` is False: the detectors then learn bindings as arpwatch does and say
so through a lower confidence.
"""

from __future__ import annotations

import ipaddress

from vmsentry.model import Inventory
from vmsentry.model.traffic import ip_bytes, ip_text, mac_bytes, mac_text


class Truth:
    def __init__(self) -> None:
        self.known = False
        self.mac_of_ip: dict[bytes, bytes] = {}
        self.ips_of_mac: dict[bytes, set[bytes]] = {}
        self.vm_of_mac: dict[bytes, str] = {}
        self.vm_of_ip: dict[bytes, str] = {}
        self.host_of_ip: dict[bytes, str] = {}
        self.host_macs: set[bytes] = set()
        self.host_of_mac: dict[bytes, str] = {}
        self.dhcp_servers: set[bytes] = set()
        self.dns_servers: set[bytes] = set()
        self.ipv6_allowed: bool | None = None
        # sanctioned IPv6 routers (networks[].ipv6_routers; without any listed, the hosts' bridges)
        self.router_macs: set[bytes] = set()
        self.router_ips: set[bytes] = set()
        self.subnets: list = []
        self.dhcp_known = False
        self.dns_known = False

    @classmethod
    def from_inventory(cls, inv: Inventory, bridge: str | None = None) -> Truth:
        """``bridge``: when watching one bridge, only the networks on it decide the sanctioned servers."""
        t = cls()
        t.known = True
        networks = [n for n in inv.networks if bridge and n.bridge == bridge] or list(inv.networks)
        for net in networks:
            host = net.host or (inv.hosts[0].name if inv.hosts else "host")
            hip, hmac = ip_bytes(net.host_address), mac_bytes(net.host_mac)
            if hip:
                t.host_of_ip[hip] = host
                if hmac:
                    t._bind(hip, hmac)
            if hmac:
                t.host_macs.add(hmac)
                t.host_of_mac[hmac] = host
            t.dhcp_servers.update(filter(None, map(ip_bytes, net.dhcp_servers)))
            t.dns_servers.update(filter(None, map(ip_bytes, net.dns_servers)))
            for router in net.ipv6_routers:  # by MAC; by address only where no MAC is given (a source
                rmac, rip = mac_bytes(router.get("mac")), ip_bytes(router.get("ip"))  # address is easy to forge)
                if rmac:
                    t.router_macs.add(rmac)
                elif rip:
                    t.router_ips.add(rip)
            for subnet in net.subnets:
                try:
                    t.subnets.append(ipaddress.ip_network(subnet, strict=False))
                except ValueError:
                    pass
        t.dhcp_known = any(n.dhcp or n.dhcp_servers for n in networks) or bool(t.dhcp_servers)
        t.dns_known = bool(t.dns_servers)
        t.ipv6_allowed = any(n.ipv6 for n in networks) if networks else None
        if not t.router_macs and not t.router_ips:
            t.router_macs = set(t.host_macs)
        for vm in inv.vms:
            for nic in vm.nics:
                mac, ip = mac_bytes(nic.mac), ip_bytes(nic.ip)
                if mac:
                    t.vm_of_mac[mac] = vm.name
                if ip:
                    t.vm_of_ip[ip] = vm.name
                if mac and ip:
                    t._bind(ip, mac)
        return t

    def _bind(self, ip: bytes, mac: bytes) -> None:
        self.mac_of_ip[ip] = mac
        self.ips_of_mac.setdefault(mac, set()).add(ip)

    # --- questions the detectors ask --------------------------------------------------------------
    def is_vm(self, ip: bytes | None = None, mac: bytes | None = None) -> bool:
        return (ip is not None and ip in self.vm_of_ip) or (
            mac is not None and mac in self.vm_of_mac and (ip is None or ip not in self.host_of_ip)
        )

    def vm_name(self, ip: bytes | None = None, mac: bytes | None = None) -> str | None:
        if mac is not None and mac in self.vm_of_mac:
            return self.vm_of_mac[mac]
        if ip is not None:
            return self.vm_of_ip.get(ip)
        return None

    def is_host(self, ip: bytes | None) -> bool:
        return ip is not None and ip in self.host_of_ip

    def is_router(self, mac: bytes | None, ip: bytes | None = None) -> bool:
        """A sanctioned IPv6 router (by MAC; by address where the inventory gives no MAC)."""
        return (mac is not None and mac in self.router_macs) or (ip is not None and ip in self.router_ips)

    def endpoint(self, ip: bytes | None = None, mac: bytes | None = None) -> dict:
        """An attacker/victim entry: {"ip", "mac", "vm"} (+ "host" for a hypervisor address)."""
        if mac is None and ip is not None:
            mac = self.mac_of_ip.get(ip)
        out = {"ip": ip_text(ip), "mac": mac_text(mac), "vm": self.vm_name(ip, mac)}
        if ip is not None and ip in self.host_of_ip:
            out["host"] = self.host_of_ip[ip]
            out["vm"] = None
        return out

    def label(self, ip: bytes | None = None, mac: bytes | None = None) -> str:
        """'vm1 (10.99.0.11)', 'host hv1 (10.99.0.1)', '10.0.0.5' or '52:54:00:..' for summaries."""
        e = self.endpoint(ip, mac)
        addr = e["ip"] or e["mac"] or "?"
        if e.get("host"):
            return f"host {e['host']} ({addr})"
        return f"{e['vm']} ({addr})" if e["vm"] else addr
