"""anomaly: the behaviour model's alerts. The feature extractor turns the frames of each buffer
(``FrameColumns``) into one sample per entity and window; the model scores them; an alarmed window (the
Benjamini-Hochberg test across the entities scored in that window rejects AND the calibrated confidence
reaches the threshold, ``BehaviourModel.alarms``) opens or grows the entity's incident. Like every detector
it reads no file and no clock: the model comes in, alerts go out through the sink; responses act on the
alerts elsewhere. Live input that goes quiet completes its windows through ``advance(now)`` (the Engine's
``idle``), since no later frame arrives to close them.

One alert per incident: consecutive alarmed windows of one entity are one alert (``count`` = alarmed
windows) until it stays quiet for ``suppress`` seconds. The alert keeps the explanation of its most
confident window (``evidence.features``: feature, value, usual, ratio and the words), the peers involved as
victims (the most bytes first), the window, the model's name and the p-value.

Only calibrated models are used (``check_usable``): an uncalibrated model has no probability to give (its
confidence is NaN and it never alarms), so ``detect``/``watch --model`` refuse it rather than run a
detector that can never speak. With ``learn`` on (the watcher's default) the model's profiles follow the
traffic under the model's poisoning guard (``BehaviourModel.update``); nothing is written back to the file.
"""

from __future__ import annotations

import numpy as np

from vmsentry.analyse.behaviour.catalogue import FEATURES, LINEAR
from vmsentry.analyse.behaviour.entities import UNATTRIBUTED
from vmsentry.analyse.behaviour.features import FeatureExtractor
from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.behaviour import Samples
from vmsentry.model.traffic import ip_bytes, mac_bytes

HIGH = 0.95  # confidence from which an anomaly is of high severity
EXPLAINED = 4  # features named in an alert
SUMMARISED = 2  # of which the summary line names
NOT_CALIBRATED = "not calibrated: it has no probability to give, so it never alarms; train it with --calibrate PCAP --truth TRUTH.json"


def check_usable(model) -> None:
    """ValueError (the problem in words) for a model ``detect``/``watch`` cannot use."""
    if not model.calibrated:
        raise ValueError(NOT_CALIBRATED)


class Anomaly(Detector):
    name = "anomaly"

    def __init__(self, truth, tun, sink, model, model_name: str = "") -> None:
        super().__init__(truth, tun, sink)
        check_usable(model)
        self.model, self.model_name = model, model_name
        self.extractor = FeatureExtractor(truth, model.window)
        self.windows = 0  # samples scored
        self.alarmed = 0  # of which alarmed
        self.learned = 0  # of which moved the profiles (online updates)

    def on_framecolumns(self, ev) -> None:
        self._score(self.extractor.feed(ev.frames))

    def advance(self, now: float) -> None:
        """Live input went quiet: complete the windows that ended before ``now``."""
        self._score(self.extractor.advance(now))

    def finish(self) -> None:
        self._score(self.extractor.finish())

    def _score(self, samples: Samples) -> None:
        if not len(samples):
            return
        self.windows += len(samples)
        scored = self.model.score(samples)
        alarm = self.model.alarms(samples, scored)
        if self.tun.learn:
            self.learned += self.model.update(samples, alarm, scored)
        _, p_value, confidence = scored
        for i in np.flatnonzero(alarm).tolist():
            self.alarmed += 1
            self._alarm(samples, i, float(p_value[i]), float(confidence[i]))

    def _alarm(self, samples: Samples, i: int, p_value: float, confidence: float) -> None:
        entity = samples.entities[int(samples.entity[i])]
        start = float(samples.start[i])
        severity = "high" if confidence >= HIGH else "medium"
        attacker = self.truth.endpoint(ip_bytes(entity.ip), mac_bytes(entity.mac))
        attacker.pop("host", None)
        alert = self.incident(
            entity.name,
            start,
            lambda: Alert("anomaly", severity, start, attacker, confidence, _describe, {"entity": entity.name}),
        )
        if alert.count == 0 or confidence > alert.confidence:  # the most confident window explains the alert
            alert.evidence.update(self._evidence(samples, i, p_value))
        alert.seen(start + samples.window)
        alert.raise_to(severity, confidence)
        for peer, _ in samples.peers[i] if i < len(samples.peers) else ():
            packed = ip_bytes(peer)
            alert.victim(self.truth.endpoint(packed) if packed else {"ip": peer, "mac": None, "vm": None})

    def _evidence(self, samples: Samples, i: int, p_value: float) -> dict:
        rows = self.model.profiles.rows(samples)
        whose = _whose(self.model.profiles.keys[int(rows[i])])
        features = [
            {
                "feature": name,
                "value": _round(value),
                "usual": _round(usual),
                "ratio": _round(ratio),
                "text": explain_text(name, value, usual, ratio, whose),
            }
            for name, value, usual, ratio in self.model.explain(samples, i, top=EXPLAINED)
        ]
        return {
            "features": features,
            "window": {"start": round(float(samples.start[i]), 6), "seconds": samples.window},
            "p_value": float(f"{p_value:.3g}"),
            "model": self.model_name,
            "profile": whose,
        }


def explain_text(name: str, value: float, usual: float, ratio: float, whose: str = "this VM's usual") -> str:
    """'bytes sent per second: 40x this VM's usual (12.3 MB/s, usually 300 kB/s)'."""
    feature = FEATURES.get(name)
    phrase, unit = (feature.phrase, feature.unit) if feature else (name, "")
    now, was = _amount(value, unit), _amount(usual, unit)
    if name in LINEAR:  # shares, scores, log ratios: a multiple of them means little
        return f"{phrase}: {now}, usually {was}"
    if usual < 0.01:
        return f"{phrase}: {now} ({whose} about 0)"
    if ratio >= 1:
        return f"{phrase}: {_number(ratio)}x {whose} ({now}, usually {was})"
    return f"{phrase}: {_number(1 / max(ratio, 1e-9))}x below {whose} ({now}, usually {was})"


def _whose(profile_key: str) -> str:
    kind, _, what = profile_key.partition(":")
    if kind == "entity":
        return "this VM's usual"
    if kind == "role":
        return f"the usual for its role ({what})"
    return "the network's usual"


def _number(value: float) -> str:
    """3 significant digits, whole numbers from 1,000 on with separators (never 1e+03)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _amount(value: float, unit: str) -> str:
    if unit.startswith("bytes"):
        rest = unit[len("bytes") :]
        for size, prefix in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if abs(value) >= size:
                return f"{value / size:.3g} {prefix}{rest}"
        return f"{value:.3g} B{rest}"
    return f"{_number(value)} {unit}".rstrip()


def _describe(alert: Alert) -> str:
    who = alert.attacker.get("vm") or alert.attacker.get("mac") or alert.attacker.get("ip")
    if not who:
        entity = alert.evidence.get("entity", UNATTRIBUTED)
        who = "unattributed senders (MACs no inventory names)" if entity == UNATTRIBUTED else entity
    windows = f", {alert.count} windows" if alert.count > 1 else ""
    head = f"{who}: unusual traffic (confidence {alert.confidence:.2f}{windows})"
    reasons = "; ".join(f["text"] for f in alert.evidence.get("features", [])[:SUMMARISED])
    return f"{head}: {reasons}" if reasons else head


def _round(value: float) -> float:
    return float(f"{value:.3g}")
