"""`vmsentry baseline train|eval|show` and `detect --model` end to end on the command line, with labelled
captures made by benchmarks/gen_traffic.py (benign traffic of 30 VMs with known attacks at known times, its
--truth file beside each capture), and the bad inputs: model files from another version, corrupt,
truncated or not a model at all, uncalibrated models, empty captures, bad truth files.

(sklearn is only imported by the vmsentry processes these tests start, never here: see
test_behaviour_models.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
GEN = REPO / "benchmarks" / "gen_traffic.py"
# 30 VMs at 500 packets/s: 250,000 packets are about 490 s, about 14,000 samples: enough benign reference
# for Benjamini-Hochberg across ~30 VMs per window to reject a single anomalous VM (docs/behaviour.md)
SPLITS = {
    "train": ("--packets", "250000", "--seed", "1", "--attacks", "none", "--start", "1790010000"),
    "calibration": ("--packets", "60000", "--seed", "2", "--attacks", "arp,scan,flood", "--repeat", "4",
                    "--start", "1790020000"),
    "evaluation": ("--packets", "60000", "--seed", "3", "--attacks", "arp,scan,flood", "--repeat", "3",
                   "--start", "1790030000"),
}  # fmt: skip


def vmsentry(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def one_line(done: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """DIR/<split>.pcap, DIR/<split>.truth.json, DIR/inv.json, and DIR/model.npz trained and calibrated."""
    folder = tmp_path_factory.mktemp("baseline")
    for split, options in SPLITS.items():
        subprocess.run(
            [sys.executable, str(GEN), str(folder / f"{split}.pcap"), "--rate", "500", *options, "--split", split,
             "--truth", str(folder / f"{split}.truth.json"), "--inventory", str(folder / "inv.json")],
            check=True,
            capture_output=True,
        )  # fmt: skip
    done = vmsentry(
        "baseline", "train", folder / "train.pcap", "--inventory", folder / "inv.json",
        "--calibrate", folder / "calibration.pcap", "--truth", folder / "calibration.truth.json",
        "-o", folder / "model.npz", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (folder / "train.json").write_text(done.stdout)
    return folder


def test_train_says_what_it_trained_on(lab):
    report = json.loads((lab / "train.json").read_text())
    assert report["samples"] > 10_000 and report["calibrated"]
    (capture,) = report["trained_on"]
    assert capture["file"].endswith("train.pcap") and capture["frames"] == 250_000 and len(capture["sha256"]) == 64
    names = {e["name"] for e in report["entities"]}
    assert {"vm11", "vm40", "hv1"} <= names
    assert report["model"]["scorer"] in ("zmax", "iforest", "autoencoder")
    assert "best ROC AUC on the calibration set" in report["model"]["choice"]["reason"]
    assert report["model"]["calibration"]["positives"] > 0


def test_show_prints_the_header(lab):
    done = vmsentry("baseline", "show", lab / "model.npz")
    assert done.returncode == 0, done.stderr
    assert "version 1" in done.stdout and "train.pcap: 250,000 frames" in done.stdout
    assert "sha256 " in done.stdout and "calibration:" in done.stdout and "thresholds:" in done.stdout
    header = json.loads(vmsentry("baseline", "show", lab / "model.npz", "--format", "json").stdout)
    assert header["format"] == "vmsentry-behaviour-model" and header["window"] == 1.0


def test_eval_table_in_three_formats(lab):
    done = vmsentry("baseline", "eval", lab / "model.npz", lab / "evaluation.pcap", "--format", "json")
    assert done.returncode == 0, done.stderr
    table = json.loads(done.stdout)
    rows = {row["kind"]: row for row in table["rows"]}
    assert {"all", "scan", "arp_spoof", "mac_flood"} <= set(rows)
    assert rows["scan"]["incidents"] == 3 and rows["scan"]["roc_auc"] >= 0.95
    assert rows["scan"]["incidents_alarmed"] == 1.0 and rows["all"]["precision"] == 1.0
    assert table["benign"]["false_alarms"] == 0 and table["benign"]["vm_hours"] > 0
    text = vmsentry("baseline", "eval", lab / "model.npz", lab / "evaluation.pcap").stdout  # truth found beside
    assert "ROC AUC" in text and "alarmed >= 0.8" in text and "per VM-day" in text
    md = vmsentry("baseline", "eval", lab / "model.npz", lab / "evaluation.pcap", "--format", "md").stdout
    assert "| kind | samples |" in md


def test_detect_model_raises_an_explained_anomaly(lab):
    done = vmsentry(
        "detect", lab / "evaluation.pcap", "--inventory", lab / "inv.json", "--model", lab / "model.npz",
        "--format", "json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    anomalies = [a for a in report["alerts"] if a["type"] == "anomaly"]
    (scan,) = [a for a in anomalies if a["attacker"]["vm"] == "vm14"]  # 3 scans 18 s apart: one incident
    assert scan["count"] == 3 and scan["confidence"] >= 0.8 and scan["signature_id"] == 9101401
    assert scan["attacker"] == {"vm": "vm14", "mac": "52:54:00:99:00:0e", "ip": "10.99.0.14"}
    assert {"ip": "10.99.0.12", "mac": "52:54:00:99:00:0c", "vm": "vm12"} in scan["victims"]
    evidence = scan["evidence"]
    assert set(evidence) >= {"features", "window", "p_value", "model", "entity"}
    assert 3 <= len(evidence["features"]) <= 4
    for feature in evidence["features"]:
        assert set(feature) == {"feature", "value", "usual", "ratio", "text"}
    assert evidence["features"][0]["feature"].startswith("syn_out_per_s")
    assert "new TCP connections opened per second" in scan["summary"] and scan["summary"].startswith("vm14: ")
    assert evidence["window"]["seconds"] == 1.0 and 0 <= evidence["p_value"] < 0.01
    assert evidence["model"].startswith("model.npz sha256:")
    assert report["stats"]["anomaly"]["windows_scored"] > 1000
    # the rule detectors still run beside it
    assert {"port_scan", "arp_spoof", "mac_flood"} <= {a["type"] for a in report["alerts"]}
    # the same model on a capture of other machines (no traffic of the model's VMs): they fall back to the
    # network's profile; nothing breaks
    other = vmsentry("detect", lab / "train.pcap", "--model", lab / "model.npz", "--format", "json")
    assert other.returncode in (0, 1) and "Traceback" not in other.stderr


def test_anomaly_text_reads_like_a_sentence():
    from vmsentry.analyse.behaviour.anomaly import explain_text

    text = explain_text("bytes_out_per_s", 12.3e6, 300e3, 41.0)
    assert text == "bytes sent per second: 41x this VM's usual (12.3 MB/s, usually 300 kB/s)"
    assert explain_text("syn_out_per_s", 1000.0, 0.0, 1e6).endswith("1,000 SYNs/s (this VM's usual about 0)")
    assert "usually 0.1 share" in explain_text("top_peer_share", 0.9, 0.1, 9.0)


# --- bad input ---------------------------------------------------------------------------------------------


def _rewrite(path: Path, change) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    change(header, arrays)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


@pytest.fixture
def copy(lab, tmp_path) -> Path:
    path = tmp_path / "copy.npz"
    path.write_bytes((lab / "model.npz").read_bytes())
    return path


@pytest.mark.parametrize(
    "spoil, needle",
    [
        (lambda p: _rewrite(p, lambda h, _a: h.update(version=2)), "model version 2"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), ""),
        (lambda p: p.write_bytes(p.read_bytes()[:100] + b"\0" * 4096 + p.read_bytes()[4196:]), ""),
        (lambda p: p.write_text("this is a text file, not a model\n"), ""),
        (lambda p: p.unlink(), ""),
    ],
    ids=["other-version", "truncated", "corrupt", "text-file", "missing"],
)
def test_unusable_model_is_one_line_and_exit_2(lab, copy, spoil, needle):
    spoil(copy)
    detect = vmsentry("detect", lab / "evaluation.pcap", "--model", copy, "--format", "json")
    one_line(detect, 2, str(copy), needle)
    assert detect.stdout == ""
    one_line(vmsentry("baseline", "show", copy), 2, str(copy), needle)
    one_line(vmsentry("baseline", "eval", copy, lab / "evaluation.pcap"), 2, str(copy), needle)
    watch = vmsentry("watch", "-i", "br-nonexistent", "--model", copy)
    one_line(watch, 2, str(copy), needle)


def test_uncalibrated_model_is_refused_by_detect(lab, tmp_path):
    model = tmp_path / "raw.npz"
    done = vmsentry(
        "baseline", "train", lab / "train.pcap", "--inventory", lab / "inv.json", "--scorer", "zmax", "-o", model
    )
    assert done.returncode == 0, done.stderr
    assert "calibration: none" in done.stdout
    refused = vmsentry("detect", lab / "evaluation.pcap", "--model", model)
    one_line(refused, 2, str(model), "not calibrated", "--calibrate")


def test_training_capture_with_truth_beside_leaves_attacks_out(lab, tmp_path):
    """evaluation.pcap has evaluation.truth.json beside it: its attack windows are not learned as normal."""
    done = vmsentry(
        "baseline", "train", lab / "evaluation.pcap", "--scorer", "zmax", "-o", tmp_path / "m.npz",
        "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["left_out"] >= 9 and not report["calibrated"]
    assert "hv1" in {e["name"] for e in report["entities"]}  # named by the truth file's VMs


def test_empty_capture_gives_nothing_to_learn(lab, tmp_path):
    empty = tmp_path / "empty.pcap"
    empty.write_bytes((lab / "train.pcap").read_bytes()[:24])  # the pcap header, no packet
    one_line(vmsentry("baseline", "train", empty, "-o", tmp_path / "m.npz"), 2, str(empty), "no traffic to learn from")
    assert not (tmp_path / "m.npz").exists()
    one_line(
        vmsentry("baseline", "eval", lab / "model.npz", empty, "--truth", lab / "evaluation.truth.json"),
        2,
        "no traffic to evaluate on",
    )


def test_truncated_training_capture_is_said_and_exit_2(lab, tmp_path):
    cut = tmp_path / "cut.pcap"
    data = (lab / "train.pcap").read_bytes()
    cut.write_bytes(data[: len(data) // 3 + 7])
    done = vmsentry("baseline", "train", cut, "--scorer", "zmax", "-o", tmp_path / "m.npz")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert str(cut) in done.stderr and (tmp_path / "m.npz").exists()  # learned from what was read


def test_bad_truth_file_names_the_file_and_place(lab, tmp_path):
    truth = json.loads((lab / "evaluation.truth.json").read_text())
    truth["incidents"][1]["end"] = "soon"
    bad = tmp_path / "bad.truth.json"
    bad.write_text(json.dumps(truth))
    done = vmsentry("baseline", "eval", lab / "model.npz", lab / "evaluation.pcap", "--truth", bad)
    one_line(done, 2, str(bad), "incidents[1].end")
    train = vmsentry(
        "baseline", "train", lab / "train.pcap", "--calibrate", lab / "calibration.pcap", "--truth", bad,
        "-o", tmp_path / "m.npz",
    )  # fmt: skip
    one_line(train, 2, str(bad), "incidents[1].end")


@pytest.mark.parametrize(
    "args, needle",
    [
        ([], "give the captures to learn from"),
        (["-i", "br0"], "--duration"),
        (["x.pcap", "--truth", "t.json"], "--truth goes with --calibrate"),
        (["x.pcap", "--calibrate", "a.pcap", "--calibrate", "b.pcap", "--truth", "t.json"], "one per capture"),
    ],
)
def test_train_usage_errors_exit_3(args, needle, tmp_path):
    one_line(vmsentry("baseline", "train", *args, "-o", tmp_path / "m.npz"), 3, needle)


def test_calibration_capture_without_truth(lab, tmp_path):
    lone = tmp_path / "lone.pcap"
    lone.write_bytes((lab / "calibration.pcap").read_bytes())
    done = vmsentry("baseline", "train", lab / "train.pcap", "--calibrate", lone, "-o", tmp_path / "m.npz")
    one_line(done, 2, str(lone), "no truth file", "lone.truth.json")


def test_anomaly_joins_the_open_incident_of_its_vm():
    """The watcher's incidents: a rule alert and then an anomaly about the same VM are one incident."""
    from vmsentry.watch.incidents import Incidents
    from vmsentry.watch.timeline import Timeline

    incidents = Incidents(None, None, Timeline(None), dict, lambda vm: None)
    rule = {"type": "port_scan", "first_seen": 10.0, "attacker": {"vm": "vm14", "mac": "52:54:00:99:00:0e"}}
    anomaly = {"type": "anomaly", "first_seen": 12.0, "attacker": {"vm": "vm14", "mac": "52:54:00:99:00:0e"}}
    first = incidents.for_alert(rule, "vm14", None, 100.0)
    second = incidents.for_alert(anomaly, "vm14", None, 101.0)
    assert first is second and second.alerts == 2 and list(incidents.open) == ["vm14"]
