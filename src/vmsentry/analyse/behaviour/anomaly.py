"""anomaly: the behaviour model's alerts. The feature extractor turns the frames of each buffer
(``FrameColumns``) into one sample per entity and window; the model scores them; an alarmed window (the
Benjamini-Hochberg test across the entities scored in that window rejects AND the calibrated confidence
reaches the threshold) opens or grows the entity's incident. Like every detector it reads no file and no
clock: the model comes in, alerts go out through the sink; responses act on the alerts elsewhere.

One alert per incident: consecutive alarmed windows of one entity are one alert (``count`` = alarmed
windows) until it stays quiet for ``suppress`` seconds. The alert keeps the explanation of its most
confident window (``evidence.features``), the peers involved as victims, the window, the model's name and
the p-value. A model fitted without labelled data has no calibrated probability to give: its alerts carry
confidence 0.5 and ``evidence.calibrated = false`` so that no automatic response (>= 0.8) acts on them.
"""

from __future__ import annotations

import numpy as np

from vmsentry.analyse.detectors.base import Detector
from vmsentry.model.alert import Alert
from vmsentry.model.behaviour import Samples

UNCALIBRATED_CONFIDENCE = 0.5
HIGH = 0.95  # confidence from which an anomaly is of high severity
EXPLAINED = 4  # features named in an alert


class Anomaly(Detector):
    name = "anomaly"

    def __init__(self, truth, tun, sink, model, extractor, model_name: str = "") -> None:
        super().__init__(truth, tun, sink)
        self.model, self.extractor, self.model_name = model, extractor, model_name
        self.windows = 0  # samples scored
        self.alarmed = 0

    def on_framecolumns(self, ev) -> None:
        self._score(self.extractor.feed(ev.frames))

    def finish(self) -> None:
        self._score(self.extractor.finish())

    def _score(self, samples: Samples | None) -> None:
        if samples is None or not len(samples):
            return
        self.windows += len(samples)
        raw, p_value, confidence = self.model.score(samples)
        alarm = self.model.alarms(samples, p_value, confidence)
        if self.tun.learn:
            self.model.update(samples, alarm)
        for i in np.flatnonzero(alarm).tolist():
            self.alarmed += 1
            self._alarm(samples, i, float(p_value[i]), float(confidence[i]))

    def _alarm(self, samples: Samples, i: int, p_value: float, confidence: float) -> None:
        entity = samples.entities[int(samples.entity[i])]
        start = float(samples.start[i])
        calibrated = self.model.calibrated
        if not calibrated:
            confidence = UNCALIBRATED_CONFIDENCE
        attacker = {k: v for k, v in (("vm", entity.name if entity.role or entity.mac is None or self.truth.known and entity.name != entity.mac else None), ("mac", entity.mac), ("ip", entity.ip)) if v}
        if not attacker:
            attacker = {"vm": entity.name}
        severity = "high" if confidence >= HIGH else "medium"
        alert = self.incident(
            entity.name,
            start,
            lambda: Alert("anomaly", severity, start, attacker, confidence, _describe, {"entity": entity.name}),
        )
        alert.seen(start + samples.window)
        if confidence >= alert.confidence or "features" not in alert.evidence:
            alert.evidence.update(self._evidence(samples, i, p_value, calibrated))
        alert.raise_to(severity, confidence)
        for peer, _bytes in samples.peers[i] if i < len(samples.peers) else ():
            vm = self.truth.vm_of_ip.get(_packed(peer))
            alert.victim({"ip": peer, **({"vm": vm} if vm else {})})

    def _evidence(self, samples: Samples, i: int, p_value: float, calibrated: bool) -> dict:
        features = [
            {"feature": name, "value": _round(value), "usual": _round(usual), "ratio": _round(ratio), "text": text}
            for name, value, usual, ratio, text in self.model.explain(samples, i)[:EXPLAINED]
        ]
        return {
            "features": features,
            "window": {"start": round(float(samples.start[i]), 6), "seconds": samples.window},
            "p_value": float(f"{p_value:.3g}"),
            "model": self.model_name,
            "calibrated": calibrated,
        }


def _describe(alert: Alert) -> str:
    who = alert.attacker.get("vm") or alert.attacker.get("mac") or alert.attacker.get("ip") or "?"
    if alert.evidence.get("calibrated", True):
        how = f"confidence {alert.confidence:.2f}"
    else:
        how = "model not calibrated"
    reasons = "; ".join(f["text"] for f in alert.evidence.get("features", [])[:3])
    windows = f", {alert.count} windows" if alert.count > 1 else ""
    return f"{who}: unusual traffic ({how}{windows}): {reasons}" if reasons else f"{who}: unusual traffic ({how})"


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _packed(ip: str) -> bytes | None:
    from vmsentry.model.traffic import ip_bytes

    return ip_bytes(ip)
