"""The capture fast path (collect/traffic/pcap_walk.py and pcap_bulk.py) against the one-at-a-time
path: the parallel record walk finds exactly the records the sequential loop finds, on every shared
capture and on damaged copies of them; the numpy decoder, for classic pcap and for pcapng, raises the
same alerts as the one-at-a-time decoder on big captures that span many buffers and batches."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vmsentry.collect.traffic.pcap import MAGICS
from vmsentry.collect.traffic.pcap_walk import MIN_SEGMENT, RecordWalker
from vmsentry.model.traffic import Arp, Probes

from traffic_helpers import detect, events

REPO = Path(__file__).resolve().parents[1]


def _classic_pcaps(shared_dir) -> list[Path]:
    return sorted(p for p in (shared_dir / "pcaps").rglob("*.pcap") if p.read_bytes()[:4] in MAGICS)


def _long(data: bytes) -> bytes:
    """The capture's records repeated until the buffer is long enough for the parallel walk."""
    body = data[24:]
    copies = max(1, (MIN_SEGMENT * 8) // max(1, len(body)) + 1)
    return data[:24] + body * copies


def _damaged(data: bytes, kind: int, rng: random.Random) -> bytes:
    buf = bytearray(data)
    if kind == 1:  # random bytes anywhere after the file header
        for _ in range(20):
            buf[rng.randrange(24, len(buf))] = rng.randrange(256)
    elif kind == 2:  # an impossible record length somewhere
        p = rng.randrange(24, len(buf) - 8)
        buf[p : p + 4] = b"\xff\xff\x00\x00"
    elif kind == 3:  # cut short
        del buf[rng.randrange(1000, len(buf)) :]
    return bytes(buf)


def test_parallel_record_walk_matches_the_sequential_one(shared_dir):
    pcaps = _classic_pcaps(shared_dir)
    assert len(pcaps) >= 15
    checked = 0
    for path in pcaps:
        data = _long(path.read_bytes())[: 4 << 20]
        order, scale = MAGICS[data[:4]]
        walker = RecordWalker(order, scale, 262144)
        for seed in range(8):
            buf = _damaged(data, seed % 4, random.Random(seed))
            expected, stop = walker._sequential(buf, 24, len(buf), len(buf) - 64)
            found, found_stop = walker.starts(buf, 24, len(buf))
            assert found_stop == stop and np.array_equal(found, expected), (path.name, seed)
            checked += 1
    assert checked == 8 * len(pcaps)


def test_a_payload_that_looks_like_a_header_is_not_trusted(shared_dir):
    """A payload carrying the capture's own time stamp bytes followed by sane lengths: the parallel walk
    may pick it as a segment start, but the segment before never lands on it, so nothing changes."""
    data = (shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap").read_bytes()
    order, scale = MAGICS[data[:4]]
    sec = struct.unpack_from(order + "I", data, 24)[0]
    fake = struct.pack(order + "IIII", sec, 1, 60, 60)
    frame = b"\xff" * 12 + b"\x88\xb5" + fake * 4 + b"\x00" * 6  # a local-experimental EtherType frame
    record = struct.pack(order + "IIII", sec, 2, len(frame), len(frame)) + frame
    body = data[24:]
    buf = data[:24] + (record + body) * (MIN_SEGMENT * 8 // len(body) + 1)
    walker = RecordWalker(order, scale, 262144)
    expected, stop = walker._sequential(buf, 24, len(buf), len(buf) - 64)
    found, found_stop = walker.starts(buf, 24, len(buf))
    assert found_stop == stop and np.array_equal(found, expected)


def _pcapng(src: Path, dst: Path) -> Path:
    assert shutil.which("editcap"), "editcap (wireshark-common, installed by scripts/setup.sh) is missing"
    subprocess.run(["editcap", "-F", "pcapng", str(src), str(dst)], check=True, capture_output=True)
    return dst


def _alerts(alerts) -> dict:
    return {(a["type"], a["severity"], a["attacker"].get("ip"), a["attacker"].get("mac")): a["count"] for a in alerts}


@pytest.mark.parametrize("mode", ["mixed", "syn"])
def test_bulk_and_one_at_a_time_agree_on_a_capture_of_many_batches(tmp_path, mode):
    """200,000 packets (about 20 MB: five read buffers, two batches) of the benchmark's generator, with its
    six attacks in the mixed mode: the pcap and the same packets as pcapng, each decoded by buffers
    (numpy) and one packet at a time, raise the same alerts."""
    pcap, inv = tmp_path / "big.pcap", tmp_path / "inv.json"
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gen_traffic.py"),
            str(pcap),
            "--packets",
            "200000",
            "--mode",
            mode,
            "--inventory",
            str(inv),
        ],
        check=True,
        capture_output=True,
    )
    from traffic_helpers import load_inventory

    inventory = load_inventory([inv])
    pcapng = _pcapng(pcap, tmp_path / "big.pcapng")
    single, single_stats = detect(pcap, inventory=inventory, bulk=False)
    expected = _alerts(single)
    if mode == "mixed":
        assert {"arp_spoof", "port_scan", "dns_unsanctioned", "mgmt_access", "lateral_movement", "mac_flood"} <= {
            a["type"] for a in single
        }
    for path in (pcap, pcapng):
        bulk, bulk_stats = detect(path, inventory=inventory)
        assert bulk_stats["packets"] == single_stats["packets"] == 200000 + (mode == "mixed")
        # the same incidents; counts within 5 %: the pcapng reader hands batches on at other places, and
        # a scan's count when it crosses its threshold depends on where the batch ended
        found = _alerts(bulk)
        assert found.keys() == expected.keys(), path.name
        for key, count in found.items():
            assert abs(count - expected[key]) <= max(2, 0.05 * count), (path.name, key)
    if mode == "mixed":
        assert {"arp_spoof", "port_scan", "dns_unsanctioned", "mgmt_access", "lateral_movement", "mac_flood"} <= {
            a["type"] for a in bulk
        }


def test_the_lab_generator_mix_is_batched(shared_dir, tmp_path):
    """lab-scripts/gen_pcap.py (70 % bare SYNs on random ports, 25 % UDP/53, 5 % ARP): every attempt is in
    a Probes record, each ARP reply is an event, and the per-source port scans are found."""
    pcap = tmp_path / "lab.pcap"
    subprocess.run(
        [sys.executable, str(shared_dir / "reference" / "lab-scripts" / "gen_pcap.py"), str(pcap), "50000"],
        check=True,
        capture_output=True,
    )
    out, stats = events(pcap)
    probes = [e for e in out if isinstance(e, Probes)]
    arps = [e for e in out if isinstance(e, Arp)]
    attempts = sum(len(p.ports) for p in probes)
    assert stats.packets == 50000
    assert 49_900 <= attempts + len(arps) <= 50_000  # (a UDP packet that repeats a flow is no attempt)
    assert len(probes) < attempts / 20
    assert all(p.ts <= p.last and p.ts // 5 == p.last // 5 for p in probes)
    alerts, _ = detect(pcap)
    scanners = {a["attacker"]["ip"] for a in alerts if a["type"] == "port_scan"}
    assert len(scanners) == 20
