#!/usr/bin/env python3
"""Benchmarks of the behaviour baseline (issue 14), one part at a time:

  features   frames/s of feature extraction alone (from FrameColumns already decoded, decode excluded) and
             of decode + features, on one core, on a 1,000,000-frame typical capture and on a MAC flood
             (gen_traffic.py --mode macflood: every frame a new source MAC; shows the memory stays bounded)
  train      seconds to extract the train split's samples, then per scorer (zmax, iforest, autoencoder, and
             "auto" = all three, the CLI's default) seconds of BehaviourModel.train and of calibrate on the
             calibration split, and the process's peak RSS after each (target: train < 1 minute on >= 100,000
             samples)
  eval       the evaluation table (analyse/behaviour/evaluate.py) of vmsentry (train on train, calibrate on
             calibration, evaluate on evaluation) and the same table for Kitsune-py (benchmarks/kitsune_anchor.py)
             on slices cut around incidents (see below), with vmsentry's table on the same slices
  speed      frames/s of vmsentry's whole anomaly path (decode + features + scoring, per scorer) and Kitsune-py's
             packets/s, on the same capture in one run (target >= 100x)

Labelled data (--data DIR): the lab generator's splits DIR/{train,calibration,evaluation}.pcap with
.truth.json beside each. Default: /work/data/behaviour when it holds all three, else a small synthetic set
written once by gen_traffic.py --truth into benchmarks/.data/ (no root needed); the output says which.

Kitsune-py in `eval` (it scores ~800-1,900 packets/s, so it cannot read whole captures): it learns from the first
--kitsune-train packets of the train split, then scores slices of the calibration AND evaluation splits, one per
chosen incident (--kitsune-per-kind per kind, the earliest): --kitsune-lead seconds of benign lead-in, then the
incident (at most --kitsune-longest seconds of it), capped at --kitsune-slice packets from the incident's start
on; a slice that would overlap the one before starts after it. Its per-(MAC, second) scores are mapped to vmsentry's entities (MAC -> VM by the truth files,
other MACs -> "(unattributed)", the largest score per entity and window), calibrated with the same
calibrate.fit_calibration on its calibration-slice samples, and alarm at confidence >= 0.8 (Kitsune has no
per-window p-values, so no Benjamini-Hochberg step). `vmsentry (Kitsune's slices)` is vmsentry's evaluation
table restricted to the evaluation samples and incidents inside the same slices. With the defaults (about 640,000 packets) Kitsune ran
20 minutes on the lab's full splits: ~1,500 packets/s on benign traffic, falling to a few hundred in the flood
slices (541 packets/s overall); --kitsune-slice 5000 should bring it under 15 minutes. MAC floods are scored as the "(unattributed)" entity's traffic for both tools
(baseline_data.flood_senders).

    python benchmarks/bench_baseline.py --part features [--packets 1000000] [--runs 3]
    python benchmarks/bench_baseline.py --part train|eval|speed [--data DIR] [--write-docs] [--no-kitsune]

Progress goes to stderr, the figures as JSON to stdout (and benchmarks/.data/bench_baseline-<part>.json);
--write-docs also writes them as Markdown into docs/benchmarks.md, section "the behaviour baseline" (each part
replaces its own subsection).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "benchmarks" / ".data"
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

import baseline_data as bd  # noqa: E402


def capture(kind: str, packets: int) -> Path:
    """gen_traffic.py's capture of ``kind`` (mixed typical mix, or macflood), written once."""
    path = DATA / f"baseline-{kind}-{packets}.pcap"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        mode = ["--mode", "macflood"] if kind == "macflood" else ["--mix", "typical"]
        subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "gen_traffic.py"), str(path), "--packets", str(packets), *mode],
            check=True,
        )
    return path


