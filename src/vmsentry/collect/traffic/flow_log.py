"""What the flow logs (Zeek ``conn``, Suricata eve ``flow``) share: a TCP connection the log summarises in
one record, replayed as the handshake packets the detectors look for."""

from __future__ import annotations

from vmsentry.model.traffic import ACK, RST, SYN, TCP, Packet


def tcp_opening(
    out: list,
    ts: float,
    client_mac: bytes | None,
    server_mac: bytes | None,
    client: bytes,
    server: bytes,
    client_port: int,
    server_port: int,
    client_syn: bool,
    server_accepts: bool,
    server_resets: bool,
) -> None:
    """Append the client's SYN (when the log saw one), then the server's SYN-ACK, or else its reset."""
    if client_syn:
        out.append(Packet(ts, client_mac, server_mac, client, server, TCP, client_port, server_port, SYN, 0, b""))
    if server_accepts:
        out.append(Packet(ts, server_mac, client_mac, server, client, TCP, server_port, client_port, SYN | ACK, 0, b""))
    elif server_resets:
        out.append(Packet(ts, server_mac, client_mac, server, client, TCP, server_port, client_port, RST | ACK, 0, b""))
