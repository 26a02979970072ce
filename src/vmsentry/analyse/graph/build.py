"""Build the exposure graph from an inventory (and host facts when present).

Nodes: ``external`` (anyone who reaches the host's own addresses), ``lan`` (the physical LAN), ``host:H``
(the host OS), ``svc:H:proto/addr:port`` (a host listening service), ``net:N`` / ``bridge:B`` (virtual
networks and bridges), ``vm:NAME``, ``listener:VM:i`` (a socket the hypervisor opens for a VM),
``fwd:VM:i`` (a port forward), ``share:H:PATH``, ``dev:VM:i`` (a passthrough device), ``vuln:H:ID`` (a
known flaw of a hypervisor component) and a few hub/gate nodes that keep the graph linear in size
(``addr:H`` = "the host's addresses, as guests on bridges see them", ``loop:H`` = "the host's loopback,
as user-mode NAT sees it", ``mitm:SEG``, ``peers:SEG``, ``iommu:H``).

Every edge carries ``technique``, ``likelihood`` (0-1), ``evidence`` {file, locator}, an explanation
``detail``, ``possible`` (True when it rests on a fact that was not collected) and ``change``: the id of
the one change that removes it (None: nothing short of redesign does). Changes live in
``ExposureGraph.changes`` with their text, asset, rule id and cost; the min cut works on those costs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from vmsentry.analyse.addresses import MANAGEMENT_PORTS, exposure
from vmsentry.analyse.graph.techniques import SERVICE_TECHNIQUE, TECHNIQUES
from vmsentry.analyse.graph.vulns import (Vuln, component_version, components_for, load_vulns, reachable,
                                          version_status)
from vmsentry.model import SS_LOCATOR, VM, Host, Inventory, Network

EXTERNAL, LAN = "external", "lan"
SEGMENT_MODES = ("nat", "isolated", "routed", "open", "host-only", "internal", "private", "bridged")
SENSITIVE_PATHS = ("/", "/etc", "/root", "/home", "/boot", "/usr", "/var", "/var/lib/libvirt", "/run", "/srv")
POSSIBLE_FACTOR = 0.5          # a step that rests on an uncollected fact counts half


@dataclass(slots=True)
class Change:
    id: str
    text: str
    asset: str
    rule_id: str | None
    cost: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "change": self.text, "asset": self.asset, "rule_id": self.rule_id, "cost": self.cost}


@dataclass
class ExposureGraph:
    g: nx.DiGraph
    changes: dict[str, Change] = field(default_factory=dict)
    hosts: list[str] = field(default_factory=list)           # host node ids
    vms: list[str] = field(default_factory=list)             # vm node ids
    notes: list[str] = field(default_factory=list)
    vulns_matched: list[dict[str, Any]] = field(default_factory=list)

    def without(self, change_ids: set[str]) -> "ExposureGraph":
        """A copy with every edge removed that one of these changes removes (the what-if graph)."""
        g = self.g.copy()
        g.remove_edges_from([(u, v) for u, v, c in self.g.edges(data="change") if c in change_ids])
        return ExposureGraph(g, self.changes, self.hosts, self.vms, list(self.notes), self.vulns_matched)

    def stats(self) -> dict[str, int]:
        return {"nodes": self.g.number_of_nodes(), "edges": self.g.number_of_edges(), "vms": len(self.vms),
                "hosts": len(self.hosts), "changes": len(self.changes)}


class _Builder:
    def __init__(self, inv: Inventory, vulns: list[Vuln], vuln_db: str) -> None:
        self.inv = inv
        self.vulns = vulns
        self.vuln_db = vuln_db
        self.g = nx.DiGraph()
        self.eg = ExposureGraph(self.g)
        self.networks: dict[str, Network] = {}
        for n in inv.networks:
            self.networks.setdefault(n.name, n)
        self.hosts: dict[str, Host] = {}
        for h in inv.hosts:
            self.hosts.setdefault(h.name, h)
        self.segments: dict[str, dict[str, Any]] = {}
        self.seg_members: dict[str, list[tuple[VM, Any]]] = {}
        self.user_nat: dict[str, list[tuple[VM, Any]]] = {}     # host node -> VMs with unrestricted user NICs
        self.vm_disks: list[tuple[VM, str, str]] = []
        self._vuln_cache: dict[tuple, list] = {}
        self.deferred: list[tuple] = []      # listener/forward reach: needs every segment's addresses first

    # --- helpers ---------------------------------------------------------------------------------
    def node(self, nid: str, kind: str, label: str, **attrs: Any) -> str:
        if nid not in self.g:
            self.g.add_node(nid, kind=kind, label=label, **attrs)
        return nid

    def change(self, cid: str, text: str, asset: str, rule_id: str | None, cost: float, kind: str) -> str:
        if cid not in self.eg.changes:
            self.eg.changes[cid] = Change(cid, text, asset, rule_id, cost, kind)
        return cid

    def edge(self, u: str, v: str, technique: str, file: str | None, locator: str | None, detail: str,
             likelihood: float | None = None, change: str | None = None, possible: bool = False,
             **extra: Any) -> None:
        p = TECHNIQUES[technique].likelihood if likelihood is None else likelihood
        if possible:
            p *= POSSIBLE_FACTOR
        p = max(min(p, 1.0), 1e-6)
        old = self.g.get_edge_data(u, v)
        if old is not None and old["likelihood"] >= p:
            return
        self.g.add_edge(u, v, technique=technique, likelihood=p, w=-math.log(p),
                        evidence={"file": file, "locator": locator}, detail=detail, change=change,
                        possible=possible, **extra)

    def host_for(self, vm: VM | Network) -> tuple[str, Host | None]:
        if vm.host and vm.host in self.hosts:
            h = self.hosts[vm.host]
        elif self.hosts:
            h = next(iter(self.hosts.values()))
        else:
            return self.node("host:host", "host", "the host (no host facts collected)", asset="host:host"), None
        return f"host:{h.name}", h

    # --- build -----------------------------------------------------------------------------------
    def build(self) -> ExposureGraph:
        self.node(EXTERNAL, "external", "outside world (whoever reaches the host's addresses)", asset="external")
        self.node(LAN, "lan", "physical LAN", asset="lan")
        for h in self.hosts.values():
            self.node(f"host:{h.name}", "host", f"host {h.name}", asset=f"host:{h.name}")
        if not self.hosts:
            self.node("host:host", "host", "the host (no host facts collected)", asset="host:host")
            self.eg.notes.append("no host facts: host services are modelled as one 'not collected' node and "
                                 "vulnerability versions are unknown (edges marked possible)")
        self.g.add_edge(EXTERNAL, LAN, technique="bridged-to-lan", likelihood=1.0, w=0.0,
                        evidence={"file": None, "locator": None}, detail="the LAN is part of the outside world",
                        change=None, possible=False)
        for vm in self.inv.vms:
            self.vm(vm)
        for seg_id, seg in self.segments.items():
            self.segment(seg_id, seg)
        for args in self.deferred:
            self._reach(*args)
        for hid in [n for n, k in self.g.nodes(data="kind") if k == "host"]:
            self.host_services(hid)
        self.shares_to_disks()
        self.eg.hosts = [n for n, k in self.g.nodes(data="kind") if k == "host"]
        return self.eg

    def vm(self, vm: VM) -> None:
        vid = self.node(f"vm:{vm.name}", "vm", vm.name, asset=f"vm:{vm.name}", platform=vm.platform)
        self.eg.vms.append(vid)
        hid, host = self.host_for(vm)
        if hid not in self.eg.hosts:
            self.eg.hosts.append(hid)
        f = vm.source.file
        self.edge(hid, vid, "host-controls-guest", None, None, f"whoever controls {hid} controls VM {vm.name}")
        for nic in vm.nics:
            self.nic(vm, vid, hid, host, nic)
        for i, lst in enumerate(vm.listeners):
            self.listener(vm, vid, hid, host, i, lst)
        for i, fwd in enumerate(vm.forwards):
            self.forward(vm, vid, hid, i, fwd)
        for i, share in enumerate(vm.shares):
            self.share(vm, vid, hid, i, share)
        for i, dev in enumerate(vm.devices):
            self.device(vm, vid, hid, host, i, dev)
        ch = vm.channels
        if ch.clipboard not in ("disabled", "unknown"):
            c = self.change(f"clipboard:{vm.name}", f"Disable clipboard sharing for VM {vm.name}", vid, "VMS-VM-070", 1,
                            "vm")
            cid = self.node(f"chan:{vm.name}:clipboard", "channel", f"clipboard of {vm.name}", asset=vid)
            self.edge(vid, cid, "clipboard-channel", f, "channels.clipboard",
                      f"clipboard shared ({ch.clipboard}) between {vm.name} and the console user's host", change=c)
            self.edge(cid, hid, "clipboard-channel", f, "channels.clipboard",
                      "the console client runs on the host (or the admin's workstation)", likelihood=1.0)
        if ch.drag_and_drop not in ("disabled", "unknown"):
            c = self.change(f"dnd:{vm.name}", f"Disable drag-and-drop for VM {vm.name}", vid, "VMS-VM-071", 1, "vm")
            cid = self.node(f"chan:{vm.name}:dnd", "channel", f"drag-and-drop of {vm.name}", asset=vid)
            self.edge(vid, cid, "drag-and-drop-channel", f, "channels.drag_and_drop",
                      f"drag-and-drop enabled ({ch.drag_and_drop}) between {vm.name} and the console user's host",
                      change=c)
            self.edge(cid, hid, "drag-and-drop-channel", f, "channels.drag_and_drop",
                      "the console client runs on the host (or the admin's workstation)", likelihood=1.0)
        for key, fact in vm.facts.items():
            value = fact.get("value") if isinstance(fact, dict) else None
            if ".disk" in key and isinstance(value, str) and value.startswith("/"):
                self.vm_disks.append((vm, value, fact.get("at")))
        self.vulns_for(vm, vid, hid, host)

    def nic(self, vm: VM, vid: str, hid: str, host: Host | None, nic: Any) -> None:
        f, loc = vm.source.file, nic.locator
        if not nic.connected or nic.mode in ("disconnected",):
            return
        mode = nic.mode
        rule = {"bridged": "VMS-VM-020", "direct": "VMS-VM-021", "passthrough": "VMS-VM-022", "open": "VMS-VM-023",
                "routed": "VMS-VM-023"}.get(mode)
        move = self.change(f"nic:{vm.name}:{nic.id}", f"Move NIC {nic.id} of VM {vm.name} to an isolated network "
                           "(or disconnect it)", vid, rule, 8, "vm")
        if mode in ("direct", "passthrough"):
            what = "macvtap (direct) NIC" if mode == "direct" else "passed-through NIC"
            extra = ("; macvtap cannot talk to its own host, so this NIC gives no path to the host"
                     if mode == "direct" else "")
            self.edge(vid, LAN, "bridged-to-lan", f, loc, f"{what} {nic.id} puts {vm.name} on the physical LAN{extra}",
                      change=move)
            self.edge(LAN, vid, "lan-to-guest", f, loc, f"LAN machines reach {vm.name} through its {what}")
            if mode == "passthrough" and nic.type == "hostdev":
                from vmsentry.model import Device
                self.device(vm, vid, hid, host, f"nic-{nic.id}",
                            Device("pci-passthrough", nic.detail or f"NIC {nic.id}", nic.locator))
            return
        if mode == "user":
            restrict = vm.facts.get(f"qemu.netdev.{nic.id}.restrict", {}).get("value")
            self.edge(vid, LAN, "nat-outbound", f, loc, f"user-mode NAT NIC {nic.id} opens connections to the LAN "
                      "from the host's address", change=move)
            if str(restrict).lower() in ("on", "yes", "true", "1"):
                return
            c = self.change(f"restrict:{vm.name}:{nic.id}", f"Set restrict=on on user-mode NIC {nic.id} of VM "
                            f"{vm.name} (or replace it with a tap NIC on an isolated network)", vid, "VMS-VM-013", 1, "vm")
            lo = self.node(f"loop:{hid}", "hub", f"{hid} loopback and addresses, as user-mode NAT sees them")
            self.edge(vid, lo, "user-nat-host-loopback", f, loc,
                      f"user-mode NIC {nic.id} of {vm.name} is not restricted: the guest connects to the host's own "
                      "services through QEMU, loopback-bound ones included", change=c)
            self.user_nat.setdefault(hid, []).append((vm, nic))
            return
        if mode not in SEGMENT_MODES:
            if mode == "unknown":
                self.eg.notes.append(f"vm:{vm.name} NIC {nic.id}: connection model unknown, not modelled")
            return
        net = self.networks.get(nic.network) if nic.network else None
        if mode == "bridged" or (net is not None and net.mode == "bridged"):
            seg_id = f"bridge:{nic.bridge or (net.bridge if net else None) or nic.network}"
        elif nic.network:
            seg_id = f"net:{nic.network}"
        elif nic.bridge:
            seg_id = f"bridge:{nic.bridge}"
        else:
            return
        seg = self.segments.get(seg_id)
        if seg is None:
            seg = self.segments[seg_id] = {"mode": net.mode if net else mode, "net": net, "host": hid, "hostobj": host,
                                           "bridge": nic.bridge or (net.bridge if net else None)}
            label = seg_id.split(":", 1)[1]
            self.node(seg_id, "network", f"{'network' if seg_id.startswith('net:') else 'bridge'} {label} "
                      f"({seg['mode']})", asset=f"network:{net.name}" if net else seg_id, mode=seg["mode"])
        self.seg_members.setdefault(seg_id, []).append((vm, nic))
        self.edge(vid, seg_id, "nic-attach", f, loc, f"NIC {nic.id} of {vm.name} is on {seg_id} ({seg['mode']})",
                  change=move)

    def segment(self, seg_id: str, seg: dict[str, Any]) -> None:
        net: Network | None = seg["net"]
        hid, host, mode, bridge = seg["host"], seg["hostobj"], seg["mode"], seg["bridge"]
        f = net.source.file if net else None
        loc = net.locator if net else None
        members = self.seg_members.get(seg_id, [])
        # the host's addresses on this segment
        addrs, physical, known = set(), None, False
        if net and net.host_address:
            addrs.add(net.host_address)
            known = True
        brs = host.bridges if host is not None else None
        if brs is not None and bridge:
            for br in brs:
                if br.name == bridge:
                    known = True
                    physical = bool(br.physical_ports)
                    addrs |= {a.split("/")[0] for a in br.addresses or [] if not a.startswith("fe80")}
        seg["addrs"] = addrs
        asset = f"network:{net.name}" if net else seg_id
        if mode == "bridged":
            if physical is None:
                physical = True
            if physical:
                lc = self.change(f"lan-off:{seg_id}", f"Take {seg_id} off the physical LAN (guests on an isolated or "
                                 "NAT network, or a VLAN of their own)", asset, "VMS-NET-003", 8, "network")
                self.edge(seg_id, LAN, "bridged-to-lan", f, loc, f"{seg_id} bridges guests onto the physical LAN",
                          change=lc)
                for vm, nic in members:
                    self.edge(LAN, f"vm:{vm.name}", "lan-to-guest", vm.source.file, nic.locator,
                              f"LAN machines reach {vm.name} on bridge {bridge}")
        elif mode in ("routed", "open"):
            lc = self.change(f"lan-off:{seg_id}", f"Make {seg_id} a NAT or isolated network, or filter its forwarding "
                             "to the LAN (nftables forward chain)", asset, "VMS-NET-002" if mode == "routed" else
                             "VMS-NET-001", 5, "network")
            self.edge(seg_id, LAN, "routed-to-lan", f, loc, f"{seg_id} is {mode}: guests and the LAN reach each other",
                      change=lc)
            for vm, nic in members:
                self.edge(LAN, f"vm:{vm.name}", "lan-to-guest", vm.source.file, nic.locator,
                          f"the LAN routes to {vm.name} on {mode} network {seg_id}", likelihood=0.25)
        elif mode == "nat":
            lc = self.change(f"lan-off:{seg_id}", f"Drop forwarding from {seg_id} to the LAN's private ranges "
                             "(nftables forward chain), or make it isolated", asset, "VMS-HOST-001", 4, "network")
            self.edge(seg_id, LAN, "nat-outbound", f, loc, f"{seg_id} NATs guest connections to the LAN", change=lc)
        # guests reach the host's addresses (libvirt's firewall rules do not stop guest-to-host traffic)
        if addrs or not known:
            fw = host.firewall if host is not None else None
            drop = fw is not None and fw.input_policy == "drop"
            c = self.change(f"fw-seg:{seg_id}", f"Drop guest traffic to the host on {bridge or seg_id} except "
                            "DHCP/DNS (nftables input chain on the bridge)", seg_id if not net else f"network:{net.name}",
                            "VMS-HOST-012", 3, "host")
            hub = self.node(f"addr:{hid}", "hub", f"{hid} addresses, as guests see them")
            why = (f"the host has {', '.join(sorted(addrs))} on {bridge or seg_id}" if addrs else
                   f"whether the host has an address on {bridge or seg_id} was not collected")
            if drop:
                why += "; INPUT policy is drop (which ports the rules open to guests was not collected)"
            self.edge(seg_id, hub, "guest-to-host-service", f, loc, why, change=c, possible=(not known) or drop,
                      likelihood=0.4 if drop else None, seg_addrs=sorted(addrs))
        # shared L2 segment: ARP/NDP man-in-the-middle and peer attacks
        isolated = bool(net.port_isolated) if net else False
        others = len(members) + (1 if addrs else 0)
        if others >= 2:
            mitm = self.node(f"mitm:{seg_id}", "hub", f"man-in-the-middle position on {seg_id}")
            for vm, nic in members:
                if nic.spoof_protection is False or nic.spoof_protection is None:
                    c = self.change(f"spoof:{vm.name}:{nic.id}", f"Add the clean-traffic nwfilter (MAC/IP/ARP "
                                    f"anti-spoofing) to NIC {nic.id} of VM {vm.name}", f"vm:{vm.name}", "VMS-VM-030", 1, "vm")
                    self.edge(f"vm:{vm.name}", mitm, "arp-mitm", vm.source.file, nic.locator,
                              f"NIC {nic.id} of {vm.name} has no anti-spoofing filter on shared segment {seg_id}",
                              change=c, possible=nic.spoof_protection is None)
                self.edge(mitm, f"vm:{vm.name}", "mitm-session-hijack", vm.source.file, nic.locator,
                          f"{vm.name}'s traffic on {seg_id} can be intercepted and altered")
            if addrs and mode == "bridged":
                mc = self.change(f"mgmt-off:{seg_id}", f"Move the host's own address off {bridge} (management on a "
                                 "separate NIC or VLAN), so guests cannot intercept the host's traffic", hid,
                                 "VMS-HOST-014", 4, "host")
                self.edge(mitm, hid, "mitm-session-hijack", f, loc,
                          f"the host's own traffic on {bridge} ({', '.join(sorted(addrs))}) can be intercepted",
                          likelihood=0.2, change=mc)
        if len(members) >= 2 and not isolated:
            c = self.change(f"isolate:{seg_id}", f"Turn on port isolation on {seg_id} (<port isolated='yes'/>) or "
                            "split its guests", f"network:{net.name}" if net else seg_id, "VMS-NET-005", 2, "network")
            peers = self.node(f"peers:{seg_id}", "hub", f"guest-to-guest traffic on {seg_id}")
            self.edge(seg_id, peers, "segment-peer", f, loc, f"{seg_id} lets its guests talk to each other",
                      likelihood=1.0, change=c)
            for vm, nic in members:
                self.edge(peers, f"vm:{vm.name}", "segment-peer", vm.source.file, nic.locator,
                          f"another guest on {seg_id} attacks {vm.name}'s network services")

    def host_services(self, hid: str) -> None:
        host = self.hosts.get(hid.split(":", 1)[1])
        hub, lo = f"addr:{hid}", f"loop:{hid}"
        if lo in self.g:
            self.node(hub, "hub", f"{hid} addresses, as guests see them")
            self.edge(lo, hub, "user-nat-host-loopback", None, None,
                      "user-mode NAT also reaches the host's non-loopback addresses", likelihood=1.0)
        socks = host.listeners if host is not None else None
        ffile = (host.facts.get("source_file") if host is not None else None) or SS_LOCATOR
        if socks is None:
            if hub in self.g:
                svc = self.node(f"svc:{hid}:unknown", "service", "host services (not collected)", asset=hid)
                self.edge(hub, svc, "guest-to-host-service", None, None, "which services the host runs was not "
                          "collected; a host usually runs some", possible=True, likelihood=0.6)
                self.edge(svc, hid, "host-service-exploit", None, None, "exploit or abuse an unknown host service",
                          possible=True, likelihood=0.3)
            return
        libvirtd = host.config_values("libvirtd_conf")
        seen = set()
        for i, s in enumerate(socks):
            proc = str(s.process or "")
            port, proto, addr = s.port, s.proto or "tcp", s.address
            if proc.startswith("qemu") or proc in ("VBoxHeadless", "vmware-vmx"):
                continue       # modelled as the VM's own listeners and forwards
            if proc == "dnsmasq" and port in (53, 67, 547):
                continue       # libvirt's own DNS/DHCP for its networks: expected guest service
            key = (proto, addr, port)
            if key in seen:
                continue
            seen.add(key)
            exp = exposure(addr, "unix" if proto == "unix" else "tcp")
            if exp == "local":
                continue
            sid = self.node(f"svc:{hid}:{proto}/{addr}:{port}", "service", f"{proc or '?'} {proto}/{port} on {addr}",
                            asset=hid, port=port, process=proc)
            locator = f"listening[{i}] {proto} {addr}:{port} ({proc or 'unknown process'})"
            # how a holder of the service gets the host
            tech = SERVICE_TECHNIQUE.get(port, "host-service-exploit")
            p = None
            rule = "VMS-HOST-013" if port in MANAGEMENT_PORTS else "VMS-HOST-012"
            text = f"Stop {proc or 'the service'} listening on {addr}:{port}/{proto} or bind it to a management-only address"
            if port == 16509 and proc.startswith("libvirt") or proc == "libvirtd" and port == 16509:
                if str(libvirtd.get("auth_tcp", "")).lower() == "none":
                    tech = "libvirt-api-no-auth"
                else:
                    p = 0.2
                rule = "VMS-LVD-019"
                text = "Set listen_tcp = 0 in libvirtd.conf (use TLS with client certificates, auth_tcp = sasl)"
            cost = 5 if port == 22 else 3
            c = self.change(f"svc:{hid}:{proto}/{port}", text, hid, rule, cost, "host")
            self.edge(sid, hid, tech, ffile, locator, f"{proc or 'a service'} on {proto}/{port}: "
                      f"{TECHNIQUES[tech].summary}", likelihood=p, change=c)
            fc = self.change(f"fw-port:{hid}:{proto}/{port}", f"Block {proto}/{port} from guest bridges to the host "
                             f"(nftables input rule), keep it for the management network only", hid, "VMS-HOST-012", 2, "host")
            if exp == "loopback":
                if lo in self.g:
                    self.edge(lo, sid, "user-nat-host-loopback", ffile, locator,
                              f"{proc} is bound to loopback, which user-mode NAT guests reach")
                continue
            if exp == "all" or exp == "unknown":
                if hub in self.g:
                    self.edge(hub, sid, "guest-to-host-service", ffile, locator,
                              f"{proc} listens on every address ({addr}), so guests reach it on the bridge address",
                              change=fc)
                self.edge(EXTERNAL, sid, "lan-to-host-service", ffile, locator,
                          f"{proc} listens on every address ({addr}): the LAN reaches it")
            else:
                iface = s.get("interface")
                for seg_id, seg in self.segments.items():
                    if seg["host"] != hid:
                        continue
                    if addr in seg.get("addrs", ()) or (iface and iface == seg["bridge"]):
                        self.edge(seg_id, sid, "guest-to-host-service", ffile, locator,
                                  f"{proc} is bound to {addr}, the host's address on {seg_id}", change=fc)
                if not any(addr in seg.get("addrs", ()) for seg in self.segments.values()
                           if seg["mode"] != "bridged"):
                    self.edge(EXTERNAL, sid, "lan-to-host-service", ffile, locator, f"{proc} on {addr} is reachable "
                              "from the network that address is on")
            if lo in self.g:
                self.edge(lo, sid, "user-nat-host-loopback", ffile, locator,
                          f"user-mode NAT guests reach {proc} through the host's own stack")

    def _reach(self, hid: str, address: str | None, transport: str, target: str, file: str | None, locator: str | None,
               what: str, host: Host | None) -> None:
        """Edges into a VM's listener or forward from whoever reaches the address it is bound to."""
        tech = "reach-forward" if target.startswith("fwd:") else "reach-listener"
        exp = exposure(address, transport)
        possible = False
        if exp == "unknown" and host is not None:
            values = host.config_values("qemu_conf")
            default = values.get("spice_listen" if "spice" in what else "vnc_listen")
            if default:
                exp = exposure(str(default), transport)
                what += f" (qemu.conf default {default})"
        if exp == "unknown":
            exp, possible = "loopback", True        # libvirt's built-in default is 127.0.0.1
        if exp == "local":
            return
        if exp == "loopback":
            lo = f"loop:{hid}"
            if lo in self.g:
                self.edge(lo, target, tech, file, locator, f"{what} is on loopback, which user-mode NAT "
                          "guests reach", possible=possible)
            return
        if exp == "all":
            hub = self.node(f"addr:{hid}", "hub", f"{hid} addresses, as guests see them")
            self.edge(hub, target, tech, file, locator, f"{what} listens on every host address")
            self.edge(EXTERNAL, target, tech, file, locator, f"{what} listens on every host address")
            return
        # a specific address: a guest network's, or one on the LAN
        if address and address.startswith("network:"):
            seg = f"net:{address.split(':', 1)[1]}"
            if seg in self.g:
                self.edge(seg, target, tech, file, locator, f"{what} listens on network {seg}")
            return
        for seg_id, seg in self.segments.items():
            if seg["host"] == hid and address in seg.get("addrs", ()):
                self.edge(seg_id, target, tech, file, locator, f"{what} listens on {address}, the "
                          f"host's address on {seg_id}")
                if seg["mode"] != "bridged":
                    return
        self.edge(EXTERNAL, target, tech, file, locator, f"{what} listens on {address}")

    def listener(self, vm: VM, vid: str, hid: str, host: Host | None, i: int, lst: Any) -> None:
        f = vm.source.file
        lid = self.node(f"listener:{vm.name}:{i}", "listener", f"{lst.kind} of {vm.name} "
                        f"({lst.address or '*'}:{lst.port if lst.port is not None else 'auto'})", asset=vid)
        what = f"{lst.kind} listener of {vm.name}"
        rule = {"vnc": "VMS-VM-002", "spice": "VMS-VM-002", "rdp": "VMS-VM-002", "vrde": "VMS-VM-002",
                "websocket": "VMS-VM-002", "monitor": "VMS-VM-005", "net-socket": "VMS-VM-006",
                "migration": "VMS-VM-007"}.get(lst.kind, "VMS-VM-004")
        c = self.change(f"listener:{vm.name}:{i}", f"Bind the {lst.kind} listener of VM {vm.name} to 127.0.0.1 or a "
                        "UNIX socket, and require authentication (TLS/SASL)", vid, rule, 1, "vm")
        auth = lst.auth
        if lst.kind == "monitor":
            if auth in ("none", "unknown"):
                self.edge(lid, hid, "qemu-monitor-exec", f, lst.locator, f"{what} has no authentication", change=c)
                self.edge(lid, vid, "console-takeover", f, lst.locator, f"{what} controls the VM", change=c)
        elif lst.kind == "migration":
            if not lst.tls:
                self.edge(lid, hid, "migration-inject", f, lst.locator, f"{what} accepts a stream without TLS", change=c)
        elif lst.kind == "net-socket":
            self.edge(lid, vid, "segment-peer", f, lst.locator, f"{what} joins the VM's L2 segment", change=c)
        else:
            tech = {"none": "console-takeover", "password": "console-password", "unknown": "console-password",
                    "tls": "console-tls", "sasl": "console-tls", "ticket": "console-password"}.get(auth, "console-password")
            if lst.tls and tech != "console-tls" and auth != "none":
                tech = "console-tls"
            if lst.kind in ("serial", "chardev", "usbredir") and auth == "none":
                tech, p = "console-takeover", 0.5
            else:
                p = None
            self.edge(lid, vid, tech, f, lst.locator, f"{what}: auth {auth}", change=c, likelihood=p)
        self.deferred.append((hid, lst.address, lst.transport, lid, f, lst.locator, what, host))

    def forward(self, vm: VM, vid: str, hid: str, i: int, fwd: Any) -> None:
        f = vm.source.file
        hp, gp = fwd.host_ports, fwd.guest_ports
        fid = self.node(f"fwd:{vm.name}:{i}", "forward", f"forward {fwd.host_address or '*'}:{hp[0]}"
                        f"{'-' + str(hp[1]) if hp[1] != hp[0] else ''} -> {vm.name}:{gp[0]}", asset=vid)
        mgmt = any(gp[0] <= p <= gp[1] for p in MANAGEMENT_PORTS) if gp[1] - gp[0] < 70000 else True
        c = self.change(f"fwd:{vm.name}:{i}", f"Bind port forward {fwd.protocol}/{hp[0]} of VM {vm.name} to 127.0.0.1 "
                        "(or remove it)", vid, "VMS-VM-011" if mgmt else "VMS-VM-010", 1, "vm")
        self.edge(fid, vid, "port-forward-into-guest", f, fwd.locator,
                  f"host {fwd.protocol}/{hp[0]} is forwarded to guest port {gp[0]}"
                  + (" (a remote-administration port)" if mgmt else ""), likelihood=0.6 if mgmt else 0.4, change=c)
        self.deferred.append((hid, fwd.host_address, "tcp", fid, f, fwd.locator, f"port forward {hp[0]} of {vm.name}",
                              self.hosts.get(hid.split(":", 1)[1])))

    def share(self, vm: VM, vid: str, hid: str, i: int, share: Any) -> None:
        f = vm.source.file
        path = (share.host_path or "?").rstrip("/") or "/"
        sid = self.node(f"share:{hid}:{path}", "share", f"host path {path}", asset=hid, path=path)
        c = self.change(f"share:{vm.name}:{i}", f"Make share {share.guest_tag or path} of VM {vm.name} read-only "
                        "(or remove it)", vid, "VMS-VM-060", 2, "vm")
        if share.writable:
            self.edge(vid, sid, "shared-folder-write", f, share.locator,
                      f"{vm.name} can write {path} through {share.kind} share {share.guest_tag or ''}".strip(), change=c)
        # every VM that mounts it reads what others planted there
        rc = self.change(f"share-off:{vm.name}:{i}", f"Remove share {share.guest_tag or path} from VM {vm.name}",
                         vid, "VMS-VM-060", 3, "vm")
        self.edge(sid, vid, "taint-shared-content", f, share.locator, f"{vm.name} mounts {path} ({share.kind}) and "
                  "opens what is planted there", change=rc)
        sensitive = path in SENSITIVE_PATHS or any(path == p or path.startswith(p + "/") for p in
                                                   ("/etc", "/root", "/boot", "/var/lib/libvirt", "/usr"))
        hc = self.change(f"sharepath:{hid}:{path}", f"Share a dedicated directory instead of {path}, owned by an "
                         "unprivileged account, and mount it nosuid,nodev,noexec on the host", hid,
                         "VMS-VM-061" if sensitive else "VMS-VM-060", 4, "host")
        self.edge(sid, hid, "host-path-write", f, share.locator,
                  f"write access to host path {path}" + (" (a sensitive system path)" if sensitive else
                                                         " and its owner's files"),
                  likelihood=0.9 if sensitive else None, change=hc)

    def shares_to_disks(self) -> None:
        shares = [(n, d["path"]) for n, d in self.g.nodes(data=True) if d.get("kind") == "share"]
        if not shares:
            return
        for a, pa in shares:          # a share inside another share's tree is the same files
            for b, pb in shares:
                if a != b and self.g.nodes[a]["asset"] == self.g.nodes[b]["asset"] and \
                        (pa.startswith(pb.rstrip("/") + "/") or pb.startswith(pa.rstrip("/") + "/")):
                    self.edge(a, b, "shared-folder-write", None, None, f"{pa} and {pb} overlap: files written in "
                              "one appear in the other", likelihood=1.0)
        for vm, disk, at in self.vm_disks:
            for sid, path in shares:
                prefix = path if path.endswith("/") else path + "/"
                if disk.startswith(prefix) or path == "/":
                    snaps = f" and {len(vm.snapshots)} snapshot(s)" if vm.snapshots else ""
                    c = self.change(f"disk:{vm.name}", f"Move the disk images{snaps} of VM {vm.name} off shared "
                                    f"path {path} (no VM images or snapshots on storage that guests can write)",
                                    f"vm:{vm.name}", "VMS-VM-090" if vm.snapshots else None, 4, "vm")
                    self.edge(sid, f"vm:{vm.name}", "disk-image-tamper", vm.source.file, at,
                              f"the disk image {disk}{snaps} of {vm.name} lies under shared path {path}", change=c)

    def device(self, vm: VM, vid: str, hid: str, host: Host | None, i: int | str, dev: Any) -> None:
        if dev.kind != "pci-passthrough":
            return
        f = vm.source.file
        did = self.node(f"dev:{vm.name}:{i}", "device", f"PCI {dev.detail} in {vm.name}", asset=vid)
        c = self.change(f"dev:{vm.name}:{i}", f"Remove PCI device {dev.detail} from VM {vm.name}", vid, "VMS-VM-040",
                        5, "vm")
        self.edge(vid, did, "passthrough-device", f, dev.locator, f"{vm.name} drives PCI device {dev.detail}", change=c)
        iommu = host.iommu if host is not None else None
        enabled = iommu.enabled if iommu is not None else None
        if enabled is True:
            return
        gate = self.node(f"iommu:{hid}", "hub", f"{hid} without IOMMU protection")
        self.edge(did, gate, "dma-attack", f, dev.locator, f"device {dev.detail} can DMA into host memory "
                  + ("(IOMMU off)" if enabled is False else "(IOMMU state not collected)"), possible=enabled is None,
                  likelihood=1.0)
        hc = self.change(f"iommu:{hid}", "Enable the IOMMU on the host (intel_iommu=on / amd_iommu=on, iommu=pt) and "
                         "reboot", hid, "VMS-HOST-016", 4, "host")
        self.edge(gate, hid, "dma-attack", (host.facts.get("source_file") if host else None), "iommu.enabled",
                  "passthrough without IOMMU = DMA into host memory", change=hc)

    def _candidates(self, vm: VM, hid: str, host: Host | None) -> list[tuple[Vuln, str, str, str | None]]:
        """(vuln, component, status, version) whose version range matches; the same for every VM of a host
        and platform unless the VM names its own component version, so computed once per such group."""
        comps = components_for(vm, host)
        own = tuple(sorted((k, str(f.get("value"))) for k, f in vm.facts.items() if k.endswith(".version")))
        key = (hid, vm.platform, comps, own)
        cached = self._vuln_cache.get(key)
        if cached is not None:
            return cached
        out = []
        for v in self.vulns:
            if v.impact == "dos":
                continue
            for comp in comps:
                version = component_version(comp, vm, host)
                status = version_status(v, comp, version)
                if status in ("n/a", "not-affected"):
                    continue
                out.append((v, comp, status, version))
                break
        self._vuln_cache[key] = out
        return out

    def vulns_for(self, vm: VM, vid: str, hid: str, host: Host | None) -> None:
        for v, comp, status, version in self._candidates(vm, hid, host):
            reach = reachable(v.reachable_when, vm, host)
            if reach is False:
                continue
            node = f"vuln:{hid}:{v.id}"
            new = node not in self.g
            self.node(node, "vuln", f"{v.id} ({comp} {version or 'version unknown'})", asset=hid, cve=v.id,
                      component=comp, status=status)
            loc = f"{v.id}; {comp} {version or '(version not collected)'}; reachable_when {v.reachable_when}"
            if new:
                self.eg.vulns_matched.append({"id": v.id, "host": hid, "component": comp, "version": version, "status": status,
                                              "summary": v.summary, "advisories": v.advisories, "fixed": v.fixed})
                up = self.change(f"upgrade:{hid}:{comp}", f"Upgrade {comp} on {hid} to a fixed version "
                                 f"({v.fixed} for {v.id})", hid, "VMS-HOST-022", 3, "host")
                if up in self.eg.changes and v.id not in self.eg.changes[up].text:
                    self.eg.changes[up].text = self.eg.changes[up].text.rstrip(")") + f"; {v.fixed} for {v.id})"
                p = 0.6 if status == "affected" else 0.1
                tech = "hypervisor-escape"
                self.edge(node, hid, tech, self.vuln_db, loc,
                          f"{v.id}: {v.summary}" + ("" if status == "affected" else
                                                    " (POSSIBLE: version not known to be affected)"),
                          likelihood=p if v.impact == "escape" else p / 3, change=up,
                          possible=False, cve=v.id)
                if v.vector == "network":
                    self.edge(EXTERNAL, node, "reach-vulnerable-component", self.vuln_db, loc,
                              f"{v.id} is reachable over the network the host is on")
            if v.vector == "guest":
                cfg = None
                if v.reachable_when == "user_mode_nic":
                    cfg = self.change(f"nousernic:{vm.name}", f"Replace the user-mode NIC of VM {vm.name} with a tap "
                                      "NIC on an isolated network", vid, "VMS-VM-013", 2, "vm")
                elif v.reachable_when.startswith("nic_model:"):
                    cfg = self.change(f"nicmodel:{vm.name}:{v.reachable_when}", f"Switch VM {vm.name}'s "
                                      f"{v.reachable_when.split(':')[1]} NIC to virtio", vid, None, 2, "vm")
                self.edge(vid, node, "reach-vulnerable-component", vm.source.file, loc,
                          f"{vm.name} can drive the vulnerable component ({v.reachable_when}"
                          + (")" if reach else ": not collected, assumed present)"), possible=reach is None,
                          change=cfg)


def build_graph(inv: Inventory, vuln_db: str | None = None, vulns: list[Vuln] | None = None) -> ExposureGraph:
    if vulns is None:
        vulns = load_vulns(vuln_db)
    return _Builder(inv, vulns, vuln_db or "vmsentry/analyse/graph/vulns.yaml").build()
