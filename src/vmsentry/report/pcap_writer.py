"""Classic pcap (the format every tool reads: tcpdump, Wireshark, Zeek, Suricata) from a list of frames.

Microsecond time stamps, Ethernet link type, snap length 262144 (tcpdump's); each frame keeps its wire
length, so a frame captured short shows as cut, as it was."""

from __future__ import annotations

import struct
from collections.abc import Iterable

SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
FILE_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET)
RECORD = struct.Struct("<IIII")


def pcap_bytes(frames: Iterable[tuple[float, bytes, int]]) -> bytes:
    """The whole file for ``frames`` = ``(time stamp, frame bytes, wire length)``, in the order given."""
    parts = [FILE_HEADER]
    pack = RECORD.pack
    for ts, data, orig in frames:
        data = data[:SNAPLEN]
        micros = round(ts * 1_000_000)
        sec, usec = divmod(micros, 1_000_000)
        parts.append(pack(sec & 0xFFFFFFFF, usec, len(data), max(int(orig), len(data))))
        parts.append(bytes(data))
    return b"".join(parts)
