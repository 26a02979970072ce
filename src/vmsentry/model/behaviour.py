"""Records of the behaviour baseline (issue 14) that cross stages: the samples the feature extractor
makes from traffic and the model scores, the labelled ground truth of a capture, and an anomaly score.

A *sample* is one entity's (a VM's, or a MAC's when no inventory names it) traffic in one time window:
a row of features (rates now and damped averages over several time scales) computed from every frame the
entity sent or received in the window. Samples are the unit the models train on, score and are evaluated
on; windows where an entity neither sent nor received anything make no sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class Entity(NamedTuple):
    """Who a sample is about. ``name`` is the VM's name when the inventory (or a truth file) names the
    MAC, else the MAC in text; ``role`` (web, database, ...) when known, else None."""

    name: str
    mac: str | None
    ip: str | None
    role: str | None


@dataclass
class Samples:
    """Rows of features, one per (entity, window). ``entity`` indexes ``entities``; ``start`` is the
    window's start (seconds since the epoch); ``matrix`` is float32, one column per name in ``names``;
    ``peers`` holds, per row, up to ``PEERS`` (peer address text, bytes exchanged) pairs, the most bytes
    first, for explanations."""

    entities: list[Entity]
    names: list[str]
    window: float
    entity: np.ndarray  # int32, shape (n,)
    start: np.ndarray  # float64, shape (n,)
    matrix: np.ndarray  # float32, shape (n, len(names))
    peers: list[list[tuple[str, int]]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entity)


PEERS = 3


class Incident(NamedTuple):
    """One labelled attack in a capture: ``kind`` (scan, flood, arp_spoof, mac_flood, dns_tunnel, exfil,
    beacon, ssh_bruteforce...), who did it, who it was aimed at, when, and with what tool (the command)."""

    kind: str
    attacker: str  # entity name (a VM of the truth file)
    victims: tuple[str, ...]
    start: float
    end: float
    tool: str


@dataclass
class GroundTruth:
    """What a labelled capture holds (``truth.json`` beside it): the VMs (name, MAC, IP, role), the
    attacks, and which split the capture belongs to (train, calibration or evaluation)."""

    vms: list[Entity]
    incidents: list[Incident]
    split: str
    capture: str = ""