def part_features(args) -> dict:
    from vmsentry.analyse.behaviour.features import FeatureExtractor
    from vmsentry.collect.traffic import TrafficStream, open_inputs
    from vmsentry.model.traffic import FrameColumns

    def decode(path: Path) -> list:
        buffers = []
        for batch in TrafficStream(frame_columns=True).batches(open_inputs(str(path))):
            buffers += [e.frames for e in batch if type(e) is FrameColumns]
        return buffers

    results = {}
    for kind in ("typical", "macflood"):
        path = capture(kind, args.packets)
        alone, both, plain = [], [], []
        for _ in range(args.runs):
            started = time.process_time()
            for _batch in TrafficStream().batches(open_inputs(str(path))):
                pass
            plain.append(time.process_time() - started)
            started = time.process_time()
            buffers = decode(path)
            decoded = time.process_time() - started
            frames = sum(len(b) for b in buffers)
            extractor = FeatureExtractor()
            started = time.process_time()
            samples = sum(len(extractor.feed(b)) for b in buffers) + len(extractor.finish())
            alone.append(time.process_time() - started)
            both.append(decoded + alone[-1])
        row = {
            "capture": path.name,
            "frames": frames,
            "samples": samples,
            "entities": len(extractor.entities),
            "features_alone_fps_best": round(frames / min(alone)),
            "decode_and_features_fps_best": round(frames / min(both)),
            "decode_without_columns_fps_best": round(frames / min(plain)),
            "entity_table": {
                "learned": extractor.table.learned,
                "refused": extractor.table.refused,
                "candidates_forgotten": extractor.table.forgotten,
            },
            "memory_rotations": {"peers": extractor.peers_seen.rotations, "macs": extractor.macs_seen.rotations},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        results[kind] = row
        print(
            f"{kind:9s} {frames:,} frames, {samples:,} samples, {row['entities']} entities: features alone "
            f"{row['features_alone_fps_best']:,} frames/s; decode+features {row['decode_and_features_fps_best']:,}"
            f" frames/s (decode without columns {row['decode_without_columns_fps_best']:,}/s); peak RSS "
            f"{row['peak_rss_mb']} MB",
            flush=True,
        )
    return results


def say(*parts) -> None:
    print(*parts, file=sys.stderr, flush=True)


def peak_rss_mb() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _data(args, needed=bd.SPLITS) -> bd.Dataset:
    data = bd.dataset(args.data, args.small_packets, needed)
    say(f"data: {data.folder} ({bd.describe(data)['origin']})")
    return data


def _samples(data: bd.Dataset, split: str):
    started = time.perf_counter()
    cpu = time.process_time()
    samples, frames = bd.split_samples(data.splits[split], data.source())
    timing = {
        "frames": frames,
        "samples": len(samples),
        "entities": len(samples.entities),
        "seconds": round(time.perf_counter() - started, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
    }
    say(f"{split}: {frames:,} frames -> {len(samples):,} samples in {timing['seconds']} s")
    return samples, timing


def _train_set(data: bd.Dataset):
    samples, timing = _samples(data, "train")
    kept = bd.benign(samples, data.splits["train"].truth)
    timing["benign_samples"] = len(kept)
    return kept, timing


def _calibration_set(data: bd.Dataset):
    samples, _ = _samples(data, "calibration")
    kept, attack, _, _ = bd.labelled(samples, data.splits["calibration"].truth)
    return kept, attack


# --- train ---------------------------------------------------------------------------------------------------


def part_train(args) -> dict:
    from vmsentry.analyse.behaviour.model import SCORERS, BehaviourModel

    data = _data(args, ("train", "calibration"))
    train, extraction = _train_set(data)
    extraction["peak_rss_mb"] = peak_rss_mb()
    calibration, attack = _calibration_set(data)
    rows = []
    for scorer in (*SCORERS, "auto"):
        started = time.perf_counter()
        model = BehaviourModel.train(train, scorer, roles=bd.roles(data))
        trained = time.perf_counter() - started
        started = time.perf_counter()
        model.calibrate(calibration, attack)
        calibrated = time.perf_counter() - started
        row = {
            "scorer": scorer,
            "train_seconds": round(trained, 2),
            "calibrate_seconds": round(calibrated, 2),
            "total_seconds": round(trained + calibrated, 2),
            "picked": model.scorer,
            "calibration_auc": round(model.calibration_report["auc"], 4),
            "peak_rss_mb": peak_rss_mb(),
        }
        rows.append(row)
        say(
            f"{scorer:11s} train {row['train_seconds']} s + calibrate {row['calibrate_seconds']} s "
            f"(calibration AUC {row['calibration_auc']}), peak RSS {row['peak_rss_mb']} MB"
        )
    return {
        "data": bd.describe(data),
        "train_samples": len(train),
        "calibration_samples": len(calibration),
        "calibration_attack_samples": int(attack.sum()),
        "extraction": extraction,
        "scorers": rows,
        "target": "train (+ calibrate) on >= 100,000 samples in < 60 s",
    }


# --- eval ----------------------------------------------------------------------------------------------------


def _table(scores, confidence, alarms, attack, kinds, samples, incidents) -> dict:
    from vmsentry.analyse.behaviour.evaluate import evaluate

    return evaluate(
        scores,
        confidence,
        alarms,
        attack,
        kinds,
        samples.entity,
        samples.start,
        samples.window,
        incidents,
        [e.name for e in samples.entities],
    )


def _vmsentry_eval(data: bd.Dataset, scorer: str = "auto"):
    from vmsentry.analyse.behaviour.model import BehaviourModel

    train, _ = _train_set(data)
    calibration, attack = _calibration_set(data)
    started = time.perf_counter()
    model = BehaviourModel.train(train, scorer, roles=bd.roles(data))
    report = model.calibrate(calibration, attack)
    say(f"vmsentry: trained and calibrated in {time.perf_counter() - started:.1f} s: {report['choice']['reason']}")
    samples, _ = _samples(data, "evaluation")
    truth = data.splits["evaluation"].truth
    kept, attack, kinds, _ = bd.labelled(samples, truth)
    scored = model.score(kept)
    alarms = model.alarms(kept, scored)
    table = _table(scored[0], scored[2], alarms, attack, kinds, kept, truth.incidents)
    table["model"] = {"scorer": model.scorer, "choice": model.choice, "calibration": model.calibration_report}
    table["diagnostics"] = _diagnostics(model, kept, scored, attack, kinds)
    return table, (kept, scored, alarms, attack, kinds)


def _diagnostics(model, kept, scored, attack, kinds) -> dict:
    """Per attack kind, for tuning: the features whose z (the entity's robust scaling) is largest in the median
    attack sample, and how the kind's scores and confidences sit against the benign ones."""
    import numpy as np

    z = model.profiles.transform(kept)
    raw, _, confidence = scored
    benign = ~attack
    out = {"benign_score_p99": float(np.quantile(raw[benign], 0.99)) if benign.any() else None}
    for kind in sorted({k for k in kinds[attack] if k}):
        rows = attack & (kinds == kind)
        median_z = np.median(z[rows], axis=0)
        top = np.argsort(-np.abs(median_z))[:4]
        out[kind] = {
            "median_score": float(np.median(raw[rows])),
            "share_above_benign_p99": float((raw[rows] > out["benign_score_p99"]).mean()),
            "share_confidence_ge_0_8": float((confidence[rows] >= 0.8).mean()),
            "top_features_median_z": {model.names[c]: round(float(median_z[c]), 1) for c in top},
        }
    return out


def _restricted(evaluated, slices, incidents) -> dict:
    """vmsentry's table on the evaluation samples inside Kitsune's slices."""
    from vmsentry.commands.baseline import subset

    kept, (raw, _, confidence), alarms, attack, kinds = evaluated
    import numpy as np

    rows = np.flatnonzero(bd.in_slices(kept.start, kept.window, slices))
    part = subset(kept, rows)
    return _table(raw[rows], confidence[rows], alarms[rows], attack[rows], kinds[rows], part, incidents)


def _kitsune_eval(args, data: bd.Dataset, workdir: Path):
    """Kitsune on train + the calibration and evaluation slices (module text): (table, run record, slices)."""
    import numpy as np

    from vmsentry.analyse.behaviour.calibrate import fit_calibration

    slices = []
    for split in ("calibration", "evaluation"):
        ranges = bd.incident_slices(
            data.splits[split].truth, args.kitsune_per_kind, args.kitsune_lead, args.kitsune_longest
        )
        slices += bd.cut_slices(data.splits[split].pcap, split, ranges, args.kitsune_slice, workdir)
    joined = workdir / "kitsune-slices.pcap"
    bd.join_slices(slices, joined)
    out = workdir / "kitsune"
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "kitsune_anchor.py"),
        "--train",
        str(data.splits["train"].pcap),
    ]
    command += ["--train-limit", str(args.kitsune_train), "--eval", str(joined), "--out", str(out)]
    command += ["--assumed-rate", str(args.kitsune_rate)]
    say(f"kitsune: {sum(s.packets for s in slices):,} packets in {len(slices)} slices + {args.kitsune_train:,} train")
    record = _run_kitsune(command, out)
    vms = data.source() or []
    samples, score = bd.kitsune_samples(out / "kitsune-samples.npz", vms, 1.0)
    from vmsentry.commands.baseline import subset

    parts = {}
    for split in ("calibration", "evaluation"):
        own = [s for s in slices if s.split == split]
        rows = np.flatnonzero(bd.in_slices(samples.start, samples.window, own))
        part = subset(samples, rows)
        reference, _ = bd.split_samples(data.splits[split], data.source())
        kept, attack, kinds, keep = bd.labelled_by(part, data.splits[split].truth, reference)
        parts[split] = (kept, score[rows][keep], attack, kinds, own)
    kept, cal_score, cal_attack, _, _ = parts["calibration"]
    calibration = fit_calibration(cal_score, cal_attack)
    kept, eval_score, attack, kinds, own = parts["evaluation"]
    confidence = calibration(eval_score)
    incidents = _incidents_in(data.splits["evaluation"].truth, own)
    table = _table(eval_score, confidence, confidence >= 0.8, attack, kinds, kept, incidents)
    table["calibration"] = {**calibration.describe(), "on": "Kitsune's samples of the calibration-split slices"}
    return table, record, slices, incidents


