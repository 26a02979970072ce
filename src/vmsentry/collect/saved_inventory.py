"""A saved ``vmsentry inventory`` JSON, read back as it is (so a lab or fleet can be described offline)."""

from __future__ import annotations

import json

from vmsentry.collect.source_file import BadInput, parse_json, read_bytes
from vmsentry.model import SCHEMA, Inventory


def claims(path: str, head: bytes) -> bool:
    """A saved inventory names its schema first; a `scan --format json` report names the tool first."""
    if not path.endswith(".json"):
        return False
    return b"vmsentry.inventory/" in head or (b'"tool"' in head and b'"vmsentry"' in head)


# A saved inventory describes a whole fleet: about 2 KB a VM, so 256 MiB holds over 100,000 VMs
MAX_BYTES = 256 * 1024 * 1024


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path, MAX_BYTES)
    doc = parse_json(data, "not UTF-8 text; not a vmsentry inventory")
    if not isinstance(doc, dict):
        raise BadInput("not a vmsentry inventory (top level is not an object)")
    # a scan --format json output carries the inventory inside
    if "inventory" in doc and isinstance(doc["inventory"], dict):
        doc = doc["inventory"]
    if doc.get("schema") != SCHEMA:
        found = doc.get("schema")
        shown = json.dumps(found)[:60] if isinstance(found, (str, int, float)) or found is None else "not a string"
        raise BadInput(f"schema is {shown}, expected {SCHEMA!r}")
    try:
        inv = Inventory.from_dict(doc, origin=path)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"inventory does not follow {SCHEMA}: {exc}") from None
    for item in inv.vms + inv.networks:
        if item.source.file is None and item.source.uri is None:
            item.source.file = path
    return inv
