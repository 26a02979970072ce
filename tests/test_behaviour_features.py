"""Behaviour features (issue 14): the frame-columns tap, the feature extractor, labels.

Real captures (../shared/pcaps, gen_traffic.py output) and small captures crafted with scapy; the
columns of the bulk path are held to the one-at-a-time path's, and both to the decoder's own events."""

from __future__ import annotations

import collections
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, IPv6, IPv6ExtHdrHopByHop, Raw, wrpcap, wrpcapng
from scapy.layers.l2 import CookedLinux

from vmsentry.analyse.behaviour.catalogue import FEATURES, NAMES, natural
from vmsentry.analyse.behaviour.entities import UNATTRIBUTED
from vmsentry.analyse.behaviour.features import FeatureExtractor, concat
from vmsentry.analyse.behaviour.labels import TruthError, label, load_truth, truth_from
from vmsentry.collect.traffic import TrafficStream, open_inputs
from vmsentry.commands.behaviour_samples import samples_from_captures
from vmsentry.model.behaviour import Entity, GroundTruth, Incident
from vmsentry.model.traffic import FRAME_DTYPE, FrameColumns, Packet

REPO = Path(__file__).resolve().parents[1]
T0 = 1_790_000_000.0
A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"
OTHER = "52:54:00:00:00:0d"  # a MAC no inventory names
VMS = [
    Entity("web-1", A, "10.0.0.1", "web"),
    Entity("db-1", B, "10.0.0.2", "database"),
    Entity("idle", C, "10.0.0.3", "web"),
]


def columns(path, **kw) -> tuple[np.ndarray, object]:
    stream = TrafficStream(frame_columns=True, **kw)
    parts = [e.frames for batch in stream.batches(open_inputs(str(path))) for e in batch if type(e) is FrameColumns]
    return (np.concatenate(parts) if parts else np.zeros(0, FRAME_DTYPE)), stream.stats


def value(samples, entity: str, name: str) -> np.ndarray:
    """The natural values of feature ``name`` in the samples of ``entity``."""
    index = [e.name for e in samples.entities].index(entity)
    rows = samples.matrix[samples.entity == index]
    return natural(samples.names, rows)[:, samples.names.index(name)]


@pytest.fixture(scope="module")
def gen_capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "mixed.pcap"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(path), "--packets", "60000"],
        check=True,
        capture_output=True,
    )
    return path


# --- the tap -------------------------------------------------------------------------------------------
def test_columns_are_not_made_unless_asked(gen_capture):
    for batch in TrafficStream().batches(open_inputs(str(gen_capture))):
        assert not any(type(e) is FrameColumns for e in batch)


def test_bulk_columns_equal_one_at_a_time(shared_dir, gen_capture, tmp_path):
    paths = sorted(shared_dir.glob("pcaps/*.pcap")) + sorted(shared_dir.glob("pcaps/lab/*.pcap")) + [gen_capture]
    ng = tmp_path / "smb3.pcapng"  # pcapng: the same frames through the pcapng block walk
    subprocess.run(
        ["editcap", "-F", "pcapng", str(shared_dir / "pcaps/smb3_multichannel_zeek.pcap"), str(ng)], check=True
    )
    for path in [*paths, ng]:
        bulk, stats = columns(path)
        single, single_stats = columns(path, bulk=False)
        assert len(bulk) == stats.packets == single_stats.packets, path.name
        assert np.array_equal(bulk, single), path.name
        assert (np.diff(bulk["ts"]) >= -1e-3).all() or path.name.endswith("zeek.pcap")


