"""The traffic readers: every container and link type gives the same events as the classic pcap fast path;
counts agree with tshark's on every shared capture; Zeek and Suricata logs feed the same detectors."""

from __future__ import annotations

import gzip
import shutil
import struct
import subprocess

import pytest

from vmsentry.collect.traffic import TrafficStream, open_inputs
from vmsentry.model.traffic import Arp, Packet, Probes

from traffic_helpers import FIXTURES, detect, events, found, load_inventory

LAB_PCAPS = [
    "lab/arpspoof-vm1-vs-vm2.pcap",
    "lab/nmap-sS-vm1-vs-hostns.pcap",
    "lab/realvm-dhcp-virbr0.pcap",
    "smb_psexec_mimikatz_suricata.pcap",
    "ipv6_rogue_ra_kill_router6.pcap",
    "dhcp_inform_flood_zeek.pcap",
    "smb2_mimikatz_copy_suricata.pcap",
    "vnc_session_zeek.pcap",
]


def _editcap(*args):
    assert shutil.which("editcap"), "editcap (wireshark-common, installed with tshark by scripts/setup.sh) is missing"
    subprocess.run(["editcap", *map(str, args)], check=True, capture_output=True)


def _fields(ev):
    if isinstance(ev, Probes):
        return (ev.src_mac, ev.dst_mac, ev.src_ip, ev.dst_ip, ev.proto, ev.ports, ev.payloads, ev.macs)
    return tuple(ev[1:])


def _same_events(a, b, **kw):
    ea, _ = events(a)
    eb, _ = events(b, **kw)
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        assert type(x) is type(y)
        assert _fields(x) == _fields(y), (x, y)
        assert x.ts == pytest.approx(y.ts, abs=1e-6)


@pytest.mark.parametrize("name", LAB_PCAPS)
def test_pcapng_nanosecond_and_gzip_give_the_same_events(shared_dir, tmp_path, name):
    src = shared_dir / "pcaps" / name
    ng, ns, gz = tmp_path / "x.pcapng", tmp_path / "x.ns.pcap", tmp_path / "x.pcapng.gz"
    _editcap("-F", "pcapng", src, ng)
    _editcap("-F", "nsecpcap", src, ns)
    gz.write_bytes(gzip.compress(ng.read_bytes()))
    for other in (ng, ns, gz):
        _same_events(src, other)
    _same_events(src, src, bulk=False)  # the buffer-at-a-time path against one packet at a time


def test_big_endian_pcap(shared_dir, tmp_path):
    src = shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap"
    data = src.read_bytes()
    out = bytearray(struct.pack(">IHHiIII", *struct.unpack("<IHHiIII", data[:24])))
    off = 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        out += struct.pack(">IIII", sec, usec, incl, orig) + data[off + 16 : off + 16 + incl]
        off += 16 + incl
    (tmp_path / "be.pcap").write_bytes(bytes(out))
    _same_events(src, tmp_path / "be.pcap")


def _relink(src, dst, linktype, convert):
    data = src.read_bytes()
    out = bytearray(data[:20] + struct.pack("<I", linktype))
    off = 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        frame = convert(data[off + 16 : off + 16 + incl])
        out += struct.pack("<IIII", sec, usec, len(frame), orig - incl + len(frame)) + frame
        off += 16 + incl
    dst.write_bytes(bytes(out))


@pytest.mark.parametrize(
    "linktype,convert",
    [
        (113, lambda f: struct.pack("!HHH8sH", 0, 1, 6, f[6:12] + b"\0\0", int.from_bytes(f[12:14], "big")) + f[14:]),
        (
            276,
            lambda f: (
                struct.pack("!HHIHBB8s", int.from_bytes(f[12:14], "big"), 0, 2, 1, 0, 6, f[6:12] + b"\0\0") + f[14:]
            ),
        ),
        (101, lambda f: f[14:]),
    ],
    ids=["linux-sll", "linux-sll2", "raw-ip"],
)
def test_other_link_types(shared_dir, tmp_path, linktype, convert):
    src = shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap"
    _relink(src, tmp_path / "l.pcap", linktype, convert)
    alerts, stats = detect(tmp_path / "l.pcap")
    assert [(a["type"], a["attacker"]["ip"], a["count"]) for a in alerts] == [("port_scan", "10.99.0.11", 1025)]
    assert stats["packets"] == 2056 and not stats["problems"].get("unknown-linktype")


