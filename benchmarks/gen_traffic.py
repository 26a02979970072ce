#!/usr/bin/env python3
"""Write a realistic mixed capture for `bench_detect.py`: classic pcap, Ethernet, N packets.

A host (10.99.0.1) and 30 VMs (10.99.0.11-40) on one bridge, about 10,000 packets/s:
TCP sessions with handshake, data both ways and teardown (web, database, HTTP to the host), DNS queries
and answers with the host's resolver, ARP requests and replies, and UDP streams (syslog/NTP-like); the
shares are set by ``--mix`` (see MIXES: "typical" about 87/3/1/9 %, "busy" about 73/13/5/9 %).
Payloads are cut at the snap length given (default 256 bytes, as a capture with `-s 256` would be) so that
the file stays small.

Six attacks are embedded, so the benchmark also checks that the detectors still find them at speed:
an ARP spoof (vm .13 claims the host's IP), a SYN scan (vm .14 scans 1,000 ports of vm .12), DNS to an
outside resolver (vm .15 to 203.0.113.53), management access (vm .16 to the host's libvirtd 16509),
lateral movement (vm .17 to vm .18 over SMB 445) and a MAC flood (5,000 random source MACs).

`--mode syn` writes the lab generator's mix instead (`lab-scripts/gen_pcap.py`: 70 % bare TCP SYNs with
random ports, 25 % UDP/53, 5 % ARP replies): every packet opens a new flow, the worst case for a
flow-batched reader.

Two floods measure memory under attack (`watch_memory.py`): `--mode macflood` writes what macof sends, TCP
SYNs with random source and destination MACs and IPv4 addresses and random ports (every frame a new source
MAC); `--mode flowflood` writes N packets of N distinct 5-tuples from one VM's MAC to the host's MAC, with
random source and destination addresses and ports: a third UDP datagrams, a third TCP segments with payload
seen mid-stream, a third SYN-ACKs, so that every packet leaves state in the flow tables and the detectors.

`--truth FILE` (mixed mode) also writes the ground truth of the capture for the behaviour baseline
(`model/behaviour.GroundTruth`: the host and the 30 VMs, and one incident per embedded attack with its
attacker, victims and the capture times of its first and last frame; the MAC flood's frames come from random
MACs, so its attacker is the extractor's "(unattributed)" entity). `--start EPOCH` sets the first time stamp
(two captures of different seeds then do not overlap in time), `--split` the truth's split name.

    python benchmarks/gen_traffic.py OUT.pcap [--packets 1000000] [--mode mixed|syn|macflood|flowflood]
                                     [--mix typical|busy]
                                     [--inventory INV.json] [--truth TRUTH.json --split S] [--start EPOCH]
                                     [--attacks arp,scan,dns,mgmt,lateral,flood|none] [--repeat N] [--rate PPS]
"""

from __future__ import annotations

import argparse
import json
import random
import struct
import time

HOST_IP, HOST_MAC = "10.99.0.1", "52:54:00:99:00:01"
VMS = [(f"vm{i}", f"10.99.0.{i}", f"52:54:00:99:00:{i:02x}") for i in range(11, 41)]
BCAST = b"\xff" * 6
SNAP = 256


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


class Writer:
    def __init__(self, path: str, snap: int) -> None:
        # no with-block: the writer owns the file until close(), after the last frame
        self.fh = open(path, "wb", buffering=1 << 22)  # noqa: SIM115
        self.fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snap, 1))
        self.snap = snap
        self.count = 0
        self.ts = 1_790_000_000.0
        self.hdr = struct.Struct("<IIII").pack

    def put(self, frame: bytes, orig: int | None = None) -> None:
        sec = int(self.ts)
        orig = orig or len(frame)
        if len(frame) > self.snap:
            frame = frame[: self.snap]
        self.fh.write(self.hdr(sec, int((self.ts - sec) * 1e6), len(frame), orig))
        self.fh.write(frame)
        self.count += 1

    def close(self) -> None:
        self.fh.close()


def ether(dst: bytes, src: bytes, etype: int) -> bytes:
    return dst + src + struct.pack("!H", etype)


def ipv4(src: bytes, dst: bytes, proto: int, payload_len: int, ident: int) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)


