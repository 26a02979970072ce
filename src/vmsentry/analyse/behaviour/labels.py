"""Ground truth of labelled captures (``truth.json`` beside each) and the labels of samples.

    truth = load_truth("capture.truth.json")     # GroundTruth, or TruthError: one line, file and place
    y = label(samples, truth)                    # per sample: 1 attack, 0 benign, -1 left out

A sample is an attack (1) when its entity is an incident's attacker and its window overlaps the
incident's [start, end]; a sample of a victim during an incident (and not an attacker in one) is left out
(-1): its traffic is the attack's, not its own behaviour, and it is neither normal nor the attacker.
"""

from __future__ import annotations

import json
import math

import numpy as np

from vmsentry.model.behaviour import Entity, GroundTruth, Incident, Samples

SPLITS = ("train", "calibration", "evaluation")
MAX_TRUTH_BYTES = 64 << 20


class TruthError(ValueError):
    """A truth file that cannot be used: the message is one line naming the file and the place."""


def label(samples: Samples, truth: GroundTruth) -> np.ndarray:
    """1 (attacker during an incident), -1 (victim during an incident), 0 (the rest), as int8 per sample."""
    y = np.zeros(len(samples), np.int8)
    if not len(samples):
        return y
    names = np.array([e.name for e in samples.entities], object)[samples.entity]
    start, end = samples.start, samples.start + samples.window
    attacker = np.zeros(len(samples), bool)
    victim = np.zeros(len(samples), bool)
    for inc in truth.incidents:
        during = (start <= inc.end) & (end > inc.start)
        attacker |= during & (names == inc.attacker)
        if inc.victims:
            victim |= during & np.isin(names, list(inc.victims))
    y[victim] = -1
    y[attacker] = 1
    return y


def load_truth(path: str) -> GroundTruth:
    """Read a ``truth.json`` (``{"split", "vms": [{"name","mac","ip","role"}], "incidents": [{"kind",
    "attacker","victims","start","end","tool"}], "capture"?}``)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_TRUTH_BYTES + 1)
    except OSError as exc:
        raise TruthError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_TRUTH_BYTES:
        raise TruthError(f"{path}: larger than {MAX_TRUTH_BYTES >> 20} MB: not a truth file")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise TruthError(f"{path}: byte {exc.start}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise TruthError(f"{path}: line {exc.lineno} column {exc.colno}: not JSON ({exc.msg})") from None
    return truth_from(doc, path)


def truth_from(doc, path: str = "<truth>") -> GroundTruth:
    """A ``GroundTruth`` from the parsed JSON of a truth file (``path`` names it in errors)."""
    if not isinstance(doc, dict):
        raise TruthError(f"{path}: top level: expected an object")
    split = doc.get("split")
    if split not in SPLITS:
        raise TruthError(f"{path}: split: expected one of {', '.join(SPLITS)}, not {_show(split)}")
    vms = _list(doc, "vms", path)
    entities = []
    for i, vm in enumerate(vms):
        where = f"vms[{i}]"
        if not isinstance(vm, dict):
            raise TruthError(f"{path}: {where}: expected an object")
        name = _text(vm, "name", f"{path}: {where}", required=True)
        entities.append(
            Entity(
                name,
                _text(vm, "mac", f"{path}: {where}"),
                _text(vm, "ip", f"{path}: {where}"),
                _text(vm, "role", f"{path}: {where}"),
            )
        )
    incidents = []
    for i, inc in enumerate(_list(doc, "incidents", path)):
        where = f"{path}: incidents[{i}]"
        if not isinstance(inc, dict):
            raise TruthError(f"{where}: expected an object")
        victims = inc.get("victims", [])
        if not isinstance(victims, list) or not all(isinstance(v, str) for v in victims):
            raise TruthError(f"{where}.victims: expected a list of names")
        start, end = _time(inc, "start", where), _time(inc, "end", where)
        if end < start:
            raise TruthError(f"{where}: end {end} is before start {start}")
        incidents.append(
            Incident(
                _text(inc, "kind", where, required=True),
                _text(inc, "attacker", where, required=True),
                tuple(victims),
                start,
                end,
                _text(inc, "tool", where) or "",
            )
        )
    capture = doc.get("capture", "")
    return GroundTruth(entities, incidents, split, capture if isinstance(capture, str) else "")


def _list(doc: dict, key: str, path: str) -> list:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise TruthError(f"{path}: {key}: expected a list")
    return value


def _text(obj: dict, key: str, where: str, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise TruthError(f"{where}.{key}: expected text, not {_show(value)}")
    return value


def _time(obj: dict, key: str, where: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TruthError(f"{where}.{key}: expected a time in seconds since the epoch, not {_show(value)}")
    return float(value)


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
