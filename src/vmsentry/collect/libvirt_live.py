"""A live libvirt connection (``--libvirt URI``): every domain, network and nwfilter the URI sees,
read through libvirt-python as the XML libvirt itself reports, plus what only a live host knows
(running state, DHCP leases, the tap device and allocated console ports in the live XML).

Read-only: the connection is opened with ``openReadOnly`` where possible.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

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
    try:
        import libvirt
    except ImportError:
        inv.errors.append(InputError(uri, "libvirt-python is not installed (pip install 'vmsentry[libvirt]')"))
        return inv
    libvirt.registerErrorHandler(lambda *_: None, None)  # errors come back as exceptions, not stderr noise
    try:
        conn = libvirt.openReadOnly(uri)
    except libvirt.libvirtError as exc:
        inv.errors.append(InputError(uri, f"cannot connect: {_message(exc)}"))
        return inv
    try:
        _read_networks(conn, uri, inv, libvirt)
        _read_domains(conn, uri, inv, libvirt)
        _read_nwfilters(conn, uri, inv, libvirt)
    finally:
        conn.close()
    return inv


def _message(exc: Exception) -> str:
    get = getattr(exc, "get_error_message", None)
    return (get() if get else None) or str(exc)


def _documents(
    list_all, kind: str, uri: str, inv: Inventory, libvirt, xml_of=None, listing_may_fail: bool = False
) -> Iterator[tuple[Any, Inventory]]:
    """(object, what its XML holds) for each object ``list_all()`` returns, its source ``URI#KIND=NAME``.
    A listing that fails is one error (none when ``listing_may_fail``: the driver has no such objects);
    an object whose XML cannot be fetched or read is one error and the others are still read.
    ``xml_of(object)`` fetches the XML (default ``XMLDesc(0)``)."""
    try:
        objects = list_all()
    except libvirt.libvirtError as exc:
        if not listing_may_fail:
            inv.errors.append(InputError(uri, f"cannot list {kind}s: {_message(exc)}"))
        return
    for obj in objects:
        source = Source(uri=f"{uri}#{kind}={obj.name()}")
        try:
            xml = xml_of(obj) if xml_of is not None else obj.XMLDesc(0)
            part = libvirt_xml.read_document_bytes(xml.encode(), source)
        except (libvirt.libvirtError, BadInput) as exc:
            inv.errors.append(InputError(source.uri, _message(exc)))
            continue
        yield obj, part


def _read_networks(conn, uri: str, inv: Inventory, libvirt) -> None:
    for net, part in _documents(conn.listAllNetworks, "network", uri, inv, libvirt):
        for network in part.networks:
            network.facts["libvirt.active"] = {"value": bool(net.isActive()), "at": "virNetworkIsActive"}
            _add_leases(net, network, libvirt)
        inv.extend(part)


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


def _read_domains(conn, uri: str, inv: Inventory, libvirt) -> None:
    def secure_xml(dom) -> str:
        # The secure flag would reveal console passwords; presence is all we need and the parser
        # records only that, but a read-only connection may not be allowed it: fall back.
        try:
            return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
        except libvirt.libvirtError:
            return dom.XMLDesc(0)

    for dom, part in _documents(conn.listAllDomains, "domain", uri, inv, libvirt, secure_xml):
        for vm in part.vms:
            try:
                vm.state = _STATES.get(dom.state()[0], "unknown")
            except libvirt.libvirtError:
                vm.state = "unknown"
            # The test driver invents interface addresses (and libvirt 9.0's crashes on some fixtures):
            # only real drivers are asked for leases.
            if vm.state == "running" and not uri.startswith("test:"):
                _add_interface_addresses(dom, vm, libvirt)
        inv.extend(part)


def _add_interface_addresses(dom, vm, libvirt) -> None:
    try:
        addresses = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE)
    except libvirt.libvirtError:
        return
    by_mac = {}
    for info in addresses.values():
        hwaddr = (info.get("hwaddr") or "").lower()
        for addr in info.get("addrs") or []:
            if addr.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV4 and hwaddr:
                by_mac.setdefault(hwaddr, addr.get("addr"))
    for nic in vm.nics:
        if nic.ip is None and nic.mac in by_mac:
            nic.ip = by_mac[nic.mac]


def _read_nwfilters(conn, uri: str, inv: Inventory, libvirt) -> None:
    # drivers without nwfilter support (test:///) simply have none
    for _, part in _documents(conn.listAllNWFilters, "nwfilter", uri, inv, libvirt, listing_may_fail=True):
        inv.extend(part)