def test_stdin(shared_dir, run_cli):
    data = (shared_dir / "pcaps" / "lab" / "arpspoof-vm1-vs-vm2.pcap").read_bytes()
    import subprocess as sp
    import sys

    proc = sp.run(
        [sys.executable, "-m", "vmsentry", "detect", "-", "--format", "json"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    import json

    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and doc["alerts"][0]["type"] == "arp_spoof"


@pytest.mark.parametrize(
    "name",
    sorted(
        [
            "arp_unicast_request_suricata.pcap",
            "nmap_host_discovery_zeek.pcap",
            "http_bro_org_benign_zeek.pcap",
            "smb3_multichannel_zeek.pcap",
            "rdp_suricata.pcap",
            "ssh_single_conn_zeek.pcap",
            "lab/benign-http-ping.pcap",
            "lab/realvm-dhcp-virbr0.pcap",
            "lab/arpspoof-vm1-vs-vm2.pcap",
        ]
    ),
)
def test_counts_agree_with_tshark(shared_dir, name):
    path = shared_dir / "pcaps" / name
    assert shutil.which("tshark"), "tshark is missing (scripts/setup.sh installs it)"

    def count(*display_filter):
        args = ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.number", *display_filter]
        return len(subprocess.run(args, capture_output=True, text=True, check=True).stdout.split())

    evs, stats = events(path)
    assert stats.packets == count()
    assert sum(isinstance(e, Arp) for e in evs) == count("-Y", "arp")
    every, _ = events(path, all_packets=True)  # the ML baseline's view: every IP packet
    ip_packets = "(ip or ipv6) and not dhcp and not icmpv6.type == 134 and not ip.frag_offset > 0"
    assert sum(isinstance(e, Packet) for e in every) == count("-Y", ip_packets)


def test_all_packets_mode_keeps_the_same_alerts(shared_dir):
    path = shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap"
    assert [a["type"] for a in detect(path, all_packets=True)[0]] == ["port_scan"]


# --- Zeek and Suricata logs -----------------------------------------------------------------------------
LOG_EXPECTED = {
    ("port_scan", "10.99.0.11"),
    ("mgmt_access", "10.99.0.11"),
    ("lateral_movement", "10.99.0.12"),
    ("dns_unsanctioned", "10.99.0.12"),
    ("rogue_dhcp", "10.99.0.66"),
}


@pytest.mark.parametrize(
    "files", [["conn.log", "dns.log", "dhcp.log"], ["conn.json", "dns.json", "dhcp.json"]], ids=["tsv", "json"]
)
def test_zeek_logs(files):
    inv = load_inventory([FIXTURES / "lab-inventory.json"])
    alerts, stats = detect(*(FIXTURES / "zeek" / f for f in files), inventory=inv)
    assert {(t, who) for t, who in found(alerts) if "." in who} == LOG_EXPECTED
    assert stats["packets"] == 30 + 3 + 2 + 2 and not stats["problems"]
    scan = next(a for a in alerts if a["type"] == "port_scan")
    assert scan["evidence"]["distinct_ports"] >= 30


def test_zeek_folder_and_real_baselines(shared_dir, tmp_path):
    """A folder of logs; Zeek's own rfb.log baseline (a log type we do not use) and masked time stamps."""
    (tmp_path / "conn.log").write_bytes((FIXTURES / "zeek" / "conn.log").read_bytes())
    (tmp_path / "dhcp.log").write_text(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tdhcp\n"
        "#open XXXX-XX-XX-XX-XX-XX\n#fields\tts\tuids\tclient_addr\tserver_addr\tmac\thost_name\tclient_fqdn\tdomain"
        "\trequested_addr\tassigned_addr\tlease_time\tclient_message\tserver_message\tmsg_types\tduration\n"
        "XXXXXXXXXX.XXXXXX\tCHhAvVGS1DHFjwGM9\t128.2.6.122\t-\t90:b1:1c:99:49:29\t-\t-\t-\t-\t-\t-\t-\t-"
        "\tINFORM,ACK\t0.004327\n"
    )
    readers = open_inputs(str(tmp_path))
    assert [r.name.split("/")[-1] for r in readers] == ["conn.log", "dhcp.log"]
    rfb = shared_dir / "pcaps" / "expected" / "vnc_scanner_zeek" / "rfb.log"
    alerts, stats = detect(tmp_path, rfb)
    assert stats["problems"]["zeek-log-not-used (rfb)"] == 1
    assert stats["problems"]["zeek-bad-timestamp"] == 1
    assert [a["type"] for a in alerts] == ["port_scan"]


def test_eve_json():
    inv = load_inventory([FIXTURES / "lab-inventory.json"])
    alerts, stats = detect(FIXTURES / "eve" / "eve.json", inventory=inv)
    assert {(t, w) for t, w in found(alerts) if "." in w} == LOG_EXPECTED | {("arp_spoof", "10.99.0.11")}
    assert stats["problems"] == {"eve-type-not-used (stats)": 1}
    evs, _ = events(FIXTURES / "eve" / "eve.json")
    assert sum(isinstance(e, Arp) for e in evs) == 8  # 4 forged + decode-arp-2's 4 records


def test_stream_reuses_one_list_and_counts_inputs(shared_dir):
    stream = TrafficStream()
    paths = [shared_dir / "pcaps" / "lab" / n for n in ("arpspoof-vm1-vs-vm2.pcap", "benign-http-ping.pcap")]
    batches = [len(b) for b in stream.batches(r for p in paths for r in open_inputs(str(p)))]
    assert sum(batches) == stream.stats.events
    assert [i["packets"] for i in stream.stats.inputs] == [24, 30]
