"""What the host predicates (host_*.py) share: the answer for a fact group that was not collected, and
how a config file spells "on"."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from vmsentry.analyse.checks import Outcome, unknown
from vmsentry.analyse.hostnet import guest_bridges
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


def with_guest_bridges(attribute: str, what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``needs(attribute, what)`` for a predicate about what guests reach: it is called as
    ``predicate(host, ctx, group, bridges)`` with the collected group and the host's guest bridges
    (``analyse.hostnet.guest_bridges``)."""

    def wrap(predicate: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(predicate)
        def guarded(host: Host, ctx: Any) -> Any:
            group = getattr(host, attribute)
            if group is None:
                return missing(what, host)
            return predicate(host, ctx, group, guest_bridges(host, ctx))

        return guarded

    return wrap
