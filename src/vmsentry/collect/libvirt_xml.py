"""libvirt domain, network, nwfilter and domainsnapshot XML (files, or ``XMLDesc`` of a live object).

This module splits a file into its documents and hands each to its reader: ``libvirt_domain`` for
domains, ``libvirt_network`` for networks and nwfilters; snapshots are read here.
"""

from __future__ import annotations

import re
from datetime import UTC

from lxml import etree

from vmsentry.collect.libvirt_domain import PLATFORM, read_domain
from vmsentry.collect.libvirt_network import read_network, read_nwfilter
from vmsentry.collect.source_file import BadInput, element_locator, parse_xml_documents, read_bytes
from vmsentry.model import VM, InputError, Inventory, Snapshot, Source

ROOT_TAGS = (b"<domain", b"<network", b"<filter", b"<node", b"<domainsnapshot")


# The document element, after an XML declaration and comments: libvirt's own root elements only
_ROOT = re.compile(
    rb"\A\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:domain|network|filter|domainsnapshot)[\s>/]", re.S
)


def claims_by_root(path: str, head: bytes) -> bool:
    return _ROOT.match(head) is not None


def claims(path: str, head: bytes) -> bool:
    if path.endswith((".xml", ".xml.in")):
        return True
    text = head.lstrip()
    return text.startswith(b"<") and any(tag in head for tag in ROOT_TAGS)


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    return read_document_bytes(data, Source(file=path))


def read_document_bytes(data: bytes, source: Source) -> Inventory:
    roots = parse_xml_documents(data)
    inv = Inventory()
    for index, root in enumerate(roots):
        _read_root(root, index, source, inv)
    if len(roots) > 1:
        _keep_final_definitions(inv)
    if not (inv.vms or inv.networks or inv.nwfilters or inv.errors):
        raise BadInput(f"no libvirt domain, network or nwfilter definition (root element <{roots[0].tag}>)")
    return inv


def _keep_final_definitions(inv: Inventory) -> None:
    """virt-install prints one definition per install phase (first boot from the installer, then the
    final one): the same domain several times. The last one is what stays defined."""
    last = {vm.name: vm for vm in inv.vms}
    if len(last) == len(inv.vms):
        return
    for vm in inv.vms:
        final = last[vm.name]
        if vm is not final:
            final.facts["libvirt.install_phases"] = {
                "value": final.facts.get("libvirt.install_phases", {}).get("value", 1) + 1,
                "at": "earlier documents in the file",
            }
    inv.vms = list(last.values())


def _read_root(root: etree._Element, index: int, source: Source, inv: Inventory) -> None:
    where = source.file or source.uri or "?"
    tag = root.tag
    try:
        if tag == "domain":
            inv.vms.append(read_domain(root, index, source, inv.errors))
        elif tag == "network":
            inv.networks.append(read_network(root, index, source, inv.errors))
        elif tag == "filter":
            inv.nwfilters.append(read_nwfilter(root, source))
        elif tag == "domainsnapshot":
            _read_snapshot(root, index, source, inv)
        elif tag == "node":  # the test driver's fixture: domains and networks side by side
            for child in root:
                if isinstance(child.tag, str) and child.tag in ("domain", "network", "filter"):
                    _read_root(child, index, source, inv)
        else:
            inv.errors.append(
                InputError(
                    where,
                    f"{element_locator(root, index)}: <{tag}> is not a libvirt domain, network or nwfilter definition",
                )
            )
    except BadInput as exc:
        inv.errors.append(InputError(where, str(exc)))


def _read_snapshot(root: etree._Element, index: int, source: Source, inv: Inventory) -> None:
    """A domainsnapshot document names its domain inside; the link step attaches it to that VM."""
    name = (root.findtext("name") or "").strip()
    domain_name = (root.findtext("domain/name") or "").strip()
    if not name or not domain_name:
        raise BadInput(f"{element_locator(root, index)}: snapshot without a name or domain name")
    created = root.findtext("creationTime")
    iso = None
    if created and created.strip().isdigit():
        from datetime import datetime

        iso = datetime.fromtimestamp(int(created), UTC).isoformat()
    vm = VM(name=domain_name, platform=PLATFORM, source=source)
    vm.snapshots.append(Snapshot(name, iso))
    vm.facts["libvirt.snapshot.only"] = {"value": True, "at": element_locator(root, index)}
    memory = root.find("memory")
    if memory is not None and memory.get("snapshot") in ("internal", "external"):
        vm.facts[f"libvirt.snapshot.{name}.memory"] = {
            "value": memory.get("snapshot"),
            "at": element_locator(memory, index),
        }
    inv.vms.append(vm)
