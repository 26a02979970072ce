"""Bad traffic input: counted in the stats and reported, never a traceback; the reader carries on after a
corrupt record where the format allows; state stays bounded."""

from __future__ import annotations

import gzip
import json
import random
import struct
import subprocess

import pytest

from vmsentry.collect.traffic import BadTrafficInput, open_inputs

from traffic_helpers import detect, events

NMAP = "lab/nmap-sS-vm1-vs-hostns.pcap"


def _records(data: bytes):
    off, out = 24, []
    while off < len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        out.append(off)
        off += 16 + incl
    return out


def _cli(run_cli, *args):
    proc = run_cli("detect", *args, "--format", "json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_truncated_file(shared_dir, tmp_path, run_cli):
    data = (shared_dir / "pcaps" / NMAP).read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: _records(data)[1500] + 30])  # in the middle of record 1500
    alerts, stats = detect(cut)
    assert stats["packets"] == 1500 and stats["problems"]["truncated-record"] == 1
    assert alerts[0]["type"] == "port_scan"
    proc = _cli(run_cli, cut)
    assert proc.returncode == 2 and "truncated-record" in proc.stderr and str(cut) in proc.stderr
    assert json.loads(proc.stdout)["alerts"][0]["type"] == "port_scan"


def test_corrupt_record_in_the_middle_is_skipped(shared_dir, tmp_path):
    data = bytearray((shared_dir / "pcaps" / NMAP).read_bytes())
    offs = _records(bytes(data))
    struct.pack_into("<I", data, offs[1000] + 8, 0x7FFFFFF0)  # an impossible record length
    bad = tmp_path / "corrupt.pcap"
    bad.write_bytes(bytes(data))
    alerts, stats = detect(bad)
    assert stats["problems"]["corrupt-record"] == 1
    assert stats["packets"] == 2055  # all but the corrupt one
    assert alerts[0]["type"] == "port_scan" and alerts[0]["count"] >= 1020


def test_garbage_between_records(shared_dir, tmp_path):
    data = (shared_dir / "pcaps" / NMAP).read_bytes()
    offs = _records(data)
    bad = tmp_path / "junk.pcap"
    bad.write_bytes(data[: offs[500]] + random.Random(1).randbytes(777) + data[offs[500] :])
    alerts, stats = detect(bad)
    assert stats["problems"]["corrupt-record"] >= 1 and stats["packets"] >= 2050
    assert alerts[0]["type"] == "port_scan"


def test_corrupt_pcapng_block(shared_dir, tmp_path):
    ng = tmp_path / "x.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(shared_dir / "pcaps" / NMAP), str(ng)], check=True)
    data = bytearray(ng.read_bytes())
    middle = data.find(b"\x06\x00\x00\x00", len(data) // 2)  # an enhanced packet block
    struct.pack_into("<I", data, middle + 4, 0x123)  # its length no longer adds up
    ng.write_bytes(bytes(data))
    alerts, stats = detect(ng)
    assert stats["problems"]["corrupt-block"] >= 1 and stats["packets"] >= 2050
    assert alerts[0]["type"] == "port_scan"


def test_snaplen_cut_packets_still_detect(shared_dir, tmp_path):
    for name, kind in (
        (NMAP, "port_scan"),
        ("lab/arpspoof-vm1-vs-vm2.pcap", "arp_spoof"),
        ("smb_psexec_mimikatz_suricata.pcap", "lateral_movement"),
    ):
        out = tmp_path / "snap.pcap"
        subprocess.run(["editcap", "-s", "128", str(shared_dir / "pcaps" / name), str(out)], check=True)
        alerts, stats = detect(out)
        assert [a["type"] for a in alerts] == [kind], name
        assert stats["bytes"] == detect(shared_dir / "pcaps" / name)[1]["bytes"]  # wire lengths kept
    assert stats["problems"]["snaplen-cut"] >= 1  # the SMB/RPC payloads were cut


def test_snaplen_shorter_than_headers(shared_dir, tmp_path):
    out = tmp_path / "tiny.pcap"
    subprocess.run(["editcap", "-s", "20", str(shared_dir / "pcaps" / NMAP), str(out)], check=True)
    alerts, stats = detect(out)
    assert alerts == [] and stats["packets"] == 2056 and stats["problems"]["truncated-ipv4"] > 2000


def test_unknown_link_type(shared_dir, tmp_path, run_cli):
    data = bytearray((shared_dir / "pcaps" / NMAP).read_bytes())
    struct.pack_into("<I", data, 20, 147)  # LINKTYPE_USER0
    bad = tmp_path / "user0.pcap"
    bad.write_bytes(bytes(data))
    alerts, stats = detect(bad)
    assert alerts == [] and stats["problems"]["unknown-linktype"] == 1
    proc = _cli(run_cli, bad)
    assert proc.returncode == 2 and "link type 147" in proc.stderr


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty file"),
        (b"hello, this is not a capture\n" * 10, "not a pcap, pcapng"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", None),
        (gzip.compress(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)[:-9], None),
    ],
)
def test_not_captures(tmp_path, run_cli, content, message):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    proc = _cli(run_cli, bad)
    assert proc.returncode == 2
    if message:
        assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 3


