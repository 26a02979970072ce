"""Follow a live libvirt (``vmsentry watch --libvirt URI``): the inventory kept current through libvirt's
domain and network events, and through libvirtd restarts.

libvirt delivers events only to a process that runs an event loop: the default implementation is
registered once per process and run on one daemon thread shared by every follower (it lives as long as the
process; ``stop`` only closes the follower's own connection and thread). Event callbacks only queue what
happened; a worker thread per follower re-reads the affected domain or network with the live collector's
own per-object readers (``libvirt_live.domain_part`` / ``network_part``), links a fresh copy of every
cached part (``libvirt_link.link``: a network redefined changes the mode of every NIC on it) and calls
``on_change(inventory, changes)``.

What libvirt sends no event for is caught another way:
- a NIC changed live with ``virDomainUpdateDeviceFlags`` (libvirt 9.0 sends nothing; seen on the lab host):
  every ``resync`` seconds (default 60) everything is re-read and compared;
- DHCP leases and guest-agent addresses appear seconds after a domain starts: the domain is re-read 5, 15
  and 45 s after its start event (and 1 s after its guest agent connects or its metadata changes: a
  libvirt quarantine records itself there, then moves the NIC);
- addresses the watcher sees in ARP: ``observe_address(mac, ip)``;
- a running persistent domain redefined (``virsh define``/``edit``): its live XML stays as it is until
  the next start, so the stored definition of each running persistent domain is read too and compared
  with the one read before; its changes (source ``URI#inactive-domain=NAME``) come with the others.

``changes`` is what ``diff(old, new)`` returns (the watcher passes ``analyse.drift.inventory_changes``;
*collect* may not import *analyse*); without ``diff`` it is always empty. libvirtd going away is one
``on_problem`` line, reconnection with a growing back-off (0.5 s up to 10 s), one line when it is back and a
full re-read whose changes are reported like any other.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
from collections.abc import Callable

from vmsentry.collect import libvirt_live
from vmsentry.collect.libvirt_link import link
from vmsentry.model import InputError, Inventory

_LOOP_LOCK = threading.Lock()
_LOOP_STARTED = False

# virDomainEventType names, for the fact saying which event a domain was last read on
_LIFECYCLE = ("defined", "undefined", "started", "suspended", "resumed", "stopped", "shutdown", "pmsuspended")
_MIGRATED = {("started", 1), ("stopped", 3)}  # VIR_DOMAIN_EVENT_STARTED_MIGRATED, ..._STOPPED_MIGRATED
LEASE_RECHECKS = (5.0, 15.0, 45.0)  # seconds after a domain starts: its DHCP lease and agent addresses


def ensure_event_loop(libvirt) -> None:
    """Register libvirt's default event loop and run it on a daemon thread, once per process."""
    global _LOOP_STARTED
    with _LOOP_LOCK:
        if _LOOP_STARTED:
            return
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _LOOP_STARTED = True


