"""A saved ``vmsentry inventory`` JSON, read back as it is (so a lab or fleet can be described offline)."""

from __future__ import annotations

import json

from vmsentry.collect.source_file import BadInput, read_bytes
from vmsentry.model import SCHEMA, Inventory


def claims(path: str, head: bytes) -> bool:
    """A saved inventory names its schema first; a `scan --format json` report names the tool first."""
    if not path.endswith(".json"):
        return False
    return b"vmsentry.inventory/" in head or (b'"tool"' in head and b'"vmsentry"' in head)


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f"line {exc.lineno}, column {exc.colno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise BadInput(f"{where}malformed JSON: {getattr(exc, 'msg', exc)}") from None
    if not isinstance(doc, dict):
        raise BadInput("not a vmsentry inventory (top level is not an object)")
    # a scan --format json output carries the inventory inside
    if "inventory" in doc and isinstance(doc["inventory"], dict):
        doc = doc["inventory"]
    if doc.get("schema") != SCHEMA:
        raise BadInput(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    try:
        inv = Inventory.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"inventory does not follow {SCHEMA}: {exc}") from None
    for item in inv.vms + inv.networks:
        if item.source.file is None and item.source.uri is None:
            item.source.file = path
    return inv
