"""The scan store in PostgreSQL (``postgresql://user@host/db``), for a team's shared history, through
psycopg 3 (the optional ``store`` extra: ``pip install 'vmsentry[store]'``). The same tables as SQLite;
findings go in by COPY. The schema is created under an advisory lock, so two first scans do not race."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vmsentry.report.store.base import FINDING_COLUMNS, Store, StoreError

SCHEMA_LOCK = 0x766D73656E747279  # "vmsentry": pg_advisory_xact_lock key for creating the tables
CONNECT_SECONDS = 10


def display_url(url: str) -> str:
    """The URL without its password (nor a password= parameter), to name the store in messages."""
    from vmsentry.model.text import redact_credentials

    return redact_credentials(url)


class PostgresStore(Store):
    marker = "%s"
    blob = "BYTEA"

    def __init__(self, url: str, *, create: bool = True) -> None:
        super().__init__()
        self.name = display_url(url)
        try:
            import psycopg
        except ImportError:
            raise StoreError(
                f"{self.name}: PostgreSQL needs psycopg 3 (pip install 'vmsentry[store]' or 'psycopg[binary]')"
            ) from None
        self.errors = (psycopg.Error,)
        try:
            self.db = psycopg.connect(url, connect_timeout=CONNECT_SECONDS)
            self._create_schema()
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"{self.name}: {display_url(_first_line(exc))}") from None

    def _begin_write(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))

    def _insert_findings(self, cursor: Any, rows: Iterable[tuple]) -> None:
        with cursor.copy(f"COPY vmsentry_findings ({', '.join(FINDING_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
