"""The behaviour model: per-entity profiles, an anomaly scorer over the normalised features, a benign
reference for p-values, a calibration to probabilities, and the alarm rule.

Training (``BehaviourModel.train``) is unsupervised, on benign samples: profiles are fitted on all of
them; the scorers on a random 80 % and the other 20 % are scored to make the benign reference (split
conformal: the reference was not seen by the scorer, so its p-values are honest). Scorers:

* ``zmax``: the largest |z| of the normalised vector (how many spreads the most unusual feature is from
  the entity's usual);
* ``iforest``: an Isolation Forest (iforest.py), sklearn-fitted, scored from exported arrays;
* ``autoencoder``: a KitNET-like autoencoder ensemble (autoencoder.py);
* ``surprise``: how rare each feature's deviation is among benign windows, summed with weights learnt on
  the calibration set, none below a floor (surprise.py); judged and calibrated on out-of-fold scores.

``scorer="auto"`` trains all four; ``calibrate`` then keeps the one with the highest ROC AUC on the
labelled calibration set (ties go to the simpler: zmax, then iforest) and records the AUCs and the reason.
Until calibrated, an "auto" model scores with ``DEFAULT_SCORER``, and confidence is NaN: an uncalibrated
model never alarms.

Alarm rule (``alarms``): within each window, Benjamini-Hochberg at ``q`` (0.01) over the p-values of the
entities scored in it, AND confidence >= ``confidence_threshold`` (0.8).

Online updates and the poisoning guard (``update``; docs/behaviour.md says the same): only the entities'
own profiles move (the scorers, the reference and the calibration stay as trained), and only with windows
that (1) have a p-value > 0.2 (look ordinary to the model as it stands), (2) are not alarmed, and whose
entity (3) had no alarmed window within 600 s before or after; (4) at least 30 such windows per entity
per update; (5) each profile's median may move towards the new windows' median by at most 5 % of its
spread per hour of traffic time since its last update (at most one hour's worth per update), and its
spread may grow or shrink by at most a factor e^(±0.05) per hour likewise. An attacker who wants the
model to accept a rate 10 spreads above usual must keep every window ordinary-looking for 200 hours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from vmsentry.analyse.behaviour.calibrate import (
    BH_Q,
    Calibration,
    benjamini_hochberg,
    expected_calibration_error,
    fit_calibration,
    p_values,
)
from vmsentry.analyse.behaviour.catalogue import LINEAR
from vmsentry.analyse.behaviour.profile import MIN_SAMPLES, Profiles, fit_profiles, robust_centre_spread
from vmsentry.model.behaviour import Samples

SCORERS = ("zmax", "surprise", "iforest", "autoencoder")  # simplest first: ties in AUC go to the earlier
# measured best on the real-tools lab captures (docs/benchmarks.md "the behaviour baseline"); calibration picks
DEFAULT_SCORER = "surprise"
ALARM_CONFIDENCE = 0.8
REFERENCE_SHARE = 0.2
MIN_TRAIN = 50
# the online update's guard (module text)
UPDATE_MIN_P = 0.2
UPDATE_QUIET_S = 600.0
UPDATE_MIN_WINDOWS = 30
UPDATE_DRIFT_PER_HOUR = 0.05
# an explanation's ratio divides by the usual value floored here (a rate that is usually 0)
RATIO_FLOOR = 1e-3


class ZMax:
    """The largest |z| over the features."""

    name = "zmax"

    @classmethod
    def fit(cls, matrix: np.ndarray, seed: int = 0) -> ZMax:
        return cls()

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return np.abs(matrix).max(axis=1) if matrix.shape[1] else np.zeros(len(matrix))

    def arrays(self) -> dict[str, np.ndarray]:
        return {}


def _scorer_class(name: str):
    if name == "zmax":
        return ZMax
    if name == "surprise":
        from vmsentry.analyse.behaviour.surprise import Surprise

        return Surprise
    if name == "iforest":
        from vmsentry.analyse.behaviour.iforest import IsolationForestArrays

        return IsolationForestArrays
    if name == "autoencoder":
        from vmsentry.analyse.behaviour.autoencoder import KitnetEnsemble

        return KitnetEnsemble
    raise ValueError(f"unknown scorer {name!r} (auto, {', '.join(SCORERS)})")


@dataclass
class BehaviourModel:
    """A trained model. ``scorers`` maps name -> scorer (one after calibration picked, all four for an
    uncalibrated "auto" model); ``reference`` maps name -> sorted benign scores; ``log1p`` marks the
    columns that are log1p-scaled (explanations show them in rates again)."""

    names: list[str]
    window: float
    profiles: Profiles
    scorers: dict
    reference: dict[str, np.ndarray]
    scorer: str
    calibration: Calibration | None = None
    choice: dict = field(default_factory=dict)
    log1p: np.ndarray | None = None
    q: float = BH_Q
    confidence_threshold: float = ALARM_CONFIDENCE
    trained: dict = field(default_factory=dict)
    calibration_report: dict = field(default_factory=dict)
    last_alarm: dict[str, float] = field(default_factory=dict)  # entity name -> newest alarmed window (memory only)
    # the benign reference windows (normalised) between train and calibrate, to re-score them once the
    # surprise scorer's weights are fitted (memory only; a loaded model re-scores calibration's benign windows)
    reference_z: np.ndarray | None = field(default=None, repr=False)

    # -- training ---------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        samples: Samples,
        scorer: str = "auto",
        roles: Mapping[str, str] | None = None,
        seed: int = 0,
        min_samples: int = MIN_SAMPLES,
        log1p: Sequence[bool] | None = None,
    ) -> BehaviourModel:
        """Train on benign ``samples`` (see the module text). ``roles`` (entity name -> role) overrides
        or fills the entities' roles; ``log1p`` per column (default: as the extractor stores them, every
        column but the shares, scores and log ratios of catalogue.LINEAR is log1p-scaled)."""
        names = _check(samples)
        if len(samples) < MIN_TRAIN:
            raise ValueError(f"too few samples to train on ({len(samples)}; at least {MIN_TRAIN})")
        wanted = SCORERS if scorer == "auto" else (scorer,)
        classes = {name: _scorer_class(name) for name in wanted}
        profiles = fit_profiles(samples, roles, min_samples)
        z = profiles.transform(samples, profiles.rows(samples, roles))
        rng = np.random.default_rng(seed)
        is_reference = rng.random(len(samples)) < REFERENCE_SHARE
        fitted = {name: klass.fit(z[~is_reference], seed=seed) for name, klass in classes.items()}
        reference = {name: np.sort(s.score(z[is_reference])) for name, s in fitted.items()}
        flags = np.array([n not in LINEAR for n in names], dtype=bool) if log1p is None else np.asarray(log1p, bool)
        if flags.shape != (len(names),):
            raise ValueError(f"log1p has {flags.size} flags for {len(names)} features")
        chosen = DEFAULT_SCORER if scorer == "auto" else scorer
        reason = "asked for" if scorer != "auto" else "default until a calibration set picks the best ROC AUC"
        entity_counts = np.bincount(samples.entity, minlength=len(samples.entities))
        return cls(
            names=names,
            window=float(samples.window),
            profiles=profiles,
            scorers=fitted,
            reference=reference,
            scorer=chosen,
            choice={"scorer": chosen, "asked": scorer, "reason": reason},
            log1p=flags,
            reference_z=z[is_reference] if "surprise" in fitted else None,
            trained={
                "samples": len(samples),
                "reference": int(is_reference.sum()),
                "seed": seed,
                "entities": [
                    {"name": e.name, "role": (roles or {}).get(e.name, e.role), "samples": int(count)}
                    for e, count in zip(samples.entities, entity_counts)
                ],
            },
        )

    def calibrate(self, samples: Samples, labels: np.ndarray) -> dict:
        """Fit confidence = P(attack | score) on labelled samples of a calibration split (``labels``: True =
        the entity attacks or is attacked in that window); an "auto" model first keeps the scorer with the
        best ROC AUC here. Returns what was recorded in ``choice`` and the calibration's description."""
        from sklearn.metrics import roc_auc_score

        labels = np.asarray(labels, dtype=bool)
        if labels.shape != (len(samples),):
            raise ValueError(f"{labels.size} labels for {len(samples)} samples")
        if labels.all() or not labels.any():
            raise ValueError("calibration needs both attack and benign samples")
        z = self._normalised(samples)
        raw = {name: s.score(z) for name, s in self.scorers.items() if name != "surprise"}
        if "surprise" in self.scorers:
            from vmsentry.analyse.behaviour.surprise import out_of_fold_scores

            # its weights are fitted on these labels: judge and calibrate it on out-of-fold scores
            raw["surprise"] = out_of_fold_scores(self.scorers["surprise"], z, labels, samples.entity)
        auc = {name: float(roc_auc_score(labels, raw[name])) for name in raw}
        if len(self.scorers) > 1:
            best = max(SCORERS, key=lambda name: (auc.get(name, -1.0), -SCORERS.index(name)))
            listed = ", ".join(f"{name} {auc[name]:.3f}" for name in SCORERS if name in auc)
            self.choice = {
                "scorer": best,
                "asked": "auto",
                "reason": f"best ROC AUC on the calibration set ({len(labels)} samples, {int(labels.sum())} attack): {listed}",
                "auc": auc,
            }
            self.scorer = best
            self.scorers = {best: self.scorers[best]}
            self.reference = {best: self.reference[best]}
        else:
            self.choice = {**self.choice, "auc": auc}
        if self.scorer == "surprise":
            surprise = self.scorers["surprise"]
            surprise.fit_weights(z, labels)
            benign = self.reference_z if self.reference_z is not None else z[~labels]
            self.reference = {"surprise": np.sort(surprise.score(benign))}
        self.reference_z = None
        self.calibration = fit_calibration(raw[self.scorer], labels)
        confidence = self.calibration(raw[self.scorer])
        self.calibration_report = {
            **self.calibration.describe(),
            "samples": len(labels),
            "auc": auc[self.scorer],
            "ece_in_sample": expected_calibration_error(confidence, labels),
        }
        return {"choice": self.choice, "calibration": self.calibration_report}

    # -- scoring ----------------------------------------------------------------------------------------

    def _normalised(self, samples: Samples) -> np.ndarray:
        if list(samples.names) != self.names:
            raise ValueError("the samples' features are not the ones this model was trained on")
        return self.profiles.transform(samples)

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def score(self, samples: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw anomaly score, conformal p-value, calibrated confidence) per sample, float64; confidence is
        NaN while the model is not calibrated."""
        raw = self.scorers[self.scorer].score(self._normalised(samples))
        p = p_values(self.reference[self.scorer], raw)
        confidence = self.calibration(raw) if self.calibration is not None else np.full(len(raw), np.nan)
        return raw, p, confidence

    def alarms(self, samples: Samples, scored: tuple | None = None) -> np.ndarray:
        """Bool per sample: BH rejects its p-value among the window's entities AND confidence >= the
        threshold. ``scored`` = the result of ``score(samples)`` when already computed."""
        _, p, confidence = scored if scored is not None else self.score(samples)
        reject = benjamini_hochberg(p, samples.start, self.q)
        with np.errstate(invalid="ignore"):
            return reject & (confidence >= self.confidence_threshold)

    def explain(self, samples: Samples, i: int, top: int = 5) -> list[tuple[str, float, float, float]]:
        """The features that weighed most in sample ``i``: (feature name, value, usual, ratio), the largest
        |z| first; those at least 3 spreads out, at least 3 and at most ``top``. Values are in the feature's
        own units (log1p undone); ratio = value / max(usual, RATIO_FLOOR)."""
        rows = self.profiles.rows(samples)
        x = samples.matrix[i].astype(np.float64)
        row = rows[i]
        z = (x - self.profiles.centre[row]) / self.profiles.spread[row]
        order = np.argsort(-np.abs(z), kind="stable")
        count = int(np.clip((np.abs(z) >= 3).sum(), min(3, len(order)), top))
        usual = self.profiles.centre[row]
        flags = self.log1p if self.log1p is not None else np.ones(len(x), dtype=bool)
        value = np.where(flags, np.expm1(x), x)
        usual = np.where(flags, np.expm1(usual), usual)
        return [
            (self.names[c], float(value[c]), float(usual[c]), float(value[c] / max(usual[c], RATIO_FLOOR)))
            for c in order[:count]
        ]

    # -- online -----------------------------------------------------------------------------------------

    def update(self, samples: Samples, alarmed: np.ndarray, scored: tuple | None = None) -> int:
        """Move the entities' own profiles towards new traffic under the poisoning guard (module text).
        Returns how many windows were used."""
        alarmed = np.asarray(alarmed, dtype=bool)
        if not len(samples):
            return 0
        _, p, _ = scored if scored is not None else self.score(samples)
        ends = samples.start + samples.window
        for index in np.unique(samples.entity[alarmed]):
            name = samples.entities[index].name
            newest = float(ends[alarmed & (samples.entity == index)].max())
            self.last_alarm[name] = max(self.last_alarm.get(name, -math.inf), newest)
        last = np.array([self.last_alarm.get(e.name, -math.inf) for e in samples.entities])[samples.entity]
        usable = (p > UPDATE_MIN_P) & ~alarmed & (np.abs(samples.start - last) > UPDATE_QUIET_S)
        rows = self.profiles.rows(samples)
        entity_row = np.array([k.startswith("entity:") for k in self.profiles.keys])
        used = 0
        for row in np.unique(rows[usable & entity_row[rows]]):
            take = usable & (rows == row)
            if take.sum() < UPDATE_MIN_WINDOWS:
                continue
            newest = float(samples.start[take].max())
            hours = min(max(newest - self.profiles.updated[row], 0.0) / 3600.0, 1.0)
            centre, spread = robust_centre_spread(samples.matrix[take].astype(np.float64), self.profiles.floor)
            old_centre, old_spread = self.profiles.centre[row], self.profiles.spread[row]
            cap = UPDATE_DRIFT_PER_HOUR * old_spread * hours
            self.profiles.centre[row] = old_centre + np.clip(centre - old_centre, -cap, cap)
            factor = np.exp(UPDATE_DRIFT_PER_HOUR * hours)
            new_spread = np.clip(spread, old_spread / factor, old_spread * factor)
            self.profiles.spread[row] = np.maximum(new_spread, self.profiles.floor)
            self.profiles.updated[row] = newest
            used += int(take.sum())
        return used

    # -- description ------------------------------------------------------------------------------------

    def thresholds(self) -> dict:
        return {
            "confidence": self.confidence_threshold,
            "bh_q": self.q,
            "update_min_p": UPDATE_MIN_P,
            "update_quiet_s": UPDATE_QUIET_S,
            "update_drift_per_hour": UPDATE_DRIFT_PER_HOUR,
            "min_samples": self.profiles.min_samples,
        }


def _check(samples: Samples) -> list[str]:
    matrix = samples.matrix
    if matrix.ndim != 2 or matrix.shape != (len(samples), len(samples.names)):
        raise ValueError(
            f"matrix shape {matrix.shape} does not match {len(samples)} samples x {len(samples.names)} features"
        )
    if not np.isfinite(matrix).all():
        raise ValueError("the feature matrix has NaN or infinite values")
    return list(samples.names)