class LibvirtFollower:
    def __init__(
        self,
        uri: str,
        on_change: Callable[[Inventory, list], None],
        on_problem: Callable[[str], None],
        *,
        diff: Callable[[Inventory | None, Inventory], list] | None = None,
        resync: float = 60.0,
        backoff: tuple[float, float] = (0.5, 10.0),
    ) -> None:
        self.uri, self.on_change, self.on_problem, self.diff = uri, on_change, on_problem, diff
        self.resync, self.backoff = resync, backoff
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None
        self._callbacks: list[tuple[str, int]] = []
        self._libvirt = None
        self._parts = libvirt_live.Parts()  # the cached per-object readings, not linked
        self._events: dict[str, str] = {}  # domain UUID -> last lifecycle event ("stopped/migrated")
        self._observed: dict[str, str] = {}  # MAC -> IPv4 the watcher saw in ARP
        self._rechecks: list[tuple[float, str]] = []  # (monotonic due time, domain UUID)
        self._last: Inventory | None = None
        self._last_plain: dict | None = None
        self._stored_seen: dict[str, tuple[dict, Inventory]] = {}  # UUID -> stored definition last compared
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ API
    def start(self) -> Inventory:
        """Connect, read everything and start following. Returns the first inventory (empty, with the
        reason in ``errors``, when libvirtd does not answer: the follower keeps trying)."""
        inv = Inventory()
        self._libvirt = libvirt_live.load_libvirt(self.uri, inv)
        if self._libvirt is None:
            return inv
        ensure_event_loop(self._libvirt)
        connected = self._connect()
        if connected:
            self._read_all()
            inv = self._publish(report=False)
        else:
            inv.errors.append(InputError(self.uri, "cannot connect; retrying in the background"))
            self._queue.put(("lost", "not answering"))
        self._thread = threading.Thread(target=self._work, name=f"libvirt-follow {self.uri}", daemon=True)
        self._thread.start()
        return inv

    def inventory(self) -> Inventory | None:
        with self._lock:
            return self._last

    def observe_address(self, mac: str, ip: str) -> None:
        """An IPv4 address the watcher saw ``mac`` use (ARP): fills a NIC whose address libvirt does not know."""
        mac = mac.lower()
        if self._observed.get(mac) != ip:
            self._observed[mac] = ip
            self._queue.put(("addresses",))

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop",))
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._disconnect()

    # --------------------------------------------------------------------------------- connection
    def _connect(self) -> bool:
        libvirt = self._libvirt
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            try:  # not root: addresses from the guest agent need read-write, the rest does not
                conn = libvirt.openReadOnly(self.uri)
            except libvirt.libvirtError:
                return False
        try:
            conn.registerCloseCallback(lambda _c, reason, _o: self._queue.put(("lost", _reason(reason))), None)
            conn.setKeepAlive(5, 3)
            for event in ("LIFECYCLE", "DEVICE_ADDED", "DEVICE_REMOVED", "METADATA_CHANGE", "AGENT_LIFECYCLE"):
                number = getattr(libvirt, f"VIR_DOMAIN_EVENT_ID_{event}", None)
                if number is not None:
                    cid = conn.domainEventRegisterAny(None, number, self._domain_event(event), None)
                    self._callbacks.append(("domain", cid))
            cid = conn.networkEventRegisterAny(None, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, self._network_event, None)
            self._callbacks.append(("network", cid))
        except libvirt.libvirtError:
            self._conn = conn
            self._disconnect()
            return False
        self._conn = conn
        return True

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        libvirt = self._libvirt
        for kind, cid in self._callbacks:
            try:
                if kind == "domain":
                    conn.domainEventDeregisterAny(cid)
                else:
                    conn.networkEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass
        self._callbacks.clear()
        for step in (conn.unregisterCloseCallback, conn.close):
            try:
                step()
            except libvirt.libvirtError:
                pass

    def _domain_event(self, event: str):
        def queued(_conn, dom, *details) -> None:
            self._queue.put(("domain", dom.UUIDString(), event, details[:-1]))

        return queued

    def _network_event(self, _conn, net, event: int, _detail: int, _opaque) -> None:
        self._queue.put(("network", net.name(), event))

    # -------------------------------------------------------------------------------------- worker
    def _work(self) -> None:
        next_resync = time.monotonic() + self.resync
        while not self._stop.is_set():
            now = time.monotonic()
            due = min([next_resync] + [t for t, _ in self._rechecks])
            try:
                items = [self._queue.get(timeout=max(0.0, min(due - now, 0.5)))]
            except queue.Empty:
                items = []
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._stop.is_set():
                return
            now = time.monotonic()
            if any(item[0] == "lost" for item in items) or self._conn is None:
                lost = next((item[1] for item in items if item[0] == "lost"), "not connected")
                if self._reconnect(lost):
                    next_resync = time.monotonic() + self.resync
                continue
            full = now >= next_resync
            if full:
                next_resync = now + self.resync
            try:
                self._apply(items, now, full)
            except self._libvirt.libvirtError as exc:
                if self._conn is not None and not _alive(self._conn, self._libvirt):
                    self._queue.put(("lost", libvirt_live.message(exc)))

    def _apply(self, items: list, now: float, full: bool) -> None:
        domains: set[str] = {uuid for t, uuid in self._rechecks if t <= now}
        self._rechecks = [(t, uuid) for t, uuid in self._rechecks if t > now]
        networks: set[str] = set()
        changed = full or any(item[0] == "addresses" for item in items)
        for item in items:
            if item[0] == "domain":
                _, uuid, event, details = item
                domains.add(uuid)
                if event == "LIFECYCLE" and details:
                    name = _LIFECYCLE[details[0]] if details[0] < len(_LIFECYCLE) else str(details[0])
                    migrated = (name, details[1] if len(details) > 1 else -1) in _MIGRATED
                    self._events[uuid] = f"{name}/migrated" if migrated else name
                    if name == "started":
                        self._rechecks.extend((now + delay, uuid) for delay in LEASE_RECHECKS)
                elif event in ("AGENT_LIFECYCLE", "METADATA_CHANGE"):
                    # the agent's addresses come a moment after it connects; a quarantine writes its
                    # metadata just before it moves the NIC, and the move itself sends no event
                    self._rechecks.append((now + 1.0, uuid))
            elif item[0] == "network":
                networks.add(item[1])
        if full:
            self._read_all()
        else:
            for uuid in domains:
                self._read_one("domain", uuid)
            for name in networks:
                self._read_one("network", name)
        if changed or domains or networks:
            self._publish(report=True)

    def _reconnect(self, reason: str) -> bool:
        self._disconnect()
        self.on_problem(f"libvirt {self.uri}: connection lost ({reason}); reconnecting")
        started = time.monotonic()
        delay, limit = self.backoff
        while not self._stop.wait(delay):
            if self._connect():
                self.on_problem(f"libvirt {self.uri}: connected again after {time.monotonic() - started:.1f} s")
                # what was queued while away is answered by the full re-read
                while True:
                    try:
                        if self._queue.get_nowait()[0] == "stop":
                            return False
                    except queue.Empty:
                        break
                self._read_all()
                self._publish(report=True)
                return True
            delay = min(delay * 2, limit)
        return False

    # -------------------------------------------------------------------------------------- reading
    def _read_all(self) -> None:
        libvirt, conn = self._libvirt, self._conn
        parts = libvirt_live.read_parts(conn, self.uri, libvirt, agent=True, stored=True)
        if parts.errors and not _alive(conn, libvirt):
            raise libvirt.libvirtError(parts.errors[0].message)
        self._parts = parts

    def _read_one(self, kind: str, key: str) -> None:
        """Read one domain (by UUID) or network (by name) again; one that is gone leaves the cache (a domain
        undefined, or transient and stopped or migrated away)."""
        libvirt = self._libvirt
        if kind == "domain":
            lookup, missing, cache = self._conn.lookupByUUIDString, libvirt.VIR_ERR_NO_DOMAIN, self._parts.domains
        else:
            lookup, missing, cache = self._conn.networkLookupByName, libvirt.VIR_ERR_NO_NETWORK, self._parts.networks
        try:
            obj = lookup(key)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != missing:
                raise
            cache.pop(key, None)
            self._events.pop(key, None)
            self._parts.stored.pop(key, None)
            return
        if kind == "domain":
            cache[key] = libvirt_live.domain_part(obj, self.uri, libvirt, agent=True)
            stored = libvirt_live.stored_domain_part(obj, self.uri, libvirt)
            if stored is None:
                self._parts.stored.pop(key, None)
            else:
                self._parts.stored[key] = stored
        else:
            cache[key] = libvirt_live.network_part(obj, self.uri, libvirt)

    def _build(self) -> Inventory:
        """A linked inventory from copies of the cached parts (linking changes the records it links)."""
        parts = self._parts
        inv = Inventory()
        for name in sorted(parts.networks):
            inv.extend(copy.deepcopy(parts.networks[name]))
        for uuid, part in sorted(parts.domains.items(), key=lambda kv: [vm.name for vm in kv[1].vms]):
            part = copy.deepcopy(part)
            event = self._events.get(uuid)
            for vm in part.vms:
                if event:
                    vm.facts["libvirt.event"] = {"value": event, "at": "virConnectDomainEventRegisterAny"}
            inv.extend(part)
        inv.extend(copy.deepcopy(parts.nwfilters))
        inv.errors.extend(parts.errors)
        link(inv)
        for vm in inv.vms:
            for nic in vm.nics:
                if nic.ip is None and nic.mac in self._observed:
                    nic.ip = self._observed[nic.mac]
        return inv

    def _stored_changes(self) -> list:
        """What changed in the stored definitions of running persistent domains since they were last compared
        (a domain started, stopped or new is its live reading's business, not this)."""
        before = self._stored_seen
        self._stored_seen = {uuid: (part.to_dict(), part) for uuid, part in self._parts.stored.items()}
        redefined = [u for u, (plain, _) in self._stored_seen.items() if u in before and before[u][0] != plain]
        if not redefined or self.diff is None:
            return []
        old = self._stored_inventory([before[u][1] for u in redefined])
        new = self._stored_inventory([self._stored_seen[u][1] for u in redefined])
        return [c for c in self.diff(old, new) if c.kind == "vm" and c.what not in ("vm_added", "vm_removed", "state")]

    def _stored_inventory(self, domains: list[Inventory]) -> Inventory:
        """Stored definitions linked with today's networks (a NIC's mode is its network's)."""
        inv = Inventory()
        for part in (*self._parts.networks.values(), *domains):
            inv.extend(copy.deepcopy(part))
        link(inv)
        return inv

    def _publish(self, report: bool) -> Inventory:
        inv = self._build()
        plain = inv.to_dict()
        with self._lock:
            old, old_plain = self._last, self._last_plain
            self._last, self._last_plain = inv, plain
        redefined = self._stored_changes()
        if not report or (plain == old_plain and not redefined):
            return inv
        changes = (self.diff(old, inv) if self.diff is not None else []) + redefined
        try:
            self.on_change(inv, changes)
        except Exception as exc:  # the watcher's problem, not a reason to stop following
            self.on_problem(f"libvirt {self.uri}: handling a change failed: {exc}")
        return inv


def _reason(code: int) -> str:
    # virConnectCloseReason
    return {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "client closed"}.get(code, f"reason {code}")


def _alive(conn, libvirt) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False
