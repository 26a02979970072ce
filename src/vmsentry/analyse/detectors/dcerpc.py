"""DCE/RPC as remote execution uses it: the interfaces that mean "run something over there", and the
endpoint mapper's answers that say on which dynamic port a server offers them.

Windows serves most RPC interfaces (WMI, DCOM, the task scheduler, remote service control) on a dynamic
port that the client learns from the endpoint mapper on tcp/135 (or 593): an ``ept_map`` answer holds
protocol towers (interface UUID, then TCP port, then IP address floors, [C706] appendix L), and a DCOM
activation answer (``RemoteCreateInstance``) holds string bindings such as ``HOST[49667]`` ([MS-DCOM]
2.2.19). As Zeek's DCE/RPC analyser does (``epm_map_response`` -> ``add_dce_rpc_endpoint``), the detector
remembers each (server, port) so learned, and a later connection to it is RPC to that interface, whatever
the port.
"""

from __future__ import annotations

import re
import uuid


def _wire(text: str) -> bytes:
    return uuid.UUID(text).bytes_le  # how a UUID appears in an NDR stream


# interfaces (and DCOM classes) used for remote execution, as their UUIDs appear on the wire
RPC_INTERFACES = {
    _wire("367abb81-9844-35f1-ad32-98f038001003"): "svcctl (PsExec-style remote service)",
    _wire("1ff70682-0a51-30e8-076d-740be8cee98b"): "atsvc (remote scheduled task)",
    _wire("86d35949-83c9-4044-b424-db363231fd0c"): "ITaskSchedulerService (remote scheduled task)",
    _wire("f309ad18-d86a-11d0-a075-00c04fb68820"): "IWbemLevel1Login (remote WMI)",
    _wire("338cd001-2244-31f1-aaaa-900038001003"): "winreg (remote registry)",
}
DCOM_CLASSES = {
    _wire("8bc3f05e-d86b-11d0-a075-00c04fb68820"): "WbemLevel1Login (remote WMI over DCOM)",
    _wire("49b2791a-b1ae-4c90-9b8e-e860ba07f889"): "MMC20.Application (remote execution over DCOM)",
    _wire("9ba05972-f6a8-11cf-a442-00a0c90a8f39"): "ShellWindows (remote execution over DCOM)",
    _wire("c08afd90-f2a1-11d1-8455-00a0c91f3880"): "ShellBrowserWindow (remote execution over DCOM)",
}
EPM_PORTS = frozenset({135, 593})
RPC_RESPONSE = 2
# a protocol tower of 4-6 floors whose first floor is an interface UUID (protocol id 0x0d, 19 bytes)
TOWER = re.compile(rb"[\x04-\x06]\x00\x13\x00\x0d", re.DOTALL)
TOWER_TCP, TOWER_IP = 0x07, 0x09
# an ncacn_ip_tcp string binding (tower id 7) in UTF-16: "HOST[PORT]"
STRING_BINDING = re.compile(rb"\x07\x00(?:[^\x00]\x00){1,255}?\[\x00((?:[0-9]\x00){1,5})\]\x00", re.DOTALL)


def interface(payload: bytes) -> str | None:
    """The remote-execution interface a bind (or an RPC carried in SMB) names, if any."""
    for iface, what in RPC_INTERFACES.items():
        if iface in payload:
            return what
    return None


def activation(payload: bytes) -> str | None:
    """The remote-execution DCOM class a request to the endpoint mapper asks for, if any."""
    if len(payload) < 24 or payload[0] != 5 or payload[2] != 0:  # a request PDU
        return None
    for clsid, what in DCOM_CLASSES.items():
        if clsid in payload:
            return what
    return None


def mapped_endpoints(payload: bytes) -> list[tuple[bytes | None, int, bytes | None]]:
    """(IPv4 address or None, TCP port, interface UUID or None) for each endpoint an endpoint mapper's
    response PDU gives: the towers of an ``ept_map`` answer and the string bindings of a DCOM activation."""
    if len(payload) < 24 or payload[0] != 5 or payload[2] != RPC_RESPONSE:
        return []
    out = []
    for match in TOWER.finditer(payload):
        found = _tower(payload, match.start())
        if found:
            out.append(found)
    if not out:
        for match in STRING_BINDING.finditer(payload):
            port = int(match.group(1).replace(b"\x00", b""))
            if 0 < port < 65536:
                out.append((None, port, None))
    return out


def _tower(data: bytes, at: int) -> tuple[bytes | None, int, bytes] | None:
    """Walk the floors of the tower at ``at`` (floor count, then per floor: left-hand side length and bytes,
    right-hand side length and bytes, lengths little-endian; the port and address values big-endian)."""
    floors, pos = data[at], at + 2
    iface = data[pos + 3 : pos + 19]
    port = ip = None
    for _ in range(floors):
        if pos + 2 > len(data):
            return None
        lhs = int.from_bytes(data[pos : pos + 2], "little")
        if lhs == 0 or pos + 2 + lhs + 2 > len(data):
            return None
        ident = data[pos + 2]
        pos += 2 + lhs
        rhs = int.from_bytes(data[pos : pos + 2], "little")
        value = data[pos + 2 : pos + 2 + rhs]
        if len(value) != rhs:
            return None
        pos += 2 + rhs
        if ident == TOWER_TCP and rhs == 2:
            port = int.from_bytes(value, "big")
        elif ident == TOWER_IP and rhs == 4:
            ip = value
    if not port:
        return None
    return (ip if ip and ip != b"\x00\x00\x00\x00" else None), port, iface
