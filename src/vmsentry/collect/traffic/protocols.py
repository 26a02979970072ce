"""Parsers for the few application messages the detectors need whole: DHCPv4, ICMPv6 router
advertisements and neighbour solicitations/advertisements, and the ARP header checks Zeek applies (``bad_arp`` explanations).

Each parser takes a buffer and offsets into it (no copies of whole frames) and returns an event or a
problem string; none raises on bad input.
"""

from __future__ import annotations

import ipaddress

from vmsentry.model.traffic import Arp, Dhcp, Neighbour, RouterAdvert, new

DHCP_MAGIC = b"\x63\x82\x53\x63"


def arp(ts: float, buf, a: int, end: int, eth_src, eth_dst) -> Arp | str:
    """An ARP packet starting at ``a``; a string names what is wrong with it (Zeek's words)."""
    if end - a < 8:
        return "truncated-arp"
    hrd = buf[a] << 8 | buf[a + 1]
    pro = buf[a + 2] << 8 | buf[a + 3]
    hln, pln = buf[a + 4], buf[a + 5]
    op = buf[a + 6] << 8 | buf[a + 7]
    if hrd != 1 or hln != 6:
        return f"corrupt-arp-header (hrd={hrd}, hln={hln})"
    if pro != 0x0800 or pln != 4:
        return f"corrupt-arp-header (pro={pro}, pln={pln})"
    if end - a < 28:
        return "truncated-arp"
    if op not in (1, 2):
        return "unimplemented-arp-opcode" if op in (3, 4, 8, 9) else "invalid-arp-opcode"
    return new(
        Arp,
        (
            ts,
            eth_src,
            eth_dst,
            op,
            bytes(buf[a + 8 : a + 14]),
            bytes(buf[a + 14 : a + 18]),
            bytes(buf[a + 18 : a + 24]),
            bytes(buf[a + 24 : a + 28]),
        ),
    )


def dhcp(ts: float, buf, d: int, end: int, src_mac, src_ip, dst_ip) -> Dhcp | str:
    """A BOOTP/DHCP message starting at ``d`` (the UDP payload)."""
    if end - d < 240:
        return "truncated-dhcp"
    if bytes(buf[d + 236 : d + 240]) != DHCP_MAGIC:
        return "malformed-dhcp (no magic cookie)"
    op = buf[d]
    xid = int.from_bytes(buf[d + 4 : d + 8], "big")
    yiaddr = bytes(buf[d + 16 : d + 20])
    chaddr = bytes(buf[d + 28 : d + 34]) if buf[d + 1] == 1 and buf[d + 2] == 6 else None
    msg_type, server_id, routers, dns = 0, None, (), ()
    i = d + 240
    while i < end:
        code = buf[i]
        if code == 255:
            break
        if code == 0:
            i += 1
            continue
        if i + 1 >= end:
            return "truncated-dhcp-options"
        n = buf[i + 1]
        v = i + 2
        if v + n > end:
            return "truncated-dhcp-options"
        if code == 53 and n >= 1:
            msg_type = buf[v]
        elif code == 54 and n == 4:
            server_id = bytes(buf[v : v + 4])
        elif code == 3 and n >= 4:
            routers = tuple(bytes(buf[j : j + 4]) for j in range(v, v + n - 3, 4))
        elif code == 6 and n >= 4:
            dns = tuple(bytes(buf[j : j + 4]) for j in range(v, v + n - 3, 4))
        i = v + n
    if not msg_type:
        return "malformed-dhcp (no message type)"
    return Dhcp(
        ts,
        src_mac,
        src_ip,
        dst_ip,
        op,
        msg_type,
        xid,
        chaddr,
        yiaddr if yiaddr != b"\x00\x00\x00\x00" else None,
        server_id,
        routers,
        dns,
    )


def router_advert(ts: float, buf, c: int, end: int, src_mac, src_ip, dst_ip) -> RouterAdvert | str:
    """An ICMPv6 router advertisement starting at ``c`` (the ICMPv6 header)."""
    if end - c < 16:
        return "truncated-icmpv6-ra"
    lifetime = buf[c + 6] << 8 | buf[c + 7]
    lladdr, prefixes = None, []
    i = c + 16
    while i + 2 <= end:
        kind, units = buf[i], buf[i + 1]
        if units == 0:
            return "malformed-icmpv6-option (length 0)"
        n = units * 8
        if i + n > end:
            break
        if kind == 1 and n >= 8:
            lladdr = bytes(buf[i + 2 : i + 8])
        elif kind == 3 and n == 32:
            plen = buf[i + 2]
            try:
                net = ipaddress.IPv6Network((bytes(buf[i + 16 : i + 32]), min(plen, 128)), strict=False)
                prefixes.append(str(net))
            except ValueError:
                pass
        i += n
    return RouterAdvert(ts, src_mac, src_ip, dst_ip, lifetime, lladdr, tuple(prefixes))


def neighbour(ts: float, buf, c: int, end: int, src_mac, dst_mac, src_ip, dst_ip) -> Neighbour | str:
    """An ICMPv6 neighbour solicitation or advertisement starting at ``c`` (RFC 4861 4.3, 4.4)."""
    if end - c < 24:
        return "truncated-icmpv6-nd"
    kind = buf[c]
    if buf[c + 1]:
        return "malformed-icmpv6-nd (code not 0)"
    want = 1 if kind == 135 else 2  # source / target link-layer address option
    lladdr = None
    i = c + 24
    while i + 2 <= end:
        units = buf[i + 1]
        if units == 0:
            return "malformed-icmpv6-option (length 0)"
        if buf[i] == want and units == 1 and i + 8 <= end:
            lladdr = bytes(buf[i + 2 : i + 8])
        i += units * 8
    flags = buf[c + 4] & 0xE0 if kind == 136 else 0
    return new(Neighbour, (ts, src_mac, dst_mac, src_ip, dst_ip, kind, flags, bytes(buf[c + 8 : c + 24]), lladdr))