def test_missing_file_and_folder_without_logs(tmp_path, run_cli):
    proc = _cli(run_cli, tmp_path / "nope.pcap")
    assert proc.returncode == 2 and "cannot open" in proc.stderr
    with pytest.raises(BadTrafficInput):
        open_inputs(str(tmp_path))


def test_malformed_log_lines_are_skipped(tmp_path):
    log = tmp_path / "conn.log"
    log.write_text(
        "#separator \\x09\n#path\tconn\n#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto"
        "\tconn_state\thistory\n1.0\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\tS0\tS\nonly\ttwo\n"
        "2.0\tnot-an-ip\t1\t10.0.0.2\t80\ttcp\tS0\tS\n3.0\t10.0.0.1\t1\t10.0.0.2\tx\ttcp\tS0\tS\n"
    )
    eve = tmp_path / "eve.json"
    eve.write_text(
        '{"event_type": "flow", "src_ip": "10.0.0.1"}\n[1, 2]\n{broken\n'
        '{"event_type": "arp", "timestamp": "2026-01-01T00:00:00.000000+0000", "arp": {"opcode": "reply",'
        ' "src_mac": "00:11:22:33:44:55", "src_ip": "10.0.0.9", "dest_mac": "00:00:00:00:00:01",'
        ' "dest_ip": "10.0.0.1"}}\n'
    )
    _, stats = detect(log, eve)
    problems = stats["problems"]
    assert problems["malformed-zeek-line"] == 1 and problems["malformed-zeek-record"] == 2
    assert problems["malformed-eve-line"] == 2 and problems["malformed-eve-record"] == 1
    assert stats["events"] == 2  # the good conn record and the ARP


def test_fuzzed_captures_never_raise(shared_dir, tmp_path):
    """Random bit flips and cuts in real captures: decoding always ends, with problems counted."""
    rnd = random.Random(2026)
    names = (
        NMAP,
        "lab/arpspoof-vm1-vs-vm2.pcap",
        "dhcp_inform_flood_zeek.pcap",
        "ipv6_rogue_ra_kill_router6.pcap",
        "smb_psexec_mimikatz_suricata.pcap",
    )
    sources = [shared_dir / "pcaps" / n for n in names]
    for i in range(60):
        data = bytearray(rnd.choice(sources).read_bytes())
        for _ in range(rnd.randint(1, 40)):
            pos = rnd.randrange(24, len(data))
            data[pos] ^= 1 << rnd.randrange(8)
        if rnd.random() < 0.3:
            data = data[: rnd.randrange(24, len(data))]
        path = tmp_path / f"fuzz{i}.pcap"
        path.write_bytes(bytes(data))
        alerts, stats = detect(path)
        assert stats["packets"] >= 0 and isinstance(alerts, list)


def test_malformed_packets_are_counted_not_fatal(tmp_path):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import ARP, Ether

    from traffic_helpers import write_pcap

    pkts = [
        Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01", type=0x0806) / b"\x00\x01\x08",  # 3-byte ARP
        Ether(src="02:00:00:00:00:01") / IP(ihl=2, src="10.0.0.1", dst="10.0.0.2") / b"x",  # bad IHL
        Ether(src="02:00:00:00:00:01") / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01" * 8) / TCP(flags="S"),
        Ether(src="02:00:00:00:00:01") / IP(src="10.0.0.1", dst="10.0.0.2", frag=10) / b"fragment",
        Ether(src="02:00:00:00:00:01") / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=68, dport=67) / b"short",
        Ether(src="02:00:00:00:00:01", type=0x0806) / ARP(op=9),
    ]
    evs, stats = events(write_pcap(tmp_path / "m.pcap", pkts))
    problems = stats.to_dict()["problems"]
    assert problems["truncated-arp"] == 1 and problems["ip-fragment"] == 1 and problems["truncated-dhcp"] == 1
    assert problems["unimplemented-arp-opcode"] == 1 and problems["malformed-ipv4 (bad version or header length)"] == 1
    # the SYN with IP options (an attempt), and the bad-IHL packet as a bare frame (its MAC still counts)
    assert sorted(type(e).__name__ for e in evs) == ["Frame", "Probes"]