def test_columns_agree_with_decoded_packets(shared_dir):
    """Every IPv4/IPv6 TCP/UDP packet the decoder passes up (all_packets) is a row with its addresses,
    ports, flags and wire length."""
    for name in ("http_bro_org_benign_zeek.pcap", "smb3_multichannel_zeek.pcap", "lab/nmap-sS-vm1-vs-hostns.pcap"):
        path = shared_dir / "pcaps" / name
        stream = TrafficStream(frame_columns=True, all_packets=True)
        packets, rows = [], []
        for batch in stream.batches(open_inputs(str(path))):
            for e in batch:
                if type(e) is FrameColumns:
                    rows.append(e.frames)
                elif type(e) is Packet and e.proto in (6, 17) and len(e.src_ip) == 4:
                    packets.append(
                        (
                            round(e.ts, 6),
                            int.from_bytes(e.src_ip, "big"),
                            int.from_bytes(e.dst_ip, "big"),
                            e.sport,
                            e.dport,
                            e.flags,
                            e.length,
                        )
                    )
        r = np.concatenate(rows)
        r = r[(r["ethertype"] == 0x0800) & np.isin(r["proto"], (6, 17))]
        from_rows = collections.Counter(
            zip(
                np.round(r["ts"], 6).tolist(),
                r["src_ip"].tolist(),
                r["dst_ip"].tolist(),
                r["sport"].tolist(),
                r["dport"].tolist(),
                np.where(r["proto"] == 6, r["flags"], 0).tolist(),
                r["length"].tolist(),
            )
        )
        assert packets and from_rows == collections.Counter(packets), name


def crafted_frames():
    t = T0
    frames = [
        Ether(src=A, dst=B) / Dot1Q(vlan=5) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1000, dport=80, flags="S"),
        Ether(src=A, dst=B) / IPv6(src="fd00::1:2", dst="fd00::3:4") / IPv6ExtHdrHopByHop() / UDP(sport=5, dport=53),
        Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP(sport=7, dport=9),
        Ether(src=B, dst=A) / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=3, code=3),
        Ether(src=A, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, psrc="10.0.0.254", pdst="10.0.0.2", hwsrc=A),
        Ether(src=A, dst=B) / IP(src="10.0.0.1", dst="10.0.0.2", frag=10, proto=6) / Raw(b"x" * 20),
    ]
    for i, f in enumerate(frames):
        f.time = t + i * 0.01
    return frames


def test_crafted_columns(tmp_path):
    path = tmp_path / "crafted.pcap"
    wrpcap(str(path), crafted_frames())
    rows, _ = columns(path)
    single, _ = columns(path, bulk=False)
    assert np.array_equal(rows, single)
    vlan, v6, opts, icmp, arp, frag = rows
    assert (vlan["ethertype"], vlan["src_ip"], vlan["dport"], vlan["flags"]) == (0x0800, 0x0A000001, 80, 2)
    assert vlan["src_mac"] == int(A.replace(":", ""), 16) and vlan["dst_mac"] == int(B.replace(":", ""), 16)
    assert (v6["ethertype"], v6["src_ip"], v6["dst_ip"], v6["proto"], v6["dport"]) == (
        0x86DD,
        0x00010002,
        0x00030004,
        17,
        53,
    )
    assert (opts["proto"], opts["sport"], opts["dport"]) == (17, 7, 9)
    assert (icmp["proto"], icmp["sport"], icmp["dport"]) == (1, 3, 3)
    assert (arp["arp_op"], arp["src_ip"], arp["dst_ip"]) == (2, 0x0A0000FE, 0x0A000002)
    assert (frag["proto"], frag["sport"], frag["dport"]) == (6, 0, 0)  # a later fragment: no ports
    assert rows["length"].tolist() == [len(bytes(f)) for f in crafted_frames()]


def test_crafted_columns_pcapng_and_cooked(tmp_path):
    ng = tmp_path / "crafted.pcapng"
    wrpcapng(str(ng), crafted_frames())
    classic = tmp_path / "crafted.pcap"
    wrpcap(str(classic), crafted_frames())
    assert np.array_equal(columns(ng)[0], columns(classic)[0])
    cooked = tmp_path / "cooked.pcap"  # Linux cooked capture: the sender's address as source MAC
    pkt = CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6, src=bytes.fromhex("525400000a0a") + b"\0\0", proto=0x0800)
    pkt = pkt / IP(src="10.0.0.9", dst="10.0.0.8") / TCP(sport=4, dport=22, flags="S")
    pkt.time = T0
    wrpcap(str(cooked), [pkt])
    (row,) = columns(cooked)[0]
    assert (row["src_mac"], row["src_ip"], row["dport"], row["ethertype"]) == (0x525400000A0A, 0x0A000009, 22, 0x0800)


# --- features ------------------------------------------------------------------------------------------
def write(tmp_path, frames, name="c.pcap") -> Path:
    path = tmp_path / name
    wrpcap(str(path), frames)
    return path


