"""The decoded traffic stream: what every traffic input (pcap, pcapng, live bridge, Zeek, Suricata) produces
and every consumer (the rule detectors today, a behaviour baseline or a watcher later) reads.

Events are small immutable records; addresses stay in their wire form (``bytes``: 6 for a MAC, 4 or 16
for an IP) so that consumers can hash and compare them cheaply; ``mac_text``/``ip_text`` turn them into
text for output. A value a source does not know is ``None`` (Zeek's conn.log has no MACs, for instance).

What the packet decoders pass up (``FlowTable`` in ``flows.py`` decides, the same for every input):

* ``Packet`` for an IP packet that starts something: every TCP packet with SYN, FIN or RST; the first
  packet of each flow that carries data (for TCP: the first one with payload from the side that opened
  it, which shows the handshake completed); every ICMP/ICMPv6 message once per (source, destination,
  type, code); and the first few payload packets of flows on "deep" ports (SMB, RPC) so that content
  signatures can look into them. The rest of a flow is only counted. A decoder asked for every packet
  (``all_packets=True``) passes each IP packet up instead.
* ``Arp`` for every ARP packet with a valid Ethernet/IPv4 header.
* ``Dhcp`` for every DHCPv4 message, ``RouterAdvert`` for every ICMPv6 router advertisement.
* ``Neighbour`` for every ICMPv6 neighbour solicitation and advertisement (the IPv6 twin of ``Arp``); the
  message is also passed up as a ``Packet`` by the ICMP rule above.
* ``Frame`` for other Ethernet frames (LLDP, STP, ...): only the addresses and the EtherType.
* ``Probes`` for connection attempts, batched by flow: the TCP SYNs (without ACK) and the first packets of
  new UDP flows from one source to one destination within one batch and one ``PROBE_SPAN`` slot of time,
  in one record (``ports`` holds each attempt's destination port, ``payloads`` the first few payloads).
  A scan of 1,000 ports is then one event, not 1,000. It sits in the batch where the first attempt was
  and is complete when the batch is handed on. With ``all_packets=True`` there are no Probes: every
  packet is a ``Packet``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import numpy as np

# TCP flag bits (``Packet.flags``)
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58


class Packet(NamedTuple):
    """An IP packet passed up by the flow table (see the module text). For ICMP, ``sport`` is the
    message type and ``dport`` the code; ``payload`` holds the first bytes after the L4 header."""

    ts: float
    src_mac: bytes | None
    dst_mac: bytes | None
    src_ip: bytes
    dst_ip: bytes
    proto: int
    sport: int
    dport: int
    flags: int
    length: int
    payload: bytes = b""


class Arp(NamedTuple):
    ts: float
    eth_src: bytes | None
    eth_dst: bytes | None
    op: int  # 1 request, 2 reply
    sha: bytes  # sender hardware address
    spa: bytes  # sender protocol (IPv4) address
    tha: bytes
    tpa: bytes


class Dhcp(NamedTuple):
    ts: float
    src_mac: bytes | None
    src_ip: bytes | None
    dst_ip: bytes | None
    op: int  # BOOTP op: 1 request (client), 2 reply (server)
    msg_type: int  # option 53: 1 DISCOVER, 2 OFFER, 3 REQUEST, 4 DECLINE, 5 ACK, 6 NAK, 7 RELEASE, 8 INFORM
    xid: int
    chaddr: bytes | None  # client hardware address
    yiaddr: bytes | None  # address offered/assigned
    server_id: bytes | None  # option 54
    routers: tuple = ()  # option 3
    dns: tuple = ()  # option 6


class RouterAdvert(NamedTuple):
    ts: float
    src_mac: bytes | None
    src_ip: bytes
    dst_ip: bytes
    lifetime: int  # router lifetime in seconds; 0 = "I am not a default router" (kill router)
    source_lladdr: bytes | None  # source link-layer address option
    prefixes: tuple = ()  # ("2001:db8::/64", ...)


# Neighbour advertisement flags (RFC 4861 4.4: the first byte after the ICMPv6 header)
ND_ROUTER, ND_SOLICITED, ND_OVERRIDE = 0x80, 0x40, 0x20


class Neighbour(NamedTuple):
    """An ICMPv6 neighbour solicitation (``kind`` 135) or advertisement (136)."""

    ts: float
    src_mac: bytes | None
    dst_mac: bytes | None
    src_ip: bytes
    dst_ip: bytes
    kind: int
    flags: int  # advertisement: ND_ROUTER | ND_SOLICITED | ND_OVERRIDE; 0 for a solicitation
    target: bytes  # the address asked about (solicitation) or advertised (advertisement)
    lladdr: bytes | None  # source (solicitation) or target (advertisement) link-layer address option


class Frame(NamedTuple):
    ts: float
    src_mac: bytes
    dst_mac: bytes
    ethertype: int


PROBE_SPAN = 5.0  # seconds: a Probes record covers one such slot of the clock (windows are 10-60 s)
PROBE_PAYLOADS = 8  # payloads kept per record


class Probes:
    """Connection attempts from one source to one destination in one batch (see the module text)."""

    __slots__ = ("ts", "last", "src_mac", "dst_mac", "src_ip", "dst_ip", "proto", "ports", "payloads", "macs")

    def __init__(
        self, ts: float, src_mac, dst_mac, src_ip: bytes, dst_ip: bytes, proto: int, port: int, payload: bytes = b""
    ) -> None:
        self.ts = self.last = ts
        self.src_mac, self.dst_mac, self.src_ip, self.dst_ip = src_mac, dst_mac, src_ip, dst_ip
        self.proto = proto
        self.ports = [port]
        self.payloads = [payload] if payload else []  # the first attempts' payloads (UDP: a DNS query...)
        self.macs: set | None = None  # other source MACs the attempts came from, if any

    def __repr__(self) -> str:
        return (
            f"Probes(ts={self.ts}, src_ip={self.src_ip!r}, dst_ip={self.dst_ip!r}, proto={self.proto}, "
            f"ports={self.ports[:10]}{'...' if len(self.ports) > 10 else ''})"
        )


# One row per Ethernet frame, for consumers that need every frame's size and addresses (the behaviour
# baseline's volume features) rather than the flow-level events above. IPv4 addresses as big-endian
# integers; for IPv6 the last four bytes of the address (enough to tell peers of one VM apart; say so where
# shown); ARP frames carry the sender/target protocol addresses in src_ip/dst_ip and the opcode in arp_op.
# Ports, flags and proto are 0 where the frame has none; for ICMP/ICMPv6, sport is the message type and dport
# the code (as in ``Packet``). VLAN tags are read past (ethertype is the inner one); frames of link types
# without MACs (raw IP, loopback) have MACs 0; Linux cooked captures give the sender's address as src_mac.
# ``length`` is the frame's length on the wire.
FRAME_DTYPE = np.dtype(
    [
        ("ts", "f8"),
        ("src_mac", "u8"),
        ("dst_mac", "u8"),
        ("ethertype", "u2"),
        ("src_ip", "u4"),
        ("dst_ip", "u4"),
        ("proto", "u1"),
        ("flags", "u1"),
        ("sport", "u2"),
        ("dport", "u2"),
        ("length", "u4"),
        ("arp_op", "u1"),
    ]
)


class FrameColumns(NamedTuple):
    """Every frame of one decoded buffer as numpy columns (``FRAME_DTYPE``), in capture order. Passed up
    only by a stream asked for it (``TrafficStream(frame_columns=True)``); ``ts`` is the first frame's time
    (so that a batch sorted by time keeps it near its frames)."""

    ts: float
    frames: np.ndarray


EVENT_TYPES = (Packet, Arp, Dhcp, RouterAdvert, Neighbour, Frame, Probes, FrameColumns)

# Hot paths build events as ``new(Packet, (ts, src_mac, ...))``: all fields in order, in one tuple. That
# skips the argument handling of ``Packet(...)`` and costs about half as much.
new = tuple.__new__

DHCP_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}


def mac_text(mac: bytes | None) -> str | None:
    return None if mac is None else mac.hex(":")


def ip_text(ip: bytes | None) -> str | None:
    if ip is None:
        return None
    if len(ip) == 4:
        return f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}"
    return str(ipaddress.IPv6Address(ip))


def ip_bytes(text: str | None) -> bytes | None:
    """'10.0.0.1' / 'fe80::1' -> packed bytes; None for None or text that is no address."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.split("%")[0]).packed
    except ValueError:
        return None


def mac_bytes(text: str | None) -> bytes | None:
    if not text:
        return None
    hexdigits = text.replace(":", "").replace("-", "").replace(".", "")
    if len(hexdigits) != 12:
        return None
    try:
        return bytes.fromhex(hexdigits)
    except ValueError:
        return None


def dns_qname(payload: bytes) -> str | None:
    """The first question's name of a DNS message (UDP payload), or None if it does not parse."""
    if len(payload) < 17:
        return None
    labels, i = [], 12
    while i < len(payload):
        n = payload[i]
        if n == 0:
            return ".".join(labels) if labels else "."
        if n > 63 or i + 1 + n > len(payload):
            return None
        labels.append(payload[i + 1 : i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    return None


def dns_query_payload(qname: str, qtype: int = 1, ident: int = 0) -> bytes:
    """A DNS query message for ``qname`` (used where a log gives the name instead of the packet)."""
    labels = [p.encode("ascii", "replace")[:63] for p in qname.strip(".").split(".") if p]
    body = b"".join(bytes([len(p)]) + p for p in labels) + b"\x00"
    return (
        (ident & 0xFFFF).to_bytes(2, "big")
        + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        + body
        + qtype.to_bytes(2, "big")
        + b"\x00\x01"
    )
