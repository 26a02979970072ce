"""Edges a VM's own definition adds: its NICs, consoles and other listeners, port forwards, shared folders,
console channels, and the hypervisor flaws it can drive. Segments, host services and passthrough
devices (which need the host's facts) are in build.py."""

from __future__ import annotations

from typing import Any

from vmsentry.analyse.addresses import MANAGEMENT_PORTS
from vmsentry.analyse.graph.base import EXTERNAL, LAN, GraphWriter
from vmsentry.analyse.graph.exposes import Decision, RuleResults
from vmsentry.analyse.graph.vulns import Vuln, component_version, components_for, reachability, version_status
from vmsentry.model import VM, Device, Host, Network

SEGMENT_MODES = ("nat", "isolated", "routed", "open", "host-only", "internal", "private", "bridged")
# console channels a rule opens: technique, id part, VM.channels field, name, change text, state
CHANNELS = (
    ("clipboard-channel", "clipboard", "clipboard", "clipboard", "clipboard sharing", "shared"),
    ("drag-and-drop-channel", "dnd", "drag_and_drop", "drag-and-drop", "drag-and-drop", "enabled"),
)
SENSITIVE_PATHS = ("/", "/etc", "/root", "/home", "/boot", "/usr", "/var", "/var/lib/libvirt", "/run", "/srv")


