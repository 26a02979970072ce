"""``vmsentry baseline train|eval|show``: the behaviour baseline (analyse/behaviour; docs/behaviour.md).

    vmsentry baseline train (PCAP... | -i IF --duration S) [--inventory INV] -o MODEL
                            [--calibrate PCAP --truth TRUTH.json]... [--scorer S] [--window S] [--seed N]
    vmsentry baseline eval MODEL PCAP... [--truth TRUTH.json]... [--inventory INV] [--format text|json|md]
    vmsentry baseline show MODEL [--format text|json]

A labelled capture's truth file is given with ``--truth`` (paired with the captures by order) or found beside
it: ``DIR/<name>.truth.json`` for ``DIR/<name>.pcap`` (what the lab generator writes). VMs are named by
``--inventory`` when given, else by the truth files' VMs, else by MAC.

Exit codes: 0 done; 2 an input cannot be used (a capture that cannot be read, or only in part; a bad truth
file; a corrupt or other-version model; no traffic to learn from); 3 usage, or the model cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vmsentry.commands.base import Command, CommandGroup, CommandInfo, FatalError, seconds, write
from vmsentry.commands.baseline_render import render_eval, render_header, render_train
from vmsentry.model.text import printable

EXIT_OK, EXIT_INPUT, EXIT_USAGE = 0, 2, 3
TRUTH_SUFFIX = ".truth.json"
CAPTURE_SUFFIXES = (".pcap.gz", ".pcapng.gz", ".pcap", ".pcapng", ".gz")

SUBCOMMANDS: dict[str, CommandInfo] = {
    "train": CommandInfo(
        __name__, "TrainCommand", "learn each VM's normal traffic from captures (or live) and calibrate it"
    ),
    "eval": CommandInfo(
        __name__, "EvalCommand", "detection rate, false alarms and calibration of a model on labelled captures"
    ),
    "show": CommandInfo(
        __name__, "ShowCommand", "what a model file holds: what it was trained on, scorer, calibration"
    ),
}


class BaselineCommand(CommandGroup):
    """The behaviour baseline: a per-VM model of normal traffic whose alerts (`detect --model`, `watch --model`)
    carry a calibrated confidence. Exit 0 done, 2 an input cannot be used (capture, truth file, model, no
    traffic to learn from), 3 usage."""

    subcommands = SUBCOMMANDS


class InputProblem(Exception):
    """An input that cannot be used: one line, exit 2."""


class _BaselineVerb(Command):
    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.behaviour.labels import TruthError
        from vmsentry.analyse.behaviour.modelfile import ModelFileError
        from vmsentry.collect.traffic import BadTrafficInput

        self.damaged = 0
        try:
            code = self.work(args)
        except (InputProblem, TruthError, ModelFileError, BadTrafficInput) as exc:
            _err(str(exc))
            return EXIT_INPUT
        return EXIT_INPUT if self.damaged and code == EXIT_OK else code

    def work(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def problem(self, line: str) -> None:
        """A capture read only in part: said, and the run ends with exit 2."""
        self.damaged += 1
        _err(line)


# --- inputs ------------------------------------------------------------------------------------------------


def truth_beside(capture: str) -> str:
    """``DIR/x.truth.json`` for ``DIR/x.pcap`` (``.pcapng``, ``.gz`` alike)."""
    for suffix in CAPTURE_SUFFIXES:
        if capture.endswith(suffix):
            return capture[: -len(suffix)] + TRUTH_SUFFIX
    return capture + TRUTH_SUFFIX


def pair_truths(captures: list[str], truths: list[str], option: str, required: bool) -> list[str | None]:
    """The truth file of each capture: ``--truth`` by order, else the one beside it (None when there is none
    and none is required)."""
    if truths:
        if len(truths) != len(captures):
            raise FatalError(
                f"{option}: {len(captures)} capture(s) but {len(truths)} --truth file(s): give one per capture "
                f"(in order) or none (then {'X' + TRUTH_SUFFIX} beside each X.pcap is used)"
            )
        return list(truths)
    found = []
    for capture in captures:
        beside = truth_beside(capture)
        if os.path.isfile(beside):
            found.append(beside)
        elif required:
            raise InputProblem(f"{capture}: no truth file: give --truth TRUTH.json or put {beside} beside it")
        else:
            found.append(None)
    return found


def load_inventory(specs: list[str]):
    """The inventory that names the VMs (``--inventory``), or None."""
    if not specs:
        return None
    from vmsentry.collect import collect

    for spec in specs:
        if "://" not in spec and not os.path.exists(spec):
            raise InputProblem(f"{spec}: no such file or folder")
    paths = [s for s in specs if "://" not in s]
    inv, _ = collect(paths, [s for s in specs if s not in paths])
    for error in inv.errors:
        _err(error.line())
    if not (inv.vms or inv.networks):
        raise InputProblem(f"{', '.join(specs)}: no VM or network found to name the VMs by")
    return inv


def entity_source(inventory, truths: list):
    """What names the entities: the inventory, else the truth files' VMs (each name once), else None."""
    if inventory is not None:
        return inventory
    vms, seen = [], set()
    for truth in truths:
        for vm in truth.vms:
            if vm.name not in seen:
                seen.add(vm.name)
                vms.append(vm)
    return vms or None


