"""mgmt_access and lateral_movement: connections a VM should not make.

* ``mgmt_access``: a VM completes a TCP connection (handshake seen, or data mid-stream) to one of the
  host's management ports (SSH, SMB, RDP, VNC consoles 5900-5999, libvirtd 16509/16514, Docker
  2375/2376, WinRM, VMware 902, Proxmox 8006). Needs the inventory to know VMs and host addresses.
  SYN probes that never complete are the scan detector's business, not this one's.
* ``lateral_movement``: a VM connects to another VM over SSH, RDP, SMB, RPC, WinRM or VNC (inventory),
  or, with or without an inventory, a client uses SMB/RPC in the way remote execution does: an SMB tree
  connect to an administrative share (C$, ADMIN$), or a DCE/RPC bind to the service control manager
  (PsExec), the task scheduler or WMI. Those content signatures read the first packets of SMB/RPC flows
  (the decoder passes them up) and the first payload of any TCP flow (RPC on a dynamic port).

One alert per (client, server, service); count = connections.
"""

from __future__ import annotations

import re
import uuid

from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ACK, RST, SYN, TCP

# DCE/RPC interfaces used for remote execution, as their UUIDs appear on the wire (uuid.bytes_le)
RPC_INTERFACES = {
    uuid.UUID("367abb81-9844-35f1-ad32-98f038001003").bytes_le: "svcctl (PsExec-style remote service)",
    uuid.UUID("1ff70682-0a51-30e8-076d-740be8cee98b").bytes_le: "atsvc (remote scheduled task)",
    uuid.UUID("86d35949-83c9-4044-b424-db363231fd0c").bytes_le: "ITaskSchedulerService (remote scheduled task)",
    uuid.UUID("f309ad18-d86a-11d0-a075-00c04fb68820").bytes_le: "IWbemLevel1Login (remote WMI)",
}
ADMIN_SHARE = re.compile(
    rb"\\\x00(?:[a-z]\x00|a\x00d\x00m\x00i\x00n\x00)\$\x00(?:\x00\x00|$)"  # UTF-16
    rb"|\\(?:[a-z]|admin)\$\x00",
    re.IGNORECASE,
)  # ASCII
SMB_MAGIC = (b"\xfeSMB", b"\xffSMB")
ESTABLISHED_FORBIDS = SYN | RST


class Access(Detector):
    name = "access"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.mgmt = frozenset(tun.mgmt_ports)
        self.lateral = dict(tun.lateral_ports)

    def handler(self, event_type: type):
        active = self.truth.known or self.tun.signatures
        return super().handler(event_type) if active else None

    def on_packet(self, ev) -> None:
        if ev.proto != TCP or ev.flags & ESTABLISHED_FORBIDS or not ev.flags & ACK:
            return
        payload = ev.payload
        if payload and self.tun.signatures:
            self._signatures(ev, payload)
        truth = self.truth
        if not truth.known:
            return
        dport = ev.dport
        if dport in self.mgmt and truth.is_host(ev.dst_ip) and truth.is_vm(ev.src_ip, ev.src_mac):
            critical = dport in (16509, 16514, 2375, 2376, 902, 8006)
            self._alert("mgmt_access", ev, "critical" if critical else "high", 0.95, _service(dport))
        elif (
            dport in self.lateral
            and truth.is_vm(ev.src_ip, ev.src_mac)
            and truth.is_vm(ev.dst_ip, ev.dst_mac)
            and truth.vm_name(ev.src_ip, ev.src_mac) != truth.vm_name(ev.dst_ip, ev.dst_mac)
        ):
            self._alert("lateral_movement", ev, "high", 0.9, self.lateral[dport])

    def _signatures(self, ev, payload: bytes) -> None:
        found = None
        if payload[:1] == b"\x05" and len(payload) >= 24 and payload[2] in (11, 14):  # DCE/RPC bind / alter
            for iface, what in RPC_INTERFACES.items():
                if iface in payload:
                    found = ("rpc", what)
                    break
        elif b"SMB" in payload[:12] and any(m in payload[:12] for m in SMB_MAGIC):
            for iface, what in RPC_INTERFACES.items():
                if iface in payload:  # RPC bind inside an SMB write to a named pipe
                    found = ("rpc", what)
                    break
            else:
                match = ADMIN_SHARE.search(payload)
                if match:
                    share = match.group(0).replace(b"\x00", b"").decode("ascii", "replace").strip("\\")
                    found = ("smb", f"administrative share {share}")
        if found:
            service, what = found
            self._alert("lateral_movement", ev, "critical" if service == "rpc" else "high", 0.9, service, what)

    def _alert(self, kind: str, ev, severity: str, confidence: float, service: str, signature: str | None = None):
        """One alert per (kind, client, server, service); a signature found on it is added as evidence."""
        truth = self.truth
        key = (kind, ev.src_ip, ev.dst_ip, service)

        def make() -> Alert:
            return Alert(
                kind,
                severity,
                ev.ts,
                truth.endpoint(ev.src_ip, ev.src_mac),
                confidence,
                _describe,
                {"service": service, "signatures": set(), "connections": set()},
            )

        alert = self.incident(key, ev.ts, make)
        conn = (ev.sport, ev.dport)
        connections = alert.evidence["connections"]
        if conn not in connections:
            if len(connections) < 1000:
                connections.add(conn)
            alert.seen(ev.ts)
        if signature:
            alert.evidence["signatures"].add(signature)
            alert.raise_to(severity, confidence)
        alert.victim(truth.endpoint(ev.dst_ip, ev.dst_mac))
        alert.port(ev.dport)


def _service(port: int) -> str:
    names = {
        22: "ssh",
        139: "smb",
        445: "smb",
        902: "vmware-authd",
        2375: "docker",
        2376: "docker-tls",
        3389: "rdp",
        5985: "winrm",
        5986: "winrm",
        8006: "proxmox",
        16509: "libvirtd",
        16514: "libvirtd-tls",
    }
    return names.get(port, "vnc" if 5900 <= port <= 5999 else str(port))


def _describe(a: Alert) -> str:
    who = a.attacker.get("vm") or a.attacker.get("ip")
    victim = next(iter(a.victims.values()), {})
    to = victim.get("host") and f"host {victim['host']}" or victim.get("vm") or victim.get("ip")
    ports = ", ".join(map(str, sorted(a.ports)[:5]))
    conns = f"{a.count} connection{'s' if a.count != 1 else ''}"
    if a.type == "mgmt_access":
        return f"{who} opened the host's management port {ports} ({a.evidence['service']}) on {to}: {conns}"
    if a.evidence.get("signatures"):
        return f"{who} used {'; '.join(sorted(a.evidence['signatures']))} on {to} (port {ports}, {conns})"
    return f"{who} reached {to} over {a.evidence['service']} (port {ports}, {conns})"