def tcp_frame(smac, dmac, sip, dip, sport, dport, seq, ack, flags, payload_len, ident):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 64240, 0, 0)
    frame = ether(dmac, smac, 0x0800) + ipv4(sip, dip, 6, 20 + payload_len, ident) + tcp
    return frame + b"\x00" * min(payload_len, SNAP), len(frame) + payload_len


def udp_frame(smac, dmac, sip, dip, sport, dport, payload: bytes, ident):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return ether(dmac, smac, 0x0800) + ipv4(sip, dip, 17, 8 + len(payload), ident) + udp + payload


def arp_frame(op, smac, sip, tmac, tip, edst=None):
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, smac, sip, tmac, tip)
    return ether(edst or (BCAST if op == 1 else tmac), smac, 0x0806) + body


def dns_query(name: str, ident: int, answer: bool) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00" + struct.pack("!HH", 1, 1)
    if not answer:
        return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + q
    return (
        struct.pack("!HHHHHH", ident, 0x8180, 1, 1, 0, 0)
        + q
        + struct.pack("!HHHIH4s", 0xC00C, 1, 1, 300, 4, bytes([10, 99, 0, 1]))
    )


class Session:
    """One TCP connection: handshake, `left` data packets alternating direction, FIN/ACK teardown."""

    def __init__(self, c, s, dport, rnd):
        self.c, self.s, self.dport = c, s, dport
        self.sport = rnd.randint(32768, 60999)
        self.left = int(rnd.expovariate(1 / 300)) + 4
        self.step = 0
        self.seq, self.ack = rnd.getrandbits(32), rnd.getrandbits(32)

    def next(self, rnd, ident):
        c, s = self.c, self.s
        up = (c[2], s[2], c[1], s[1], self.sport, self.dport)
        down = (s[2], c[2], s[1], c[1], self.dport, self.sport)
        self.step += 1
        if self.step == 1:
            return tcp_frame(*up, self.seq, 0, 0x02, 0, ident)
        if self.step == 2:
            return tcp_frame(*down, self.ack, self.seq + 1, 0x12, 0, ident)
        if self.step == 3:
            return tcp_frame(*up, self.seq + 1, self.ack + 1, 0x10, 0, ident)
        if self.left > 0:
            self.left -= 1
            size = rnd.choice((0, 0, 120, 536, 1448, 1448))
            self.seq += size
            return tcp_frame(
                *(up if rnd.random() < 0.4 else down), self.seq, self.ack, 0x18 if size else 0x10, size, ident
            )
        self.left -= 1
        if self.left == -1:
            return tcp_frame(*up, self.seq, self.ack, 0x11, 0, ident)
        if self.left == -2:
            return tcp_frame(*down, self.ack, self.seq + 1, 0x11, 0, ident)
        return tcp_frame(*up, self.seq + 1, self.ack + 1, 0x10, 0, ident)

    @property
    def done(self):
        return self.left < -2


# cumulative shares of what each step writes: a TCP segment, a DNS query+answer, an ARP request+reply, else
# a syslog/NTP datagram. "typical": about 87 % TCP, 3 % DNS, 1 % ARP, 9 % other UDP of the packets;
# "busy": a segment heavy on DNS and ARP (about 73 % TCP, 13 % DNS, 5 % ARP, 9 % UDP).
MIXES = {"typical": (0.877, 0.892, 0.897), "busy": (0.80, 0.87, 0.90)}
TCP_SHARE, DNS_SHARE, ARP_SHARE = MIXES["typical"]


# attack kind in mixed() -> (truth kind, attacker, victims, how)
TRUTH_KINDS = {
    "arp": ("arp_spoof", "vm13", ("vm12", "vm20"), "forged ARP replies claiming the host's address"),
    "scan": ("scan", "vm14", ("vm12",), "SYN scan of 1,000 ports"),
    "dns": ("dns_outside", "vm15", (), "DNS queries to an outside resolver"),
    "mgmt": ("mgmt_access", "vm16", ("hv1",), "TCP connection to libvirtd (16509)"),
    "lateral": ("lateral_movement", "vm17", ("vm18",), "SMB connection"),
    "flood": ("mac_flood", "(unattributed)", (), "5,000 frames from random source MACs (macof-like)"),
}
INCIDENTS: list[dict] = []  # the attacks mixed() wrote, for --truth
DEFAULT_ATTACKS = ("arp", "scan", "dns", "mgmt", "lateral", "flood")
ATTACKS, REPEAT = DEFAULT_ATTACKS, 1  # --attacks, --repeat
RATE = 10_000  # --rate: mean packets per second of the mixed mode's benign traffic