def tcp(src, dst, sip, dip, t, size=100, flags="A", dport=80):
    f = Ether(src=src, dst=dst) / IP(src=sip, dst=dip) / TCP(sport=40000, dport=dport, flags=flags)
    f = f / Raw(b"\0" * (size - len(f)))
    f.time = t
    return f


def test_hand_checked_window(tmp_path):
    """web-1 sends 10 frames of 100 bytes to 2 peers in one window: 1000 bytes/s, 10 frames/s, 2 peers."""
    frames = [
        tcp(A, B if i % 2 else OTHER, "10.0.0.1", "10.0.0.2" if i % 2 else "10.0.0.3", T0 + 0.05 * i) for i in range(10)
    ]
    frames += [tcp(A, B, "10.0.0.1", "10.0.0.2", T0 + 0.8, size=100, flags="S", dport=443)]
    samples = samples_from_captures([str(write(tmp_path, frames))], inventory=GroundTruth(VMS, [], "train"))
    assert value(samples, "web-1", "bytes_out_per_s").tolist() == pytest.approx([1100.0])
    assert value(samples, "web-1", "frames_out_per_s").tolist() == pytest.approx([11.0])
    assert value(samples, "web-1", "peers_out").tolist() == pytest.approx([2.0])
    assert value(samples, "web-1", "new_peers_out_per_s").tolist() == pytest.approx([2.0])
    assert value(samples, "web-1", "ports_out").tolist() == pytest.approx([2.0])
    assert value(samples, "web-1", "syn_out_per_s").tolist() == pytest.approx([1.0])
    assert value(samples, "web-1", "unanswered_syn_ratio").tolist() == pytest.approx([1.0])
    assert value(samples, "web-1", "top_peer_share").tolist() == pytest.approx([600 / 1100], rel=1e-6)
    assert value(samples, "db-1", "bytes_in_per_s").tolist() == pytest.approx([600.0])
    assert value(samples, "web-1", "bytes_out_per_s@600s").tolist() == pytest.approx([1100.0], rel=1e-5)
    assert "idle" not in {samples.entities[i].name for i in samples.entity}  # no traffic: no sample
    web = [e.name for e in samples.entities].index("web-1")
    row = int(np.flatnonzero(samples.entity == web)[0])
    assert samples.peers[row] == [("10.0.0.2", 600), ("10.0.0.3", 500)]
    assert samples.start[row] == np.floor(T0)


def test_mac_flood_is_one_unattributed_entity(tmp_path):
    rng = random.Random(7)
    macs = [":".join(f"{rng.randrange(256) & 0xFE:02x}" for _ in range(6)) for _ in range(500)]
    frames = [tcp(m, B, "10.9.9.9", "10.0.0.2", T0 + i * 0.001, 60, "S") for i, m in enumerate(macs)]
    samples = samples_from_captures([str(write(tmp_path, frames))])
    assert [e.name for e in samples.entities][:1] == [UNATTRIBUTED]
    assert {samples.entities[i].name for i in samples.entity} == {UNATTRIBUTED}
    assert value(samples, UNATTRIBUTED, "new_macs_per_s").tolist() == pytest.approx([500.0])


def test_learned_entities_without_inventory(tmp_path):
    frames = [tcp(A, B, "10.0.0.1", "10.0.0.2", T0 + 0.1 * i) for i in range(30)]
    samples = samples_from_captures([str(write(tmp_path, frames))])
    names = {samples.entities[i].name for i in samples.entity}
    assert names == {A}  # learned (its first frames in the same buffer already count for it)
    assert sum(value(samples, A, "frames_out_per_s")) == pytest.approx(30, rel=1e-5)


def test_entity_table_is_bounded():
    extractor = FeatureExtractor(max_entities=8, admit_after=1)
    rows = np.zeros(100, FRAME_DTYPE)
    rows["ts"] = T0 + np.arange(100) * 0.001
    rows["src_mac"] = np.arange(100) * 2 + 0x525400000000
    extractor.feed(rows)
    samples = extractor.finish()
    assert extractor.table.learned == 8 and extractor.table.refused == 92
    assert len(samples) == 9  # 8 learned MACs and (unattributed)


