#!/usr/bin/env python3
"""Kitsune-py beside vmsentry (issue 14, item 4): runs the anchor Kitsune (Mirsky et al., NDSS 2018;
../shared/anchors/kitsune-py, MIT) on the same labelled captures as vmsentry's behaviour baseline and turns its
per-packet scores into the same samples, one per (source MAC, 1-second window), so that one metric code scores
both. Kitsune's code is never copied or imported here: it runs as an external program, in its own virtualenv,
through benchmarks/kitsune_driver.py.

    python benchmarks/kitsune_anchor.py --train DIR/train.pcap --eval DIR/evaluation.pcap --out OUTDIR
        [--limit N | --train-limit N --eval-limit N] [--fm-fraction 0.05] [--holdout 0.1] [--max-ae 10]
        [--window 1.0] [--anchor ../shared/anchors/kitsune-py] [--assumed-rate 300]

Protocol (docs/behaviour.md, "Kitsune-py beside vmsentry: how it is run"):
* Sampling: the first N packets of each capture (--limit for both, or --train-limit/--eval-limit); Kitsune-py
  manages a few hundred packets per second, so a full evaluation capture can take hours. The time is
  estimated and printed before Kitsune starts.
* One capture, training part first: the training packets, then the evaluation packets moved later by whole
  seconds when they would otherwise start before the training part ends (editcap -t, then mergecap -a), so
  that Kitsune's damped statistics never see time run backwards. Timestamps written out are the original ones.
* Kitsune trains online during its grace periods, on the training part only: FMgrace = --fm-fraction of it
  (the feature mapping), ADgrace = the rest of it less the --holdout share (the autoencoders). The held-out
  last share of the training part is scored but not learned from: it is benign traffic Kitsune did not train
  on, and fits the log-normal of its RMSE, as Kitsune's example.py does, which turns an RMSE into a
  "confidence" (the log-normal CDF; fitted on the held-out part's samples, so on the same per-window maxima). Every evaluation packet is scored in execute mode (no learning).
* Samples: evaluation packets grouped by (source MAC, floor(ts / window) * window); score = the largest RMSE
  in the group, confidence = the same through the log-normal.

Output in OUTDIR:
  kitsune-packets.npz  ts float64, mac uint64, rmse float32, part uint8 (0 grace, 1 holdout, 2 evaluation)
  kitsune-samples.npz  mac uint64, start float64, score float32, confidence float32, packets uint32
                       (evaluation samples only, sorted by mac then start)
  kitsune-run.json     inputs, limits, the time shift, grace periods, the evaluation time range covered, and
                       Kitsune's speed (packets/s, wall and CPU, with and without its tshark parse)
A MAC is its 6 bytes as a big-endian integer (int.from_bytes(mac, "big")), 0 for a frame without one.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VMSENTRY_SHARED") or REPO.parent / "shared")
ANCHOR = SHARED / "anchors" / "kitsune-py"
VENV = REPO / "benchmarks" / ".data" / "kitsune-venv"
DRIVER = Path(__file__).resolve().with_name("kitsune_driver.py")
# What Kitsune-py needs (../shared/anchors/README.md): numpy<2 because it uses np.Inf, cython for the pyximport
# in netStat.py, scapy (imported by FeatureExtractor.py), scipy (KitNET's feature clustering).
VENV_PACKAGES = ("numpy<2", "scipy", "cython", "scapy")
VENV_CHECK = "import numpy, scipy, Cython, scapy, sys; sys.exit(0 if numpy.__version__ < '2' else 1)"
MIN_TRAIN_PACKETS = 20
PART_GRACE, PART_HOLDOUT, PART_EVAL = 0, 1, 2


class AnchorError(Exception):
    """One line for the user: a missing file or tool, an empty capture, a failed run."""


def venv_python(venv: Path = VENV) -> Path:
    return venv / "bin" / "python"


def ensure_venv(venv: Path = VENV, quiet: bool = False) -> Path:
    """Kitsune's own virtualenv (benchmarks/.data is gitignored), made once; returns its python. The pip of
    this machine's package index installs VENV_PACKAGES; what it installed is printed. A lock file keeps two
    runs (a test and a benchmark) from building it at the same time."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    python = venv_python(venv)
    with open(venv.parent / (venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and subprocess.run([python, "-c", VENV_CHECK], capture_output=True).returncode == 0:
            return python
        say = (lambda *a: None) if quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
        say(f"kitsune: creating {venv} and installing {', '.join(VENV_PACKAGES)}")
        subprocess.run([sys.executable, "-m", "venv", "--clear", venv], check=True)
        pip = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", *VENV_PACKAGES], capture_output=True, text=True
        )
        if pip.returncode != 0:
            raise AnchorError(f"{venv}: pip install {' '.join(VENV_PACKAGES)} failed: {pip.stderr.strip()[-300:]}")
        frozen = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True)
        say("kitsune: installed " + ", ".join(frozen.stdout.split()))
    return python


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AnchorError(f"{name} not found on PATH (Debian package tshark / wireshark-common)")
    return path