def mixed(w: Writer, n: int, rnd: random.Random) -> None:
    host = ("host", ip4(HOST_IP), mac(HOST_MAC))
    vms = [(name, ip4(ip), mac(m)) for name, ip, m in VMS]
    if ATTACKS == DEFAULT_ATTACKS and REPEAT == 1:
        attacks = {
            int(n * f): kind
            for f, kind in ((0.2, "arp"), (0.3, "scan"), (0.4, "dns"), (0.5, "mgmt"), (0.6, "lateral"), (0.7, "flood"))
        }
    else:  # --attacks/--repeat: spread evenly over the middle 80 % of the capture
        order = list(ATTACKS) * REPEAT
        attacks = {int(n * (0.1 + 0.8 * (k + 0.5) / len(order))): kind for k, kind in enumerate(order)}
    sessions: list[Session] = []
    ident = 0
    while w.count < n:
        ident += 1
        w.ts += rnd.expovariate(RATE)
        kind = attacks.pop(min(attacks), None) if attacks and w.count >= min(attacks) else None
        if kind:
            start, first = w.ts, w.count
            attack(w, kind, host, vms, rnd)
            if w.count > first:
                what, attacker, victims, how = TRUTH_KINDS[kind]
                INCIDENTS.append(
                    {
                        "kind": what,
                        "attacker": attacker,
                        "victims": list(victims),
                        "start": round(start, 6),
                        "end": round(w.ts, 6),
                        "tool": f"gen_traffic.py: {how}",
                    }
                )
            continue
        r = rnd.random()
        if r < TCP_SHARE:
            if len(sessions) < 40:
                c = rnd.choice(vms)
                s = rnd.choice([v for v in vms if v is not c][:20] + [host])
                port = 80 if s is host else rnd.choice((80, 443, 8080, 5432, 3306, 6379))
                sessions.append(Session(c, s, port, rnd))
            sess = rnd.choice(sessions)
            w.put(*sess.next(rnd, ident))
            if sess.done:
                sessions.remove(sess)
        elif r < DNS_SHARE:
            c = rnd.choice(vms)
            sport, qid = rnd.randint(32768, 60999), rnd.getrandbits(16)
            name = rnd.choice(("repo.example.org", "api.internal.lan", "db.internal.lan", "ntp.example.org"))
            w.put(udp_frame(c[2], host[2], c[1], host[1], sport, 53, dns_query(name, qid, False), ident))
            w.ts += 0.0002
            w.put(udp_frame(host[2], c[2], host[1], c[1], 53, sport, dns_query(name, qid, True), ident))
        elif r < ARP_SHARE:
            a, b = rnd.sample(vms + [host], 2)
            w.put(arp_frame(1, a[2], a[1], b"\x00" * 6, b[1]))
            w.ts += 0.0001
            w.put(arp_frame(2, b[2], b[1], a[2], a[1]))
        else:
            c = rnd.choice(vms[:8])
            w.put(
                udp_frame(
                    c[2],
                    host[2],
                    c[1],
                    host[1],
                    40514 + vms.index(c),
                    rnd.choice((514, 123)),
                    b"<13>" + b"x" * rnd.randint(40, 200),
                    ident,
                )
            )