def _run_kitsune(command: list[str], out: Path) -> dict:
    """Run kitsune_anchor.py (its progress on stderr); its kitsune-run.json. A failure is one line (its own
    line above it says why) and exit 2."""
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"bench_baseline: kitsune_anchor.py failed (exit {result.returncode}; see above)")
    say(result.stdout.strip())
    return bd.run_json(out / "kitsune-run.json")


def _incidents_in(truth, slices) -> list:
    return [i for i in truth.incidents if any(i.start <= s.last and i.end >= s.first for s in slices)]


def part_eval(args) -> dict:
    data = _data(args)
    vmsentry, evaluated = _vmsentry_eval(data, args.scorer)
    result = {"data": bd.describe(data), "vmsentry": vmsentry}
    if args.no_kitsune:
        return result
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as temporary:
        kitsune, record, slices, incidents = _kitsune_eval(args, data, Path(temporary))
    result["kitsune"] = kitsune
    result["vmsentry_on_kitsune_slices"] = _restricted(
        evaluated, [s for s in slices if s.split == "evaluation"], incidents
    )
    result["kitsune_run"] = {
        "train_packets": record["train_packets"],
        "slice_packets": record["eval_packets"],
        "speed": record["speed"],
        "slices": [
            {
                "split": s.split,
                "first": s.first,
                "last": s.last,
                "packets": s.packets,
                "incidents": [f"{i.kind} by {i.attacker}" for i in s.incidents],
            }
            for s in slices
        ],
        "protocol": {
            "train_limit": args.kitsune_train,
            "per_kind": args.kitsune_per_kind,
            "lead_s": args.kitsune_lead,
            "longest_s": args.kitsune_longest,
            "slice_packets_per_incident": args.kitsune_slice,
            "calibration": "calibrate.fit_calibration on Kitsune's calibration-split slices; alarm = confidence >= 0.8",
        },
    }
    return result


