"""Evaluation of a behaviour model on labelled samples: one row per attack kind and one for all.

Definitions (docs/behaviour.md repeats them):

* **Alarm run**: alarmed windows of one entity whose starts are at most ``merge_gap`` (30 s) apart are one
  alarm; false alarms are the runs over benign samples (label False).
* **VM-time**: per entity, the time its samples cover: the sum of the gaps between its consecutive
  window starts, each gap counted up to ``COVER_GAP`` (300 s; longer gaps are a capture boundary or an
  idle VM and count one window), plus one window; summed over entities.
* **Incident detected**: any window of the attacker that overlaps [start, end + ``grace``] (5 s) is
  alarmed. **Time to detect**: the end of the first such alarmed window (when the alarm can be raised)
  minus the incident's start, at least 0.
* **roc_auc**: the kind's attack samples against all benign samples, by raw score.
* **detection_rate_at_1pct_fa**: the lowest score threshold (found by bisection over the benign scores)
  at which benign false alarms (runs of benign samples scoring >= it) are at most 0.01 per VM-hour; the
  share of the kind's incidents detected at that threshold (of its attack samples when no incidents are
  given).
* **incidents_alarmed**: share of incidents detected by the model's own alarms (BH and confidence >= 0.8).
* **precision** (overall row only): alarmed samples that are attacks / alarmed samples.
* **ece**: expected calibration error of confidence against labels (the kind's attacks and all benign).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vmsentry.analyse.behaviour.calibrate import expected_calibration_error
from vmsentry.analyse.behaviour.labels import seen_attacker
from vmsentry.model.behaviour import Incident

MERGE_GAP = 30.0
GRACE = 5.0
COVER_GAP = 300.0
FA_PER_VM_HOUR = 0.01


def alarm_runs(mask: np.ndarray, entity: np.ndarray, start: np.ndarray, merge_gap: float = MERGE_GAP) -> int:
    """How many alarms ``mask`` makes once consecutive alarmed windows of one entity are merged."""
    rows = np.flatnonzero(mask)
    if not len(rows):
        return 0
    order = np.lexsort((start[rows], entity[rows]))
    ent = entity[rows][order]
    begin = start[rows][order]
    new = np.r_[True, (ent[1:] != ent[:-1]) | (np.diff(begin) > merge_gap)]
    return int(new.sum())


def vm_hours(entity: np.ndarray, start: np.ndarray, window: float) -> float:
    """VM-time of the samples in hours (see the module text)."""
    if not len(entity):
        return 0.0
    order = np.lexsort((start, entity))
    ent = entity[order]
    begin = start[order]
    same = ent[1:] == ent[:-1]
    gaps = np.diff(begin)
    covered = np.where(same & (gaps <= COVER_GAP), gaps, window)
    # each entity's first window counts one window; every later one its gap (or one window after a long gap)
    seconds = window + covered.sum()
    return float(seconds / 3600.0)


def _incident_windows(incident: Incident, rows: np.ndarray, start: np.ndarray, window: float, grace: float):
    return rows[(start[rows] + window > incident.start) & (start[rows] <= incident.end + grace)]


def _detections(incidents, flagged, rows_of, start, window, grace) -> tuple[np.ndarray, np.ndarray]:
    """Per incident: detected (bool) and time to detect (NaN when not)."""
    detected = np.zeros(len(incidents), dtype=bool)
    delay = np.full(len(incidents), np.nan)
    for k, incident in enumerate(incidents):
        rows = _incident_windows(
            incident, rows_of.get(seen_attacker(incident), np.zeros(0, dtype=np.int64)), start, window, grace
        )
        hit = rows[flagged[rows]]
        if len(hit):
            detected[k] = True
            delay[k] = max(float(start[hit].min()) + window - incident.start, 0.0)
    return detected, delay


def threshold_at_fa_rate(
    scores: np.ndarray,
    benign: np.ndarray,
    entity: np.ndarray,
    start: np.ndarray,
    hours: float,
    rate: float = FA_PER_VM_HOUR,
) -> float:
    """The lowest threshold (over the benign scores, by bisection) whose benign alarm runs are at most
    ``rate`` per VM-hour; above the highest benign score when even that one is too many."""
    allowed = rate * hours
    candidates = np.unique(scores[benign])[::-1]  # highest first
    if not len(candidates):
        return float("-inf")

    def ok(index: int) -> bool:
        return alarm_runs(benign & (scores >= candidates[index]), entity, start) <= allowed

    if not ok(0):
        return float(np.nextafter(candidates[0], np.inf))
    low, high = 0, len(candidates) - 1  # ok(low) holds; find the last index that is ok
    while low < high:
        middle = (low + high + 1) // 2
        if ok(middle):
            low = middle
        else:
            high = middle - 1
    return float(candidates[low])


def evaluate(
    scores: np.ndarray,
    confidence: np.ndarray,
    alarms: np.ndarray,
    labels: np.ndarray,
    kinds: Sequence[str],
    entity: np.ndarray,
    start: np.ndarray,
    window: float,
    incidents: Sequence[Incident] = (),
    entity_names: Sequence[str] = (),
    merge_gap: float = MERGE_GAP,
    grace: float = GRACE,
) -> dict:
    """The evaluation table (module text): ``{"rows": [{"kind": "all", ...}, {"kind": <kind>, ...}],
    "benign": {...}}``. Per sample: ``scores`` (raw), ``confidence``, ``alarms`` (the model's), ``labels``
    (attack or not), ``kinds`` ("" when benign), ``entity`` (index into ``entity_names``), ``start``.
    ``incidents`` name their attacker as in ``entity_names``."""
    scores = np.asarray(scores, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    alarms = np.asarray(alarms, dtype=bool)
    labels = np.asarray(labels, dtype=bool)
    kinds = np.asarray(kinds, dtype=object)
    entity = np.asarray(entity)
    start = np.asarray(start, dtype=np.float64)
    benign = ~labels
    hours = vm_hours(entity, start, window)
    threshold = threshold_at_fa_rate(scores, benign, entity, start, hours)
    at_threshold = scores >= threshold
    false_alarms = alarm_runs(alarms & benign, entity, start, merge_gap)
    rows_of = {}
    for index, name in enumerate(entity_names):
        rows_of[name] = np.flatnonzero(entity == index)
    kind_names = sorted({k for k in kinds[labels] if k} | {i.kind for i in incidents})
    table = []
    for kind in ["all", *kind_names]:
        positive = labels if kind == "all" else labels & (kinds == kind)
        chosen = list(incidents) if kind == "all" else [i for i in incidents if i.kind == kind]
        row: dict = {"kind": kind, "samples": int(positive.sum()), "incidents": len(chosen)}
        row["roc_auc"] = _auc(scores, positive, benign)
        if chosen:
            detected_fa, _ = _detections(chosen, at_threshold, rows_of, start, window, grace)
            detected, delay = _detections(chosen, alarms, rows_of, start, window, grace)
            row["detection_rate_at_1pct_fa"] = float(detected_fa.mean())
            row["incidents_alarmed"] = float(detected.mean())
            row["median_time_to_detect_s"] = float(np.nanmedian(delay)) if detected.any() else None
            row["max_time_to_detect_s"] = float(np.nanmax(delay)) if detected.any() else None
        else:
            row["detection_rate_at_1pct_fa"] = float(at_threshold[positive].mean()) if positive.any() else None
            row["incidents_alarmed"] = None
            row["median_time_to_detect_s"] = row["max_time_to_detect_s"] = None
        row["precision"] = (
            (float((alarms & labels).sum() / alarms.sum()) if alarms.any() else None) if kind == "all" else None
        )
        both = positive | benign
        row["ece"] = (
            expected_calibration_error(confidence[both], labels[both]) if np.isfinite(confidence[both]).all() else None
        )
        table.append(row)
    return {
        "rows": table,
        "benign": {
            "samples": int(benign.sum()),
            "vm_hours": hours,
            "false_alarms": false_alarms,
            "false_alarms_per_vm_day": false_alarms / (hours / 24.0) if hours else None,
            "threshold_at_1pct_fa_per_vm_hour": threshold,
        },
    }


def _auc(scores: np.ndarray, positive: np.ndarray, benign: np.ndarray) -> float | None:
    if not positive.any() or not benign.any():
        return None
    from sklearn.metrics import roc_auc_score

    both = positive | benign
    return float(roc_auc_score(positive[both], scores[both]))
