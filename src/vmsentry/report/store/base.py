"""The scan store's schema and every query, shared by the SQLite and PostgreSQL backends.

One schema on both (the backends differ only in how they connect, the parameter marker, the binary column
type and the bulk insert): ``vmsentry_runs`` (a row per run: id, start time, tool version, inputs, the
scan's summary, exit code, the inventory as zlib-compressed JSON) and ``vmsentry_findings`` (a row per
listed finding: rule, asset, status, severity, and the finding's JSON as the scan report writes it; the
not-applicable results are counted in the summary, not kept, as in the report). ``vmsentry_meta`` holds
the schema version. A run is written in one transaction: a reader never sees half a run.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from vmsentry.model.findings import SEVERITIES
from vmsentry.model.history import StoredRun
from vmsentry.model.inventory import Inventory
from vmsentry.model.scan import ScanResult

SCHEMA_VERSION = "1"

# {blob}: the binary column type of the backend
DDL = (
    "CREATE TABLE IF NOT EXISTS vmsentry_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS vmsentry_runs (
        run_id TEXT PRIMARY KEY,
        started TEXT NOT NULL,
        tool_version TEXT NOT NULL,
        inputs TEXT NOT NULL,
        summary TEXT NOT NULL,
        exit_code INTEGER NOT NULL,
        inventory {blob} NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS vmsentry_runs_started ON vmsentry_runs (started)",
    """CREATE TABLE IF NOT EXISTS vmsentry_findings (
        run_id TEXT NOT NULL REFERENCES vmsentry_runs (run_id) ON DELETE CASCADE,
        rule_id TEXT NOT NULL,
        asset TEXT NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        finding TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS vmsentry_findings_run ON vmsentry_findings (run_id)",
    "CREATE INDEX IF NOT EXISTS vmsentry_findings_asset ON vmsentry_findings (asset, run_id)",
)
FINDING_COLUMNS = ("run_id", "rule_id", "asset", "status", "severity", "finding")
ASSET_KINDS = ("vm", "host", "network")


class StoreError(Exception):
    """A store that cannot be opened, read or written; the message names it (no password) and the problem."""