# --- speed ---------------------------------------------------------------------------------------------------


def _anomaly_path(path: Path, model, source) -> tuple[int, float]:
    """(frames, CPU seconds) of decode + features + scoring + alarms of one capture."""
    from vmsentry.analyse.behaviour.entities import named_entities
    from vmsentry.analyse.behaviour.features import FeatureExtractor
    from vmsentry.collect.traffic import TrafficStream, open_inputs
    from vmsentry.model.traffic import FrameColumns

    started = time.process_time()
    extractor = FeatureExtractor(named_entities(source) or source, model.window)
    frames = 0
    for batch in TrafficStream(frame_columns=True).batches(open_inputs(str(path))):
        for event in batch:
            if type(event) is FrameColumns:
                frames += len(event.frames)
                samples = extractor.feed(event.frames)
                if len(samples):
                    model.alarms(samples)
    samples = extractor.finish()
    if len(samples):
        model.alarms(samples)
    return frames, time.process_time() - started


def part_speed(args) -> dict:
    from vmsentry.analyse.behaviour.model import SCORERS, BehaviourModel

    data = _data(args)
    source = data.source()
    calibration, attack = _calibration_set(data)
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as temporary:
        workdir = Path(temporary)
        piece = workdir / "speed.pcap"
        subprocess.run(
            ["editcap", "-F", "pcap", "-r", str(data.splits["evaluation"].pcap), str(piece), f"1-{args.speed_packets}"],
            check=True,
        )
        piece_samples, _ = bd.split_samples(
            bd.Split("speed", piece, data.splits["evaluation"].truth_path, None), source
        )
        rows = {}
        for scorer in SCORERS:
            model = BehaviourModel.train(calibration, scorer, roles=bd.roles(data))
            model.calibrate(calibration, attack)
            best = min(_anomaly_path(piece, model, source)[1] for _ in range(args.runs))
            frames = _anomaly_path(piece, model, source)[0]
            rows[scorer] = {"frames": frames, "cpu_seconds_best": round(best, 4), "frames_per_s": round(frames / best)}
            say(f"vmsentry {scorer:11s}: {frames:,} frames in {best:.3f} s CPU = {frames / best:,.0f} frames/s")
            # the same path over the whole evaluation capture: fixed costs spread over many more frames
            whole, seconds = _anomaly_path(data.splits["evaluation"].pcap, model, source)
            rows[scorer]["whole_capture"] = {"frames": whole, "cpu_seconds": round(seconds, 2)}
            rows[scorer]["whole_capture"]["frames_per_s"] = round(whole / seconds)
            say(
                f"  whole evaluation capture: {whole:,} frames in {seconds:.2f} s CPU = {whole / seconds:,.0f} frames/s"
            )
        kitsune = None
        if not args.no_kitsune:
            out = workdir / "kitsune"
            command = [sys.executable, str(REPO / "benchmarks" / "kitsune_anchor.py"), "--train", str(piece)]
            command += ["--eval", str(piece), "--out", str(out), "--assumed-rate", str(args.kitsune_rate)]
            kitsune = _run_kitsune(command, out)["speed"]
            say(f"Kitsune-py: {kitsune['packets']:,} packets, {kitsune['packets_per_s_cpu']:,.0f} packets/s CPU")
    slowest = min(r["frames_per_s"] for r in rows.values())
    result = {
        "data": bd.describe(data),
        "capture": f"the first {args.speed_packets:,} packets of {data.splits['evaluation'].pcap.name}",
        "samples": len(piece_samples),
        "vmsentry": rows,
        "note": "vmsentry: decode + features + score + alarms, CPU time, best of --runs; the models were trained "
        "on the calibration split (the cost of scoring does not depend on what they learnt). Kitsune-py: its "
        "own loop (feature extraction + KitNET) over the capture twice (first as training, then scored), "
        "CPU time, tshark parse excluded",
    }
    if kitsune:
        result["kitsune"] = kitsune
        result["ratio_slowest_scorer_vs_kitsune"] = round(slowest / kitsune["packets_per_s_cpu"], 1)
        whole = min(r["whole_capture"]["frames_per_s"] for r in rows.values())
        result["ratio_slowest_scorer_whole_capture_vs_kitsune"] = round(whole / kitsune["packets_per_s_cpu"], 1)
        result["target"] = ">= 100x Kitsune-py's packets/s"
    return result


