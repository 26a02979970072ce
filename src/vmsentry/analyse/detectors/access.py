"""mgmt_access and lateral_movement: connections a VM should not make.

* ``mgmt_access``: a VM completes a TCP connection (handshake seen, or data mid-stream) to one of the
  host's management ports (SSH, SMB, RDP, VNC consoles 5900-5999, libvirtd 16509/16514, Docker
  2375/2376, WinRM, VMware 902, Proxmox 8006), or speaks SSH, SMB, RDP, VNC or WinRM to the host on any
  port (``content.py`` tells the protocol from the client's first bytes). Needs the inventory to know VMs
  and host addresses. SYN probes that never complete are the scan detector's business, not this one's.
* ``lateral_movement``: a VM connects to another VM over SSH, RDP, SMB, RPC, WinRM or VNC (by port or by
  content, on any port; inventory), or, with or without an inventory, a client uses SMB/RPC in the way
  remote execution does: an SMB tree connect to an administrative share (C$, ADMIN$), a DCE/RPC bind to
  the service control manager (PsExec), the task scheduler or WMI, on any port, or a connection to the
  dynamic port the endpoint mapper (tcp/135) gave for one of those (``dcerpc.py``), or repeated short
  sessions to an admin protocol (password guessing).

Password guessing: a session to SSH, RDP, VNC, WinRM or SMB that ends (FIN or RST) within
``short_session`` seconds of its start is short; ``guesses`` short sessions from one client to one server
and protocol within ``guess_window`` seconds make the incident a brute force (the alert grows its
``evidence.brute_force`` counts). Without the payload (encrypted) "short" is what betrays a failed login,
as in Zeek's SSH heuristics.

One alert per (client, server, service); count = connections.
"""

from __future__ import annotations

import re
from collections import deque

from vmsentry.analyse.detectors import content, dcerpc
from vmsentry.analyse.detectors.base import Bounded, Detector
from vmsentry.model.alert import Alert
from vmsentry.model.traffic import ACK, FIN, RST, SYN, TCP

ADMIN_SHARE = re.compile(
    rb"\\\x00(?:[a-z]\x00|a\x00d\x00m\x00i\x00n\x00)\$\x00(?:\x00\x00|$)"  # UTF-16
    rb"|\\(?:[a-z]|admin)\$\x00",
    re.IGNORECASE,
)  # ASCII
SMB_MAGIC = (b"\xfeSMB", b"\xffSMB")
ESTABLISHED_FORBIDS = SYN | RST
# protocols a VM must not speak to the host whatever the port, and those whose short sessions are guesses
MGMT_SERVICES = frozenset({"ssh", "smb", "rdp", "vnc", "winrm"})
GUESSED_SERVICES = MGMT_SERVICES
CRITICAL_PORTS = (16509, 16514, 2375, 2376, 902, 8006)