class VMEdges(GraphWriter):
    """The per-VM half of the builder (``_Builder`` in build.py holds the state named here)."""

    results: RuleResults
    networks: dict[str, Network]
    segments: dict[str, dict[str, Any]]
    seg_members: dict[str, list[tuple[VM, Any]]]
    user_nat: dict[str, list[tuple[VM, Any]]]
    vm_disks: list[tuple[VM, str, str]]
    hosts: dict[str, Host]  # and host_for(), device(): the host side, in build.py
    vulns: list[Vuln]
    vuln_db: str
    _vuln_cache: dict[tuple, list]
    deferred: list[tuple]

    def change_if_failed(self, found: Decision | None, cid: str, text: str, vid: str, cost: float) -> str | None:
        """The change that removes an edge a rule of VM ``vid`` opens by failing, named after that rule;
        None when the rule did not fail (an unknown result opens no such edge)."""
        if found is None or found.status != "fail":
            return None
        return self.change(cid, text, vid, found.rule_id, cost, "vm")

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
        for tech, short, setting, name, change_text, state in CHANNELS:
            c = self.change_if_failed(
                self.results.for_asset(tech, vid),
                f"{short}:{vm.name}",
                f"Disable {change_text} for VM {vm.name}",
                vid,
                1,
            )
            if c is None:
                continue
            mode = getattr(vm.channels, setting)
            cid = self.node(f"chan:{vm.name}:{short}", "channel", f"{name} of {vm.name}", asset=vid)
            self.edge(
                vid,
                cid,
                tech,
                f,
                f"channels.{setting}",
                f"{name} {state} ({mode}) between {vm.name} and the console user's host",
                change=c,
            )
            self.edge(
                cid,
                hid,
                tech,
                f,
                f"channels.{setting}",
                "the console client runs on the host (or the admin's workstation)",
                likelihood=1.0,
            )
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
        if mode in ("direct", "passthrough"):
            self.nic_on_lan(vm, vid, hid, host, nic)
            return
        # The NIC's 'move it' change names the rule whose remediation it is; the edges it removes are
        # structural (every connected NIC is attached somewhere), so no rule result decides them.
        rule = {"bridged": "VMS-VM-020", "open": "VMS-VM-023", "routed": "VMS-VM-023"}.get(mode)
        move = self.change(
            f"nic:{vm.name}:{nic.id}",
            f"Move NIC {nic.id} of VM {vm.name} to an isolated network (or disconnect it)",
            vid,
            rule,
            8,
            "vm",
        )
        if mode == "user":
            self.edge(
                vid,
                LAN,
                "nat-outbound",
                f,
                loc,
                f"user-mode NAT NIC {nic.id} opens connections to the LAN from the host's address",
                change=move,
            )
            c = self.change_if_failed(
                self.results.for_item("user-nat-host-loopback", vid, loc),
                f"restrict:{vm.name}:{nic.id}",
                f"Set restrict=on on user-mode NIC {nic.id} of VM "
                f"{vm.name} (or replace it with a tap NIC on an isolated network)",
                vid,
                1,
            )
            if c is None:
                return
            lo = self.node(f"loop:{hid}", "hub", f"{hid} loopback and addresses, as user-mode NAT sees them")
            self.edge(
                vid,
                lo,
                "user-nat-host-loopback",
                f,
                loc,
                f"user-mode NIC {nic.id} of {vm.name} is not restricted: the guest connects to the host's own "
                "services through QEMU, loopback-bound ones included",
                change=c,
            )
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
            seg = self.segments[seg_id] = {
                "mode": net.mode if net else mode,
                "net": net,
                "host": hid,
                "hostobj": host,
                "bridge": nic.bridge or (net.bridge if net else None),
            }
            label = seg_id.split(":", 1)[1]
            self.node(
                seg_id,
                "network",
                f"{'network' if seg_id.startswith('net:') else 'bridge'} {label} ({seg['mode']})",
                asset=f"network:{net.name}" if net else seg_id,
                mode=seg["mode"],
            )
        self.seg_members.setdefault(seg_id, []).append((vm, nic))
        self.edge(
            vid, seg_id, "nic-attach", f, loc, f"NIC {nic.id} of {vm.name} is on {seg_id} ({seg['mode']})", change=move
        )

    def nic_on_lan(self, vm: VM, vid: str, hid: str, host: Host | None, nic: Any) -> None:
        """A macvtap or passed-through NIC: on the physical LAN when its rule fails (VMS-VM-021/022)."""
        f, loc, mode = vm.source.file, nic.locator, nic.mode
        move = self.change_if_failed(
            self.results.for_item("bridged-to-lan", vid, loc),
            f"nic:{vm.name}:{nic.id}",
            f"Move NIC {nic.id} of VM {vm.name} to an isolated network (or disconnect it)",
            vid,
            8,
        )
        if move is not None:
            what = "macvtap (direct) NIC" if mode == "direct" else "passed-through NIC"
            extra = (
                "; macvtap cannot talk to its own host, so this NIC gives no path to the host"
                if mode == "direct"
                else ""
            )
            self.edge(
                vid,
                LAN,
                "bridged-to-lan",
                f,
                loc,
                f"{what} {nic.id} puts {vm.name} on the physical LAN{extra}",
                change=move,
            )
            # the same attachment seen from the LAN: whoever is there reaches the guest
            self.edge(LAN, vid, "lan-to-guest", f, loc, f"LAN machines reach {vm.name} through its {what}")
        if mode == "passthrough" and nic.type == "hostdev":
            self.device(
                vm,
                vid,
                hid,
                host,
                f"nic-{nic.id}",
                Device("pci-passthrough", nic.detail or f"NIC {nic.id}", nic.locator),
            )

    def listener(self, vm: VM, vid: str, hid: str, host: Host | None, i: int, lst: Any) -> None:
        f = vm.source.file
        lid = self.node(
            f"listener:{vm.name}:{i}",
            "listener",
            f"{lst.kind} of {vm.name} ({lst.address or '*'}:{lst.port if lst.port is not None else 'auto'})",
            asset=vid,
        )
        what = f"{lst.kind} listener of {vm.name}"
        # structural: a console rule (VMS-VM-001/002/003) judges reach and authentication together; here they
        # are two edges (who reaches the listener: _reach; what holding it gives: below)
        rule = {
            "vnc": "VMS-VM-002",
            "spice": "VMS-VM-002",
            "rdp": "VMS-VM-002",
            "vrde": "VMS-VM-002",
            "websocket": "VMS-VM-002",
            "monitor": "VMS-VM-005",
            "net-socket": "VMS-VM-006",
            "migration": "VMS-VM-007",
        }.get(lst.kind, "VMS-VM-004")
        c = self.change(
            f"listener:{vm.name}:{i}",
            f"Bind the {lst.kind} listener of VM {vm.name} to 127.0.0.1 or a "
            "UNIX socket, and require authentication (TLS/SASL)",
            vid,
            rule,
            1,
            "vm",
        )
        auth = lst.auth
        if lst.kind == "monitor":
            if auth in ("none", "unknown"):
                self.edge(lid, hid, "qemu-monitor-exec", f, lst.locator, f"{what} has no authentication", change=c)
                self.edge(lid, vid, "console-takeover", f, lst.locator, f"{what} controls the VM", change=c)
        elif lst.kind == "migration":
            if not lst.tls:
                self.edge(
                    lid, hid, "migration-inject", f, lst.locator, f"{what} accepts a stream without TLS", change=c
                )
        elif lst.kind == "net-socket":
            self.edge(lid, vid, "segment-peer", f, lst.locator, f"{what} joins the VM's L2 segment", change=c)
        else:
            tech = {
                "none": "console-takeover",
                "password": "console-password",
                "unknown": "console-password",
                "tls": "console-tls",
                "sasl": "console-tls",
                "ticket": "console-password",
            }.get(auth, "console-password")
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
        fid = self.node(
            f"fwd:{vm.name}:{i}",
            "forward",
            f"forward {fwd.host_address or '*'}:{hp[0]}"
            f"{'-' + str(hp[1]) if hp[1] != hp[0] else ''} -> {vm.name}:{gp[0]}",
            asset=vid,
        )
        # structural: every forward hands connections to the guest; VMS-VM-010/011 weigh where and what
        mgmt = any(gp[0] <= p <= gp[1] for p in MANAGEMENT_PORTS) if gp[1] - gp[0] < 70000 else True
        c = self.change(
            f"fwd:{vm.name}:{i}",
            f"Bind port forward {fwd.protocol}/{hp[0]} of VM {vm.name} to 127.0.0.1 (or remove it)",
            vid,
            "VMS-VM-011" if mgmt else "VMS-VM-010",
            1,
            "vm",
        )
        self.edge(
            fid,
            vid,
            "port-forward-into-guest",
            f,
            fwd.locator,
            f"host {fwd.protocol}/{hp[0]} is forwarded to guest port {gp[0]}"
            + (" (a remote-administration port)" if mgmt else ""),
            likelihood=0.6 if mgmt else 0.4,
            change=c,
        )
        self.deferred.append(
            (
                hid,
                fwd.host_address,
                "tcp",
                fid,
                f,
                fwd.locator,
                f"port forward {hp[0]} of {vm.name}",
                self.hosts.get(hid.split(":", 1)[1]),
            )
        )

    def share(self, vm: VM, vid: str, hid: str, i: int, share: Any) -> None:
        f = vm.source.file
        path = (share.host_path or "?").rstrip("/") or "/"
        sid = self.node(f"share:{hid}:{path}", "share", f"host path {path}", asset=hid, path=path)
        c = self.change_if_failed(
            self.results.for_item("shared-folder-write", vid, share.locator),
            f"share:{vm.name}:{i}",
            f"Make share {share.guest_tag or path} of VM {vm.name} read-only (or remove it)",
            vid,
            2,
        )
        if c is not None:
            self.edge(
                vid,
                sid,
                "shared-folder-write",
                f,
                share.locator,
                f"{vm.name} can write {path} through {share.kind} share {share.guest_tag or ''}".strip(),
                change=c,
            )
        # every VM that mounts it reads what others planted there (structural: any share, read-only too);
        # the change names the writable-share rule, whose remediation removing a share is
        rc = self.change(
            f"share-off:{vm.name}:{i}",
            f"Remove share {share.guest_tag or path} from VM {vm.name}",
            vid,
            "VMS-VM-060",
            3,
            "vm",
        )
        self.edge(
            sid,
            vid,
            "taint-shared-content",
            f,
            share.locator,
            f"{vm.name} mounts {path} ({share.kind}) and opens what is planted there",
            change=rc,
        )
        # the path's sensitivity only weighs the step (VMS-VM-061 judges it with its own, wider, list)
        sensitive = path in SENSITIVE_PATHS or any(
            path == p or path.startswith(p + "/") for p in ("/etc", "/root", "/boot", "/var/lib/libvirt", "/usr")
        )
        hc = self.change(
            f"sharepath:{hid}:{path}",
            f"Share a dedicated directory instead of {path}, owned by an "
            "unprivileged account, and mount it nosuid,nodev,noexec on the host",
            hid,
            "VMS-VM-061" if sensitive else "VMS-VM-060",
            4,
            "host",
        )
        self.edge(
            sid,
            hid,
            "host-path-write",
            f,
            share.locator,
            f"write access to host path {path}"
            + (" (a sensitive system path)" if sensitive else " and its owner's files"),
            likelihood=0.9 if sensitive else None,
            change=hc,
        )

    def shares_to_disks(self) -> None:
        shares = [(n, d["path"]) for n, d in self.g.nodes(data=True) if d.get("kind") == "share"]
        if not shares:
            return
        for a, pa in shares:  # a share inside another share's tree is the same files
            for b, pb in shares:
                if (
                    a != b
                    and self.g.nodes[a]["asset"] == self.g.nodes[b]["asset"]
                    and (pa.startswith(pb.rstrip("/") + "/") or pb.startswith(pa.rstrip("/") + "/"))
                ):
                    self.edge(
                        a,
                        b,
                        "shared-folder-write",
                        None,
                        None,
                        f"{pa} and {pb} overlap: files written in one appear in the other",
                        likelihood=1.0,
                    )
        for vm, disk, at in self.vm_disks:
            for sid, path in shares:
                prefix = path if path.endswith("/") else path + "/"
                if disk.startswith(prefix) or path == "/":
                    snaps = f" and {len(vm.snapshots)} snapshot(s)" if vm.snapshots else ""
                    c = self.change(
                        f"disk:{vm.name}",
                        f"Move the disk images{snaps} of VM {vm.name} off shared "
                        f"path {path} (no VM images or snapshots on storage that guests can write)",
                        f"vm:{vm.name}",
                        "VMS-VM-090" if vm.snapshots else None,
                        4,
                        "vm",
                    )
                    self.edge(
                        sid,
                        f"vm:{vm.name}",
                        "disk-image-tamper",
                        vm.source.file,
                        at,
                        f"the disk image {disk}{snaps} of {vm.name} lies under shared path {path}",
                        change=c,
                    )

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
            reach = reachability(v.reachable_when)(vm, host)
            if reach is False:
                continue
            node = f"vuln:{hid}:{v.id}"
            new = node not in self.g
            loc = f"{v.id}; {comp} {version or '(version not collected)'}; reachable_when {v.reachable_when}"
            if new:
                self.node(
                    node,
                    "vuln",
                    f"{v.id} ({comp} {version or 'version unknown'})",
                    asset=hid,
                    cve=v.id,
                    component=comp,
                    status=status,
                )
                self.eg.vulns_matched.append(
                    {
                        "id": v.id,
                        "host": hid,
                        "component": comp,
                        "version": version,
                        "status": status,
                        "summary": v.summary,
                        "advisories": v.advisories,
                        "fixed": v.fixed,
                    }
                )
                up = self.change(
                    f"upgrade:{hid}:{comp}",
                    f"Upgrade {comp} on {hid} to a fixed version ({v.fixed} for {v.id})",
                    hid,
                    "VMS-HOST-022",
                    3,
                    "host",
                )
                if up in self.eg.changes and v.id not in self.eg.changes[up].text:
                    self.eg.changes[up].text = self.eg.changes[up].text.rstrip(")") + f"; {v.fixed} for {v.id})"
                p = 0.6 if status == "affected" else 0.1
                tech = "hypervisor-escape"
                self.edge(
                    node,
                    hid,
                    tech,
                    self.vuln_db,
                    loc,
                    f"{v.id}: {v.summary}"
                    + ("" if status == "affected" else " (POSSIBLE: version not known to be affected)"),
                    likelihood=p if v.impact == "escape" else p / 3,
                    change=up,
                    possible=False,
                    cve=v.id,
                )
                if v.vector == "network":
                    self.edge(
                        EXTERNAL,
                        node,
                        "reach-vulnerable-component",
                        self.vuln_db,
                        loc,
                        f"{v.id} is reachable over the network the host is on",
                    )
            if v.vector == "guest":
                cfg = None
                if v.reachable_when == "user_mode_nic":
                    cfg = self.change(
                        f"nousernic:{vm.name}",
                        f"Replace the user-mode NIC of VM {vm.name} with a tap NIC on an isolated network",
                        vid,
                        "VMS-VM-013",
                        2,
                        "vm",
                    )
                elif v.reachable_when.startswith("nic_model:"):
                    cfg = self.change(
                        f"nicmodel:{vm.name}:{v.reachable_when}",
                        f"Switch VM {vm.name}'s {v.reachable_when.split(':')[1]} NIC to virtio",
                        vid,
                        None,
                        2,
                        "vm",
                    )
                self.edge(
                    vid,
                    node,
                    "reach-vulnerable-component",
                    vm.source.file,
                    loc,
                    f"{vm.name} can drive the vulnerable component ({v.reachable_when}"
                    + (")" if reach else ": not collected, assumed present)"),
                    possible=reach is None,
                    change=cfg,
                )
