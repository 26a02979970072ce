"""What the host predicates (host_*.py) share: the answer for a fact group that was not collected, and
how a config file spells "on"."""
from __future__ import annotations

from typing import Any

from vmsentry.analyse.checks import Outcome, unknown
from vmsentry.model import Host


def missing(what: str, host: Host) -> Outcome:
    """``unknown``, naming the group and what the collector said about it."""
    said = host.collection_error(what)
    extra = f" (collector said: {said})" if said else ""
    return unknown(f"{what} not collected for this host{extra}")


def on(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return str(value).strip().lower() in ("1", "yes", "true", "on", "y")
