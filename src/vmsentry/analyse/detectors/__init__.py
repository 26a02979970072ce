"""Stage 3 for traffic: detectors fed with the decoded event stream (``vmsentry.collect.traffic``).

    engine = Engine(truth, tunables)          # Truth.from_inventory(inv) or Truth()
    for batch in stream.batches(readers):
        engine.feed(batch)
    alerts = engine.finish()                  # worst first

Detectors do no I/O and print nothing: they turn events into ``Alert`` objects, one per incident. A
watcher can pass ``on_raise`` to hear about each new alert right after the batch that raised it. Given a
resolved segmentation policy (``policy=``, a ``model.policy.Resolved``), ``policy_violation`` judges traffic
against it (``vmsentry policy check``: ``only=["policy_violation"]`` on a stream of every packet). Given a
calibrated behaviour model (``model=``, analyse/behaviour), the ``anomaly`` detector scores every entity's
windows from the stream's ``FrameColumns`` events (``TrafficStream(frame_columns=True)``); live input that
goes quiet calls ``idle(now)`` so that its last windows are scored without waiting for the next frame.
"""

from __future__ import annotations

from collections.abc import Callable

from vmsentry.analyse.detectors.access import Access
from vmsentry.analyse.detectors.arp_spoof import ArpSpoof
from vmsentry.analyse.detectors.base import Sink
from vmsentry.analyse.detectors.dhcp import Dhcp
from vmsentry.analyse.detectors.dns import DnsUnsanctioned
from vmsentry.analyse.detectors.ipv6 import Ipv6
from vmsentry.analyse.detectors.mac_flood import MacFlood
from vmsentry.analyse.detectors.nd_spoof import NdSpoof
from vmsentry.analyse.detectors.policy_violation import PolicyViolation
from vmsentry.analyse.detectors.rogue_ra import RogueRa
from vmsentry.analyse.detectors.scan import Scan
from vmsentry.analyse.detectors.truth import Truth
from vmsentry.analyse.detectors.tunables import DEFAULTS
from vmsentry.model.alert import Alert
from vmsentry.model.policy import Resolved
from vmsentry.model.traffic import EVENT_TYPES

REGISTRY = {
    "arp_spoof": ArpSpoof,
    "mac_flood": MacFlood,
    "dhcp": Dhcp,
    "rogue_ra": RogueRa,
    "scan": Scan,
    "access": Access,
    "dns_unsanctioned": DnsUnsanctioned,
    "ipv6": Ipv6,
    "policy_violation": PolicyViolation,
    "nd_spoof": NdSpoof,  # (last: tests reach the others by position)
}
TICK_SECONDS = 5.0

__all__ = ["Engine", "Alert", "Truth", "REGISTRY"]


class Engine:
    def __init__(
        self,
        truth: Truth | None = None,
        tunables: dict | None = None,
        on_raise: Callable[[Alert], None] | None = None,
        only: list[str] | None = None,
        policy: Resolved | None = None,
        model=None,
        model_name: str = "",
    ) -> None:
        self.truth = truth or Truth()
        tunables = tunables or DEFAULTS
        self.sink = Sink(on_raise)
        self.detectors = [
            cls(self.truth, tunables[name], self.sink, policy)
            if cls is PolicyViolation
            else cls(self.truth, tunables[name], self.sink)
            for name, cls in REGISTRY.items()
            if not only or name in only
        ]
        self.anomaly = None
        if model is not None and (not only or "anomaly" in only):
            from vmsentry.analyse.behaviour.anomaly import Anomaly

            self.anomaly = Anomaly(
                self.truth, tunables.get("anomaly", DEFAULTS["anomaly"]), self.sink, model, model_name
            )
            self.detectors.append(self.anomaly)
        # event type -> the handlers that consume it, looked up once per event
        self.table = {
            etype: tuple(h for h in (d.handler(etype) for d in self.detectors) if h is not None)
            for etype in EVENT_TYPES
        }
        self.batch_ends = [d.end_batch for d in self.detectors if hasattr(d, "end_batch")]
        self.next_tick: float | None = None
        self.now = 0.0

    def feed(self, batch) -> None:
        table = self.table
        for ev in batch:
            for handler in table[ev.__class__]:
                handler(ev)
        for end_batch in self.batch_ends:
            end_batch()
        if batch:
            now = batch[-1].ts
            if now > self.now:
                self.now = now
            if self.next_tick is None:
                self.next_tick = self.now + TICK_SECONDS
            elif self.now >= self.next_tick:
                self.tick(self.now)
        self.sink.announce()

    def idle(self, now: float) -> None:
        """Live input with no frames for a while (the capture's tick): the anomaly detector scores the
        windows that ended before ``now`` (the others wait for frames; ``tick`` runs on stream time)."""
        if self.anomaly is not None:
            self.anomaly.advance(now)
            self.sink.announce()

    def tick(self, now: float) -> None:
        for d in self.detectors:
            d.tick(now)
        self.next_tick = now + TICK_SECONDS

    def finish(self) -> list[Alert]:
        for d in self.detectors:
            d.finish()
        self.sink.announce()
        return sorted(self.sink.alerts, key=Alert.sort_key)

    @property
    def alerts(self) -> list[Alert]:
        return self.sink.alerts

    @property
    def evicted(self) -> dict[str, int]:
        return dict(self.sink.evicted)