def merged_truth(truths: list):
    """One ground truth of several captures (their incidents are told apart by time and attacker)."""
    from vmsentry.model.behaviour import GroundTruth

    vms = entity_source(None, truths) or []
    return GroundTruth(vms, [i for t in truths for i in t.incidents], truths[0].split if truths else "evaluation")


def subset(samples, rows):
    """The samples at ``rows`` (an index array)."""
    from vmsentry.model.behaviour import Samples

    peers = [samples.peers[i] for i in rows] if samples.peers else []
    return Samples(
        samples.entities,
        samples.names,
        samples.window,
        samples.entity[rows],
        samples.start[rows],
        samples.matrix[rows],
        peers,
    )


def labelled(samples, truth, y=None):
    """(samples without the left-out windows, attack labels, attack kind per sample). ``y``: the labels
    (labels.label's 1 / 0 / -1) when they come from elsewhere, e.g. another tool's windows labelled as
    ours of the same capture."""
    import numpy as np

    from vmsentry.analyse.behaviour.labels import label, seen_attacker

    if y is None:
        y = label(samples, truth)
    keep = np.flatnonzero(y >= 0)
    kept = subset(samples, keep)
    attack = y[keep] == 1
    kinds = np.full(len(kept), "", dtype=object)
    names = np.array([e.name for e in kept.entities], dtype=object)[kept.entity] if len(kept) else np.zeros(0, object)
    for incident in truth.incidents:
        during = (kept.start <= incident.end) & (kept.start + kept.window > incident.start)
        kinds[attack & during & (names == seen_attacker(incident)) & (kinds == "")] = incident.kind
    return kept, attack, kinds


def sha256_of(path: str) -> str:
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


# --- train -------------------------------------------------------------------------------------------------