class Access(Detector):
    name = "access"

    def __init__(self, truth, tun, sink) -> None:
        super().__init__(truth, tun, sink)
        self.mgmt = frozenset(tun.mgmt_ports)
        self.lateral = dict(tun.lateral_ports)
        self.endpoints = Bounded(tun.max_state, "access.rpc_endpoints", sink)  # (ip, port) -> what
        self.activations = Bounded(tun.max_state, "access.dcom_activations", sink)  # (client, server) -> what
        self.sessions = Bounded(tun.max_state, "access.sessions", sink)  # connection -> (start, service)
        self.short = Bounded(tun.max_state, "access.short_sessions", sink)  # (client, server, service) -> times

    def handler(self, event_type: type):
        active = self.truth.known or self.tun.signatures
        return super().handler(event_type) if active else None

    def on_packet(self, ev) -> None:
        if ev.proto != TCP:
            return
        flags = ev.flags
        if flags & (FIN | RST) and self.sessions:
            self._closed(ev)
        if flags & ESTABLISHED_FORBIDS or not flags & ACK:
            return
        payload = ev.payload
        spoken = None
        if payload:
            if self.tun.signatures:
                self._signatures(ev, payload)
            spoken = content.service(payload)
        dport = ev.dport
        if self.endpoints and self.tun.signatures:  # a port the endpoint mapper gave for remote execution
            what = self.endpoints.get((ev.dst_ip, dport))
            if what:
                self._alert(
                    "lateral_movement", ev, "critical", 0.9, "rpc", f"{what} on a port the endpoint mapper gave"
                )
        service = spoken or self.lateral.get(dport) or (_service(dport) if dport in self.mgmt else None)
        if service in GUESSED_SERVICES and not flags & FIN:
            self._opened(ev, service)
        truth = self.truth
        if not truth.known:
            return
        if (dport in self.mgmt or spoken in MGMT_SERVICES) and truth.is_host(ev.dst_ip):
            if truth.is_vm(ev.src_ip, ev.src_mac):
                critical = dport in CRITICAL_PORTS and not spoken
                self._alert("mgmt_access", ev, "critical" if critical else "high", 0.95, spoken or _service(dport))
        elif (
            (dport in self.lateral or spoken)
            and truth.is_vm(ev.src_ip, ev.src_mac)
            and truth.is_vm(ev.dst_ip, ev.dst_mac)
            and truth.vm_name(ev.src_ip, ev.src_mac) != truth.vm_name(ev.dst_ip, ev.dst_mac)
        ):
            self._alert("lateral_movement", ev, "high", 0.9, spoken or self.lateral[dport])

    def _signatures(self, ev, payload: bytes) -> None:
        found = None
        if ev.sport in dcerpc.EPM_PORTS:  # the endpoint mapper's answers: where the interfaces are
            self._learn_endpoints(ev, payload)
            return
        if content.is_rpc_bind(payload):
            what = dcerpc.interface(payload)
            if what:
                found = ("rpc", what)
        elif b"SMB" in payload[:12] and any(m in payload[:12] for m in SMB_MAGIC):
            what = dcerpc.interface(payload)  # RPC bind inside an SMB write to a named pipe
            if what:
                found = ("rpc", what)
            else:
                match = ADMIN_SHARE.search(payload)
                if match:
                    share = match.group(0).replace(b"\x00", b"").decode("ascii", "replace").strip("\\")
                    found = ("smb", f"administrative share {share}")
        elif ev.dport in dcerpc.EPM_PORTS:
            what = dcerpc.activation(payload)
            if what:  # the answer (a string binding with the port) comes back on this connection
                self.activations.put((ev.src_ip, ev.dst_ip), what)
        if found:
            service, what = found
            self._alert("lateral_movement", ev, "critical" if service == "rpc" else "high", 0.9, service, what)

    def _learn_endpoints(self, ev, payload: bytes) -> None:
        """An endpoint mapper's answer to ev.dst_ip: the remote-execution endpoints it names are remembered
        (as Zeek's ``add_dce_rpc_endpoint``); a later connection to one is that interface."""
        asked = self.activations.get((ev.dst_ip, ev.src_ip))
        for ip, port, iface in dcerpc.mapped_endpoints(payload):
            what = dcerpc.RPC_INTERFACES.get(iface) if iface else asked
            if what:
                self.endpoints.put((ip or ev.src_ip, port), what)

    # --- password guessing --------------------------------------------------------------------------
    def _opened(self, ev, service: str) -> None:
        conn = (ev.src_ip, ev.dst_ip, ev.sport, ev.dport)
        if conn not in self.sessions:
            self.sessions.put(conn, (ev.ts, service))

    def _closed(self, ev) -> None:
        """A FIN or RST from either side ends the session; a short one counts as a guess."""
        conn = (ev.src_ip, ev.dst_ip, ev.sport, ev.dport)
        started = self.sessions.pop(conn, None)
        if started is None:
            conn = (ev.dst_ip, ev.src_ip, ev.dport, ev.sport)
            started = self.sessions.pop(conn, None)
            if started is None:
                return
        start, service = started
        tun = self.tun
        if ev.ts - start > tun.short_session:
            return
        client, server = conn[0], conn[1]
        key = (client, server, service)
        times = self.short.get(key)
        if times is None:
            times = deque()
            self.short.put(key, times)
        times.append((ev.ts, conn[2], conn[3]))
        while times and ev.ts - times[0][0] > tun.guess_window:
            times.popleft()
        if len(times) < tun.guesses:
            return
        toward_server = ev.src_ip == client
        src_mac, dst_mac = (ev.src_mac, ev.dst_mac) if toward_server else (ev.dst_mac, ev.src_mac)
        truth = self.truth
        kind = (
            "mgmt_access"
            if truth.known and truth.is_host(server) and truth.is_vm(client, src_mac)
            else "lateral_movement"
        )
        alert = self.open.get((kind, client, server, service))
        guessed = alert.evidence.get("brute_force") if alert is not None else None
        # the guesses in the window when the threshold is crossed, then each one after
        for ts, sport, dport in times if guessed is None else (times[-1],):
            alert = self._alert(kind, _Conn(ts, client, server, src_mac, dst_mac, sport, dport), "high", 0.8, service)
            guessed = alert.evidence.setdefault(
                "brute_force", {"short_sessions": 0, "window_seconds": tun.guess_window}
            )
            guessed["short_sessions"] += 1
        alert.evidence["signatures"].add(f"password guessing ({service}: repeated short sessions)")

    def _alert(
        self, kind: str, ev, severity: str, confidence: float, service: str, signature: str | None = None
    ) -> Alert:
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
        return alert


class _Conn:
    """The fields of a client's packet that ``_alert`` reads, for a session closed by the server's packet."""

    __slots__ = ("ts", "src_ip", "dst_ip", "src_mac", "dst_mac", "sport", "dport")

    def __init__(self, ts, src_ip, dst_ip, src_mac, dst_mac, sport, dport) -> None:
        self.ts, self.src_ip, self.dst_ip, self.src_mac, self.dst_mac = ts, src_ip, dst_ip, src_mac, dst_mac
        self.sport, self.dport = sport, dport


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
    if a.evidence.get("brute_force"):
        conns += f", {a.evidence['brute_force']['short_sessions']} short"
    if a.evidence.get("signatures"):
        return f"{who} used {'; '.join(sorted(a.evidence['signatures']))} on {to} (port {ports}, {conns})"
    return f"{who} reached {to} over {a.evidence['service']} (port {ports}, {conns})"
