"""Scan history (``scan --store``, ``vmsentry history``, ``vmsentry drift --store``): each run kept in
SQLite under a folder, or in PostgreSQL for a team. ``open_store(target)`` picks the backend from the
target: a ``postgresql://`` (or ``postgres://``) URL, else a folder. Readers return model records
(``StoredRun``, ``Inventory``)."""

from __future__ import annotations

from vmsentry.report.store.base import Store, StoreError

__all__ = ["Store", "StoreError", "open_store", "is_url"]


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


def open_store(target: str, *, create: bool = True) -> Store:
    """The store at ``target``; ``create=False`` (readers) refuses a folder holding no store yet."""
    if is_url(target):
        from vmsentry.report.store.postgres import PostgresStore

        return PostgresStore(target, create=create)
    from vmsentry.report.store.sqlite import SqliteStore

    return SqliteStore(target, create=create)
