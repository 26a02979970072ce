"""Per-entity normalisation: what makes the behaviour model "per VM".

Every feature of a sample is rescaled by the profile of the entity it is about: ``z = (x - centre) /
spread``, where ``centre`` is the median of the entity's training samples and ``spread`` a robust spread
(1.4826 x the median absolute deviation, which equals the standard deviation for normal data), raised to
``1.2533 x`` the mean absolute deviation from the median when that is larger (a feature that is zero in
most windows has a MAD of 0 but still varies) and never below ``floor``. An entity with fewer than
``min_samples`` training samples has no profile of its own: it uses its role's profile (all samples of
the VMs of that role), and when the role has too few samples too, or no role is known, the network's
(every training sample). The centres are also what explanations call "usual".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from vmsentry.model.behaviour import Samples

MIN_SAMPLES = 300
# on the log1p scale of the features 0.1 is about a 10 % change of a rate: smaller spreads would make
# noise of a nearly constant feature look like a large deviation
SPREAD_FLOOR = 0.1
NETWORK = "network"


@dataclass
class Profiles:
    """One row per profile: ``keys`` are ``entity:<name>``, ``role:<role>`` or ``network`` (always the
    last row); ``centre`` and ``spread`` are (profiles, features) float64; ``count`` the training samples
    of each; ``updated`` the newest window start each has seen (for the online update's rate cap)."""

    keys: list[str]
    centre: np.ndarray
    spread: np.ndarray
    count: np.ndarray
    updated: np.ndarray
    min_samples: int = MIN_SAMPLES
    floor: float = SPREAD_FLOOR

    def row_of(self, name: str, role: str | None) -> int:
        """The profile row an entity uses: its own, else its role's, else the network's."""
        index = self._index()
        own = index.get(f"entity:{name}")
        if own is not None:
            return own
        if role is not None and f"role:{role}" in index:
            return index[f"role:{role}"]
        return index[NETWORK]

    def _index(self) -> dict[str, int]:
        cached = getattr(self, "_cache", None)
        if cached is None or len(cached) != len(self.keys):
            cached = {key: row for row, key in enumerate(self.keys)}
            self._cache = cached
        return cached

    def rows(self, samples: Samples, roles: Mapping[str, str] | None = None) -> np.ndarray:
        """The profile row of every sample (int64, shape (n,))."""
        per_entity = np.array([self.row_of(e.name, _role(e, roles)) for e in samples.entities] or [0], dtype=np.int64)
        return per_entity[samples.entity] if len(samples) else np.zeros(0, dtype=np.int64)

    def transform(self, samples: Samples, rows: np.ndarray | None = None) -> np.ndarray:
        """The normalised matrix (float64): each row by its entity's profile."""
        if rows is None:
            rows = self.rows(samples)
        return (samples.matrix.astype(np.float64) - self.centre[rows]) / self.spread[rows]

    def usual(self, rows: np.ndarray) -> np.ndarray:
        """The usual values (profile centres) for the given profile rows."""
        return self.centre[rows]


def _role(entity, roles: Mapping[str, str] | None) -> str | None:
    if roles is not None and entity.name in roles:
        return roles[entity.name]
    return entity.role


def robust_centre_spread(matrix: np.ndarray, floor: float = SPREAD_FLOOR) -> tuple[np.ndarray, np.ndarray]:
    """Median and robust spread of each column (see the module text)."""
    centre = np.median(matrix, axis=0)
    deviation = np.abs(matrix - centre)
    mad = 1.4826 * np.median(deviation, axis=0)
    mean_dev = 1.2533 * deviation.mean(axis=0)
    return centre, np.maximum(np.maximum(mad, mean_dev), floor)


def fit_profiles(
    samples: Samples,
    roles: Mapping[str, str] | None = None,
    min_samples: int = MIN_SAMPLES,
    floor: float = SPREAD_FLOOR,
) -> Profiles:
    """Profiles of every entity with at least ``min_samples`` samples, of every role with as many, and of
    the network (always present)."""
    if not len(samples):
        raise ValueError("no samples to fit profiles on")
    matrix = samples.matrix.astype(np.float64)
    keys: list[str] = []
    centres: list[np.ndarray] = []
    spreads: list[np.ndarray] = []
    counts: list[int] = []
    updated: list[float] = []

    def add(key: str, rows: np.ndarray) -> None:
        centre, spread = robust_centre_spread(matrix[rows], floor)
        keys.append(key)
        centres.append(centre)
        spreads.append(spread)
        counts.append(len(rows))
        updated.append(float(samples.start[rows].max()))

    # the rows of each entity, grouped once (no pass over all samples per entity)
    order = np.argsort(samples.entity, kind="stable")
    bounds = np.searchsorted(samples.entity[order], np.arange(len(samples.entities) + 1))
    role_of_entity = [_role(e, roles) for e in samples.entities]
    for index, entity in enumerate(samples.entities):
        if bounds[index + 1] - bounds[index] >= min_samples:
            add(f"entity:{entity.name}", order[bounds[index] : bounds[index + 1]])
    for role in sorted({r for r in role_of_entity if r is not None}):
        members = np.array([r == role for r in role_of_entity], dtype=bool)
        rows = np.flatnonzero(members[samples.entity])
        if len(rows) >= min_samples:
            add(f"role:{role}", rows)
    add(NETWORK, np.arange(len(samples)))
    return Profiles(
        keys=keys,
        centre=np.array(centres),
        spread=np.array(spreads),
        count=np.array(counts, dtype=np.int64),
        updated=np.array(updated),
        min_samples=min_samples,
        floor=floor,
    )