def attack(w: Writer, kind: str, host, vms, rnd) -> None:
    by_ip = {v[1][3]: v for v in vms}
    if kind == "arp":  # vm13 tells vm12 and vm20 that the host's IP is at vm13's MAC, every 2 s
        a = by_ip[13]
        for _ in range(10):
            for victim in (by_ip[12], by_ip[20]):
                w.put(arp_frame(2, a[2], host[1], victim[2], victim[1]))
            w.ts += 0.02
    elif kind == "scan":  # vm14 SYN-scans 1,000 ports of vm12; closed ports answer RST/ACK
        a, v = by_ip[14], by_ip[12]
        for port in range(1, 1001):
            w.put(*tcp_frame(a[2], v[2], a[1], v[1], 54321, port, 1000, 0, 0x02, 0, port))
            w.ts += 0.00005
            w.put(*tcp_frame(v[2], a[2], v[1], a[1], port, 54321, 0, 1001, 0x14, 0, port))
    elif kind == "dns":  # vm15 asks an outside resolver
        a, gw = by_ip[15], host[2]
        for i in range(5):
            w.put(
                udp_frame(
                    a[2], gw, a[1], ip4("203.0.113.53"), 40000 + i, 53, dns_query("exfil.example.com", i, False), i
                )
            )
            w.ts += 0.01
    elif kind == "mgmt":  # vm16 opens libvirtd's TCP port on the host
        a = by_ip[16]
        for frame in (
            tcp_frame(a[2], host[2], a[1], host[1], 45000, 16509, 1, 0, 0x02, 0, 1),
            tcp_frame(host[2], a[2], host[1], a[1], 16509, 45000, 7, 2, 0x12, 0, 2),
            tcp_frame(a[2], host[2], a[1], host[1], 45000, 16509, 2, 8, 0x10, 0, 3),
        ):
            w.put(*frame)
    elif kind == "lateral":  # vm17 opens SMB on vm18
        a, v = by_ip[17], by_ip[18]
        for frame in (
            tcp_frame(a[2], v[2], a[1], v[1], 49800, 445, 1, 0, 0x02, 0, 1),
            tcp_frame(v[2], a[2], v[1], a[1], 445, 49800, 7, 2, 0x12, 0, 2),
            tcp_frame(a[2], v[2], a[1], v[1], 49800, 445, 2, 8, 0x18, 300, 3),
        ):
            w.put(*frame)
    elif kind == "flood":  # macof-like: random source MACs and addresses, 5,000 frames
        a = by_ip[19]
        for i in range(5000):
            w.put(*macof_frame(rnd, i, random_seq=False))
            w.ts += 0.00001
        del a


def syn_mix(w: Writer, n: int, rnd: random.Random) -> None:
    """The lab generator's mix (lab-scripts/gen_pcap.py), written through the same writer."""
    macs = [bytes([0x52, 0x54, 0, 0x99, 0, i]) for i in range(1, 21)]
    for i in range(n):
        w.ts += 0.00005
        a, b = rnd.sample(range(20), 2)
        r = rnd.random()
        sip, dip = bytes([10, 99, 0, a + 1]), bytes([10, 99, 0, b + 1])
        if r < 0.05:
            w.put(arp_frame(2, macs[a], sip, macs[b], dip))
        elif r < 0.75:
            dport = rnd.choice((22, 80, 443, 8080, rnd.randint(1, 1024)))
            w.put(*tcp_frame(macs[a], macs[b], sip, dip, rnd.randint(1024, 65535), dport, i, 0, 0x02, 0, i))
        else:
            w.put(udp_frame(macs[a], macs[b], sip, dip, rnd.randint(1024, 65535), 53, b"q" * 32, i))


def mac_flood(w: Writer, n: int, rnd: random.Random) -> None:
    """macof: TCP SYNs with random source and destination MACs (unicast source), IPs and ports."""
    for i in range(n):
        w.ts += 0.00001
        w.put(*macof_frame(rnd, i, random_seq=True))


def macof_frame(rnd: random.Random, i: int, random_seq: bool):
    """One macof SYN: random unicast source MAC, destination MAC, IPs and ports (drawn in this order, so a
    seeded generator writes the same capture as before); sequence number random or 0."""
    src = bytes([rnd.getrandbits(8) & 0xFE]) + rnd.randbytes(5)
    dst, sip, dip = rnd.randbytes(6), rnd.randbytes(4), rnd.randbytes(4)
    sport, dport = rnd.getrandbits(16), rnd.getrandbits(16)
    seq = rnd.getrandbits(32) if random_seq else 0
    return tcp_frame(src, dst, sip, dip, sport, dport, seq, 0, 0x02, 0, i)


def flow_flood(w: Writer, n: int, rnd: random.Random) -> None:
    """N distinct 5-tuples from vm19's MAC to the host's: UDP, TCP with payload mid-stream, SYN-ACKs."""
    smac, dmac = mac(VMS[8][2]), mac(HOST_MAC)
    for i in range(n):
        w.ts += 0.00001
        # the counter in the source address makes every 5-tuple distinct; the rest is random
        sip = bytes([10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF])
        dip, sport, dport = rnd.randbytes(4), rnd.randint(1024, 65535), rnd.randint(1, 65535)
        kind = i % 3
        if kind == 0:
            w.put(udp_frame(smac, dmac, sip, dip, sport, dport, b"x" * 32, i))
        elif kind == 1:
            w.put(*tcp_frame(smac, dmac, sip, dip, sport, dport, rnd.getrandbits(32), 1, 0x18, 100, i))
        else:
            w.put(*tcp_frame(smac, dmac, sip, dip, sport, dport, rnd.getrandbits(32), 1, 0x12, 0, i))