def test_truncated_capture(tmp_path, gen_capture):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(gen_capture.read_bytes()[: 2_000_000 - 7])
    problems: list[str] = []
    samples = samples_from_captures([str(cut)], on_problem=problems.append)
    whole = samples_from_captures([str(gen_capture)])
    assert problems == [f"truncated-record: {cut}: last {problems[0].rsplit('last ', 1)[1]}"]
    assert len(samples) > 30 and samples.start.max() < whole.start.max()
    early = samples.start < samples.start.max() - 1  # the windows before the cut: the same as read whole
    assert np.array_equal(samples.matrix[early], whole.matrix[: int(early.sum())])


def test_logs_give_no_frame_data(tmp_path):
    log = REPO / "tests/fixtures/traffic/zeek"
    conn = sorted(p for p in log.rglob("conn*.log"))[0]
    problems: list[str] = []
    samples = samples_from_captures([str(conn)], on_problem=problems.append)
    assert len(samples) == 0 and len(samples.names) == len(NAMES)
    assert len(problems) == 1 and problems[0].startswith(f"{conn}: no frame data")


def random_frames(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.zeros(n, FRAME_DTYPE)
    rows["ts"] = T0 + np.sort(rng.uniform(0, 8, n))
    rows["src_mac"] = 0x525400000000 + rng.integers(0, 6, n)
    rows["dst_mac"] = 0x525400000000 + rng.integers(0, 6, n)
    rows["ethertype"] = rng.choice([0x0800, 0x0806, 0x86DD], n, p=[0.8, 0.1, 0.1])
    rows["src_ip"] = 0x0A000000 + rng.integers(0, 9, n)
    rows["dst_ip"] = 0x0A000000 + rng.integers(0, 9, n)
    rows["proto"] = rng.choice([6, 17, 1], n)
    rows["flags"] = rng.choice([0x02, 0x12, 0x10, 0x04], n)
    rows["dport"] = rng.choice([53, 80, 443, 22], n)
    rows["length"] = rng.integers(60, 1500, n)
    rows["arp_op"] = np.where(rows["ethertype"] == 0x0806, rng.integers(1, 3, n), 0)
    return rows


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1000), st.lists(st.integers(1, 399), max_size=6))
def test_buffer_splits_do_not_change_samples(seed, cuts):
    """The same frames fed in different buffers give the same samples (entities named: learning a MAC
    happens when a window is worked on, so where the first windows end can change when it is learned)."""
    rows = random_frames(seed, 400)
    named = [Entity(f"vm{i}", f"52:54:00:00:00:{i:02x}", None, None) for i in range(6)]
    whole = FeatureExtractor(named, window=1.0)
    one = concat([whole.feed(rows), whole.finish()])
    split = FeatureExtractor(named, window=1.0)
    parts = [split.feed(p) for p in np.split(rows, sorted(set(cuts)))] + [split.finish()]
    other = concat(parts)
    assert np.array_equal(one.entity, other.entity) and np.array_equal(one.start, other.start)
    assert np.allclose(one.matrix, other.matrix, atol=1e-5)
    assert one.peers == other.peers


def test_feature_table():
    assert 30 <= len(NAMES) <= 60 and len(set(NAMES)) == len(NAMES)
    assert FEATURES["bytes_out_per_s"].phrase == "bytes sent per second"
    assert all(f.phrase and f.unit for f in FEATURES.values())


def test_late_frames_are_counted():
    x = FeatureExtractor(window=1.0, lateness=0.5)
    rows = random_frames(1, 100)
    x.feed(rows)
    late = rows[:5].copy()
    x.feed(late)
    assert x.late == 5