class TrainCommand(_BaselineVerb):
    """Learn each VM's normal traffic from benign captures (or live from a bridge for --duration seconds) and
    write the model to -o. With --calibrate PCAP (and its --truth, or PCAP's .truth.json beside it) the model
    is calibrated on labelled traffic: its confidence becomes a probability of attack, and only a calibrated
    model raises alerts. A training capture with a truth file beside it leaves its labelled attack windows
    out. Exit 0 written, 2 an input cannot be used (or was read only in part: the model is written from the
    rest), 3 usage or the model cannot be written."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        from vmsentry.analyse.behaviour.model import SCORERS

        p.add_argument("pcaps", nargs="*", metavar="PCAP", help="benign capture(s) to learn from (pcap, pcapng)")
        p.add_argument("-i", "--interface", metavar="IF", help="learn from live traffic on IF instead (root)")
        p.add_argument("--duration", type=seconds, metavar="S", help="with -i: learn for S seconds")
        p.add_argument(
            "--inventory", action="append", default=[], metavar="INV", help="names the VMs by MAC (repeatable)"
        )
        p.add_argument("-o", "--output", required=True, metavar="MODEL", help="the model file to write (.npz)")
        p.add_argument(
            "--calibrate",
            action="append",
            default=[],
            metavar="PCAP",
            help="a labelled capture (benign and attacks) to calibrate on; not one to evaluate on (repeatable)",
        )
        p.add_argument(
            "--truth",
            action="append",
            default=[],
            metavar="TRUTH.json",
            help="the ground truth of each --calibrate capture, in order (default: X.truth.json beside each X.pcap)",
        )
        p.add_argument(
            "--scorer",
            choices=("auto", *SCORERS),
            default="auto",
            help="auto: the best ROC AUC on the calibration set (default)",
        )
        p.add_argument("--window", type=seconds, default=1.0, metavar="S", help="seconds per sample (default 1)")
        p.add_argument("--seed", type=int, default=0, help="random seed of the scorers (default 0)")
        p.add_argument("--format", choices=("text", "json"), default="text", help="the summary (default text)")

    def work(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.behaviour.labels import load_truth

        if bool(args.pcaps) == bool(args.interface):
            raise FatalError("give the captures to learn from (PCAP...) or -i IF --duration S, not both")
        if args.interface and not args.duration:
            raise FatalError("-i: give --duration S (how long to learn)")
        if args.truth and not args.calibrate:
            raise FatalError("--truth goes with --calibrate PCAP")
        started = time.perf_counter()
        cal_truths = [load_truth(t) for t in pair_truths(args.calibrate, args.truth, "--calibrate", True)]
        train_truths = [load_truth(t) if t else None for t in pair_truths(args.pcaps, [], "PCAP", False)]
        inventory = load_inventory(args.inventory)
        source = entity_source(inventory, cal_truths + [t for t in train_truths if t])
        samples, trained_on, left_out = self._training_samples(args, source, train_truths)
        if not len(samples):
            raise InputProblem(f"{_inputs(args)}: no traffic to learn from (no frames between VMs)")
        model = self._train(args, samples, cal_truths + [t for t in train_truths if t])
        import numpy as np

        per_window = int(np.median(np.unique(samples.start, return_counts=True)[1]))
        summary = {"samples": len(samples), "left_out": left_out, "trained_on": trained_on, "per_window": per_window}
        if args.calibrate:
            summary["calibration"] = self._calibrate(model, args, source, cal_truths)
        from vmsentry.analyse.behaviour.modelfile import ModelFileError, save

        try:
            header = save(model, args.output, trained_on)
        except ModelFileError as exc:
            raise FatalError(str(exc)) from None
        summary["seconds"] = round(time.perf_counter() - started, 2)
        report = train_report(model, header, summary)
        text = json.dumps(report, indent=1) + "\n" if args.format == "json" else render_train(report)
        write(text, None)
        return EXIT_OK

    def _training_samples(self, args, source, train_truths):
        import numpy as np

        from vmsentry.analyse.behaviour.labels import label
        from vmsentry.commands.behaviour_samples import samples_from_captures, samples_from_live

        trained_on: list[dict] = []
        if args.interface:
            from vmsentry.collect.traffic.live import LiveError
            from vmsentry.collect.traffic.ring import RingReader

            reader = RingReader(
                [args.interface],
                duration=args.duration,
                on_ready=lambda: _err(f"learning from {args.interface} for {args.duration:g} s"),
                on_problem=lambda _, line: _err(line),
            )
            try:
                samples, stats = samples_from_live(reader, source, args.window)
            except LiveError as exc:
                raise InputProblem(str(exc)) from None
            trained_on.append(_described(f"live:{args.interface}", "", stats))
            return samples, trained_on, 0

        def heard(path: str, stats) -> None:
            trained_on.append(_described(path, sha256_of(path), stats))

        samples = samples_from_captures(args.pcaps, source, args.window, on_problem=self.problem, on_capture=heard)
        truths = [t for t in train_truths if t is not None]
        if not truths or not len(samples):
            return samples, trained_on, 0
        y = label(samples, merged_truth(truths))
        keep = np.flatnonzero(y == 0)
        return subset(samples, keep), trained_on, int(len(samples) - len(keep))

    def _train(self, args, samples, truths):
        from vmsentry.analyse.behaviour.model import BehaviourModel

        roles = {vm.name: vm.role for t in truths for vm in t.vms if vm.role}
        try:
            return BehaviourModel.train(samples, args.scorer, roles=roles or None, seed=args.seed)
        except ValueError as exc:
            raise InputProblem(f"{_inputs(args)}: cannot train: {exc}") from None

    def _calibrate(self, model, args, source, truths) -> dict:
        from vmsentry.commands.behaviour_samples import samples_from_captures

        if not all(t.incidents for t in truths):
            empty = next(c for c, t in zip(args.calibrate, truths) if not t.incidents)
            _err(f"{empty}: its truth file lists no attack: it calibrates only the benign side")
        samples = samples_from_captures(args.calibrate, source, model.window, on_problem=self.problem)
        kept, attack, _ = labelled(samples, merged_truth(truths))
        try:
            return model.calibrate(kept, attack)
        except ValueError as exc:
            raise InputProblem(f"{', '.join(args.calibrate)}: cannot calibrate: {exc}") from None


def _described(name: str, sha: str, stats) -> dict:
    return {"file": name, "sha256": sha, "frames": int(stats.packets), "first": stats.first_ts, "last": stats.last_ts}


def _inputs(args) -> str:
    return ", ".join(args.pcaps) if args.pcaps else f"-i {args.interface}"


def train_report(model, header: dict, summary: dict) -> dict:
    """What the training did, for the summary: samples, entities (and which fall back to their role's or the
    network's profile), the scorer and why, the calibration, and whether alarms are possible at all."""
    import numpy as np

    from vmsentry.analyse.behaviour.calibrate import TAIL_MIN

    profiles = model.profiles
    entities = []
    for e in header.get("entities", []):
        key = profiles.keys[profiles.row_of(e["name"], e.get("role"))]
        entities.append({**e, "profile": key})
    per_window = summary["per_window"]
    reference = int(model.trained.get("reference", 0))
    smallest_p = 1.0 / (reference + 1)
    return {
        "model": header,
        **summary,
        "entities": entities,
        "fallback": [e["name"] for e in entities if not e["profile"].startswith("entity:")],
        "bh": {
            "reference": reference,
            "smallest_p_value": smallest_p,
            "entities_per_window": per_window,  # the median, as trained: Benjamini-Hochberg's m
            # beyond TAIL_MIN reference scores the p-values extrapolate past the highest one (calibrate.py)
            "can_alarm": bool(reference > TAIL_MIN or (per_window and smallest_p <= model.q / per_window)),
        },
        "calibrated": model.calibrated,
        "reference_scores": int(np.size(model.reference.get(model.scorer, []))),
    }


# --- eval --------------------------------------------------------------------------------------------------


class EvalCommand(_BaselineVerb):
    """Score labelled captures (not the ones the model was trained or calibrated on) and print, per attack kind
    and overall: ROC AUC, detection rate at 1 % false alarms per VM-hour, incidents alarmed at the model's own
    threshold (confidence >= 0.8), precision of those alarms, expected calibration error, time to detect,
    and the false alarms per VM-day on the benign traffic (docs/behaviour.md defines each). Exit 0, 2 an input
    cannot be used, 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("model", metavar="MODEL", help="a model file (`vmsentry baseline train`)")
        p.add_argument("pcaps", nargs="+", metavar="PCAP", help="labelled captures to evaluate on")
        p.add_argument(
            "--truth",
            action="append",
            default=[],
            metavar="TRUTH.json",
            help="the ground truth of each capture, in order (default: X.truth.json beside each X.pcap)",
        )
        p.add_argument(
            "--inventory", action="append", default=[], metavar="INV", help="names the VMs by MAC (repeatable)"
        )
        p.add_argument("--format", choices=("text", "json", "md"), default="text", help="output (default text)")
        p.add_argument("-o", "--output", metavar="FILE", help="write the table here (atomically) instead of stdout")

    def work(self, args: argparse.Namespace) -> int:
        import numpy as np

        from vmsentry.analyse.behaviour import evaluate
        from vmsentry.analyse.behaviour.features import NAMES
        from vmsentry.analyse.behaviour.labels import load_truth
        from vmsentry.analyse.behaviour.modelfile import load
        from vmsentry.commands.behaviour_samples import samples_from_captures

        truths = [load_truth(t) for t in pair_truths(args.pcaps, args.truth, "PCAP", True)]
        model, header = load(args.model, features=NAMES)
        source = entity_source(load_inventory(args.inventory), truths)
        samples = samples_from_captures(args.pcaps, source, model.window, on_problem=self.problem)
        if not len(samples):
            raise InputProblem(f"{', '.join(args.pcaps)}: no traffic to evaluate on")
        truth = merged_truth(truths)
        kept, attack, kinds = labelled(samples, truth)
        scored = model.score(kept)
        alarms = model.alarms(kept, scored)
        raw, _, confidence = scored
        table = evaluate.evaluate(
            raw,
            confidence,
            alarms,
            attack,
            kinds,
            kept.entity,
            kept.start,
            kept.window,
            truth.incidents,
            [e.name for e in kept.entities],
        )
        table["model"] = {"file": args.model, "scorer": model.scorer, "calibrated": model.calibrated}
        table["captures"] = list(args.pcaps)
        table["alarms"] = int(np.count_nonzero(alarms))
        if args.format == "json":
            text = json.dumps(table, indent=1) + "\n"
        else:
            text = render_eval(table, markdown=args.format == "md")
        write(text, args.output)
        return EXIT_OK


# --- show --------------------------------------------------------------------------------------------------


class ShowCommand(_BaselineVerb):
    """Print a model file's header: format version, when it was made, what it was trained on (files with
    sha256), the window, features, entities, the scorer and why, the calibration and the thresholds. Exit 0,
    2 the model cannot be used (corrupt, truncated, another version), 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("model", metavar="MODEL", help="a model file (`vmsentry baseline train`)")
        p.add_argument("--format", choices=("text", "json"), default="text", help="output (default text)")

    def work(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.behaviour.modelfile import load

        _, header = load(args.model)
        write(json.dumps(header, indent=1) + "\n" if args.format == "json" else render_header(header), None)
        return EXIT_OK


# --- for detect/watch --model ------------------------------------------------------------------------------


def load_model(path: str) -> tuple[object, str] | None:
    """The behaviour model of ``--model`` and the name its alerts give it ("file sha256:prefix"), or None
    after one line on stderr when it cannot be used (missing, corrupt, another version, not calibrated)."""
    from vmsentry.analyse.behaviour.anomaly import check_usable
    from vmsentry.analyse.behaviour.features import NAMES
    from vmsentry.analyse.behaviour.modelfile import ModelFileError, load

    try:
        model, _ = load(path, features=NAMES)
        check_usable(model)
        digest = sha256_of(path)
    except ModelFileError as exc:
        print(f"vmsentry: {printable(str(exc))}", file=sys.stderr)
        return None
    except (ValueError, OSError) as exc:
        print(f"vmsentry: {printable(path)}: {printable(str(exc))}", file=sys.stderr)
        return None
    return model, f"{os.path.basename(path)} sha256:{digest[:12]}"


def anomaly_stats(detector) -> dict:
    """What the behaviour model did in a run (the stats' ``anomaly``)."""
    return {
        "model": detector.model_name,
        "windows_scored": detector.windows,
        "windows_alarmed": detector.alarmed,
        "windows_learned": detector.learned,
        "late_frames": detector.extractor.late,
    }


def _err(line: str) -> None:
    print(f"vmsentry: {printable(line)}", file=sys.stderr)