MODES = {"mixed": mixed, "syn": syn_mix, "macflood": mac_flood, "flowflood": flow_flood}


def inventory() -> dict:
    """The saved inventory that names the hypervisor's truth for the mixed capture."""
    nics = lambda ip, m: [{"id": "net0", "mac": m, "ip": ip, "mode": "bridged", "network": "lab", "bridge": "br-test"}]
    return {
        "schema": "vmsentry.inventory/1",
        "hosts": [{"name": "hv1", "platform": "linux", "facts": {}}],
        "networks": [
            {
                "name": "lab",
                "platform": "libvirt",
                "mode": "bridged",
                "bridge": "br-test",
                "subnets": ["10.99.0.0/24"],
                "host_address": HOST_IP,
                "host_mac": HOST_MAC,
                "dhcp": True,
                "dhcp_servers": [HOST_IP],
                "dns_servers": [HOST_IP],
                "host": "hv1",
            }
        ],
        "vms": [{"name": name, "platform": "libvirt", "nics": nics(ip, m), "host": "hv1"} for name, ip, m in VMS],
        "errors": [],
    }


def truth(split: str, capture: str) -> dict:
    """The ground truth of the mixed capture just written (``model/behaviour.GroundTruth`` shape)."""
    vms = [{"name": "hv1", "mac": HOST_MAC, "ip": HOST_IP, "role": "host"}]
    vms += [{"name": name, "mac": m, "ip": ip} for name, ip, m in VMS]
    return {"split": split, "capture": capture, "vms": vms, "incidents": INCIDENTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=tuple(MODES), default="mixed")
    ap.add_argument("--mix", choices=tuple(MIXES), default="typical", help="packet shares of the mixed mode")
    ap.add_argument("--snap", type=int, default=SNAP)
    ap.add_argument("--inventory", metavar="FILE", help="also write the matching saved inventory JSON here")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--truth", metavar="FILE", help="mixed mode: also write the capture's ground truth JSON here")
    ap.add_argument("--split", choices=("train", "calibration", "evaluation"), default="evaluation")
    ap.add_argument("--start", type=float, metavar="EPOCH", help="time stamp of the first packet")
    ap.add_argument(
        "--attacks",
        default=",".join(DEFAULT_ATTACKS),
        help="mixed mode: the attacks to embed, comma-separated (default all: %(default)s; 'none' for benign only)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="mixed mode: embed each attack this many times")
    ap.add_argument(
        "--rate", type=float, default=10_000.0, help="mixed mode: mean packets per second (default %(default)s)"
    )
    args = ap.parse_args()
    global ATTACKS, REPEAT, RATE
    RATE = args.rate
    ATTACKS = () if args.attacks == "none" else tuple(filter(None, args.attacks.split(",")))
    REPEAT = args.repeat
    if set(ATTACKS) - set(DEFAULT_ATTACKS) or REPEAT < 1:
        ap.error(f"--attacks: choose from {','.join(DEFAULT_ATTACKS)} (or none); --repeat: at least 1")
    if args.truth and args.mode != "mixed":
        ap.error("--truth: only the mixed mode embeds known attacks")
    t0 = time.perf_counter()
    global TCP_SHARE, DNS_SHARE, ARP_SHARE
    TCP_SHARE, DNS_SHARE, ARP_SHARE = MIXES[args.mix]
    w = Writer(args.out, args.snap)
    if args.start is not None:
        w.ts = args.start
    rnd = random.Random(args.seed)
    MODES[args.mode](w, args.packets, rnd)
    w.close()
    if args.inventory:
        with open(args.inventory, "w", encoding="utf-8") as fh:
            json.dump(inventory(), fh, indent=1)
    if args.truth:
        with open(args.truth, "w", encoding="utf-8") as fh:
            json.dump(truth(args.split, args.out.rsplit("/", 1)[-1]), fh, indent=1)
    print(f"wrote {w.count} packets ({args.mode}) to {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
