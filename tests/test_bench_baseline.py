"""benchmarks/bench_baseline.py --part eval end to end on a tiny labelled set written by gen_traffic.py --truth:
vmsentry's evaluation table (and, in the slow test, Kitsune-py's beside it on the same slices), and the
Markdown section that --write-docs keeps in docs/benchmarks.md."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
ROW_KEYS = {
    "kind",
    "samples",
    "incidents",
    "roc_auc",
    "detection_rate_at_1pct_fa",
    "incidents_alarmed",
    "precision",
    "ece",
    "median_time_to_detect_s",
    "max_time_to_detect_s",
}
KINDS = {"all", "arp_spoof", "scan", "dns_outside", "mgmt_access", "lateral_movement", "mac_flood"}


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """train 60,000 benign packets; calibration and evaluation 30,000 with every attack twice."""
    sys.path.insert(0, str(BENCH))
    try:
        data = _module("baseline_data").small_dataset(60_000, 2, tmp_path_factory.mktemp("labelled") / "set")
    finally:
        sys.path.remove(str(BENCH))
    return data.folder


def run_eval(folder: Path, out: Path, *extra) -> dict:
    command = [sys.executable, BENCH / "bench_baseline.py", "--part", "eval", "--data", folder, "--results", out]
    result = subprocess.run([str(c) for c in (*command, *extra)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data: " in result.stderr  # says which data it ran on
    printed = json.loads(result.stdout)
    assert printed == json.loads(out.read_text())
    return printed


def check_table(table: dict, kinds: set[str]) -> None:
    rows = {row["kind"]: row for row in table["rows"]}
    assert set(rows) == kinds
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert row["roc_auc"] is None or 0.0 <= row["roc_auc"] <= 1.0
        assert row["ece"] is None or 0.0 <= row["ece"] <= 1.0
    assert rows["all"]["incidents"] == sum(r["incidents"] for k, r in rows.items() if k != "all")
    assert {"samples", "vm_hours", "false_alarms", "false_alarms_per_vm_day"} <= set(table["benign"])


def test_eval_part_gives_vmsentrys_table_per_attack_kind(tiny, tmp_path):
    result = run_eval(tiny, tmp_path / "eval.json", "--no-kitsune")
    assert result["data"]["folder"] == str(tiny)
    assert result["data"]["splits"]["train"]["incidents"] == 0
    assert result["data"]["splits"]["evaluation"]["incidents"] == 12
    check_table(result["vmsentry"], KINDS)
    assert result["vmsentry"]["rows"][0]["incidents"] == 12
    assert result["vmsentry"]["model"]["scorer"] in ("zmax", "iforest", "autoencoder")
    assert "kitsune" not in result


@pytest.mark.slow
def test_eval_part_puts_kitsune_beside_vmsentry_on_the_same_slices(tiny, tmp_path):
    result = run_eval(
        tiny, tmp_path / "eval.json", "--kitsune-train", "5000", "--kitsune-slice", "500", "--kitsune-lead", "1"
    )
    check_table(result["vmsentry"], KINDS)
    run = result["kitsune_run"]
    splits = [s["split"] for s in run["slices"]]
    assert set(splits) == {"calibration", "evaluation"}
    assert run["train_packets"] == 5000 and run["slice_packets"] == sum(s["packets"] for s in run["slices"])
    # the same evaluation incidents in Kitsune's table and in vmsentry's restricted to Kitsune's slices
    kitsune, restricted = result["kitsune"], result["vmsentry_on_kitsune_slices"]
    check_table(kitsune, {r["kind"] for r in restricted["rows"]})
    assert [(r["kind"], r["incidents"]) for r in kitsune["rows"]] == [
        (r["kind"], r["incidents"]) for r in restricted["rows"]
    ]
    assert {r["kind"] for r in kitsune["rows"]} == KINDS  # one slice per kind: every kind seen
    assert kitsune["calibration"]["method"] in ("isotonic", "platt")


def test_write_docs_replaces_its_own_subsection(tmp_path, monkeypatch):
    sys.path.insert(0, str(BENCH))
    try:
        bench = _module("bench_baseline")
    finally:
        sys.path.remove(str(BENCH))
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Measured speed\n\nIntro.\n\n## 2026-12-08: the watcher\n\nold figures\n")
    monkeypatch.setattr(bench, "DOCS", docs)
    data = {"folder": "/d", "origin": "o"}
    speed = {"data": data, "capture": "c", "samples": 5, "vmsentry": {"zmax": {"frames": 9, "frames_per_s": 1}}}
    bench.write_docs("speed", {**speed, "note": "first"})
    bench.write_docs("speed", {**speed, "note": "second"})
    text = docs.read_text()
    assert text.count(bench.SECTION) == 1 and text.count("### speed") == 1
    assert "second." in text and "first." not in text
    assert text.index(bench.SECTION) < text.index("## 2026-12-08: the watcher") and "old figures" in text


def test_a_mac_flood_is_the_traffic_of_the_unattributed_entity(tiny):
    sys.path.insert(0, str(BENCH))
    try:
        bd = _module("baseline_data")
    finally:
        sys.path.remove(str(BENCH))
    from vmsentry.analyse.behaviour.labels import load_truth

    truth = load_truth(str(tiny / "evaluation.truth.json"))
    # as the lab's truth writes it: the VM that ran macof
    truth.incidents = [i._replace(attacker="vm20") if i.kind == "mac_flood" else i for i in truth.incidents]
    fixed, changed = bd.flood_senders(truth)
    assert changed == 2
    assert {i.attacker for i in fixed.incidents if i.kind == "mac_flood"} == {"(unattributed)"}
    assert {i.attacker for i in fixed.incidents if i.kind == "scan"} == {"vm14"}
