"""The behaviour features: their names, the words explanations use for them, and how they are scaled.

A sample's row holds, for one entity in one window, the rates below (per second over the window) and
damped averages of the main ones over about 10 s, 60 s and 600 s of the entity's own history (a quiet
window counts as zero), plus the ratio of now to the 600 s average. Rates and averages are stored
log1p-scaled (``log(1 + value)``: a flood and a trickle on one scale); the columns in ``LINEAR`` are
stored as they are (shares, ratios, scores). ``natural`` turns stored values back into the units of
``FEATURES`` for explanations ("bytes sent per second: 40x this VM's usual").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Feature(NamedTuple):
    phrase: str  # plain words, for explanations
    unit: str


# the rates of one window (in this order in the extractor's raw matrix)
RATES: dict[str, Feature] = {
    "frames_out_per_s": Feature("frames sent per second", "frames/s"),
    "bytes_out_per_s": Feature("bytes sent per second", "bytes/s"),
    "frames_in_per_s": Feature("frames received per second", "frames/s"),
    "bytes_in_per_s": Feature("bytes received per second", "bytes/s"),
    "peers_out": Feature("distinct addresses sent to", "addresses"),
    "peers_in": Feature("distinct addresses received from", "addresses"),
    "ports_out": Feature("distinct destination ports sent to", "ports"),
    "new_peers_out_per_s": Feature("addresses sent to that this VM never used before, per second", "addresses/s"),
    "syn_out_per_s": Feature("new TCP connections opened per second (bare SYNs)", "SYNs/s"),
    "rst_in_per_s": Feature("TCP resets received per second", "resets/s"),
    "icmp_unreachable_in_per_s": Feature("ICMP 'unreachable' messages received per second", "messages/s"),
    "udp_out_per_s": Feature("UDP datagrams sent per second", "datagrams/s"),
    "icmp_out_per_s": Feature("ICMP messages sent per second", "messages/s"),
    "broadcast_out_per_s": Feature("broadcast and multicast frames sent per second", "frames/s"),
    "arp_requests_out_per_s": Feature("ARP requests sent per second", "requests/s"),
    "arp_replies_out_per_s": Feature("ARP replies sent per second", "replies/s"),
    "arp_foreign_claims_per_s": Feature(
        "ARP frames per second claiming an address another MAC holds (ARP poisoning)", "claims/s"
    ),
    "dns_out_per_s": Feature("DNS messages sent per second (port 53)", "messages/s"),
    "dns_bytes_out_per_s": Feature("DNS bytes sent per second (port 53)", "bytes/s"),
    "dns_mean_size": Feature("average size of the DNS messages sent", "bytes"),
    "mean_size_out": Feature("average size of the frames sent", "bytes"),
    "new_macs_per_s": Feature("source MAC addresses never seen before, per second", "MACs/s"),
    "unanswered_syn_ratio": Feature("share of new TCP connections not answered (no SYN/ACK)", "share"),
    "top_peer_share": Feature("share of the bytes sent that went to the single busiest address", "share"),
    "beacon_regularity": Feature("regularity of repeated connections to one address (1 = like clockwork)", "score 0-1"),
}

# the rates followed over time, and the damped averages' time constants
TRACKED = (
    "frames_out_per_s",
    "bytes_out_per_s",
    "bytes_in_per_s",
    "peers_out",
    "new_peers_out_per_s",
    "syn_out_per_s",
    "dns_bytes_out_per_s",
)
SCALES = {"10s": 10.0, "60s": 60.0, "600s": 600.0}
COMPARED = ("frames_out_per_s", "bytes_out_per_s", "peers_out", "syn_out_per_s", "dns_bytes_out_per_s")
SCALE_WORDS = {"10s": "the last 10 seconds", "60s": "the last minute", "600s": "the last ten minutes"}

FEATURES: dict[str, Feature] = dict(RATES)
for _name in TRACKED:
    for _scale in SCALES:
        _rate = RATES[_name]
        FEATURES[f"{_name}@{_scale}"] = Feature(f"{_rate.phrase}, averaged over {SCALE_WORDS[_scale]}", _rate.unit)
for _name in COMPARED:
    FEATURES[f"{_name}/600s"] = Feature(
        f"{RATES[_name].phrase} now, against its average over the last ten minutes (log ratio)", "log ratio"
    )

NAMES: list[str] = list(FEATURES)
LINEAR = frozenset(["unanswered_syn_ratio", "top_peer_share", "beacon_regularity"] + [f"{n}/600s" for n in COMPARED])


def natural(names: list[str], values: np.ndarray) -> np.ndarray:
    """Stored feature values (a row or a matrix whose last axis follows ``names``) in the units of
    ``FEATURES``: log1p-scaled columns are un-scaled, the others returned as they are."""
    values = np.asarray(values, np.float64)
    logged = np.array([n not in LINEAR for n in names])
    return np.where(logged, np.expm1(values), values)