def _run(*command) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or ["no message"]
        raise AnchorError(f"{Path(command[0]).name} failed: {lines[-1]}")
    return result.stdout


def capture_info(path: Path) -> tuple[int, float, float]:
    """(packets, first timestamp, last timestamp) of a capture, by capinfos."""
    fields = _run(_tool("capinfos"), "-M", "-T", "-r", "-c", "-a", "-e", "-S", path).strip().split("\t")
    count = int(fields[1])
    if count == 0:
        raise AnchorError(f"{path}: the capture has no packets")
    return count, float(fields[2]), float(fields[3])


def first_packets(source: Path, target: Path, limit: int | None) -> tuple[int, float, float]:
    """Copy the first `limit` packets (all when None) of `source` to the writable pcap `target`."""
    if not source.is_file():
        raise AnchorError(f"{source}: no such capture")
    # editcap -r keeps the listed packets (without it, it would delete them); -F pcap also turns pcapng
    # into the pcap that Kitsune's reader takes.
    _run(_tool("editcap"), "-F", "pcap", *(["-r", source, target, f"1-{limit}"] if limit else [source, target]))
    return capture_info(target)


def prepare_capture(train: Path, evaluation: Path, train_limit, eval_limit, workdir: Path) -> dict:
    """One pcap in `workdir`: the training part, then the evaluation part shifted later if needed."""
    train_part, eval_part = workdir / "train.pcap", workdir / "eval.pcap"
    train_count, _, train_last = first_packets(train, train_part, train_limit)
    eval_count, eval_first, eval_last = first_packets(evaluation, eval_part, eval_limit)
    if train_count < MIN_TRAIN_PACKETS:
        raise AnchorError(f"{train}: {train_count} packets, Kitsune needs at least {MIN_TRAIN_PACKETS} to train")
    shift = 0 if eval_first > train_last else math.ceil(train_last - eval_first) + 1
    if shift:
        shifted = workdir / "eval-shifted.pcap"
        _run(_tool("editcap"), "-F", "pcap", "-t", str(shift), eval_part, shifted)
        eval_part = shifted
    combined = workdir / "combined.pcap"
    _run(_tool("mergecap"), "-a", "-F", "pcap", "-w", combined, train_part, eval_part)
    return {
        "pcap": combined,
        "train_packets": train_count,
        "eval_packets": eval_count,
        "shift_s": shift,
        "eval_first": eval_first,
        "eval_last": eval_last,
    }


def grace_periods(train_packets: int, fm_fraction: float, holdout: float) -> tuple[int, int, int]:
    """(FMgrace, ADgrace, held-out packets). KitNET learns from packet i while i <= FMgrace + ADgrace (0-based),
    so FMgrace + ADgrace + 1 packets in all; the held-out packets after them are scored in execute mode."""
    held = int(train_packets * holdout)
    learned = train_packets - held
    fm = max(1, round(train_packets * fm_fraction))
    ad = learned - fm - 1
    if ad < 1:
        raise AnchorError(f"{train_packets} training packets leave no anomaly-detector grace period")
    return fm, ad, held


