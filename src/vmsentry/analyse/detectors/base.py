"""What every detector shares: the ground truth, its tunables, a sink for alerts, open incidents and
bounded state tables. Detectors never read files, sockets or clocks: only the events they are fed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from vmsentry.analyse.detectors.truth import Truth
from vmsentry.model.alert import Alert


class Sink:
    """Where detectors put alerts. ``on_raise`` (if set) is called once per new alert by ``announce``,
    after the batch that raised it (so the alert already holds its first event)."""

    def __init__(self, on_raise: Callable[[Alert], None] | None = None) -> None:
        self.alerts: list[Alert] = []
        self.on_raise = on_raise
        self.new: list[Alert] = []
        self.evicted: dict[str, int] = {}

    def raised(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.new.append(alert)

    def announce(self) -> None:
        new, self.new = self.new, []
        if self.on_raise:
            for alert in new:
                self.on_raise(alert)

    def evict(self, table: str, count: int) -> None:
        self.evicted[table] = self.evicted.get(table, 0) + count


class Bounded(OrderedDict):
    """A dict that keeps at most ``limit`` keys, dropping the least recently touched (``touch``)."""

    def __init__(self, limit: int, name: str, sink: Sink) -> None:
        super().__init__()
        self.limit, self.name, self.sink = limit, name, sink

    def put(self, key, value) -> None:
        if key in self:
            self.move_to_end(key)
        elif len(self) >= self.limit:
            drop = max(1, self.limit // 8)
            for _ in range(drop):
                self.popitem(last=False)
            self.sink.evict(self.name, drop)
        self[key] = value

    def bump(self, key, by: int = 1) -> None:
        """Add ``by`` to the count kept for ``key``. A count that changes keeps its place in the order
        (counters age by when they started, which spares the reordering on every packet)."""
        value = self.get(key)
        if value is None:
            self.put(key, by)
        else:
            self[key] = value + by

    def touch(self, key):
        self.move_to_end(key)
        return self[key]


class Detector:
    """Subclasses set ``name`` and implement ``on_<event type in lower case>`` for what they consume."""

    name = "detector"

    def __init__(self, truth: Truth, tun, sink: Sink) -> None:
        self.truth = truth
        self.tun = tun
        self.sink = sink
        self.open: Bounded = Bounded(tun.max_state, f"{self.name}.incidents", sink)

    def incident(self, key, ts: float, make: Callable[[], Alert]) -> Alert:
        """The open alert for ``key``, or a new one (raised now) if there is none or it went quiet for
        longer than ``suppress``. The caller then records the event on it (``alert.seen``...)."""
        alert = self.open.get(key)
        if alert is not None and ts - alert.last_seen <= self.tun.suppress:
            return alert
        alert = make()
        if alert.key is None:
            alert.key = key  # the alert's stable id is made from it
        self.open.put(key, alert)
        self.sink.raised(alert)
        return alert

    def handler(self, event_type: type):
        """The method that consumes ``event_type`` events, or None (a detector with nothing to compare
        against, such as DNS without sanctioned resolvers, returns None and costs nothing)."""
        return getattr(self, f"on_{event_type.__name__.lower()}", None)

    def tick(self, now: float) -> None:
        """Called with the stream's time now and then: expire what is older than the windows."""

    def finish(self) -> None:
        """End of input: settle anything pending."""
