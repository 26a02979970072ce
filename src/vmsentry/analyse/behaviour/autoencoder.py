"""An ensemble of small autoencoders in numpy, after KitNET (Y. Mirsky, T. Doitshman, Y. Elovici, A.
Shabtai: "Kitsune: An Ensemble of Autoencoders for Online Network Intrusion Detection", NDSS 2018).

Our own code, trained in batches rather than online: the features are grouped by correlation
(hierarchical clustering of the distance ``1 - |correlation|``, the dendrogram cut recursively into
groups of at most ``MAX_GROUP`` features); each group gets one autoencoder (sigmoid hidden layer of 0.75x
its width, sigmoid output, inputs min-max scaled to the training range) whose reconstruction error (RMSE)
says how unlike training that group of features is; an output autoencoder over the groups' RMSEs (scaled
the same way) gives the anomaly score, its own RMSE. All groups are padded to one width and trained at
once (one batched matrix product per layer), with mini-batch Adam on the mean squared error.

The arrays (``arrays()``) are all a model file needs; no pickle.
"""

from __future__ import annotations

import numpy as np

MAX_GROUP = 10
HIDDEN_RATIO = 0.75
# normalised inputs are clipped here: a value a thousand spreads out is already as anomalous as it gets,
# and larger ones would only overflow the squares
CLIP = 1e3


