"""Incidents as the watcher keeps them open: one per attacker (the attributed VM, else the frames' MAC), grown
by each further alert about it, and finished (its evidence bundle completed: capture.pcap, report, manifest)
``WINDOW`` seconds after the response, or after its last alert when nothing was done, or at exit.

The capture covers ``WINDOW`` seconds before the first attack frame to the moment the bundle is finished,
from the recent-frames ring (``--evidence``): the attacker's and its victims' frames. A bundle that cannot be
written (a full disk) is one line; the watcher goes on, and so does the response.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from vmsentry.model.traffic import mac_bytes
from vmsentry.report.incident import IncidentError

WINDOW = 30.0  # seconds of frames kept around an incident, before the first alert and after the response


@dataclass
class OpenIncident:
    key: str
    bundle: object | None  # report.incident.Incident (None when it could not be opened)
    first_seen: float
    due: float
    vms: set = field(default_factory=set)
    macs: set = field(default_factory=set)
    acted_at: float | None = None
    response_seconds: float | None = None
    alerts: int = 0  # alerts about this attacker so far


class Incidents:
    def __init__(self, store, recent, timeline, inventory, definition) -> None:
        """``store``: a report.incident.IncidentStore or None (no --evidence); ``recent``: the RecentFrames ring;
        ``inventory()`` -> the inventory as a dict now; ``definition(vm)`` -> (file name, text) or None."""
        self.store, self.recent, self.timeline = store, recent, timeline
        self.inventory, self.definition = inventory, definition
        self.open: dict[str, OpenIncident] = {}
        self.failed_once = False

    def for_alert(self, alert: dict, vm: str | None, own_mac: str | None, now: float) -> OpenIncident:
        attacker = alert.get("attacker") or {}
        key = vm or attacker.get("mac") or attacker.get("ip") or alert.get("type", "?")
        oi = self.open.get(key)
        if oi is None:
            bundle = self._try("open the incident bundle", lambda: self._open(alert, vm, now)) if self.store else None
            oi = self.open[key] = OpenIncident(key, bundle, alert["first_seen"], now + WINDOW)
        else:
            oi.first_seen = min(oi.first_seen, alert["first_seen"])
            oi.due = max(oi.due, now + WINDOW)
            if oi.bundle is not None:
                self._try("add the alert", lambda: oi.bundle.alert(alert))
        oi.alerts += 1
        if vm:
            oi.vms.add(vm)
        for endpoint in [attacker, *alert.get("victims", [])]:
            if endpoint.get("vm"):
                oi.vms.add(endpoint["vm"])
            raw = mac_bytes(endpoint.get("mac"))
            if raw:
                oi.macs.add(raw)
        raw = mac_bytes(own_mac)
        if raw:
            oi.macs.add(raw)
        return oi

    def _open(self, alert: dict, vm: str | None, now: float):
        """(``now``: when the alert was raised, the detection's time in the bundle's timeline; the bundle itself
        is written after the response, so that no file write delays a quarantine)"""
        return self.store.open(alert, vm, self.inventory(), self.definition(vm) if vm else None, now=now)

    def event(self, oi: OpenIncident, kind: str, **fields) -> None:
        if oi.bundle is not None:
            self._try(f"write the {kind} to the timeline", lambda: oi.bundle.event(kind, **fields))

    def released(self, name: str, now: float, why: str) -> None:
        """A hold of ``name`` ended (by hand, or its TTL): the open incident about it says so with the time."""
        oi = self.open.get(name)
        if oi is not None:
            self.event(oi, "release", at=now, vm=name, why=why)

    def acted(self, oi: OpenIncident, now: float, response_seconds: float, before: str, after: str) -> None:
        oi.acted_at, oi.response_seconds = now, response_seconds
        oi.due = max(oi.due, now + WINDOW)
        if after and not before:
            before = "# nothing was held before this quarantine (no vmsentry table)\n"
        if oi.bundle is not None:
            self._try("write the rulesets", lambda: oi.bundle.rulesets(before, after))

    def tick(self, now: float) -> None:
        for key in [k for k, oi in self.open.items() if oi.due <= now]:
            self._finish(self.open.pop(key), now)

    def finish_all(self) -> None:
        now = time.time()
        for key in list(self.open):
            self._finish(self.open.pop(key), now)

    def _finish(self, oi: OpenIncident, now: float) -> None:
        if oi.bundle is None:
            return
        frames = []
        if self.recent is not None:
            frames = self.recent.frames(oi.vms, oi.macs, oi.first_seen - WINDOW, now)
        if self._try("finish the incident bundle", lambda: oi.bundle.finish(frames, oi.response_seconds)):
            self.timeline.record(
                "bundle", None, incident=getattr(oi.bundle, "id", None), frames=len(frames), attacker=oi.key
            )

    def _try(self, what: str, work):
        """``work()``, or one line when the disk (or anything the bundle writer reports) fails it."""
        try:
            result = work()
            return True if result is None else result
        except (IncidentError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            self.timeline.record("problem", f"evidence: cannot {what}: {reason}; the watcher goes on")
            return None
