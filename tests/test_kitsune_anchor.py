"""benchmarks/kitsune_anchor.py: Kitsune-py (../shared/anchors/kitsune-py) run beside vmsentry on real lab captures.

The slow tests build Kitsune's own virtualenv when it is missing (benchmarks/.data/kitsune-venv, from this
machine's package index) and run the real anchor through tshark; they check that every packet after the grace
periods gets a score, that the timestamps and source MACs written out are the evaluation capture's own (read
again here with tshark), and that the samples are one row per (source MAC, 1-second window)."""

from __future__ import annotations

import collections
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kitsune_anchor.py"
spec = importlib.util.spec_from_file_location("kitsune_anchor", SCRIPT)
anchor = importlib.util.module_from_spec(spec)
spec.loader.exec_module(anchor)


@pytest.fixture
def lab(shared_dir) -> Path:
    return shared_dir / "pcaps" / "lab"


@pytest.fixture
def run_anchor(shared_dir):
    def run(*args) -> subprocess.CompletedProcess:
        command = [sys.executable, SCRIPT, "--anchor", shared_dir / "anchors" / "kitsune-py", *args]
        return subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)

    return run


def tshark_packets(path, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    fields = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "frame.time_epoch", "-e", "eth.src"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()[:limit]
    rows = [line.split("\t") for line in fields]
    return (
        np.array([float(ts) for ts, _ in rows]),
        np.array([int(mac.replace(":", ""), 16) for _, mac in rows], dtype=np.uint64),
    )


def test_aggregate_keeps_the_largest_score_per_mac_and_window():
    ts = np.array([10.2, 10.9, 11.0, 10.5, 12.99, 11.5])
    mac = np.array([7, 7, 7, 3, 7, 7], dtype=np.uint64)
    score = np.array([1.0, 5.0, 2.0, 4.0, 0.5, 3.0], dtype=np.float32)
    samples = anchor.aggregate(ts, mac, score)
    assert samples["mac"].tolist() == [3, 7, 7, 7]
    assert samples["start"].tolist() == [10.0, 10.0, 11.0, 12.0]
    assert samples["score"].tolist() == [4.0, 5.0, 3.0, 0.5]
    assert samples["packets"].tolist() == [1, 2, 2, 1]
    assert anchor.aggregate(ts[:0], mac[:0], score[:0])["mac"].size == 0


def test_grace_periods_train_exactly_the_training_part():
    # KitNET learns from FMgrace + ADgrace + 1 packets; the held-out share follows, scored but not learned.
    fm, ad, held = anchor.grace_periods(1000, 0.05, 0.1)
    assert (fm, held) == (50, 100) and fm + ad + 1 + held == 1000
    with pytest.raises(anchor.AnchorError):
        anchor.grace_periods(3, 0.05, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "train, evaluation, eval_limit, shifted",
    [
        # training part earlier than the evaluation part: no time shift; the evaluation capture cut to 1,500
        ("realvm-dhcp-virbr0.pcap", "nmap-sS-vm1-vs-hostns.pcap", 1500, False),
        # evaluation capture recorded before the training one: moved later for Kitsune, written out as it was
        ("nmap-sS-vm1-vs-hostns.pcap", "realvm-dhcp-virbr0.pcap", None, True),
    ],
)
def test_kitsune_scores_every_packet_after_grace(tmp_path, lab, run_anchor, train, evaluation, eval_limit, shifted):
    out = tmp_path / "out"
    limit = ["--eval-limit", str(eval_limit)] if eval_limit else []
    result = run_anchor("--train", lab / train, "--eval", lab / evaluation, "--out", out, *limit)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "estimated" in result.stderr and "packets/s wall" in result.stdout

    record = json.loads((out / "kitsune-run.json").read_text())
    assert (record["eval_shift_s"] > 0) is shifted
    speed = record["speed"]
    assert speed["packets_per_s_wall"] > 0 and speed["packets_per_s_cpu"] > 0 and speed["autoencoders"] >= 1

    packets = np.load(out / "kitsune-packets.npz", allow_pickle=False)
    part, rmse = packets["part"], packets["rmse"]
    grace = record["fm_grace"] + record["ad_grace"] + 1
    counts = np.bincount(part, minlength=3).tolist()
    assert counts == [grace, record["holdout_packets"], record["eval_packets"]]
    assert packets["ts"].dtype == np.float64 and packets["mac"].dtype == np.uint64 and rmse.dtype == np.float32
    assert (rmse[part == anchor.PART_GRACE] == 0).all()
    scored = rmse[part != anchor.PART_GRACE]
    assert np.isfinite(scored).all() and (scored > 0).all()

    # The evaluation packets' timestamps and source MACs are the capture's own, in its order.
    evaluation_part = part == anchor.PART_EVAL
    ts, mac = tshark_packets(lab / evaluation, eval_limit)
    assert record["eval_packets"] == ts.size
    np.testing.assert_array_equal(packets["mac"][evaluation_part], mac)
    np.testing.assert_allclose(packets["ts"][evaluation_part], ts, rtol=0, atol=1e-6)

    # One sample per (source MAC, 1-second window), holding the largest RMSE of its packets.
    samples = np.load(out / "kitsune-samples.npz", allow_pickle=False)
    expected = collections.defaultdict(list)
    for t, m, r in zip(ts, mac, rmse[evaluation_part]):
        expected[(int(m), float(math.floor(t)))].append(float(r))
    keys = list(zip(samples["mac"].tolist(), samples["start"].tolist()))
    assert len(keys) == len(set(keys)) == len(expected) == record["samples"]
    assert set(keys) == set(expected)
    for key, score, count in zip(keys, samples["score"].tolist(), samples["packets"].tolist()):
        assert score == pytest.approx(max(expected[key]), rel=1e-6) and count == len(expected[key])
    confidence = samples["confidence"]
    assert confidence.size == len(keys)
    assert ((confidence >= 0) & (confidence <= 1)).all()


@pytest.mark.slow
def test_missing_capture_is_one_line_and_exit_2(tmp_path, lab, run_anchor):
    result = run_anchor("--train", tmp_path / "absent.pcap", "--eval", lab / "benign-http-ping.pcap", "--out", tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"kitsune_anchor: {tmp_path / 'absent.pcap'}: no such capture"
    assert "Traceback" not in result.stderr