def correlation_groups(matrix: np.ndarray, max_group: int = MAX_GROUP) -> list[list[int]]:
    """Column indices grouped by correlation, each group at most ``max_group`` columns (see the module text)."""
    from scipy.cluster.hierarchy import linkage, to_tree
    from scipy.spatial.distance import squareform

    n_features = matrix.shape[1]
    if n_features <= max_group:
        return [list(range(n_features))]
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(matrix, rowvar=False)
    corr = np.nan_to_num(corr, nan=0.0)  # a constant column correlates with nothing
    distance = np.clip(1.0 - np.abs(corr), 0.0, 1.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    root = to_tree(linkage(squareform(distance, checks=False), method="average"))
    groups: list[list[int]] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.get_count() <= max_group:
            groups.append(sorted(node.pre_order()))
        else:
            stack.extend((node.get_right(), node.get_left()))
    return sorted(groups)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


class AutoencoderStack:
    """``G`` autoencoders of up to ``W`` inputs and ``H`` hidden units each, padded to one shape. ``columns``
    (G, W) are the input columns (padding repeats column 0, masked out); ``lo``/``hi`` the min-max range."""

    def __init__(self, columns: np.ndarray, width: np.ndarray, hidden: np.ndarray, rng: np.random.Generator):
        groups, wmax = columns.shape
        hmax = int(hidden.max())
        self.columns = columns
        self.in_mask = (np.arange(wmax)[None, :] < width[:, None]).astype(np.float64)
        self.hid_mask = (np.arange(hmax)[None, :] < hidden[:, None]).astype(np.float64)
        self.width = width.astype(np.float64)
        bound = np.sqrt(6.0 / (width + hidden))[:, None, None]
        mask2 = self.in_mask[:, :, None] * self.hid_mask[:, None, :]
        self.w1 = rng.uniform(-1, 1, (groups, wmax, hmax)) * bound * mask2
        self.b1 = np.zeros((groups, hmax))
        self.w2 = rng.uniform(-1, 1, (groups, hmax, wmax)) * bound * mask2.transpose(0, 2, 1)
        self.b2 = np.zeros((groups, wmax))
        self.lo = np.zeros((groups, wmax))
        self.hi = np.ones((groups, wmax))

    def _inputs(self, matrix: np.ndarray) -> np.ndarray:
        """(G, B, W) scaled inputs of a (B, features) matrix."""
        x = matrix[:, self.columns].transpose(1, 0, 2)
        span = np.where(self.hi > self.lo, self.hi - self.lo, 1.0)
        return (x - self.lo[:, None, :]) / span[:, None, :] * self.in_mask[:, None, :]

    def fit_range(self, matrix: np.ndarray) -> None:
        x = matrix[:, self.columns]
        self.lo = x.min(axis=0)
        self.hi = x.max(axis=0)

    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hidden = _sigmoid(x @ self.w1 + self.b1[:, None, :]) * self.hid_mask[:, None, :]
        out = _sigmoid(hidden @ self.w2 + self.b2[:, None, :])
        return hidden, out

    def rmse(self, matrix: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """(B, G) reconstruction RMSE of every sample in every group."""
        result = np.empty((len(matrix), len(self.columns)))
        for begin in range(0, len(matrix), chunk):
            x = self._inputs(matrix[begin : begin + chunk])
            _, out = self._forward(x)
            err = (out - x) * self.in_mask[:, None, :]
            result[begin : begin + chunk] = np.sqrt((err**2).sum(axis=2) / self.width[:, None]).T
        return result

    def train(
        self, matrix: np.ndarray, rng: np.random.Generator, epochs: int, batch: int = 256, rate: float = 0.005
    ) -> None:
        """Mini-batch Adam on the mean squared reconstruction error (gradients kept zero on the padding)."""
        params = [self.w1, self.b1, self.w2, self.b2]
        masks = [
            self.in_mask[:, :, None] * self.hid_mask[:, None, :],
            self.hid_mask,
            self.hid_mask[:, :, None] * self.in_mask[:, None, :],
            self.in_mask,
        ]
        first = [np.zeros_like(p) for p in params]
        second = [np.zeros_like(p) for p in params]
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        step = 0
        for _ in range(epochs):
            order = rng.permutation(len(matrix))
            for begin in range(0, len(order), batch):
                x = self._inputs(matrix[order[begin : begin + batch]])
                hidden, out = self._forward(x)
                n = x.shape[1]
                # loss = sum over groups of the mean (over batch and the group's inputs) squared error
                d_out = 2.0 * (out - x) * self.in_mask[:, None, :] / (n * self.width[:, None, None])
                d_pre2 = d_out * out * (1.0 - out)
                d_hidden = d_pre2 @ self.w2.transpose(0, 2, 1)
                d_pre1 = d_hidden * hidden * (1.0 - hidden)
                grads = [
                    x.transpose(0, 2, 1) @ d_pre1,
                    d_pre1.sum(axis=1),
                    hidden.transpose(0, 2, 1) @ d_pre2,
                    d_pre2.sum(axis=1),
                ]
                step += 1
                correction = np.sqrt(1 - beta2**step) / (1 - beta1**step)
                for p, g, m, v, mask in zip(params, grads, first, second, masks):
                    m *= beta1
                    m += (1 - beta1) * g
                    v *= beta2
                    v += (1 - beta2) * g * g
                    p -= rate * correction * m / (np.sqrt(v) + eps) * mask

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        names = ("columns", "in_mask", "hid_mask", "w1", "b1", "w2", "b2", "lo", "hi")
        return {f"{prefix}{name}": getattr(self, name) for name in names}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str) -> AutoencoderStack:
        stack = cls.__new__(cls)
        for name in ("columns", "in_mask", "hid_mask", "w1", "b1", "w2", "b2", "lo", "hi"):
            setattr(stack, name, arrays[f"{prefix}{name}"])
        groups, wmax = stack.columns.shape
        hmax = stack.hid_mask.shape[1]
        expected = {
            "in_mask": (groups, wmax),
            "hid_mask": (groups, hmax),
            "w1": (groups, wmax, hmax),
            "b1": (groups, hmax),
            "w2": (groups, hmax, wmax),
            "b2": (groups, wmax),
            "lo": (groups, wmax),
            "hi": (groups, wmax),
        }
        for name, shape in expected.items():
            if getattr(stack, name).shape != shape:
                raise ValueError(f"{prefix}{name} has shape {getattr(stack, name).shape}, expected {shape}")
        stack.width = stack.in_mask.sum(axis=1)
        if not stack.width.all():
            raise ValueError(f"{prefix}in_mask has an empty group")
        return stack


def _stack_for(groups: list[list[int]], rng: np.random.Generator) -> AutoencoderStack:
    width = np.array([len(g) for g in groups])
    hidden = np.maximum(1, np.ceil(HIDDEN_RATIO * width)).astype(np.int64)
    columns = np.zeros((len(groups), int(width.max())), dtype=np.int64)
    for row, group in enumerate(groups):
        columns[row, : len(group)] = group
    return AutoencoderStack(columns, width, hidden, rng)


class KitnetEnsemble:
    """The ensemble: ``groups`` (one autoencoder per correlated feature group) and ``output`` (one
    autoencoder over the groups' RMSEs). ``score`` is the output autoencoder's RMSE (higher = more unusual)."""

    name = "autoencoder"

    def __init__(self, groups: AutoencoderStack, output: AutoencoderStack):
        self.groups = groups
        self.output = output

    @classmethod
    def fit(cls, matrix: np.ndarray, seed: int = 0, epochs: int | None = None) -> KitnetEnsemble:
        """Train on normalised benign samples (rows). ``epochs`` defaults to enough passes for about 3,000
        mini-batch steps, at least 2 and at most 20."""
        rng = np.random.default_rng(seed)
        matrix = np.clip(matrix, -CLIP, CLIP)
        if epochs is None:
            epochs = int(np.clip(3000 * 256 // max(len(matrix), 1), 2, 20))
        groups = _stack_for(correlation_groups(matrix), rng)
        groups.fit_range(matrix)
        groups.train(matrix, rng, epochs)
        rmse = groups.rmse(matrix)
        output = _stack_for([list(range(rmse.shape[1]))], rng)
        output.fit_range(rmse)
        output.train(rmse, rng, epochs)
        return cls(groups, output)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        rmse = self.groups.rmse(np.clip(matrix, -CLIP, CLIP))
        return self.output.rmse(rmse)[:, 0]

    def arrays(self) -> dict[str, np.ndarray]:
        return {**self.groups.arrays("ae.group."), **self.output.arrays("ae.output.")}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], n_features: int) -> KitnetEnsemble:
        groups = AutoencoderStack.from_arrays(arrays, "ae.group.")
        output = AutoencoderStack.from_arrays(arrays, "ae.output.")
        if groups.columns.min() < 0 or groups.columns.max() >= n_features:
            raise ValueError("ae.group.columns names a feature the model does not have")
        if output.columns.shape[0] != 1 or output.columns.max() >= groups.columns.shape[0]:
            raise ValueError("ae.output.columns does not match the groups")
        return cls(groups, output)
