"""Quarantine by libvirt: the VM's NIC moved live to an isolated network that vmsentry defines.

``vmsentry-quarantine`` has no ``<forward>`` and no ``<ip>`` (the host has no address on it, so nothing is
routed or served), ``<port isolated='yes'/>`` (two quarantined VMs cannot reach each other either) and
``<bridge stp='off' delay='0'/>`` (with STP on, the kernel holds a port that joins a bridge in
listening/learning for about 4 s: release would be that late, lab notes §5). It is defined once, started
and set to autostart.

The NIC, found by its MAC, is changed with ``virDomainUpdateDeviceFlags``: ``<source network=
'vmsentry-quarantine'/>`` in place of what it had, the same MAC, model, PCI address and tap, so the guest sees
no device change; the tap leaves its bridge and joins the quarantine bridge in a few milliseconds. Link
state is not used (``domif-setlink`` misbehaves in libvirt 9.0 when ``<link>`` is already there, and a guest
could bring a link it sees back up).

Live and persistent: a persistent domain's stored definition is changed too (``AFFECT_CONFIG``), so a
quarantined VM that reboots, is shut down and started again, or whose host restarts comes back on the
quarantine network; a watcher restart changes nothing at all (the state is libvirt's). Only ``release``
undoes it.

What was there is kept in the domain's metadata (namespace ``https://vmsentry.dev/quarantine``, key
``vmsentry``; live and stored definition both): the NIC's ``<interface>`` as it was live and as it was stored,
plus the hold (reason, since, TTL, alert). ``release`` puts those back (the live one keeps today's tap,
alias and address, which a restart may have changed), so the NIC returns to the same network or bridge with
the same filter and parameters, virtualport and VLAN; ``held()`` reads every domain's metadata.
"""

from __future__ import annotations

import copy
import json
import time
from contextlib import contextmanager

from lxml import etree

from vmsentry.act.quarantine import Held, QuarantineError, Target, compact, find_held, from_compact, normalise_mac
from vmsentry.collect.libvirt_live import message as _message

NETWORK = "vmsentry-quarantine"
NAMESPACE = "https://vmsentry.dev/quarantine"
KEY = "vmsentry"
NETWORK_XML = (
    f"<network><name>{NETWORK}</name><bridge stp='off' delay='0'/><port isolated='yes'/>"
    "<!-- vmsentry quarantine: no forward, no host address --></network>"
)
# interface types whose host side is a tap on a bridge: they can be moved live onto another network
MOVABLE = ("network", "bridge")
# what ties a NIC to where it was and does not fit an isolated Linux bridge
_DROP_ON_HOLD = ("virtualport", "vlan", "port")


