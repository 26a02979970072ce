"""The hardening score of an asset (a host, a VM, a network), in the spirit of Lynis' hardening index.

Lynis adds up hardening points: each test that passes earns its points, each test counts towards the
maximum, and the index is earned / maximum x 100. Here a rule's points are its severity's weight, so one
critical failure costs what ten low ones do:

    score = floor(100 x passed weight / (passed weight + failed weight))

over the asset's ``pass`` and ``fail`` results only. ``unknown`` and ``error`` are not counted (we could not
tell: they are shown beside the score, never taken as passes), ``waived`` neither (an accepted risk is not
hardening), ``not_applicable`` and ``info`` weigh nothing. Rounding down means any failure keeps a score
below 100. An asset with nothing counted has no score (``None``), shown as "n/a".
"""

from __future__ import annotations

from collections.abc import Iterable

from vmsentry.model.findings import Finding

# points a rule is worth, by severity (Lynis gives a test 1-3 hardening points; a wider spread here, so a
# critical failure cannot hide behind many passed low-severity checks)
WEIGHTS = {"critical": 10, "high": 5, "medium": 3, "low": 1, "info": 0}

METHOD = (
    "Score = floor(100 x passed weight / (passed + failed weight)), over the asset's passed and failed rules; "
    "weights by severity: critical 10, high 5, medium 3, low 1, info 0. Unknown, error and waived results "
    "are not counted (shown beside the score); a score below 100 means at least one failure."
)


def score(findings: Iterable[Finding]) -> int | None:
    """The score of these findings (one asset's, or all of them for the overall figure)."""
    earned = total = 0
    for finding in findings:
        if finding.status not in ("pass", "fail"):
            continue
        weight = WEIGHTS.get(finding.severity, 0)
        total += weight
        if finding.status == "pass":
            earned += weight
    return None if total == 0 else (100 * earned) // total


def band(value: int | None) -> str:
    """A word for the colour of a score: good (80+), fair (50-79), poor (below 50), none."""
    if value is None:
        return "none"
    return "good" if value >= 80 else "fair" if value >= 50 else "poor"
