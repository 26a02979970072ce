"""`vmsentry watch` without a lab: its options and bad input (one line, exit 3, nothing started), the lock
that keeps a second watcher off a bridge, the metrics' address and text. The live behaviour is in
tests/test_watch_lab.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.watch.lock import BridgeLocks, LockError
from vmsentry.watch.metrics import Metrics, parse_address

REPO = Path(__file__).resolve().parents[1]


def watch(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", "watch", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(cwd),
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )


@pytest.mark.parametrize(
    "args, said",
    [
        (["--respond", "maybe"], "invalid choice"),
        (["--duration", "0"], "finite number of seconds above 0"),
        (["--netns", "../x"], "not a network namespace name"),
        (["--config", "/nonexistent/watch.yaml"], "/nonexistent/watch.yaml"),
        (["--inventory", "/nonexistent/inv.json"], "/nonexistent/inv.json: no such file"),
        (["--metrics", "localhost"], "give ADDR:PORT"),
        ([], "no bridge to watch"),
    ],
)
def test_bad_input_is_one_line_and_exit_3(args, said, tmp_path):
    done = watch(*args, cwd=tmp_path)
    assert done.returncode == 3, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_config_error_names_the_file_and_line(tmp_path):
    config = tmp_path / "watch.yaml"
    config.write_text("respond: auto\nquarantine: nft\nmax_per_minut: 3\n")
    done = watch("--config", str(config), cwd=tmp_path)
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert f"{config}:3:" in line and "max_per_minut" in line


def test_a_second_lock_on_a_bridge_is_refused_and_names_the_holder(tmp_path):
    first = BridgeLocks(["br0", "br1"], run_dir=str(tmp_path))
    first.acquire()
    second = BridgeLocks(["br1"], run_dir=str(tmp_path))
    with pytest.raises(LockError, match=r"br1: another watcher \(pid \d+\)"):
        second.acquire()
    assert second.held == []
    other = BridgeLocks(["br2"], run_dir=str(tmp_path))
    other.acquire()  # another bridge is free
    first.release()
    second.acquire()  # released with its holder
    second.release()
    other.release()


def test_metrics_address_and_text():
    assert parse_address("127.0.0.1:9134") == ("127.0.0.1", 9134)
    assert parse_address("[::1]:9134") == ("::1", 9134)
    assert parse_address(":9134") == ("0.0.0.0", 9134)
    for bad in ("9134", "host:99999", "example.org:80", "1.2.3.4:"):
        with pytest.raises(ValueError):
            parse_address(bad)
    m = Metrics()
    m.alerts.labels("arp_spoof").inc()
    m.quarantines.labels("nft").inc()
    m.response.observe(0.012)
    text = m.text()
    assert 'vmsentry_alerts_total{type="arp_spoof"} 1.0' in text
    assert 'vmsentry_quarantines_total{method="nft"} 1.0' in text
    assert 'vmsentry_response_seconds_bucket{le="0.025"} 1.0' in text
    assert "process_" not in text and "python_gc" not in text  # a private registry only
