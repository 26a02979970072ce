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

Which edges a rule decides: a rule with ``exposes:`` in the catalogue opens those edges by failing
(exposes.py); the builder asks for its result and derives only the edge's ends and text from the
inventory. The other edges are structural (a NIC on its segment, a segment's way to the host, who
reaches a listener, what holding it gives): no one rule's result is that edge, because the rule judges a
whole host (firewall, forwarding), or several edges at once (reach and authentication of a console), or
an edge also depends on host facts the rule does not read (a bridge's physical ports). Their changes
still name the rule whose remediation they are.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from vmsentry.analyse.addresses import MANAGEMENT_PORTS, exposure
from vmsentry.analyse.graph.base import EXTERNAL, LAN, Change, ExposureGraph  # noqa: F401  (re-exported)
from vmsentry.analyse.graph.exposes import RuleResults
from vmsentry.analyse.graph.techniques import SERVICE_TECHNIQUE, TECHNIQUES
from vmsentry.analyse.graph.vm_edges import VMEdges
from vmsentry.analyse.graph.vulns import Vuln, load_vulns
from vmsentry.model import SS_LOCATOR, VM, Host, Inventory, Network


class _Builder(VMEdges):
    """Builds one graph: the state, the order of the passes, the segments and the host side."""

    def __init__(self, inv: Inventory, vulns: list[Vuln], vuln_db: str, results: RuleResults) -> None:
        self.inv = inv
        self.results = results
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
        self.user_nat: dict[str, list[tuple[VM, Any]]] = {}  # host node -> VMs with unrestricted user NICs
        self.vm_disks: list[tuple[VM, str, str]] = []
        self._vuln_cache: dict[tuple, list] = {}
        self.deferred: list[tuple] = []  # listener/forward reach: needs every segment's addresses first

    # --- helpers ---------------------------------------------------------------------------------
    def host_for(self, vm: VM | Network) -> tuple[str, Host | None]:
        if vm.host and vm.host in self.hosts:
            h = self.hosts[vm.host]
        elif self.hosts:
            h = next(iter(self.hosts.values()))
        else:
            return self.node("host:host", "host", "the host (no host facts collected)", asset="host:host"), None
        return f"host:{h.name}", h

    def _decided(self, technique: str, net: Network | None) -> bool:
        """Whether the network's exposing rule failed (True for a bare bridge: no rule speaks for it)."""
        if net is None:
            return True
        found = self.results.for_asset(technique, f"network:{net.name}")
        return found is not None and found.status == "fail"

    def _lan_reaches_guests(
        self, members: list[tuple[VM, Any]], reach: str, where: str, likelihood: float | None = None
    ) -> None:
        """One edge from the LAN to each guest NIC on a segment the LAN reaches: "<reach> VM <where>"."""
        for vm, nic in members:
            self.edge(
                LAN,
                f"vm:{vm.name}",
                "lan-to-guest",
                vm.source.file,
                nic.locator,
                f"{reach} {vm.name} {where}",
                likelihood=likelihood,
            )

    # --- build -----------------------------------------------------------------------------------
    def build(self) -> ExposureGraph:
        self.node(EXTERNAL, "external", "outside world (whoever reaches the host's addresses)", asset="external")
        self.node(LAN, "lan", "physical LAN", asset="lan")
        for h in self.hosts.values():
            self.node(f"host:{h.name}", "host", f"host {h.name}", asset=f"host:{h.name}")
        if not self.hosts:
            self.node("host:host", "host", "the host (no host facts collected)", asset="host:host")
            self.eg.notes.append(
                "no host facts: host services are modelled as one 'not collected' node and "
                "vulnerability versions are unknown (edges marked possible)"
            )
        self.g.add_edge(
            EXTERNAL,
            LAN,
            technique="bridged-to-lan",
            likelihood=1.0,
            w=0.0,
            evidence={"file": None, "locator": None},
            detail="the LAN is part of the outside world",
            change=None,
            possible=False,
        )
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
        # structural: VMS-NET-003 judges only a libvirt network's mode; this edge also needs the bridge's ports
        if mode == "bridged":
            if physical is None:
                physical = True
            if physical:
                lc = self.change(
                    f"lan-off:{seg_id}",
                    f"Take {seg_id} off the physical LAN (guests on an isolated or "
                    "NAT network, or a VLAN of their own)",
                    asset,
                    "VMS-NET-003",
                    8,
                    "network",
                )
                self.edge(
                    seg_id, LAN, "bridged-to-lan", f, loc, f"{seg_id} bridges guests onto the physical LAN", change=lc
                )
                self._lan_reaches_guests(members, "LAN machines reach", f"on bridge {bridge}")
        elif mode in ("routed", "open") and self._decided("routed-to-lan", net):
            # a network's mode is judged by its rule (VMS-NET-001/002); a bare bridge has no rule, only its NICs' mode
            rule = (
                self.results.for_asset("routed-to-lan", asset).rule_id
                if net
                else "VMS-NET-002"
                if mode == "routed"
                else "VMS-NET-001"
            )
            lc = self.change(
                f"lan-off:{seg_id}",
                f"Make {seg_id} a NAT or isolated network, or filter its forwarding "
                "to the LAN (nftables forward chain)",
                asset,
                rule,
                5,
                "network",
            )
            self.edge(
                seg_id,
                LAN,
                "routed-to-lan",
                f,
                loc,
                f"{seg_id} is {mode}: guests and the LAN reach each other",
                change=lc,
            )
            self._lan_reaches_guests(members, "the LAN routes to", f"on {mode} network {seg_id}", likelihood=0.25)
        elif mode == "nat":  # structural: VMS-HOST-001 judges the host's forwarding, not each network
            lc = self.change(
                f"lan-off:{seg_id}",
                f"Drop forwarding from {seg_id} to the LAN's private ranges "
                "(nftables forward chain), or make it isolated",
                asset,
                "VMS-HOST-001",
                4,
                "network",
            )
            self.edge(seg_id, LAN, "nat-outbound", f, loc, f"{seg_id} NATs guest connections to the LAN", change=lc)
        # guests reach the host's addresses (libvirt's firewall rules do not stop guest-to-host traffic);
        # structural: VMS-HOST-012 judges the host as a whole
        if addrs or not known:
            fw = host.firewall if host is not None else None
            drop = fw is not None and fw.input_policy == "drop"
            c = self.change(
                f"fw-seg:{seg_id}",
                f"Drop guest traffic to the host on {bridge or seg_id} except "
                "DHCP/DNS (nftables input chain on the bridge)",
                seg_id if not net else f"network:{net.name}",
                "VMS-HOST-012",
                3,
                "host",
            )
            hub = self.node(f"addr:{hid}", "hub", f"{hid} addresses, as guests see them")
            why = (
                f"the host has {', '.join(sorted(addrs))} on {bridge or seg_id}"
                if addrs
                else f"whether the host has an address on {bridge or seg_id} was not collected"
            )
            if drop:
                why += "; INPUT policy is drop (which ports the rules open to guests was not collected)"
            self.edge(
                seg_id,
                hub,
                "guest-to-host-service",
                f,
                loc,
                why,
                change=c,
                possible=(not known) or drop,
                likelihood=0.4 if drop else None,
                seg_addrs=sorted(addrs),
            )
        # shared L2 segment: ARP/NDP man-in-the-middle and peer attacks
        others = len(members) + (1 if addrs else 0)
        if others >= 2:
            mitm = self.node(f"mitm:{seg_id}", "hub", f"man-in-the-middle position on {seg_id}")
            for vm, nic in members:
                vid = f"vm:{vm.name}"
                found = self.results.for_item("arp-mitm", vid, nic.locator)  # VMS-VM-030; unknown: possible
                if found is not None:
                    c = self.change(
                        f"spoof:{vm.name}:{nic.id}",
                        f"Add the clean-traffic nwfilter (MAC/IP/ARP anti-spoofing) to NIC {nic.id} of VM {vm.name}",
                        vid,
                        found.rule_id,
                        1,
                        "vm",
                    )
                    self.edge(
                        vid,
                        mitm,
                        "arp-mitm",
                        vm.source.file,
                        nic.locator,
                        f"NIC {nic.id} of {vm.name} has no anti-spoofing filter on shared segment {seg_id}",
                        change=c,
                        possible=found.status == "unknown",
                    )
                self.edge(
                    mitm,
                    vid,
                    "mitm-session-hijack",
                    vm.source.file,
                    nic.locator,
                    f"{vm.name}'s traffic on {seg_id} can be intercepted and altered",
                )
            if addrs and mode == "bridged":  # structural, like VMS-HOST-014's own test: host address on a bridge
                mc = self.change(
                    f"mgmt-off:{seg_id}",
                    f"Move the host's own address off {bridge} (management on a "
                    "separate NIC or VLAN), so guests cannot intercept the host's traffic",
                    hid,
                    "VMS-HOST-014",
                    4,
                    "host",
                )
                self.edge(
                    mitm,
                    hid,
                    "mitm-session-hijack",
                    f,
                    loc,
                    f"the host's own traffic on {bridge} ({', '.join(sorted(addrs))}) can be intercepted",
                    likelihood=0.2,
                    change=mc,
                )
        # a network's isolation is judged by its rule (VMS-NET-005); a bare bridge has none, so count its NICs
        if net is not None and self._decided("segment-peer", net) or net is None and len(members) >= 2:
            rule = self.results.for_asset("segment-peer", asset).rule_id if net else "VMS-NET-005"
            c = self.change(
                f"isolate:{seg_id}",
                f"Turn on port isolation on {seg_id} (<port isolated='yes'/>) or split its guests",
                asset,
                rule,
                2,
                "network",
            )
            peers = self.node(f"peers:{seg_id}", "hub", f"guest-to-guest traffic on {seg_id}")
            self.edge(
                seg_id,
                peers,
                "segment-peer",
                f,
                loc,
                f"{seg_id} lets its guests talk to each other",
                likelihood=1.0,
                change=c,
            )
            for vm, nic in members:
                self.edge(
                    peers,
                    f"vm:{vm.name}",
                    "segment-peer",
                    vm.source.file,
                    nic.locator,
                    f"another guest on {seg_id} attacks {vm.name}'s network services",
                )

    def host_services(self, hid: str) -> None:
        host = self.hosts.get(hid.split(":", 1)[1])
        hub, lo = f"addr:{hid}", f"loop:{hid}"
        if lo in self.g:
            self.node(hub, "hub", f"{hid} addresses, as guests see them")
            self.edge(
                lo,
                hub,
                "user-nat-host-loopback",
                None,
                None,
                "user-mode NAT also reaches the host's non-loopback addresses",
                likelihood=1.0,
            )
        socks = host.listeners if host is not None else None
        ffile = (host.facts.get("source_file") if host is not None else None) or SS_LOCATOR
        if socks is None:
            if hub in self.g:
                svc = self.node(f"svc:{hid}:unknown", "service", "host services (not collected)", asset=hid)
                self.edge(
                    hub,
                    svc,
                    "guest-to-host-service",
                    None,
                    None,
                    "which services the host runs was not collected; a host usually runs some",
                    possible=True,
                    likelihood=0.6,
                )
                self.edge(
                    svc,
                    hid,
                    "host-service-exploit",
                    None,
                    None,
                    "exploit or abuse an unknown host service",
                    possible=True,
                    likelihood=0.3,
                )
            return
        libvirtd = host.config_values("libvirtd_conf")
        seen = set()
        for i, s in enumerate(socks):
            proc = str(s.process or "")
            port, proto, addr = s.port, s.proto or "tcp", s.address
            if proc.startswith("qemu") or proc in ("VBoxHeadless", "vmware-vmx"):
                continue  # modelled as the VM's own listeners and forwards
            if proc == "dnsmasq" and port in (53, 67, 547):
                continue  # libvirt's own DNS/DHCP for its networks: expected guest service
            key = (proto, addr, port)
            if key in seen:
                continue
            seen.add(key)
            exp = exposure(addr, "unix" if proto == "unix" else "tcp")
            if exp == "local":
                continue
            sid = self.node(
                f"svc:{hid}:{proto}/{addr}:{port}",
                "service",
                f"{proc or '?'} {proto}/{port} on {addr}",
                asset=hid,
                port=port,
                process=proc,
            )
            locator = f"listening[{i}] {proto} {addr}:{port} ({proc or 'unknown process'})"
            # how a holder of the service gets the host (structural: one edge per listening socket; the host
            # rules VMS-HOST-012/013 and VMS-LVD-019 judge the host's sockets together)
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
            self.edge(
                sid,
                hid,
                tech,
                ffile,
                locator,
                f"{proc or 'a service'} on {proto}/{port}: {TECHNIQUES[tech].summary}",
                likelihood=p,
                change=c,
            )
            fc = self.change(
                f"fw-port:{hid}:{proto}/{port}",
                f"Block {proto}/{port} from guest bridges to the host "
                f"(nftables input rule), keep it for the management network only",
                hid,
                "VMS-HOST-012",
                2,
                "host",
            )
            lan_reach = None  # why the LAN reaches the service, when it does
            if exp == "all" or exp == "unknown":
                if hub in self.g:
                    self.edge(
                        hub,
                        sid,
                        "guest-to-host-service",
                        ffile,
                        locator,
                        f"{proc} listens on every address ({addr}), so guests reach it on the bridge address",
                        change=fc,
                    )
                lan_reach = f"{proc} listens on every address ({addr}): the LAN reaches it"
            elif exp != "loopback":
                iface = s.get("interface")
                for seg_id, seg in self.segments.items():
                    if seg["host"] != hid:
                        continue
                    if addr in seg.get("addrs", ()) or (iface and iface == seg["bridge"]):
                        self.edge(
                            seg_id,
                            sid,
                            "guest-to-host-service",
                            ffile,
                            locator,
                            f"{proc} is bound to {addr}, the host's address on {seg_id}",
                            change=fc,
                        )
                if not any(addr in seg.get("addrs", ()) for seg in self.segments.values() if seg["mode"] != "bridged"):
                    lan_reach = f"{proc} on {addr} is reachable from the network that address is on"
            if lan_reach:
                self.edge(EXTERNAL, sid, "lan-to-host-service", ffile, locator, lan_reach)
            if lo in self.g:  # user-mode NAT guests reach the host's loopback (and so every address)
                how = (
                    f"{proc} is bound to loopback, which user-mode NAT guests reach"
                    if exp == "loopback"
                    else f"user-mode NAT guests reach {proc} through the host's own stack"
                )
                self.edge(lo, sid, "user-nat-host-loopback", ffile, locator, how)

    def _reach(
        self,
        hid: str,
        address: str | None,
        transport: str,
        target: str,
        file: str | None,
        locator: str | None,
        what: str,
        host: Host | None,
    ) -> None:
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
            exp, possible = "loopback", True  # libvirt's built-in default is 127.0.0.1
        if exp == "local":
            return
        if exp == "loopback":
            lo = f"loop:{hid}"
            if lo in self.g:
                self.edge(
                    lo,
                    target,
                    tech,
                    file,
                    locator,
                    f"{what} is on loopback, which user-mode NAT guests reach",
                    possible=possible,
                )
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
                self.edge(
                    seg_id, target, tech, file, locator, f"{what} listens on {address}, the host's address on {seg_id}"
                )
                if seg["mode"] != "bridged":
                    return
        self.edge(EXTERNAL, target, tech, file, locator, f"{what} listens on {address}")

    def device(self, vm: VM, vid: str, hid: str, host: Host | None, i: int | str, dev: Any) -> None:
        if dev.kind != "pci-passthrough":
            return
        # structural: VMS-VM-040 sees vm.devices only, not the passed-through NICs modelled here as devices
        f = vm.source.file
        did = self.node(f"dev:{vm.name}:{i}", "device", f"PCI {dev.detail} in {vm.name}", asset=vid)
        c = self.change(
            f"dev:{vm.name}:{i}", f"Remove PCI device {dev.detail} from VM {vm.name}", vid, "VMS-VM-040", 5, "vm"
        )
        self.edge(vid, did, "passthrough-device", f, dev.locator, f"{vm.name} drives PCI device {dev.detail}", change=c)
        enabled = host.iommu.enabled if host is not None and host.iommu is not None else None
        if enabled is True:
            return  # the IOMMU confines the device's DMA
        gate = self.node(f"iommu:{hid}", "hub", f"{hid} without IOMMU protection")
        self.edge(
            did,
            gate,
            "dma-attack",
            f,
            dev.locator,
            f"device {dev.detail} can DMA into host memory "
            + ("(IOMMU off)" if enabled is False else "(IOMMU state not collected)"),
            possible=enabled is None,
            likelihood=1.0,
        )
        hc = self.change(
            f"iommu:{hid}",
            "Enable the IOMMU on the host (intel_iommu=on / amd_iommu=on, iommu=pt) and reboot",
            hid,
            "VMS-HOST-016",
            4,
            "host",
        )
        self.edge(
            gate,
            hid,
            "dma-attack",
            (host.facts.get("source_file") if host else None),
            "iommu.enabled",
            "passthrough without IOMMU = DMA into host memory",
            change=hc,
        )


def build_graph(inv: Inventory, vuln_db: str | None = None, vulns: list[Vuln] | None = None) -> ExposureGraph:
    if vulns is None:
        vulns = load_vulns(vuln_db)
    return _Builder(inv, vulns, vuln_db or "vmsentry/analyse/graph/vulns.yaml", RuleResults(inv)).build()
