"""What the host predicates (host_*.py) share: the answer for a fact group that was not collected, and
how a config file spells "on"."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
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


def needs(attribute: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A host predicate that looks first at one typed group of ``Host``: ``missing`` when it was not
    collected, so the predicate itself only sees a group that is there."""

    def wrap(predicate: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(predicate)
        def guarded(host: Host, ctx: Any) -> Any:
            if getattr(host, attribute) is None:
                return missing(what, host)
            return predicate(host, ctx)

        return guarded

    return wrap
