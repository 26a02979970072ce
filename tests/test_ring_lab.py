"""Live capture through the TPACKET_V3 ring (collect/traffic/ring.py) on a real bridge in a namespace lab
(tests/traffic_lab/replay.py): real traffic replayed by tcpreplay, tcpdump on the same bridge as the
witness. Every frame is decoded, the ring's bulk path gives the same alerts as the file path on the same
frames, a bridge deleted and made again mid-capture gives one line each way and capture goes on, and a
stalled reader with a tiny ring has its drops counted."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vmsentry.act.policy.netns import open_in_netns
from vmsentry.collect.traffic import TrafficStream
from vmsentry.collect.traffic.ring import RingReader

from traffic_lab.replay import BRIDGE, ReplayLab

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parents[1]
TOOLS = ("ip", "tcpreplay", "tcpdump", "trafgen")


def _shared() -> Path:
    return Path(os.environ.get("VMSENTRY_SHARED", REPO.parent / "shared")) / "pcaps" / "lab"


@pytest.fixture
def lab():
    import shutil

    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for the ring lab: {', '.join(missing)} (scripts/setup.sh installs them)")
    with ReplayLab() as lab:
        yield lab


def _vmsentry(*args: str) -> list[str]:
    return [sys.executable, "-m", "vmsentry", *args]


def _tcpdump(lab: ReplayLab, out: Path) -> subprocess.Popen:
    proc = lab.spawn(
        lab.bridge_ns,
        ["tcpdump", "-i", BRIDGE, "-B", "131072", "-s", "0", "-w", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "listening on" in proc.stderr.readline()
    return proc


def _tcpdump_counts(proc: subprocess.Popen) -> tuple[int, int]:
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=15)[1]
    captured = re.search(r"(\d+) packets? captured", err)
    dropped = re.search(r"(\d+) packets? dropped by kernel", err)
    assert captured and dropped, err
    return int(captured.group(1)), int(dropped.group(1))


def _summary(alerts: list[dict]) -> list[tuple]:
    return sorted((a["type"], a["count"], json.dumps(a.get("attacker"), sort_keys=True)) for a in alerts)


@pytest.mark.slow
def test_every_frame_decoded_and_the_same_alerts_as_the_file_path(lab, tmp_path):
    mix, inv = tmp_path / "mix.pcap", tmp_path / "inv.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(mix), "--packets", "60000"]
        + ["--inventory", str(inv)],
        check=True,
        capture_output=True,
    )
    watcher = lab.spawn(
        lab.bridge_ns,
        _vmsentry("detect", "-i", BRIDGE, "--inventory", str(inv), "--format", "json", "--duration", "8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )
    assert "watching" in watcher.stderr.readline()
    witness = tmp_path / "witness.pcap"
    tcpdump = _tcpdump(lab, witness)
    sent, rate = lab.replay(f"{mix} {_shared() / 'nmap-sS-vm1-vs-hostns.pcap'}")
    out, err = watcher.communicate(timeout=60)
    captured, dropped = _tcpdump_counts(tcpdump)
    live = json.loads(out)
    stats = live["stats"]
    print(
        f"\nreplayed {sent} packets at {rate:,.0f}/s; tcpdump {captured} (dropped {dropped}); ring {stats['packets']}"
    )
    assert "Traceback" not in err
    assert dropped == 0 and stats["kernel_drops"] == 0
    assert stats["packets"] == captured == stats["kernel_packets"] == sent  # every frame, decoded
    assert stats["interfaces"] == {BRIDGE: {"packets": captured, "drops": 0, "captured": captured}}

    # the same frames (tcpdump's file, same kernel time stamps) through the file path
    ran = subprocess.run(
        _vmsentry("detect", str(witness), "--inventory", str(inv), "--format", "json"),
        capture_output=True,
        text=True,
        cwd=str(REPO),
    )
    from_file = json.loads(ran.stdout)
    assert from_file["stats"]["packets"] == captured
    assert {a["type"] for a in live["alerts"]} >= {"arp_spoof", "port_scan", "mac_flood", "dns_unsanctioned"}
    assert _summary(live["alerts"]) == _summary(from_file["alerts"])


def test_bridge_deleted_and_recreated_gives_two_lines_and_capture_resumes(lab, tmp_path):
    watcher = lab.spawn(
        lab.bridge_ns,
        _vmsentry("detect", "-i", BRIDGE, "--follow"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=str(REPO),
    )
    assert "watching" in watcher.stderr.readline()
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(watcher.stderr), daemon=True)
    reader.start()
    lab.delete_bridge()
    time.sleep(2.5)  # (retries every second: more than one retry fails while the bridge is gone)
    lab.make_bridge()
    deadline = time.time() + 5
    while time.time() < deadline and not any("resumed" in line for line in lines):
        time.sleep(0.05)
    sent, _ = lab.replay(str(_shared() / "nmap-sS-vm1-vs-hostns.pcap"))
    time.sleep(0.5)
    watcher.send_signal(signal.SIGTERM)
    out, _ = watcher.communicate(timeout=15)
    reader.join(5)
    records = [json.loads(line) for line in out.splitlines()]
    assert watcher.returncode == 1, lines
    assert not any("Traceback" in line for line in lines), lines
    assert [line.strip() for line in lines] == [
        f"vmsentry: {BRIDGE}: capture lost (interface deleted); retrying every 1 s",
        f"vmsentry: {BRIDGE}: capture resumed",
    ]
    assert any(r.get("type") == "port_scan" for r in records)  # traffic after the bridge came back
    assert records[-1]["stats"]["packets"] == sent


def test_drops_counted_when_the_ring_is_tiny_and_the_reader_stalls(lab):
    problems: list[str] = []
    reader = RingReader(
        [BRIDGE, "nosuch0"],
        block_size=4096,
        block_count=2,
        duration=3,
        on_problem=lambda name, line: problems.append(line),
    )
    plain = reader.open_socket  # the sockets are made in the lab's bridge namespace (the test runs outside it)
    reader.open_socket = lambda interface: open_in_netns(lab.bridge_ns, lambda: plain(interface))
    stream = TrafficStream()
    run = reader.run(stream.decoder)
    next(run)  # open, first poll
    frame = (
        "{ eth(da=52:54:00:99:00:12, sa=52:54:00:99:00:11), ipv4(saddr=10.99.0.11, daddr=10.99.0.12), "
        "udp(sp=40000, dp=9999), dinc(0, 4294967295, 1) }"
    )
    lab.sh(lab.gen(0), f"trafgen --dev eth0 --num 20000 --cpus 1 --no-sock-mem '{frame}' >/dev/null 2>&1")
    for _ in run:  # the reader comes back after the burst
        pass
    extra = stream.stats.extra
    assert problems == ["nosuch0: cannot capture (no such interface); retrying every 1 s"]
    assert extra["kernel_drops"] > 0 and extra["ring_fill"] == 1.0
    assert extra["kernel_packets"] == 20000 == stream.stats.packets + extra["kernel_drops"]
    assert extra["interfaces"]["nosuch0"] == {"packets": 0, "drops": 0, "captured": 0}
