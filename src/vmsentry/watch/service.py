"""The watcher: live capture on the VM bridges -> detectors -> per alert: who (attribution by bridge port),
what to do (the response policy), the quarantine, the evidence bundle and the alert outputs.

Everything runs on the main thread, driven by the capture ring: each retired block of frames is decoded and
fed to the detectors; a new alert is handled at once, in this order, so that the quarantine is in force as
early as possible: attribution (the bridge's forwarding table, read now), the decision, the quarantine,
then the outputs and the bundle. The ring's ``on_tick`` (at least every 0.1 s, also when idle) does the
rest: TTL releases, finishing bundles, inventory changes from libvirt, SIGHUP's reopen, the metrics.

A fault is one line and the watcher goes on: a quarantine refused (nft/libvirt error), a full evidence disk,
a bridge that vanishes (the ring retries it every second), libvirtd restarting (the follower reconnects).
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import time
from dataclasses import dataclass

from vmsentry.act.quarantine import QuarantineError, Target, no_port_warning
from vmsentry.act.response import expired
from vmsentry.model.text import printable
from vmsentry.model.traffic import mac_bytes
from vmsentry.report.output import OutputError
from vmsentry.watch.attribution import SYSFS_NET, Attribution, Attributor
from vmsentry.watch.config import setting
from vmsentry.watch.incidents import Incidents
from vmsentry.watch.lock import BridgeLocks, LockError
from vmsentry.watch.timeline import Timeline

HELD_REFRESH = 1.0  # seconds between reading the quarantines back (a release by hand is noticed; ~1 ms each)


@dataclass(frozen=True)
class Outcome:
    """A quarantine attempted for an alert: in force at ``in_force`` (``response`` s after the first attack
    frame), or failed with ``error``; the ruleset before and after, for the bundle."""

    method: str
    in_force: float | None
    response: float | None
    before: str
    after: str
    error: str | None = None


class WatchError(Exception):
    """The watcher cannot start (exit 3): one line."""


class Watcher:
    def __init__(self, config, *, metrics=None, sysfs: str | None = SYSFS_NET, stderr=None, model=None) -> None:
        """``model``: (behaviour model, its name for the alerts) for ``anomaly`` alerts, or None."""
        self.config = config
        self.model = model
        self.metrics = metrics
        self.timeline = Timeline(setting(config, "audit"), stderr)
        self.attributor = Attributor(sysfs) if sysfs else Attributor("/nonexistent")
        self.sensor = socket.gethostname()
        self.stopping: list[int] = []
        self.reopen_wanted = False
        self.changes: queue.Queue = queue.Queue()
        self.held: dict[str, object] = {}  # vm (or MAC) -> act.quarantine.Held
        self.next_held_refresh = 0.0
        self.inventory = None
        self.static_inventory: dict | None = None
        self.bridges: list[str] = []
        self.quarantine = None
        self.quarantine_reader = None  # a LibvirtQuarantine only to read holds, when the watcher's is not one
        self.responder = None
        self.writer = None
        self.syslog = None
        self.recent = None
        self.incidents: Incidents | None = None
        self.follower = None
        self.engine = None
        self.stream = None
        self.locks: BridgeLocks | None = None

    # --- start ------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Everything that can refuse to start (exit 3), before the capture begins."""
        from vmsentry.act.response import Responder
        from vmsentry.analyse.detectors import Engine, Truth
        from vmsentry.collect.traffic import TrafficStream

        config = self.config
        self.inventory = self._load_inventory()
        self.bridges = list(setting(config, "interfaces") or []) or self._inventory_bridges()
        if not self.bridges:
            raise WatchError("no bridge to watch: give -i BRIDGE, or an inventory whose VMs are on bridges")
        evidence = setting(config, "evidence")
        self.locks = BridgeLocks(self.bridges, evidence)
        try:
            self.locks.acquire()
        except LockError as exc:
            raise WatchError(str(exc)) from None
        except OSError as exc:
            raise WatchError(f"bridge lock: {exc.strerror or exc}") from None
        self.attributor.set_inventory(self.inventory)
        truth = Truth.from_inventory(self.inventory, bridge=self.bridges[0] if len(self.bridges) == 1 else None)
        if not (self.inventory.vms or self.inventory.networks):
            truth = Truth()
        host_macs = [n.host_mac for n in self.inventory.networks if n.host_mac]
        self.responder = Responder(config, held=lambda: list(self.held), host_macs=host_macs)
        if setting(config, "respond", "observe") != "observe":
            self.quarantine = self._open_quarantine()
        self._open_outputs()
        if evidence:
            from vmsentry.collect.traffic.recent import RecentFrames
            from vmsentry.report.incident import IncidentStore

            self.recent = RecentFrames()
            self._set_recent_macs()
            store = IncidentStore(evidence)
            self.incidents = Incidents(
                store, self.recent, self.timeline, lambda: self.inventory.to_dict(), self._definition
            )
        else:
            self.incidents = Incidents(None, None, self.timeline, lambda: self.inventory.to_dict(), self._definition)
        self.stream = TrafficStream(frame_columns=self.model is not None)
        self.engine = Engine(truth, _tunables(), on_raise=self.on_raise, **_model_args(self.model))
        self._refresh_held(time.time(), announce=True)

    def _load_inventory(self):
        """From --inventory files (and URIs), and with --libvirt from the follower that keeps it current."""
        from vmsentry.collect import collect
        from vmsentry.model import Inventory

        specs = list(setting(self.config, "inventory", ()))
        uris = [s for s in specs if "://" in s or s.startswith(("qemu:", "test:", "xen:", "lxc:"))]
        paths = [s for s in specs if s not in uris]
        for path in paths:
            if not os.path.exists(path):
                raise WatchError(f"{path}: no such file or folder")
        inv = Inventory()
        if paths or uris:
            inv, _ = collect(paths, uris)  # (a source that cannot be read is an error entry, said below)
        uri = setting(self.config, "libvirt")
        if uri:
            from vmsentry.analyse.drift import inventory_changes
            from vmsentry.collect.libvirt_events import LibvirtFollower

            self.follower = LibvirtFollower(
                uri,
                on_change=lambda new, changes: self.changes.put((new, changes)),
                on_problem=lambda message: self.timeline.record("problem", message),  # (names the URI)
                diff=inventory_changes,
            )
            self.static_inventory = inv.to_dict()
            inv.extend(self.follower.start())
        for err in inv.errors:
            self.timeline.say(err.line())
        return inv

    def _inventory_bridges(self) -> list[str]:
        inv = self.inventory
        found = [n.bridge for n in inv.networks if n.bridge]
        found += [nic.bridge for vm in inv.vms for nic in vm.nics if nic.bridge]
        return list(dict.fromkeys(found))

    def _open_quarantine(self):
        method = setting(self.config, "quarantine", "nft")
        if method == "libvirt":
            from vmsentry.act.quarantine.libvirt import LibvirtQuarantine

            try:
                return LibvirtQuarantine(setting(self.config, "libvirt") or "qemu:///system")
            except QuarantineError as exc:
                raise WatchError(f"--quarantine libvirt: {exc}") from None
        from vmsentry.act.quarantine.nft import NftQuarantine

        config = self.config
        host_ips = config.host_addresses or tuple(n.host_address for n in self.inventory.networks if n.host_address)
        try:  # netns None: the watcher has entered --netns itself
            return NftQuarantine(None, config.forensics_port, host_ips, config.host_ports)
        except QuarantineError as exc:
            raise WatchError(f"--quarantine nft: {exc}") from None

    def _open_outputs(self) -> None:
        from vmsentry.report.alerts import AlertWriter

        config = self.config
        iface = self.bridges[0] if len(self.bridges) == 1 else None
        try:
            self.writer = AlertWriter(config.format, config.output, self.sensor, iface, self.timeline.say)
        except OutputError as exc:
            raise WatchError(str(exc)) from None
        if setting(config, "syslog"):
            from vmsentry.report.syslog import SyslogSender

            self.syslog = SyslogSender(config.syslog)

    # --- run --------------------------------------------------------------------------------------
    def run(self) -> int:
        from vmsentry.collect.traffic.ring import RingReader

        self.setup()
        self._signals()
        config = self.config
        reader = RingReader(
            self.bridges,
            stop=lambda: bool(self.stopping),
            duration=setting(config, "duration"),
            on_frames=self.recent.add if self.recent is not None else None,
            on_problem=lambda iface, message: self.timeline.record("problem", message, interface=iface),
            on_ready=self._ready,
            on_tick=self.tick,
        )
        try:
            for batch in self.stream.batches([reader]):
                self.engine.feed(batch)
        finally:
            self.shutdown()
        return 0

    def _ready(self) -> None:
        respond = setting(self.config, "respond", "observe")
        how = f"respond {respond}" + (f", quarantine {self.quarantine.method}" if self.quarantine else "")
        from vmsentry.analyse.detectors import REGISTRY

        running = {type(d) for d in self.engine.detectors}
        detectors = sorted(name for name, cls in REGISTRY.items() if cls in running)
        self.timeline.record(
            "start",
            f"watching {', '.join(self.bridges)} ({how})",
            event="started",
            bridges=self.bridges,
            detectors=detectors,
        )

    def _signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: self.stopping.append(signum))
        signal.signal(signal.SIGHUP, lambda signum, frame: setattr(self, "reopen_wanted", True))

    def shutdown(self) -> None:
        """Flush: the alerts that grew, the stats, open bundles finished; outputs closed; exit 0."""
        alerts = self.engine.finish() if self.engine else []
        if self.stream is not None:
            self.stream.stats.finish()
        for alert in alerts:
            if alert.count != alert.printed_count:
                self._write(alert, "final")
        if self.writer is not None and self.stream is not None:
            stats = self.stream.stats.to_dict()
            stats["evicted"].update(self.engine.evicted)
            self._guard("the stats line", lambda: self.writer.stats(stats))
        if self.incidents is not None:
            self.incidents.finish_all()
        if self.follower is not None:
            self.follower.stop()
        if self.quarantine_reader is not None:
            self.quarantine_reader.close()
        for closing in (self.writer, self.syslog):
            if closing is not None:
                self._guard("closing an output", closing.close)
        self.timeline.record("stop", None, event="stopped", signal=self.stopping[0] if self.stopping else None)
        self.timeline.close()
        if self.locks is not None:
            self.locks.release()

    # --- every tick -------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        if self.reopen_wanted:
            self.reopen_wanted = False
            self._guard("reopening the output", self.writer.reopen)
            self.timeline.reopen()
            self.timeline.record("reopen", "SIGHUP: outputs reopened")
        self.timeline.tick()
        while not self.changes.empty():
            self._apply_changes(*self.changes.get_nowait())
        self._expire(now)
        self.engine.idle(now)  # the behaviour model's windows that ended while the bridges were quiet
        if self.incidents is not None:
            self.incidents.tick(now)
        if self.metrics is not None:
            self.metrics.update(self.stream.stats, self.engine.anomaly)

    def _apply_changes(self, followed, changes: list) -> None:
        """libvirt's new inventory (with the --inventory files' part kept), and a config_drift alert per change."""
        from vmsentry.analyse.detectors import Truth
        from vmsentry.analyse.drift import drift_alert, is_drift
        from vmsentry.model import Inventory

        inventory = Inventory.from_dict(self.static_inventory) if self.static_inventory else Inventory()
        inventory.extend(followed)
        self.inventory = inventory
        self.attributor.set_inventory(inventory)
        fresh = Truth.from_inventory(inventory, bridge=self.bridges[0] if len(self.bridges) == 1 else None)
        self.engine.truth.__dict__.update(fresh.__dict__)  # the detectors hold this object
        self._set_recent_macs()
        quarantine_moves = self._quarantine_moves(changes)
        for change in filter(is_drift, changes):  # (a VM started or stopped is no configuration drift)
            if _by_quarantine(change, quarantine_moves):  # vmsentry's own doing: audited, not an alert
                self.timeline.record("change", None, change=change.to_dict(), by="vmsentry quarantine")
                continue
            alert = drift_alert(change, time.time())
            self.timeline.record("change", alert.describe(alert), alert=alert.id, change=change.to_dict())
            self._outputs(alert)

    def _quarantine_moves(self, changes: list) -> set[tuple[str, str | None]]:
        """(VM, NIC) of each NIC a libvirt quarantine moved: onto its network while held, off it once released.
        A NIC moved off while still held (its definition rewritten under the hold) is drift like any other."""
        from vmsentry.act.quarantine.libvirt import NETWORK, LibvirtQuarantine

        moves = [c for c in changes if c.what == "nic_network" and NETWORK in (c.before, c.after)]
        if not moves:
            return set()
        if getattr(self.quarantine, "method", None) != "libvirt":  # (observe, or nft: held by hand)
            self.quarantine_reader = self.quarantine_reader or LibvirtQuarantine(setting(self.config, "libvirt"))
        try:
            held = {h.target.mac for h in (self.quarantine_reader or self.quarantine).held()}
        except QuarantineError:
            return set()  # (unreadable now: the moves are alerted)

        def is_held(change) -> bool:  # (a NIC's item is "net0 52:54:00:...": its MAC last)
            return bool(change.item) and change.item.split()[-1] in held

        return {(c.asset, c.item) for c in moves if (c.after == NETWORK) == is_held(c)}

    def _set_recent_macs(self) -> None:
        if self.recent is None:
            return
        from vmsentry.model.traffic import mac_bytes

        macs = {mac_bytes(nic.mac): vm.name for vm in self.inventory.vms for nic in vm.nics if mac_bytes(nic.mac)}
        self.recent.set_macs(macs)

    def _refresh_held(self, now: float, announce: bool = False) -> None:
        self.next_held_refresh = now + HELD_REFRESH
        if self.quarantine is None:
            return
        try:
            held = self.quarantine.held()
        except QuarantineError as exc:  # nft/libvirt unreadable now: try again later
            if announce:
                self.timeline.record("problem", f"quarantine state unreadable: {exc}")
            return
        now_held = {h.target.vm or h.target.mac: h for h in held}
        for name in set(self.held) - set(now_held):  # released by hand (`vmsentry release`): may act again
            self.responder.forget(name)
            if not announce:
                self.timeline.record("release", f"{name} was released (not by this watcher)", vm=name, why="by hand")
                if self.incidents is not None:
                    self.incidents.released(name, now, "by hand")
        self.held = now_held
        if announce and held:
            names = ", ".join(sorted(self.held))
            self.timeline.record("held", f"already in quarantine: {names}", vms=sorted(self.held))
        if self.metrics is not None:
            self.metrics.quarantined.set(len(self.held))

    def _expire(self, now: float) -> None:
        if now >= self.next_held_refresh:
            self._refresh_held(now)
        for held in expired(list(self.held.values()), now):
            name = held.target.vm or held.target.mac
            self.held.pop(name, None)
            try:
                self.quarantine.release(name)
            except QuarantineError as exc:  # one line; the next refresh reads the state again
                self.timeline.record("problem", f"TTL release of {name} failed: {exc}")
                continue
            self.responder.forget(name)
            self.timeline.record("release", f"released {name}: its quarantine TTL ran out", vm=name, why="ttl")
            if self.incidents is not None:
                self.incidents.released(name, now, "ttl")
            if self.metrics is not None:
                self.metrics.quarantined.set(len(self.held))

    # --- one alert --------------------------------------------------------------------------------
    def on_raise(self, alert) -> None:
        now = time.time()
        data = alert.to_dict()
        who = self.attributor.attribute(data, self.bridges)
        decision = self.responder.decide(data, who.vm, now)
        decided = time.time()
        outcome = None
        if decision.action == "quarantine" and self.quarantine is not None and who.vm:
            outcome = self._hold(who, data, decision)
        self._outputs(alert)
        self._record(data, who, decision, outcome, now, decided)

    def _hold(self, who: Attribution, data: dict, decision) -> Outcome:
        method = self.quarantine.method
        port, bridge = who.port, who.bridge
        if not port and who.mac:  # the inventory knows no port: where the bridge has learned the VM's own MAC
            port, bridge = self._learned_port(who.mac, bridge)
        target = Target(vm=who.vm, mac=who.mac or "", port=port, bridge=bridge, network=who.network, ip=who.ip)
        warning = no_port_warning(target) if method == "nft" else None  # (libvirt moves the whole NIC)
        if warning:
            self.timeline.record("problem", warning, vm=who.vm)
        before = self._ruleset()
        try:
            held = self.quarantine.hold(target, decision.reason, decision.ttl, data.get("id"))
        except QuarantineError as exc:  # nft refused, libvirt failed: one line, the watcher goes on
            self.responder.forget(who.vm)
            if self.metrics is not None:
                self.metrics.quarantine_failures.labels(method).inc()
            return Outcome(method, None, None, before, before, str(exc))
        in_force = time.time()
        response = max(0.0, in_force - data["first_seen"])
        self.held[who.vm] = held
        if self.metrics is not None:
            self.metrics.quarantines.labels(method).inc()
            self.metrics.quarantined.set(len(self.held))
            self.metrics.response.observe(response)
        return Outcome(method, in_force, response, before, self._ruleset())

    def _learned_port(self, mac: str, bridge: str | None) -> tuple[str | None, str | None]:
        raw = mac_bytes(mac)
        found = self.attributor.learned([raw], [bridge] if bridge else self.bridges) if raw else {}
        if raw not in found:
            return None, bridge
        learned_bridge, port, _age = found[raw]
        return port, learned_bridge

    def _ruleset(self) -> str:
        try:
            return self.quarantine.ruleset()
        except QuarantineError:  # the ruleset is evidence, not the response: a failure to read it is not fatal
            return ""

    def _record(
        self, data: dict, who: Attribution, decision, outcome: Outcome | None, now: float, decided: float
    ) -> None:
        """The alert's incident (bundle timeline) and the watcher's timeline: attribution, decision, action,
        each with the time it happened (written after the response: no write delays a quarantine)."""
        alert_id, summary = data.get("id"), printable(data.get("summary", data["type"]))
        oi = self.incidents.for_alert(data, who.vm, who.mac, now)
        if oi.alerts > 1:  # (the bundle's own first entry is the detection of the alert that opened it)
            self.incidents.event(oi, "detection", at=now, alert_id=alert_id, type=data["type"], summary=summary)
        place = {"vm": who.vm, "port": who.port, "bridge": who.bridge}
        self.incidents.event(oi, "attribution", at=now, **place, why=who.why, forged=who.forged)
        self.incidents.event(
            oi, "decision", at=decided, action=decision.action, reason=decision.reason, command=decision.command
        )
        self.timeline.record("detection", None, alert=alert_id, type=data["type"], **place, why=who.why)
        self.timeline.record("decision", None, alert=alert_id, action=decision.action, reason=decision.reason)
        if outcome is not None and outcome.error is not None:
            message = f"quarantine of {who.vm} failed ({outcome.method}): {outcome.error}; alerted only"
            self.timeline.record("action", message, alert=alert_id, vm=who.vm, method=outcome.method, ok=False)
            self.incidents.event(
                oi, "action", action="quarantine", method=outcome.method, ok=False, error=outcome.error
            )
        elif outcome is not None:
            release = f"vmsentry release {who.vm}" + (f" --netns {self.config.netns}" if self.config.netns else "")
            self.timeline.record(
                "action",
                f"quarantined {who.vm} ({outcome.method}, port {who.port or '?'}): {summary}; in force "
                f"{outcome.response * 1000:.0f} ms after the first attack frame; release: {release}",
                alert=alert_id,
                vm=who.vm,
                method=outcome.method,
                response_seconds=round(outcome.response, 6),
                in_force=round(outcome.in_force, 6),
                first_seen=data["first_seen"],
                ok=True,
            )
            self.incidents.event(
                oi,
                "action",
                at=outcome.in_force,
                action="quarantine",
                method=outcome.method,
                **place,
                ok=True,
                response_seconds=round(outcome.response, 6),
                release=release,
            )
            self.incidents.acted(oi, outcome.in_force, outcome.response, outcome.before, outcome.after)
        elif decision.action == "ask" and decision.command:
            self.timeline.say(f"{summary}: to quarantine, run: {decision.command}")
        elif decision.action == "quarantine":  # (no VM to name, or no quarantine method)
            self.timeline.record("decision", f"{summary}: not quarantined: {who.why}", alert=alert_id)

    def _outputs(self, alert) -> None:
        if self.metrics is not None:
            self.metrics.alerts.labels(alert.type).inc()
        self._write(alert, "raised")
        if self.syslog is not None:
            self._guard("syslog", lambda: self.syslog.send(alert.to_dict(), self.sensor))

    def _write(self, alert, phase: str) -> None:
        self.writer.write(alert, phase)  # (a failed write is one line from the writer itself)

    def _guard(self, what: str, work) -> None:
        try:
            work()
        except (OSError, OutputError) as exc:
            self.timeline.say(f"{what}: {getattr(exc, 'strerror', None) or exc}; the watcher goes on")

    def _definition(self, vm: str):
        """The VM's definition now, for the bundle's config/: libvirt's domain XML where libvirt is watched."""
        uri = setting(self.config, "libvirt")
        if not uri:
            return None
        try:
            import libvirt
        except ImportError:
            return None
        try:
            conn = libvirt.openReadOnly(uri)
            try:
                return (f"{vm}.xml", conn.lookupByName(vm).XMLDesc(0))
            finally:
                conn.close()
        except libvirt.libvirtError:  # libvirt gone or the VM undefined: the bundle goes without it
            return None


def _by_quarantine(change, moves: set) -> bool:
    """A change a libvirt quarantine makes: its network defined, a held NIC's network and mode."""
    from vmsentry.act.quarantine.libvirt import NETWORK

    if change.kind == "network":
        return change.asset == NETWORK and change.what in ("network_added", "network_removed")
    return change.what in ("nic_network", "nic_mode", "nic_bridge") and (change.asset, change.item) in moves


def _tunables() -> dict:
    """The detectors' defaults, with the behaviour model's online updates on (under its poisoning guard)."""
    from dataclasses import replace

    from vmsentry.analyse.detectors.tunables import DEFAULTS

    return {**DEFAULTS, "anomaly": replace(DEFAULTS["anomaly"], learn=True)}


def _model_args(model) -> dict:
    return {} if model is None else {"model": model[0], "model_name": model[1]}


def stderr_line(message: str) -> None:
    print(f"vmsentry: {printable(message)}", file=sys.stderr, flush=True)
