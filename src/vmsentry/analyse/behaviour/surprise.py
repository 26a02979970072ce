"""The ``surprise`` scorer: how rare each feature's deviation is among benign windows, summed with weights.

Each feature of the normalised vector (``z``, the entity's own profile: profile.py) is turned into a
surprise: ``-log`` of the share of benign training windows whose ``z`` on that feature is at least as high
(only deviations upwards count: an attack adds traffic, ARP claims, new peers...; a quiet window is no
alarm), plus, past the highest benign value, how many tail spreads it lies beyond it. This is the
histogram-based outlier score (HBOS; Goldstein and Dengel, KI-2012 poster track) on per-entity normalised
features, with empirical tails instead of histograms.

Why not the largest |z| alone: features differ in how heavy their benign tails are. A web server's bytes
sent are 20 spreads above its median in one window of a hundred (a burst), while an ARP frame claiming
another MAC's address never occurs in benign traffic; in spreads the first looks worse, in rarity the second
is the one that matters.

The score is ``sum_j w_j * surprise_j``. Unsupervised, every ``w_j`` is 1. Given a labelled calibration set,
``fit_weights`` learns them by logistic regression with every weight bounded below by ``WEIGHT_FLOOR``
(scipy L-BFGS-B): features that tell attacks apart count more, none counts against an alarm, and every
feature keeps a share, so that an attack unlike every one in the calibration set still scores by its rarity
(measured: with the DNS tunnel incidents left out of the fit, the tunnel windows still rank at ROC AUC
0.99). The benign reference of p-values is re-scored with the final weights.
"""

from __future__ import annotations

import numpy as np

GRID = 4096  # quantiles of each feature's benign z kept in the model (the file stays ~1 MB)
TAIL_SHARE = 0.01  # the benign top 1 % sets the spread of the tail beyond the highest benign value
TAIL_FLOOR = 0.1
WEIGHT_FLOOR = 0.05
L2 = 1e-3
# benign windows the weights are fitted on (a random draw, fixed seed; every attack window is kept): the
# fit is a few seconds per fold instead of a minute, and 6,000 windows pin 51 weights down well enough
FIT_BENIGN = 6000


class Surprise:
    name = "surprise"

    def __init__(self, grid: np.ndarray, tail: np.ndarray, weights: np.ndarray, count: float) -> None:
        self.grid, self.tail, self.weights, self.count = grid, tail, weights, float(count)

    @classmethod
    def fit(cls, matrix: np.ndarray, seed: int = 0) -> Surprise:
        z = np.clip(matrix, 0.0, None)
        n, features = z.shape
        if not n:
            raise ValueError("no benign samples to fit the surprise scorer on")
        grid = np.quantile(z, np.linspace(0.0, 1.0, min(GRID, n)), axis=0) if features else np.zeros((1, 0))
        kth = int(n * (1 - TAIL_SHARE))
        top = np.partition(z, kth, axis=0)[kth:]  # (the top 1 %, unordered: only its spread is used)
        tail = np.maximum(top.std(axis=0), TAIL_FLOOR) if features else np.zeros(0)
        return cls(grid.astype(np.float64), tail.astype(np.float64), np.ones(features), n)

    def per_feature(self, matrix: np.ndarray) -> np.ndarray:
        """The surprise of each feature of each sample (n, features)."""
        z = np.clip(matrix, 0.0, None)
        out = np.empty(z.shape, dtype=np.float64)
        levels = len(self.grid)
        for j in range(z.shape[1]):
            column = self.grid[:, j]
            # share of benign windows at least as high, from the quantile grid, never below 1 / (count + 1)
            above = (levels - np.searchsorted(column, z[:, j], side="left")) / levels
            share = np.maximum(above, 1.0 / (self.count + 1.0))
            out[:, j] = -np.log(share) + np.maximum(z[:, j] - column[-1], 0.0) / self.tail[j]
        return out

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return self.per_feature(matrix) @ self.weights if matrix.shape[1] else np.zeros(len(matrix))

    def fit_weights(self, matrix: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Learn ``weights`` from labelled samples (see the module text); returns them."""
        self.weights = fit_bounded_logistic(self.per_feature(matrix), np.asarray(labels, bool))
        return self.weights

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "sp.grid": self.grid,
            "sp.tail": self.tail,
            "sp.weights": self.weights,
            "sp.count": np.array([self.count]),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> Surprise:
        grid, tail, weights, count = (arrays[k] for k in ("sp.grid", "sp.tail", "sp.weights", "sp.count"))
        if grid.ndim != 2 or grid.shape[1] != n_features or not len(grid) or (np.diff(grid, axis=0) < 0).any():
            raise ValueError("sp.grid is not a sorted grid of quantiles per feature")
        if tail.shape != (n_features,) or weights.shape != (n_features,) or count.shape != (1,):
            raise ValueError("sp.tail, sp.weights or sp.count has the wrong shape")
        if (tail <= 0).any() or (weights < 0).any() or not np.isfinite(weights).all() or not count[0] >= 1:
            raise ValueError("sp.tail, sp.weights or sp.count holds values a trained model never has")
        return cls(grid, tail, weights, float(count[0]))


def fit_bounded_logistic(x: np.ndarray, y: np.ndarray, floor: float = WEIGHT_FLOOR) -> np.ndarray:
    """Weights ``w >= floor`` (and an intercept, dropped) of a class-balanced logistic regression of ``y``
    on ``x``, L2-regularised, fitted on every attack row and at most ``FIT_BENIGN`` benign ones."""
    from scipy.optimize import minimize

    if y.all() or not y.any():
        raise ValueError("weights need both attack and benign samples")
    benign = np.flatnonzero(~y)
    if len(benign) > FIT_BENIGN:
        drawn = np.random.default_rng(0).choice(benign, FIT_BENIGN, replace=False)
        rows = np.sort(np.concatenate([np.flatnonzero(y), drawn]))
        x, y = x[rows], y[rows]
    sample_weight = np.where(y, 0.5 / y.sum(), 0.5 / (~y).sum())
    features = x.shape[1]

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:features], theta[features]
        margin = x @ w + b
        value = np.where(y, np.logaddexp(0.0, -margin), np.logaddexp(0.0, margin))
        gradient = (0.5 * (1.0 + np.tanh(0.5 * margin)) - y) * sample_weight  # (sigmoid(margin) - y)
        return float(sample_weight @ value + L2 * (w @ w)), np.r_[x.T @ gradient + 2 * L2 * w, gradient.sum()]

    start = np.r_[np.full(features, max(floor, 0.2)), -5.0]
    bounds = [(floor, None)] * features + [(None, None)]
    result = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    return np.maximum(result.x[:features], floor)


def out_of_fold_scores(scorer: Surprise, matrix: np.ndarray, labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Scores of every sample by weights fitted without its group's samples (a group = an entity): each
    attacking entity is one fold, the other entities are split into five. Honest scores for choosing the
    scorer and fitting the calibration: in-sample scores of fitted weights would flatter them."""
    labels = np.asarray(labels, bool)
    attackers = np.unique(groups[labels])
    folds = [groups == g for g in attackers.tolist()]
    others = np.flatnonzero(~np.isin(groups, attackers))
    other_groups = np.unique(groups[others])
    for k in range(5):
        chosen = other_groups[k::5]
        if len(chosen):
            folds.append(np.isin(groups, chosen))
    surprise = scorer.per_feature(matrix)
    scores = surprise.sum(axis=1)
    for held in folds:
        rest = ~held
        if labels[rest].any() and not labels[rest].all():
            scores[held] = surprise[held] @ fit_bounded_logistic(surprise[rest], labels[rest])
    return scores