# --- docs ----------------------------------------------------------------------------------------------------

DOCS = REPO / "docs" / "benchmarks.md"
SECTION = "## the behaviour baseline (`benchmarks/bench_baseline.py`, issue 14)"
EVAL_COLUMNS = (
    ("kind", "kind"),
    ("samples", "attack samples"),
    ("incidents", "incidents"),
    ("roc_auc", "ROC AUC"),
    ("detection_rate_at_1pct_fa", "detected @1% FA/VM-h"),
    ("incidents_alarmed", "alarmed >= 0.8"),
    ("precision", "precision >= 0.8"),
    ("ece", "ECE"),
    ("median_time_to_detect_s", "median TTD (s)"),
    ("max_time_to_detect_s", "max TTD (s)"),
)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def eval_markdown(title: str, table: dict) -> list[str]:
    benign = table["benign"]
    per_day = benign["false_alarms_per_vm_day"]
    lines = [f"**{title}**", "", "| " + " | ".join(t for _, t in EVAL_COLUMNS) + " |"]
    lines.append("|" + "---|" * len(EVAL_COLUMNS))
    lines += ["| " + " | ".join(_cell(row.get(k)) for k, _ in EVAL_COLUMNS) + " |" for row in table["rows"]]
    lines += [
        "",
        f"Benign: {benign['samples']:,} samples, {benign['vm_hours']:.2f} VM-hours, {benign['false_alarms']} false "
        f"alarm(s) at >= 0.8 = {'-' if per_day is None else f'{per_day:.2f}'} per VM-day.",
        "",
    ]
    return lines