def run_kitsune(python: Path, anchor: Path, prepared: dict, fm: int, ad: int, max_ae: int, workdir: Path) -> dict:
    """Runs the driver in Kitsune's venv; returns its per-packet arrays and its speed record."""
    if not (anchor / "Kitsune.py").is_file():
        raise AnchorError(f"{anchor}: Kitsune.py not found (the anchor lives in ../shared/anchors/kitsune-py)")
    _tool("tshark")
    out, speed = workdir / "packets.npz", workdir / "speed.json"
    command = [python, DRIVER, "--anchor", anchor, "--pcap", prepared["pcap"]]
    command += ["--train-packets", prepared["train_packets"], "--fm-grace", fm, "--ad-grace", ad]
    command += ["--max-ae", max_ae, "--shift", prepared["shift_s"], "--out", out, "--speed", speed]
    # Kitsune prints its progress on stdout: pass it to our stderr so that stdout stays for the summary.
    result = subprocess.run([str(c) for c in command], cwd=workdir, stdout=sys.stderr)
    if result.returncode != 0:
        raise AnchorError(f"Kitsune driver failed with exit code {result.returncode}")
    with np.load(out) as packets:
        arrays = {name: packets[name] for name in packets.files}
    return {"packets": arrays, "speed": json.loads(speed.read_text(encoding="utf-8"))}


def lognormal_confidence(rmse: np.ndarray, benign: np.ndarray) -> np.ndarray:
    """P(log RMSE of benign traffic < log rmse) under a normal fitted to the benign logs (Kitsune's
    example.py fits the same log-normal to benign RMSEs to pick its threshold)."""
    from scipy.special import ndtr

    logs = np.log(benign[benign > 0])
    if logs.size < 2 or not np.isfinite(logs).all():
        return np.full(rmse.shape, np.nan, dtype=np.float32)
    spread = max(float(logs.std()), 1e-12)
    with np.errstate(divide="ignore"):
        return ndtr((np.log(rmse) - logs.mean()) / spread).astype(np.float32)


def aggregate(ts: np.ndarray, mac: np.ndarray, score: np.ndarray, window: float = 1.0) -> dict:
    """Per (source MAC, window start) the largest score and the packet count; rows sorted by mac, start.
    Window start = floor(ts / window) * window, the same key as vmsentry's samples."""
    start = np.floor(ts / window) * window
    order = np.lexsort((start, mac))
    mac, start, score = mac[order], start[order], score[order]
    if mac.size == 0:
        return {"mac": mac, "start": start, "score": score, "packets": np.zeros(0, np.uint32)}
    new = np.ones(mac.size, dtype=bool)
    new[1:] = (mac[1:] != mac[:-1]) | (start[1:] != start[:-1])
    heads = np.flatnonzero(new)
    return {
        "mac": mac[heads].astype(np.uint64),
        "start": start[heads].astype(np.float64),
        "score": np.maximum.reduceat(score, heads).astype(np.float32),
        "packets": np.diff(np.append(heads, mac.size)).astype(np.uint32),
    }


