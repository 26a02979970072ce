"""The scan store in SQLite: ``DIR/scans.db`` (created with the folder, mode 0700/0600), WAL, so a reader
(``vmsentry history``) never waits for a scan writing, and two scans writing at once take turns."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from vmsentry.report.store.base import FINDING_COLUMNS, Store, StoreError

FILE_NAME = "scans.db"
BUSY_SECONDS = 30.0  # how long a writer waits for another one (a 10,000-VM run writes in about a second)


class SqliteStore(Store):
    marker = "?"
    blob = "BLOB"
    errors = (sqlite3.Error,)

    def __init__(self, folder: str, *, create: bool = True) -> None:
        super().__init__()
        self.name = folder
        path = os.path.join(folder, FILE_NAME)
        try:
            if create:
                os.makedirs(folder, mode=0o700, exist_ok=True)
            elif not os.path.exists(path):
                raise StoreError(f"{folder}: no scan store here (no {FILE_NAME}; `scan --store {folder}` makes one)")
            if create and not os.path.exists(path):
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            # isolation_level=None: transactions are begun by hand (BEGIN IMMEDIATE for writes)
            self.db = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._create_schema()
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"{path}: not a usable scan store ({exc})") from None
        except OSError as exc:
            self.close()
            raise StoreError(f"{exc.filename or folder}: {exc.strerror}") from None

    def _begin_write(self, cursor: Any) -> None:
        cursor.execute("BEGIN IMMEDIATE")

    def _insert_findings(self, cursor: Any, rows: Iterable[tuple]) -> None:
        marks = ", ".join("?" * len(FINDING_COLUMNS))
        cursor.executemany(f"INSERT INTO vmsentry_findings ({', '.join(FINDING_COLUMNS)}) VALUES ({marks})", rows)
