"""A live libvirt connection (``--libvirt URI``): every domain, network and nwfilter the URI sees,
read through libvirt-python as the XML libvirt itself reports, plus what only a live host knows
(running state, DHCP leases, the tap device and allocated console ports in the live XML).

Read-only: the connection is opened with ``openReadOnly`` where possible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vmsentry.collect import libvirt_xml
from vmsentry.collect.source_file import BadInput
from vmsentry.model import InputError, Inventory, Source

_STATES = {
    0: "no-state",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutting-down",
    5: "shut-off",
    6: "crashed",
    7: "suspended",
}


def read_uri(uri: str) -> Inventory:
    inv = Inventory()
    libvirt = load_libvirt(uri, inv)
    if libvirt is None:
        return inv
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        inv.errors.append(InputError(uri, f"cannot connect: {message(exc)}"))
        return inv
    try:
        inv.extend(read_connection(conn, uri, libvirt))
    finally:
        conn.close()
    return inv


def load_libvirt(uri: str, inv: Inventory):
    """The libvirt module, quiet (errors come back as exceptions, not stderr noise); None with one error
    in ``inv`` when libvirt-python is missing."""
    try:
        import libvirt
    except ImportError:
        inv.errors.append(InputError(uri, "libvirt-python is not installed (pip install 'vmsentry[libvirt]')"))
        return None
    libvirt.registerErrorHandler(lambda *_: None, None)
    return libvirt


def read_connection(conn, uri: str, libvirt, agent: bool = False) -> Inventory:
    """Every network, domain and nwfilter of an open connection, not yet linked (``libvirt_link.link``).
    ``agent``: also ask a running domain's connected guest agent for its addresses (needs a read-write
    connection; a refusal is passed over)."""
    parts = read_parts(conn, uri, libvirt, agent)
    inv = Inventory(errors=parts.errors)
    for part in (*parts.networks.values(), *parts.domains.values(), parts.nwfilters):
        inv.extend(part)
    return inv


@dataclass
class Parts:
    """What a connection holds, per object, so that one object can be read again on its own."""

    networks: dict[str, Inventory] = field(default_factory=dict)  # network name -> its reading
    domains: dict[str, Inventory] = field(default_factory=dict)  # domain UUID -> its reading
    nwfilters: Inventory = field(default_factory=Inventory)
    errors: list[InputError] = field(default_factory=list)  # listings that failed
    # domain UUID -> its stored definition, for a running persistent domain (``stored`` readings only)
    stored: dict[str, Inventory] = field(default_factory=dict)


def read_parts(conn, uri: str, libvirt, agent: bool = False, stored: bool = False) -> Parts:
    """``stored``: also read the stored definition of each running persistent domain (what it will boot
    with: a redefinition changes only that, the live XML stays as it is until the next start)."""
    parts = Parts()
    listing = Inventory(errors=parts.errors)
    for net in _listed(conn.listAllNetworks, "network", uri, listing, libvirt):
        parts.networks[net.name()] = network_part(net, uri, libvirt)
    for dom in _listed(conn.listAllDomains, "domain", uri, listing, libvirt):
        parts.domains[dom.UUIDString()] = domain_part(dom, uri, libvirt, agent)
        definition = stored_domain_part(dom, uri, libvirt) if stored else None
        if definition is not None:
            parts.stored[dom.UUIDString()] = definition
    for flt in _listed(conn.listAllNWFilters, "nwfilter", uri, listing, libvirt, listing_may_fail=True):
        # drivers without nwfilter support (test:///) simply have none
        parts.nwfilters.extend(_document(flt, "nwfilter", uri, libvirt))
    return parts


def message(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    return (get() if get else None) or str(exc)


def _listed(list_all, kind: str, uri: str, inv: Inventory, libvirt, listing_may_fail: bool = False):
    """Each object ``list_all()`` returns; a listing that fails is one error in ``inv``
    (none when ``listing_may_fail``: the driver has no such objects)."""
    try:
        objects = list_all()
    except libvirt.libvirtError as exc:
        if not listing_may_fail:
            inv.errors.append(InputError(uri, f"cannot list {kind}s: {message(exc)}"))
        return
    yield from objects


def _document(obj, kind: str, uri: str, libvirt, xml_of=None) -> Inventory:
    """What one object's XML holds, its source ``URI#KIND=NAME``; an object whose XML cannot be fetched
    or read is one error. ``xml_of(object)`` fetches the XML (default ``XMLDesc(0)``)."""
    where = f"{uri}#{kind}"
    try:
        where = f"{uri}#{kind}={obj.name()}"
        xml = xml_of(obj) if xml_of is not None else obj.XMLDesc(0)
        return libvirt_xml.read_document_bytes(xml.encode(), Source(uri=where))
    except (libvirt.libvirtError, BadInput) as exc:
        part = Inventory()
        part.errors.append(InputError(where, message(exc)))
        return part


def network_part(net, uri: str, libvirt) -> Inventory:
    """One network: its definition, whether it is active and its dynamic DHCP leases."""
    part = _document(net, "network", uri, libvirt)
    for network in part.networks:
        try:
            active = bool(net.isActive())
        except libvirt.libvirtError:
            active = False
        network.facts["libvirt.active"] = {"value": active, "at": "virNetworkIsActive"}
        _add_leases(net, network, libvirt)
    return part


def _add_leases(net, network, libvirt) -> None:
    """Dynamic DHCP leases (the test driver does not support them; a real libvirtd does)."""
    try:
        leases = net.DHCPLeases()
    except libvirt.libvirtError:
        return
    found = {lease["mac"].lower(): lease["ipaddr"] for lease in leases if lease.get("mac") and lease.get("ipaddr")}
    if found:
        slot = network.facts.setdefault("libvirt.dhcp.hosts", {"value": {}, "at": "virNetworkGetDHCPLeases"})
        slot["value"].update(found)


def domain_part(dom, uri: str, libvirt, agent: bool = False) -> Inventory:
    """One domain: its live definition, its state and (running, real drivers) its NICs' addresses from
    the DHCP leases and, with ``agent``, from a connected guest agent."""

    def secure_xml(dom) -> str:
        # The secure flag would reveal console passwords; presence is all we need and the parser
        # records only that, but a read-only connection may not be allowed it: fall back.
        try:
            return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError:
            return dom.XMLDesc(0)

    part = _document(dom, "domain", uri, libvirt, secure_xml)
    for vm in part.vms:
        try:
            vm.state = _STATES.get(dom.state()[0], "unknown")
        except libvirt.libvirtError:
            vm.state = "unknown"
        # The test driver invents interface addresses (and libvirt 9.0's crashes on some fixtures):
        # only real drivers are asked for leases.
        if vm.state == "running" and not uri.startswith("test:"):
            _add_interface_addresses(dom, vm, libvirt, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
            if agent and vm.facts.get("libvirt.guest_agent.connected", {}).get("value"):
                _add_interface_addresses(dom, vm, libvirt, libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT)
    return part


def stored_domain_part(dom, uri: str, libvirt) -> Inventory | None:
    """A running persistent domain's stored definition (``virsh dumpxml --inactive``), its source
    ``URI#inactive-domain=NAME``; None for a domain that is not running or not persistent (its live
    reading is all there is) or whose state cannot be read."""
    try:
        if not (dom.isActive() and dom.isPersistent()):
            return None
    except libvirt.libvirtError:
        return None
    return _document(dom, "inactive-domain", uri, libvirt, lambda d: d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def _add_interface_addresses(dom, vm, libvirt, source: int) -> None:
    try:
        addresses = dom.interfaceAddresses(source)
    except libvirt.libvirtError:
        return
    by_mac = {}
    for info in (addresses or {}).values():
        hwaddr = (info.get("hwaddr") or "").lower()
        for addr in info.get("addrs") or []:
            if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and hwaddr:
                by_mac.setdefault(hwaddr, addr.get("addr"))
    for nic in vm.nics:
        if nic.ip is None and nic.mac in by_mac:
            nic.ip = by_mac[nic.mac]
