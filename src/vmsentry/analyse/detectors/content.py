"""Which admin protocol a TCP connection speaks, from the first bytes its client sends (as Zeek's dynamic
protocol detection and Suricata's app-layer probing do), so that SSH on 2222 or SMB on 4455 is SSH or SMB.

``service(payload)`` reads the client's first payload:

* RDP: a TPKT (version 3) carrying an X.224 Connection Request (code 0xE0) with the ``Cookie: mstshash=``
  routing cookie or an RDP negotiation request ([MS-RDPBCGR] 2.2.1.1);
* SSH: the identification string ``SSH-2.0-`` / ``SSH-1.99-`` (RFC 4253 4.2);
* VNC: the client's echo of the ``RFB xxx.yyy`` protocol version (RFC 6143 7.1.1);
* WinRM: an HTTP request for ``/wsman`` ([MS-WSMV]);
* SMB: a NetBIOS session message holding an SMB1, SMB2 or SMB3 (transform) header, or a NetBIOS session
  request ([MS-SMB2] 2.1);
* DCE/RPC: a connection-oriented bind or alter-context PDU, version 5.0 ([C706] 12.6).
"""

from __future__ import annotations

import re

RDP_COOKIE = b"Cookie: mstshash="
SSH_BANNER = re.compile(rb"SSH-(?:2\.0|1\.99)-[\x21-\x7e]")
RFB_VERSION = re.compile(rb"RFB \d{3}\.\d{3}\n")
WSMAN = re.compile(rb"(?:POST|GET) /wsman(?:[/?\s]|$)", re.IGNORECASE)
SMB_HEADERS = (b"\xffSMB", b"\xfeSMB", b"\xfdSMB")


def service(payload: bytes) -> str | None:
    """The admin protocol the client's first payload speaks ('rdp', 'ssh', 'vnc', 'winrm', 'smb', 'rpc'), or None."""
    first = payload[:1]
    if first == b"\x03":
        return "rdp" if _rdp(payload) else None
    if first == b"S":
        return "ssh" if SSH_BANNER.match(payload) else None
    if first == b"R":
        return "vnc" if RFB_VERSION.match(payload) else None
    if first in (b"P", b"G", b"p", b"g"):
        return "winrm" if WSMAN.match(payload) else None
    if first == b"\x00":
        return "smb" if payload[4:8] in SMB_HEADERS else None
    if first == b"\x81":  # NetBIOS session request (SMB over port 139 style)
        return "smb" if len(payload) >= 72 and payload[1] == 0 else None
    if first == b"\x05":
        return "rpc" if is_rpc_bind(payload) else None
    return None


def is_rpc_bind(payload: bytes) -> bool:
    """A DCE/RPC connection-oriented bind (11) or alter-context (14) PDU, version 5.0."""
    return len(payload) >= 24 and payload[0] == 5 and payload[1] == 0 and payload[2] in (11, 14)


def _rdp(payload: bytes) -> bool:
    # TPKT: version 3, reserved 0, length; X.224: length indicator, code 0xE0 (connection request)
    if len(payload) < 11 or payload[1] != 0 or payload[5] & 0xF0 != 0xE0:
        return False
    if RDP_COOKIE in payload[11:64]:
        return True
    # without a cookie: the 8-byte RDP_NEG_REQ (type 1, length 8) ends the request
    total = int.from_bytes(payload[2:4], "big")
    return 19 <= total <= len(payload) and payload[total - 8] == 1 and payload[total - 6 : total - 4] == b"\x08\x00"