class LibvirtQuarantine:
    method = "libvirt"

    def __init__(self, uri: str = "qemu:///system") -> None:
        self.uri = uri
        self._libvirt = None
        self._conn = None

    # ---------------------------------------------------------------------------------------- API
    def hold(self, target: Target, reason: str, ttl: float | None = None, alert_id: str | None = None) -> Held:
        mac = normalise_mac(target.mac or "")
        if mac is None:
            raise QuarantineError(f"libvirt quarantine: {target.mac!r} is not a MAC address")
        with self._guard("hold"):
            return self._hold(target, mac, reason, ttl, alert_id)

    def _hold(self, target: Target, mac: str, reason: str, ttl: float | None, alert_id: str | None) -> Held:
        dom = self._domain(target.vm, mac)
        holds = self._read(dom)
        for held, _, _ in holds:
            if held.target.mac == mac:
                return held  # idempotent: the first hold stands
        self._ensure_network()
        libvirt = self._libvirt
        active, persistent = bool(dom.isActive()), bool(dom.isPersistent())
        live = _interface(dom.XMLDesc(0), mac) if active else None
        stored = _interface(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), mac) if persistent else None
        nic = live if live is not None else stored
        if nic is None:
            raise QuarantineError(f"libvirt quarantine: {dom.name()} has no NIC with MAC {mac}")
        if nic.get("type") not in MOVABLE:
            raise QuarantineError(
                f"libvirt quarantine: {dom.name()} NIC {mac} is type {nic.get('type')!r}; only a NIC on a network "
                "or bridge can be moved live (use --method nft)"
            )
        source = nic.find("source")
        now = time.time()
        held = Held(
            target=Target(
                vm=dom.name(),
                mac=mac,
                port=nic.xpath("string(target/@dev)") or target.port,
                bridge=(source.get("bridge") if source is not None else None) or target.bridge,
                network=(source.get("network") if source is not None else None) or target.network,
            ),
            method=self.method,
            reason=reason,
            since=now,
            until=now + ttl if ttl else None,
            alert_id=alert_id,
        )
        # the record first: whatever happens next, what was there is known
        self._write(dom, [*holds, (held, _original(live), _original(stored))])
        try:
            if live is not None:
                self._update(dom, _quarantined(live), libvirt.VIR_DOMAIN_AFFECT_LIVE)
            if stored is not None:
                try:
                    self._update(dom, _quarantined(stored), libvirt.VIR_DOMAIN_AFFECT_CONFIG)
                except QuarantineError:
                    if live is not None:
                        self._update(
                            dom, _restored(_original(live), dom.XMLDesc(0), mac), libvirt.VIR_DOMAIN_AFFECT_LIVE
                        )
                    raise
        except QuarantineError:
            self._write(dom, holds)
            raise
        return held

    def release(self, vm_or_mac: str) -> Held:
        """Undo the hold on the NIC named by MAC, or on every held NIC of the VM named (the first is returned)."""
        with self._guard("release"):
            return self._release(vm_or_mac)

    def _release(self, vm_or_mac: str) -> Held:
        mac = normalise_mac(vm_or_mac)
        found = None
        for dom in self._domains():
            holds = self._read(dom)
            match = find_held([h for h, _, _ in holds], vm_or_mac)
            if match is None:
                continue
            keep = []
            for held, live, stored in holds:
                if held.target.mac == mac or (mac is None and held.target.vm == vm_or_mac):
                    self._restore(dom, held.target.mac, live, stored)
                    found = found or held
                else:
                    keep.append((held, live, stored))
            self._write(dom, keep)
            if found is not None:
                return found
        raise QuarantineError(f"libvirt quarantine: nothing held for {vm_or_mac!r} on {self.uri}")

    def held(self) -> list[Held]:
        with self._guard("read holds"):
            return [held for dom in self._domains() for held, _, _ in self._read(dom)]

    def ruleset(self) -> str:
        return ""

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # -------------------------------------------------------------------------------- libvirt side
    @contextmanager
    def _guard(self, doing: str):
        """A libvirt error no step expected (libvirtd gone mid-way, a domain undefined) as one line."""
        self._connection()
        try:
            yield
        except self._libvirt.libvirtError as exc:
            raise QuarantineError(f"libvirt quarantine: {doing} on {self.uri} failed: {_message(exc)}") from None

    def _connection(self):
        if self._conn is not None:
            try:
                if self._conn.isAlive():
                    return self._conn
            except self._libvirt.libvirtError:  # a dead connection: open a new one below
                pass
            self._conn = None
        try:
            import libvirt
        except ImportError:
            raise QuarantineError("libvirt quarantine: libvirt-python is not installed") from None
        libvirt.registerErrorHandler(lambda *_: None, None)
        self._libvirt = libvirt
        try:
            self._conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise QuarantineError(f"libvirt quarantine: cannot connect to {self.uri}: {_message(exc)}") from None
        return self._conn

    def _domains(self) -> list:
        conn = self._connection()
        try:
            return conn.listAllDomains()
        except self._libvirt.libvirtError as exc:
            raise QuarantineError(f"libvirt quarantine: cannot list domains on {self.uri}: {_message(exc)}") from None

    def _domain(self, name: str | None, mac: str):
        conn = self._connection()
        libvirt = self._libvirt
        if name:
            try:
                return conn.lookupByName(name)
            except libvirt.libvirtError:
                pass
        for dom in self._domains():  # a VM the inventory names differently: find the NIC by MAC
            try:
                xml = dom.XMLDesc(0)
            except libvirt.libvirtError:
                continue
            if _interface(xml, mac) is not None:
                return dom
        raise QuarantineError(f"libvirt quarantine: no domain {name!r} with MAC {mac} on {self.uri}")

    def _ensure_network(self) -> None:
        conn, libvirt = self._connection(), self._libvirt
        try:
            net = conn.networkLookupByName(NETWORK)
        except libvirt.libvirtError:
            try:
                net = conn.networkDefineXML(NETWORK_XML)
            except libvirt.libvirtError as exc:
                raise QuarantineError(f"libvirt quarantine: cannot define network {NETWORK}: {_message(exc)}") from None
        try:
            root = etree.fromstring(net.XMLDesc(0).encode())
            if root.find("forward") is not None or root.find("ip") is not None:
                raise QuarantineError(
                    f"libvirt quarantine: network {NETWORK} exists with a <forward> or <ip>: it is not isolated; "
                    "undefine it or let vmsentry define it"
                )
            if not net.isActive():
                net.create()
            if not net.autostart():
                net.setAutostart(1)
        except libvirt.libvirtError as exc:
            raise QuarantineError(f"libvirt quarantine: cannot start network {NETWORK}: {_message(exc)}") from None

    def _update(self, dom, xml: str, flags: int) -> None:
        try:
            dom.updateDeviceFlags(xml, flags)
        except self._libvirt.libvirtError as exc:
            where = "live" if flags == self._libvirt.VIR_DOMAIN_AFFECT_LIVE else "stored definition"
            raise QuarantineError(
                f"libvirt quarantine: cannot change {dom.name()}'s NIC ({where}): {_message(exc)}"
            ) from None

    def _restore(self, dom, mac: str, live: str | None, stored: str | None) -> None:
        libvirt = self._libvirt
        if dom.isActive():
            current = dom.XMLDesc(0)
            # running now: back to what it had live, or (it was started while held) to what it had stored
            original = live or stored
            if original is not None and _interface(current, mac) is not None:
                self._update(dom, _restored(original, current, mac), libvirt.VIR_DOMAIN_AFFECT_LIVE)
        if stored is not None and dom.isPersistent():
            self._update(dom, stored, libvirt.VIR_DOMAIN_AFFECT_CONFIG)

    # ------------------------------------------------------------------------------------ metadata
    def _read(self, dom) -> list[tuple[Held, str | None, str | None]]:
        """(hold, live <interface> before, stored <interface> before) for each NIC held on ``dom``."""
        libvirt = self._libvirt
        try:
            text = dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, NAMESPACE, 0)
        except libvirt.libvirtError:
            return []  # no vmsentry metadata: nothing held
        try:
            root = etree.fromstring(text.encode())
        except etree.XMLSyntaxError:
            return []
        out = []
        for nic in root:
            if etree.QName(nic).localname != "nic":
                continue
            held = from_compact(nic.get("held") or "", self.method)
            if held is None:
                continue
            parts = {etree.QName(child).localname: child.text for child in nic}
            out.append((held, parts.get("live"), parts.get("stored")))
        return out

    def _write(self, dom, holds: list[tuple[Held, str | None, str | None]]) -> None:
        libvirt = self._libvirt
        flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG if dom.isPersistent() else 0
        if dom.isActive():
            flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
        if holds:
            root = etree.Element("quarantine")
            for held, live, stored in holds:
                nic = etree.SubElement(root, "nic", held=json.dumps(compact(held), separators=(",", ":")))
                for name, text in (("live", live), ("stored", stored)):
                    if text is not None:
                        etree.SubElement(nic, name).text = text
            metadata = etree.tostring(root, encoding="unicode")
        else:
            metadata = None  # removes the element
        try:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, metadata, KEY, NAMESPACE, flags)
        except libvirt.libvirtError as exc:
            raise QuarantineError(
                f"libvirt quarantine: cannot record the hold in {dom.name()}'s metadata: {_message(exc)}"
            ) from None