def markdown(part: str, result: dict, when: str, commit: str) -> list[str]:
    data = result["data"]
    lines = [f"### {part}", "", f"{when}, commit {commit}, {result.get('machine', 'machine not recorded')}.", ""]
    lines += [f"Data: `{data['folder']}`: {data['origin']}.", ""]
    if part == "train":
        e = result["extraction"]
        lines += [
            f"Samples: {e['frames']:,} frames of the train split -> {e['samples']:,} samples "
            f"({result['train_samples']:,} benign used) of {e['entities']} entities in {e['seconds']} s "
            f"(peak RSS {e['peak_rss_mb']} MB). Calibration: {result['calibration_samples']:,} samples "
            f"({result['calibration_attack_samples']:,} attack).",
            "",
            "| scorer | train (s) | calibrate (s) | total (s) | calibration ROC AUC | peak RSS (MB) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['scorer']}{' -> ' + r['picked'] if r['scorer'] == 'auto' else ''} | {r['train_seconds']} | "
            f"{r['calibrate_seconds']} | {r['total_seconds']} | {r['calibration_auc']} | {r['peak_rss_mb']} |"
            for r in result["scorers"]
        ]
        lines += ["", "Target: " + result["target"] + ". (The first calibrate also imports scikit-learn.)", ""]
    elif part == "eval":
        model = result["vmsentry"]["model"]
        lines += [f"vmsentry's scorer: {model['choice'].get('reason', model['scorer'])}.", ""]
        lines += eval_markdown("vmsentry (train -> calibration -> evaluation, whole captures)", result["vmsentry"])
        if "kitsune" in result:
            run = result["kitsune_run"]
            p = run["protocol"]
            lines += [
                f"Kitsune-py: learnt from the first {run['train_packets']:,} packets of the train split, then scored "
                f"{run['slice_packets']:,} packets in {len(run['slices'])} slices of the calibration and evaluation "
                f"splits ({p['per_kind']} incident(s) per kind each, {p['lead_s']:g} s benign lead-in, at most "
                f"{p['longest_s']:g} s of the incident, <= {p['slice_packets_per_incident']:,} packets per incident); "
                f"{p['calibration']}; {run['speed']['packets_per_s_cpu']:,.0f} packets/s CPU.",
                "",
            ]
            lines += eval_markdown("Kitsune-py (evaluation slices)", result["kitsune"])
            lines += eval_markdown("vmsentry on the same evaluation slices", result["vmsentry_on_kitsune_slices"])
    elif part == "speed":
        lines += [f"Capture: {result['capture']} ({result['samples']:,} samples).", ""]
        lines += [
            "| tool | frames | frames/s (CPU) | whole evaluation capture: frames, frames/s |",
            "|---|---|---|---|",
        ]
        for name, r in result["vmsentry"].items():
            whole = r.get("whole_capture")
            also = f"{whole['frames']:,}, {whole['frames_per_s']:,}" if whole else "-"
            lines.append(f"| vmsentry, {name} | {r['frames']:,} | {r['frames_per_s']:,} | {also} |")
        if "kitsune" in result:
            k = result["kitsune"]
            lines += [
                f"| Kitsune-py | {k['packets']:,} | {k['packets_per_s_cpu']:,.0f} | - |",
                "",
                f"Slowest vmsentry scorer / Kitsune-py: {result['ratio_slowest_scorer_vs_kitsune']}x on the same packets, "
                f"{result['ratio_slowest_scorer_whole_capture_vs_kitsune']}x with vmsentry's rate over the whole "
                "capture (target >= 100x).",
            ]
        lines += ["", result["note"] + ".", ""]
    return lines


