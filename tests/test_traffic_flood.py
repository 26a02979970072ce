"""Memory stays bounded under a MAC flood and a flow flood (issue 12): captures written by the benchmark's
own generator (benchmarks/gen_traffic.py --mode macflood|flowflood, modest sizes), read with the limits
tuned small: every table stays within its limit, what was dropped is counted in stats.evicted, and the
alerts are still raised with the right counts. Not timed (benchmarks/watch_memory.py measures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.analyse.detectors import Engine, Truth
from vmsentry.analyse.detectors.base import Bounded
from vmsentry.analyse.detectors.tunables import with_overrides
from vmsentry.collect.traffic import TrafficStream, open_inputs
from vmsentry.collect.traffic.pcap import BATCH_EVENTS
from vmsentry.model.traffic import Packet

from traffic_helpers import T0

REPO = Path(__file__).resolve().parents[1]
LIMIT = 2000


def generate(path: Path, mode: str, packets: int) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "gen_traffic.py"),
            str(path),
            "--packets",
            str(packets),
            "--mode",
            mode,
        ],
        check=True,
        capture_output=True,
    )
    return path


@pytest.fixture(scope="module")
def mac_flood(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("flood") / "macflood.pcap", "macflood", 60_000)


@pytest.fixture(scope="module")
def flow_flood(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("flood") / "flowflood.pcap", "flowflood", 120_000)


def tables_of(engine: Engine, stream: TrafficStream) -> dict[str, tuple[int, int]]:
    """Every bounded table of the detectors and the flow table: name -> (size, limit)."""
    out = {}
    for det in engine.detectors:
        for attr, value in vars(det).items():
            if isinstance(value, Bounded):
                out[f"{det.name}.{attr}"] = (len(value), value.limit)
    flows = stream.flows
    for attr in ("tcp", "tcp_old", "udp", "udp_old", "pending", "deep", "icmp"):
        out[f"flows.{attr}"] = (len(getattr(flows, attr)), flows.limit)
    return out


def run_bounded(path: Path) -> tuple[list, dict, list[int]]:
    """Read ``path`` with every limit at LIMIT, checking the tables after every batch."""
    tunables = with_overrides([f"{det}.max_state={LIMIT}" for det in ("mac_flood", "scan", "arp_spoof", "access")])
    engine = Engine(Truth(), tunables)
    stream = TrafficStream(flow_limit=LIMIT)
    sizes = []
    for batch in stream.batches(open_inputs(str(path))):
        sizes.append(len(batch))
        engine.feed(batch)
        for name, (size, limit) in tables_of(engine, stream).items():
            assert size <= limit, f"{name}: {size} entries, limit {limit}"
    alerts = engine.finish()
    stream.stats.finish()
    stats = stream.stats.to_dict()
    stats["evicted"].update(engine.evicted)
    return alerts, stats, sizes


def test_mac_flood_capture_stays_within_its_tables(mac_flood):
    alerts, stats, sizes = run_bounded(mac_flood)
    (alert,) = alerts  # raised once, with the flood's counts
    assert alert.type == "mac_flood" and alert.count == 60_000 and alert.evidence["new_macs"] == 60_000
    assert stats["packets"] == 60_000
    # every frame is a new MAC and a new forged source: all but the last LIMIT are dropped, and counted
    assert stats["evicted"]["mac_flood.macs"] >= 60_000 - LIMIT
    assert stats["evicted"]["scan.first_probes"] >= 60_000 - LIMIT
    assert "scan.scanners" not in stats["evicted"]  # a forged source's one probe makes no Scanner
    # after the first buffer tells it is a flood, batches are cut short (their events are held at once)
    assert max(sizes[1:]) <= 2 * BATCH_EVENTS


def test_flow_flood_capture_evicts_flows_and_counts_them(flow_flood):
    alerts, stats, sizes = run_bounded(flow_flood)
    assert stats["packets"] == 120_000
    assert stats["evicted"]["flows"] > 0 and stats["evicted"]["pending-flows"] > 0
    assert max(sizes[1:]) <= 2 * BATCH_EVENTS
    assert all(a.type != "mac_flood" for a in alerts)  # one MAC: no MAC flood


def test_flood_alerts_do_not_depend_on_the_limits(mac_flood, flow_flood, run_cli):
    """The CLI with the default limits and with them tuned small reports the same alerts."""
    for path in (mac_flood, flow_flood):
        small = [
            "--tune",
            f"flows.limit={LIMIT}",
            "--tune",
            f"scan.max_state={LIMIT}",
            "--tune",
            "mac_flood.max_state=500",
        ]
        docs = []
        for extra in ([], small):
            proc = run_cli("detect", path, "--format", "json", *extra)
            assert proc.returncode in (0, 1), proc.stderr
            docs.append(json.loads(proc.stdout))
        assert docs[0]["alerts"] == docs[1]["alerts"]
        assert sum(docs[1]["stats"]["evicted"].values()) > sum(docs[0]["stats"]["evicted"].values())


def test_flow_limit_tunable_is_checked(mac_flood, run_cli):
    proc = run_cli("detect", mac_flood, "--tune", "flows.limit=0", "--format", "json")
    assert proc.returncode == 3 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert "flows.limit" in proc.stderr


def syn(ts, src, dst, port, mac=b"\x52\x54\x00\x99\x00\x11"):
    return Packet(ts, mac, None, src, dst, 6, 40000, port, 0x02, 60, b"")


def test_scan_behind_a_flood_of_forged_sources_is_still_found():
    engine = Engine(Truth(), with_overrides(["scan.max_state=1000"]))
    forged = [syn(T0 + i * 1e-5, i.to_bytes(4, "big"), b"\x0a\x63\x00\x0c", 80) for i in range(1, 50_001)]
    scanner, victim = bytes([10, 99, 0, 11]), bytes([10, 99, 0, 12])
    engine.feed(forged[:25_000] + [syn(T0 + 1 + p * 1e-3, scanner, victim, p) for p in range(1, 101)] + forged[25_000:])
    (alert,) = engine.finish()
    assert (
        alert.type == "port_scan" and alert.attacker["ip"] == "10.99.0.11" and alert.evidence["distinct_ports"] == 100
    )
    scan = engine.detectors[4]
    assert len(scan.scanners) == 1 and len(scan.first) <= 1000 and engine.evicted["scan.first_probes"] >= 49_000


def test_scan_threshold_of_one_probe_skips_the_first_probe_table():
    engine = Engine(Truth(), with_overrides(["scan.ports=1", "scan.slow_ports=1"]))
    engine.feed([syn(T0, bytes([10, 99, 0, 11]), bytes([10, 99, 0, 12]), 23)])
    (alert,) = engine.finish()
    assert alert.type == "port_scan" and alert.count == 1