# --- labels --------------------------------------------------------------------------------------------
def test_label(tmp_path):
    truth = GroundTruth(VMS, [Incident("scan", "web-1", ("db-1",), T0 + 2.5, T0 + 4.0, "nmap -sS")], "evaluation")
    rows = random_frames(3, 2000)
    web_to_db = np.arange(2000) % 2 == 0
    rows["src_mac"] = np.where(web_to_db, 0x52540000000A, 0x52540000000B)
    rows["dst_mac"] = np.where(web_to_db, 0x52540000000B, 0x52540000000A)
    rows["ethertype"] = 0x0800
    rows["src_ip"] = np.where(web_to_db, 0x0A000001, 0x0A000002)  # web-1 10.0.0.1 <-> db-1 10.0.0.2
    rows["dst_ip"] = np.where(web_to_db, 0x0A000002, 0x0A000001)
    # in the incident's second window web-1 talks to an outsider only: no attack frame in it
    quiet = (rows["ts"] >= T0 + 3) & (rows["ts"] < T0 + 4)
    rows["dst_ip"][quiet & web_to_db] = 0x0A000009
    rows["dst_mac"][quiet & web_to_db] = 0x52540000000C
    rows["src_mac"][quiet & ~web_to_db] = 0x52540000000C
    rows["src_ip"][quiet & ~web_to_db] = 0x0A000003
    rows["dst_ip"][quiet & ~web_to_db] = 0x0A000009
    x = FeatureExtractor(truth)
    samples = concat([x.feed(rows), x.finish()])
    y = label(samples, truth)
    names = [samples.entities[i].name for i in samples.entity]
    for name, start, got in zip(names, samples.start, y.tolist()):
        during = start + 1 > T0 + 2.5 and start <= T0 + 4.0
        if name == "web-1" and during:
            assert got == (-1 if start == T0 + 3 else 1)  # the attacker's window without the attack: left out
        elif name in ("web-1", "db-1") and start > T0 + 4.0:
            assert got == -1  # the minute after the incident (HANGOVER): its averages still carry it
        else:
            assert got == (-1 if name == "db-1" and during else 0)
    assert sorted(collections.Counter(y.tolist())) == [-1, 0, 1]


def test_load_truth(tmp_path):
    good = {
        "split": "calibration",
        "vms": [{"name": "web-1", "mac": A, "ip": "10.0.0.1", "role": "web"}],
        "incidents": [{"kind": "exfil", "attacker": "web-1", "victims": [], "start": 1.0, "end": 2.0, "tool": "curl"}],
    }
    path = tmp_path / "truth.json"
    path.write_text(json.dumps(good))
    truth = load_truth(str(path))
    assert truth.split == "calibration" and truth.vms[0] == Entity("web-1", A, "10.0.0.1", "web")
    assert truth.incidents[0] == Incident("exfil", "web-1", (), 1.0, 2.0, "curl")
    bad = dict(good, incidents=[dict(good["incidents"][0], start="soon")])
    with pytest.raises(TruthError, match=r"^x\.json: incidents\[0\]\.start: expected a time"):
        truth_from(bad, "x.json")
    path.write_text('{"split": "train",\n "vms": [}')
    with pytest.raises(TruthError) as err:
        load_truth(str(path))
    assert str(err.value).startswith(f"{path}: line 2 column") and "\n" not in str(err.value)
    with pytest.raises(TruthError, match="split: expected one of"):
        truth_from({"split": "test"}, "y.json")


def test_live_socket_frames_give_the_same_columns(tmp_path):
    """The live socket fallback hands whole frames to ``ethernet_frame``: the same rows as the capture."""
    frames = crafted_frames()
    stream = TrafficStream(frame_columns=True)
    for f in frames:
        stream.decoder.ethernet_frame(float(f.time), bytes(f))
    stream.decoder.rows.flush()
    live = np.concatenate([e.frames for e in stream.out if type(e) is FrameColumns])
    assert np.array_equal(live, columns(write(tmp_path, frames))[0])


def test_label_mac_flood_is_the_unattributed_entity():
    truth = GroundTruth(VMS, [Incident("mac_flood", "web-1", (), T0 + 1.0, T0 + 6.0, "macof")], "evaluation")
    rows = random_frames(4, 3000)
    flood = (rows["ts"] >= T0 + 2) & (rows["ts"] < T0 + 5)
    rows["src_mac"][flood] = 0x020000000000 + np.arange(int(flood.sum()))  # a new random MAC per frame
    x = FeatureExtractor(truth)
    samples = concat([x.feed(rows), x.finish()])
    y = label(samples, truth)
    names = np.array([samples.entities[i].name for i in samples.entity])
    during = (samples.start + 1 > T0 + 1.0) & (samples.start <= T0 + 6.0)
    assert (y[(names == "(unattributed)") & during] == 1).any()
    assert (y[names == "web-1"][during[names == "web-1"]] == -1).all()