def write_docs(part: str, result: dict) -> None:
    """Replace this part's subsection of the behaviour-baseline section of docs/benchmarks.md (made when
    missing, before the first dated section)."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    when = time.strftime("%Y-%m-%d", time.gmtime())
    new = markdown(part, result, when, commit.stdout.strip() or "?")
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    if SECTION not in lines:
        at = next((k for k, line in enumerate(lines) if line.startswith("## ")), len(lines))
        lines[at:at] = [SECTION, "", "Written by `bench_baseline.py --write-docs`, one subsection per part.", ""]
    begin = lines.index(SECTION) + 1
    end = next((k for k in range(begin, len(lines)) if lines[k].startswith("## ")), len(lines))
    head = f"### {part}"
    section = lines[begin:end]
    if head in section:
        a = section.index(head)
        b = next((k for k in range(a + 1, len(section)) if section[k].startswith("### ")), len(section))
        section[a:b] = new
    else:
        section += new
    lines[begin:end] = section
    temporary = DOCS.with_name(DOCS.name + ".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.replace(DOCS)


PARTS = {"features": part_features, "train": part_train, "eval": part_eval, "speed": part_speed}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=tuple(PARTS), required=True)
    ap.add_argument("--packets", type=int, default=1_000_000, help="features: capture size")
    ap.add_argument("--runs", type=int, default=3, help="features, speed: best of this many runs")
    ap.add_argument("--data", type=Path, help="labelled splits (default /work/data/behaviour, else a small set)")
    ap.add_argument("--small-packets", type=int, default=200_000, help="train packets of the small synthetic set")
    ap.add_argument("--write-docs", action="store_true", help="also write the figures into docs/benchmarks.md")
    ap.add_argument("--scorer", default="auto", help="eval: vmsentry's scorer (default auto, as `baseline train`)")
    ap.add_argument("--no-kitsune", action="store_true", help="eval, speed: vmsentry only")
    ap.add_argument("--kitsune-train", type=int, default=150_000, help="eval: Kitsune's training packets")
    ap.add_argument("--kitsune-per-kind", type=int, default=2, help="eval: incidents per kind and split")
    ap.add_argument("--kitsune-lead", type=float, default=3.0, help="eval: benign seconds before each incident")
    ap.add_argument("--kitsune-longest", type=float, default=60.0, help="eval: longest part of an incident (s)")
    ap.add_argument("--kitsune-slice", type=int, default=8_000, help="eval: packets per incident at most")
    ap.add_argument("--kitsune-rate", type=float, default=550.0, help="Kitsune's packets/s, for its time estimate")
    ap.add_argument("--speed-packets", type=int, default=20_000, help="speed: packets of the evaluation capture")
    ap.add_argument("--results", type=Path, help="JSON file (default benchmarks/.data/bench_baseline-<part>.json)")
    args = ap.parse_args(argv)
    results = PARTS[args.part](args)
    if args.part != "features":
        load = os.getloadavg()
        results["machine"] = (
            f"{os.cpu_count()} cores, load average {load[0]:.1f} / {load[2]:.1f} (1 / 15 min) at the end"
        )
    out = args.results or DATA / f"bench_baseline-{args.part}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if args.part != "features":
        print(json.dumps(results, indent=1))
        if args.write_docs:
            write_docs(args.part, results)
            say(f"wrote {DOCS}")
    say(f"results: {out}")


if __name__ == "__main__":
    main()