# ---------------------------------------------------------------------------------- interface XML
def _interface(domain_xml: str, mac: str) -> etree._Element | None:
    root = etree.fromstring(domain_xml.encode())
    for nic in root.iterfind("devices/interface"):
        if (nic.xpath("string(mac/@address)") or "").lower() == mac:
            return nic
    return None


def _original(nic: etree._Element | None) -> str | None:
    """The <interface> as it was, without what the running domain made up (the port id of its network port,
    the bridge a network put it on): restoring those would name a port that no longer exists."""
    if nic is None:
        return None
    nic = copy.deepcopy(nic)
    source = nic.find("source")
    if source is not None:
        source.attrib.pop("portid", None)
        if nic.get("type") == "network":
            source.attrib.pop("bridge", None)
    nic.tail = None
    return etree.tostring(nic, encoding="unicode")


def _quarantined(nic: etree._Element) -> str:
    """The same NIC (MAC, model, tap, address, filter) on the quarantine network."""
    nic = copy.deepcopy(nic)
    nic.set("type", "network")
    for tag in ("source", *_DROP_ON_HOLD):
        for el in nic.findall(tag):
            nic.remove(el)
    source = etree.Element("source", network=NETWORK)
    nic.insert(1 if nic.find("mac") is not None else 0, source)
    nic.tail = None
    return etree.tostring(nic, encoding="unicode")


def _restored(original: str, current_domain_xml: str, mac: str) -> str:
    """``original`` with today's tap, alias and PCI address (a restart while held may have changed them)."""
    nic = etree.fromstring(original.encode())
    current = _interface(current_domain_xml, mac)
    if current is not None:
        for tag in ("target", "alias", "address"):
            for el in nic.findall(tag):
                nic.remove(el)
            for el in current.findall(tag):
                nic.append(copy.deepcopy(el))
    return etree.tostring(nic, encoding="unicode")