def _save_npz(path: Path, **arrays) -> None:
    """np.savez through a temporary file in the same folder, renamed into place: never half a file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **arrays)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def run(args) -> dict:
    python = ensure_venv(args.venv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kitsune-") as temporary:
        workdir = Path(temporary)
        prepared = prepare_capture(args.train, args.eval, args.train_limit, args.eval_limit, workdir)
        fm, ad, held = grace_periods(prepared["train_packets"], args.fm_fraction, args.holdout)
        total = prepared["train_packets"] + prepared["eval_packets"]
        estimate = total / args.assumed_rate
        print(
            f"kitsune: {prepared['train_packets']} training packets (FMgrace {fm}, ADgrace {ad}, "
            f"{held} held out) + {prepared['eval_packets']} evaluation packets: estimated {estimate:.0f} s "
            f"(~{estimate / 60:.1f} min) at ~{args.assumed_rate:.0f} packets/s",
            file=sys.stderr,
            flush=True,
        )
        result = run_kitsune(python, args.anchor, prepared, fm, ad, args.max_ae, workdir)
    packets, speed = result["packets"], result["speed"]
    count = packets["rmse"].size
    if count != total:
        raise AnchorError(f"Kitsune stopped after {count} of {total} packets (see its output above)")
    part = np.full(count, PART_EVAL, dtype=np.uint8)
    part[: fm + ad + 1] = PART_GRACE
    part[fm + ad + 1 : prepared["train_packets"]] = PART_HOLDOUT
    rmse = packets["rmse"]
    evaluation = part == PART_EVAL
    samples = aggregate(packets["ts"][evaluation], packets["mac"][evaluation], rmse[evaluation], args.window)
    holdout = part == PART_HOLDOUT
    benign = aggregate(packets["ts"][holdout], packets["mac"][holdout], rmse[holdout], args.window)
    samples["confidence"] = lognormal_confidence(samples["score"], benign["score"])
    _save_npz(args.out / "kitsune-packets.npz", ts=packets["ts"], mac=packets["mac"], rmse=rmse, part=part)
    _save_npz(args.out / "kitsune-samples.npz", **samples)
    record = {
        "tool": "Kitsune-py (ymirsky/Kitsune-py 7c8ea51, ../shared/anchors/kitsune-py)",
        "train": str(args.train),
        "eval": str(args.eval),
        "train_limit": args.train_limit,
        "eval_limit": args.eval_limit,
        "train_packets": prepared["train_packets"],
        "eval_packets": prepared["eval_packets"],
        "eval_shift_s": prepared["shift_s"],
        "eval_first": prepared["eval_first"],
        "eval_last": prepared["eval_last"],
        "fm_grace": fm,
        "ad_grace": ad,
        "holdout_packets": held,
        "window": args.window,
        "samples": int(samples["mac"].size),
        "speed": speed,
    }
    run_json = args.out / "kitsune-run.json"
    temporary = run_json.with_name(run_json.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, run_json)
    return record


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="benign training capture")
    parser.add_argument("--eval", type=Path, required=True, help="labelled evaluation capture")
    parser.add_argument("--out", type=Path, required=True, help="folder for the .npz and .json outputs")
    parser.add_argument("--limit", type=int, help="first N packets of each capture (both parts)")
    parser.add_argument("--train-limit", type=int, help="first N packets of the training capture")
    parser.add_argument("--eval-limit", type=int, help="first N packets of the evaluation capture")
    parser.add_argument("--fm-fraction", type=float, default=0.05, help="share of training packets for FMgrace")
    parser.add_argument("--holdout", type=float, default=0.1, help="last share of training packets, not learned")
    parser.add_argument("--max-ae", type=int, default=10, help="largest autoencoder in KitNET's ensemble")
    parser.add_argument("--window", type=float, default=1.0, help="sample window in seconds")
    parser.add_argument("--anchor", type=Path, default=ANCHOR, help="the kitsune-py folder")
    parser.add_argument("--venv", type=Path, default=VENV, help="Kitsune's virtualenv (made when missing)")
    parser.add_argument("--assumed-rate", type=float, default=300.0, help="packets/s for the time estimate")
    args = parser.parse_args(argv)
    args.train_limit = args.train_limit or args.limit
    args.eval_limit = args.eval_limit or args.limit
    for name in ("train_limit", "eval_limit"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not (0 < args.fm_fraction < 1 and 0 <= args.holdout < 1 and args.window > 0 and args.assumed_rate > 0):
        parser.error("--fm-fraction must be in (0, 1), --holdout in [0, 1), --window and --assumed-rate > 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        record = run(args)
    except AnchorError as error:
        print(f"kitsune_anchor: {error}", file=sys.stderr)
        return 2
    speed = record["speed"]
    print(
        f"Kitsune-py: {speed['packets']} packets, {speed['packets_per_s_wall']:.0f} packets/s wall, "
        f"{speed['packets_per_s_cpu']:.0f} packets/s CPU ({speed['packets_per_s_wall_with_parse']:.0f} with "
        f"the tshark parse); {record['samples']} samples -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