class Store(AbstractContextManager):
    """The queries; a backend supplies ``_connect``-made ``self.db`` (a DB-API connection not in autocommit),
    ``marker`` and ``_insert_findings``."""

    marker = "?"
    blob = "BLOB"
    name = ""  # the store as shown to a person (a PostgreSQL URL without its password)
    errors: tuple[type[Exception], ...] = ()  # the backend's database errors, reported as StoreError

    def __init__(self) -> None:
        self.db: Any = None

    # -- to implement --------------------------------------------------------------------------------
    def _insert_findings(self, cursor: Any, rows: Iterable[tuple]) -> None:
        raise NotImplementedError

    def _begin_write(self, cursor: Any) -> None:
        """Start the write transaction (SQLite: take the write lock now, not at the first insert)."""

    # -- schema --------------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        cur = self.db.cursor()
        self._begin_write(cur)
        for statement in DDL:
            cur.execute(statement.format(blob=self.blob))
        cur.execute(self._sql("SELECT value FROM vmsentry_meta WHERE key = 'schema'"))
        row = cur.fetchone()
        if row is None:
            cur.execute(self._sql("INSERT INTO vmsentry_meta (key, value) VALUES ('schema', ?)"), (SCHEMA_VERSION,))
        elif row[0] != SCHEMA_VERSION:
            self.db.rollback()
            raise StoreError(f"{self.name}: store schema {row[0]!r}, this vmsentry reads {SCHEMA_VERSION!r}")
        self.db.commit()

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """A database error while ``doing`` becomes one StoreError line naming the store."""
        try:
            yield
        except self.errors as exc:
            try:
                self.db.rollback()
            except self.errors:
                pass
            from vmsentry.model.text import redact_credentials

            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            raise StoreError(f"{self.name}: {doing}: {redact_credentials(lines[0])}") from None

    def _sql(self, text: str) -> str:
        return text if self.marker == "?" else text.replace("?", self.marker)

    # -- writing -------------------------------------------------------------------------------------
    def save(self, result: ScanResult, inputs: dict[str, Any], exit_code: int) -> None:
        """Keep one run: its summary, inventory and listed findings (``result.run_id``, ``timestamp`` set)."""
        from vmsentry.report.json_report import finding_encoder, summarise

        if not result.run_id or not result.timestamp:
            raise ValueError("a stored run needs the result's run_id and timestamp")
        summary = summarise(result)
        inventory = zlib.compress(json.dumps(result.inventory.to_dict(), separators=(",", ":")).encode(), 6)
        encode = finding_encoder()
        run = result.run_id
        rows = (
            (run, f.rule_id, f.asset, f.status, f.severity, encode(f))
            for f in result.findings
            if f.status != "not_applicable"
        )
        with self._guard(f"saving run {run}"):
            cur = self.db.cursor()
            self._begin_write(cur)
            cur.execute(
                self._sql(
                    "INSERT INTO vmsentry_runs (run_id, started, tool_version, inputs, summary, exit_code, inventory)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                (run, result.timestamp, result.tool_version, _text(inputs), _text(summary), exit_code, inventory),
            )
            self._insert_findings(cur, rows)
            self.db.commit()

    # -- reading -------------------------------------------------------------------------------------
    def runs(self, asset: str | None = None, last: int | None = None, run_id: str | None = None) -> list[StoredRun]:
        """Every run, oldest first (the ``last`` ones when given; only ``run_id`` when given); with ``asset``
        the failing counts are that asset's (``web`` matches ``vm:web``, ``host:web`` or ``network:web``)."""
        with self._guard("reading the runs"):
            cur = self.db.cursor()
            query = "SELECT run_id, started, tool_version, inputs, summary, exit_code FROM vmsentry_runs"
            params: tuple = ()
            if run_id is not None:
                query, params = query + " WHERE run_id = ?", (run_id,)
            query += " ORDER BY started DESC, run_id DESC"
            if last is not None:
                query += f" LIMIT {int(last)}"
            cur.execute(self._sql(query), params)
            rows = cur.fetchall()[::-1]
            per_asset: dict[str, dict[str, int]] = {}
            if asset:
                names = _asset_names(asset)
                cur.execute(
                    self._sql(
                        "SELECT run_id, severity, COUNT(*) FROM vmsentry_findings"
                        f" WHERE asset IN ({', '.join('?' * len(names))}) AND status = 'fail'"
                        " GROUP BY run_id, severity"
                    ),
                    names,
                )
                for found_run, severity, count in cur.fetchall():
                    per_asset.setdefault(found_run, {})[severity] = int(count)
            self.db.rollback()  # end the read transaction (PostgreSQL keeps one open otherwise)
        out = []
        for found_run, started, version, inputs, summary, code in rows:
            summary = json.loads(summary)
            failing = per_asset.get(found_run, {}) if asset else summary.get("failing_by_severity", {})
            out.append(
                StoredRun(
                    run_id=found_run,
                    timestamp=started,
                    tool_version=version,
                    inputs=json.loads(inputs),
                    exit_code=int(code),
                    vms=int(summary.get("vms", 0)),
                    failing_by_severity={s: int(failing.get(s, 0)) for s in SEVERITIES},
                    asset=asset,
                )
            )
        return out

    def resolve(self, spec: str) -> str:
        """A run id from what a person typed: the id, a unique prefix of it, ``latest`` or ``latest~N``."""
        with self._guard(f"finding run {spec!r}"):
            cur = self.db.cursor()
            if spec == "latest" or spec.startswith("latest~"):
                back = spec.partition("~")[2] or "0"
                if not back.isdigit():
                    raise StoreError(f"{self.name}: run {spec!r}: expected a run id, latest or latest~N")
                cur.execute(
                    f"SELECT run_id FROM vmsentry_runs ORDER BY started DESC, run_id DESC LIMIT 1 OFFSET {int(back)}"
                )
                found = [r[0] for r in cur.fetchall()]
            else:
                like = spec.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                cur.execute(
                    self._sql(
                        "SELECT run_id FROM vmsentry_runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id LIMIT 2"
                    ),
                    (like,),
                )
                found = [r[0] for r in cur.fetchall()]
                if spec in found:
                    found = [spec]
            self.db.rollback()
        if not found:
            raise StoreError(f"{self.name}: no run {spec!r} (`vmsentry history --store ...` lists them)")
        if len(found) > 1:
            raise StoreError(f"{self.name}: run {spec!r} is ambiguous ({found[0]}, {found[1]}, ...): give more of it")
        return found[0]

    def run_inventory(self, run_id: str) -> tuple[StoredRun, Inventory]:
        """The run and the inventory it scanned."""
        with self._guard(f"reading run {run_id}"):
            cur = self.db.cursor()
            cur.execute(self._sql("SELECT inventory FROM vmsentry_runs WHERE run_id = ?"), (run_id,))
            row = cur.fetchone()
            self.db.rollback()
        runs = self.runs(run_id=run_id)
        if row is None or not runs:
            raise StoreError(f"{self.name}: no run {run_id!r}")
        try:
            data = json.loads(zlib.decompress(bytes(row[0])))
            inventory = Inventory.from_dict(data, origin=f"{self.name} run {run_id}")
        except (zlib.error, ValueError, TypeError) as exc:
            raise StoreError(f"{self.name}: run {run_id}: stored inventory unreadable ({exc})") from None
        return runs[0], inventory

    def findings(self, run_id: str) -> list[dict[str, Any]]:
        """The run's listed findings as the scan report wrote them."""
        with self._guard(f"reading run {run_id}"):
            cur = self.db.cursor()
            cur.execute(self._sql("SELECT finding FROM vmsentry_findings WHERE run_id = ?"), (run_id,))
            out = [json.loads(text) for (text,) in cur.fetchall()]
            self.db.rollback()
        return out

    def close(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            db.close()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _asset_names(asset: str) -> tuple[str, ...]:
    if ":" in asset:
        return (asset,)
    return tuple(f"{kind}:{asset}" for kind in ASSET_KINDS)


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
