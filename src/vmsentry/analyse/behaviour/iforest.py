"""Isolation Forest (Liu, Ting, Zhou, ICDM 2008) fitted with scikit-learn, then exported to plain arrays
and scored in numpy, so that a model file holds numbers only (no pickle) and scoring needs no sklearn.

Export: the trees' nodes are concatenated; per node ``left``/``right`` (a leaf points to itself),
``feature`` and ``threshold`` (a leaf compares feature 0 with +inf and so stays where it is), and per leaf
``leaf_path`` = its depth (edges from the root) + c(n), where n is the number of training samples that reached it and
c(n) = 2 H(n-1) - 2 (n-1)/n the average path length of an unsuccessful search in a binary search tree
(c(1) = 0, c(2) = 1): the path the tree would have grown below that leaf. The score is sklearn's
``score_samples`` negated, 2^(-mean path / c(max_samples)), in (0, 1], higher = more isolated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n) of the Isolation Forest paper, as scikit-learn computes it."""
    n = np.asarray(n, dtype=np.float64)
    result = np.zeros_like(n)
    result[n == 2] = 1.0
    big = n > 2
    result[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return result


@dataclass
class IsolationForestArrays:
    """An exported forest: ``roots`` (trees,) index the first node of each tree in the node arrays;
    ``depth`` is the deepest leaf's depth (the number of steps scoring takes)."""

    name: ClassVar[str] = "iforest"
    roots: np.ndarray
    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_path: np.ndarray
    max_samples: float
    depth: int

    @classmethod
    def fit(cls, matrix: np.ndarray, seed: int = 0, n_estimators: int = 100, max_samples: int = 256):
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(
            n_estimators=n_estimators, max_samples=min(max_samples, len(matrix)), random_state=seed
        )
        forest.fit(matrix.astype(np.float32))
        return cls.export(forest)

    @classmethod
    def export(cls, forest) -> IsolationForestArrays:
        """The arrays of a fitted ``sklearn.ensemble.IsolationForest``."""
        roots, lefts, rights, features, thresholds, paths = [], [], [], [], [], []
        offset = 0
        deepest = 0
        for estimator, used in zip(forest.estimators_, forest.estimators_features_):
            tree = estimator.tree_
            n = tree.node_count
            left = tree.children_left.astype(np.int64)
            right = tree.children_right.astype(np.int64)
            leaf = left < 0
            depth = np.zeros(n, dtype=np.int64)
            for node in range(n):  # children come after their parent in sklearn's node order
                if not leaf[node]:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            deepest = max(deepest, int(depth.max()))
            own = np.arange(n)
            roots.append(offset)
            lefts.append(np.where(leaf, own, left) + offset)
            rights.append(np.where(leaf, own, right) + offset)
            features.append(np.where(leaf, 0, np.asarray(used)[np.maximum(tree.feature, 0)]))
            thresholds.append(np.where(leaf, np.inf, tree.threshold))
            paths.append(np.where(leaf, depth + average_path_length(tree.n_node_samples), 0.0))
            offset += n
        return cls(
            np.array(roots, dtype=np.int64),
            np.concatenate(lefts),
            np.concatenate(rights),
            np.concatenate(features).astype(np.int64),
            np.concatenate(thresholds),
            np.concatenate(paths),
            float(forest.max_samples_),
            deepest,
        )

    def score(self, matrix: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Anomaly score per row (float64, (n,)); equals ``-IsolationForest.score_samples``."""
        # sklearn's trees compare float32 inputs with float64 thresholds: the same here, for the same leaves
        x_all = np.asarray(matrix, dtype=np.float32)
        result = np.empty(len(x_all))
        denominator = len(self.roots) * average_path_length(np.array([self.max_samples]))[0]
        for begin in range(0, len(x_all), chunk):
            x = x_all[begin : begin + chunk]
            rows = np.arange(len(x))
            total = np.zeros(len(x))
            for root in self.roots:
                node = np.full(len(x), root)
                for _ in range(self.depth):
                    go_left = x[rows, self.feature[node]] <= self.threshold[node]
                    node = np.where(go_left, self.left[node], self.right[node])
                total += self.leaf_path[node]
            result[begin : begin + chunk] = 2.0 ** (-total / denominator) if denominator else 1.0
        return result

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "if.roots": self.roots,
            "if.left": self.left,
            "if.right": self.right,
            "if.feature": self.feature,
            "if.threshold": self.threshold,
            "if.leaf_path": self.leaf_path,
            "if.shape": np.array([self.max_samples, self.depth], dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> IsolationForestArrays:
        nodes = len(arrays["if.left"])
        for name in ("if.right", "if.feature", "if.threshold", "if.leaf_path"):
            if arrays[name].shape != (nodes,):
                raise ValueError(f"{name} has shape {arrays[name].shape}, expected ({nodes},)")
        for name in ("if.roots", "if.left", "if.right"):
            values = arrays[name]
            if values.ndim != 1 or (len(values) and (values.min() < 0 or values.max() >= nodes)):
                raise ValueError(f"{name} points outside the trees")
        if nodes and (arrays["if.feature"].min() < 0 or arrays["if.feature"].max() >= n_features):
            raise ValueError("if.feature names a feature the model does not have")
        shape = arrays["if.shape"]
        if shape.shape != (2,) or not (1 <= shape[1] <= 64):
            raise ValueError("if.shape is not (max_samples, depth)")
        return cls(
            arrays["if.roots"],
            arrays["if.left"],
            arrays["if.right"],
            arrays["if.feature"],
            arrays["if.threshold"],
            arrays["if.leaf_path"],
            float(shape[0]),
            int(shape[1]),
        )
