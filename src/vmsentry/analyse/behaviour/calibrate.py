"""From an anomaly score to numbers that mean something.

* **p-value** (conformal): the share of benign reference scores at least as high as this one,
  ``(1 + #{reference >= s}) / (n + 1)``. Under "this window is like the benign ones" it is uniform, so a
  threshold on it fixes the false-alarm rate; it is NOT the probability of an attack. Beyond the highest
  reference score it would stay at 1/(n+1), too coarse for Benjamini-Hochberg across many VMs (one VM
  of 500 at q 0.01 needs p <= 2e-5), so there it decays as an exponential tail fitted to the top 1 % of
  the reference (at least ``TAIL_MIN`` scores; peaks over a threshold): ``1/(n+1) exp(-(s - max) /
  mean excess)``. An assumption about the far tail, stated here; it is continuous with the empirical part.
* **confidence** = P(attack | score), fitted on labelled samples of a calibration split:
  isotonic regression (sklearn, exported as its threshold arrays and applied with ``np.interp``) when the
  calibration set has at least ``MIN_ISOTONIC`` attack samples and as many benign ones; with fewer, isotonic
  steps would follow single samples, so Platt scaling (a logistic regression on log(score)) is used.
* **Benjamini-Hochberg** across the entities scored in the same window: with 500 VMs, 500 tests per
  window; rejecting only where BH rejects at ``q`` keeps the expected share of false discoveries at q.
* **Expected calibration error**: the mean |confidence - attack rate| over equal-width confidence bins,
  weighted by the bins' sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_ISOTONIC = 50
BH_Q = 0.01
TAIL_SHARE = 0.01
TAIL_MIN = 10


def p_values(reference_sorted: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Conformal p-values of ``scores`` against the sorted benign reference scores (higher = more unusual)."""
    n = len(reference_sorted)
    scores = np.asarray(scores, dtype=np.float64)
    at_least = n - np.searchsorted(reference_sorted, scores, side="left")
    p = (1.0 + at_least) / (n + 1.0)
    if n <= TAIL_MIN:
        return p
    top = min(max(TAIL_MIN, int(np.ceil(TAIL_SHARE * n))), n - 1)
    excess = float(np.mean(reference_sorted[n - top :] - reference_sorted[n - top - 1]))
    highest = reference_sorted[-1]
    beyond = scores > highest
    if excess > 0 and beyond.any():
        p[beyond] = np.exp(-(scores[beyond] - highest) / excess) / (n + 1.0)
    return p


def _platt_input(scores: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(scores, 1e-12))


@dataclass
class Calibration:
    """A fitted score -> probability map: ``method`` is "isotonic" (``x``, ``y`` the thresholds, applied
    with np.interp, flat beyond the ends) or "platt" (``x`` = [slope, intercept] on log(score))."""

    method: str
    x: np.ndarray
    y: np.ndarray
    positives: int = 0
    negatives: int = 0

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)
        slope, intercept = self.x
        return 1.0 / (1.0 + np.exp(-(slope * _platt_input(scores) + intercept)))

    def describe(self) -> dict:
        return {"method": self.method, "positives": self.positives, "negatives": self.negatives}


def fit_calibration(scores: np.ndarray, labels: np.ndarray, min_isotonic: int = MIN_ISOTONIC) -> Calibration:
    """Fit P(attack | score) on labelled samples (see the module text for the choice of method)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    negatives = int(len(labels) - positives)
    if positives == 0 or negatives == 0:
        raise ValueError(f"calibration needs attack and benign samples ({positives} attack, {negatives} benign)")
    if positives >= min_isotonic and negatives >= min_isotonic:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels.astype(np.float64))
        return Calibration("isotonic", iso.X_thresholds_.copy(), iso.y_thresholds_.copy(), positives, negatives)
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6).fit(_platt_input(scores)[:, None], labels)
    coefficients = np.array([lr.coef_[0, 0], lr.intercept_[0]])
    return Calibration("platt", coefficients, np.zeros(0), positives, negatives)


def benjamini_hochberg(p: np.ndarray, groups: np.ndarray, q: float = BH_Q) -> np.ndarray:
    """The rejections (bool per test) of the Benjamini-Hochberg procedure at level ``q``, applied
    separately within each group of tests (``groups``: e.g. the window start of each sample): in a group
    of m tests sorted by p, reject the k smallest where k is the largest rank with p_(k) <= k q / m."""
    p = np.asarray(p, dtype=np.float64)
    n = len(p)
    if not n:
        return np.zeros(0, dtype=bool)
    _, group = np.unique(groups, return_inverse=True)
    order = np.lexsort((p, group))
    sorted_group = group[order]
    starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]])
    sizes = np.diff(np.r_[starts, n])
    rank = np.arange(n) - np.repeat(starts, sizes) + 1
    m = np.repeat(sizes, sizes)
    passes = p[order] <= rank * q / m
    largest = np.maximum.reduceat(np.where(passes, rank, 0), starts)
    reject = np.empty(n, dtype=bool)
    reject[order] = rank <= np.repeat(largest, sizes)
    return reject


def expected_calibration_error(confidence: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width bins of [0, 1] (see the module text); NaN for no samples."""
    confidence = np.asarray(confidence, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    if not len(confidence):
        return float("nan")
    which = np.minimum((confidence * bins).astype(np.int64), bins - 1)
    # sum over bins of (n_bin / n) |mean confidence - attack rate| = sum |sum conf - sum labels| / n
    conf_sum = np.bincount(which, confidence, bins)
    label_sum = np.bincount(which, labels, bins)
    return float(np.abs(conf_sum - label_sum).sum() / len(confidence))
