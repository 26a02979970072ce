"""``AuditLog(dir)``: the append-only audit log a command or the watcher writes.

Files in DIR: ``audit.db`` (SQLite, WAL), ``audit.key`` / ``audit.pub`` (keys.py), ``checkpoint.json``
(the latest signed checkpoint, replaced atomically: copy it elsewhere, it is what catches a rewrite).

``audit.db`` tables:

* ``entries(seq INTEGER PRIMARY KEY, time, kind, leaf, entry)``: ``entry`` is the canonical JSON of one
  event (``{"seq":N,`` first, then ``actor``, ``command``, ``host``, ``kind``, ``record``, ``time`` with
  sorted keys, ASCII, no NaN) and ``leaf`` its RFC 6962 leaf hash; ``time`` (ISO 8601 UTC, fixed width, so
  it sorts as text) and ``kind`` repeat the entry's for queries (verify checks they agree). Retention clears ``entry`` (NULL) and keeps the leaf, or drops a whole prefix (prune.py).
* ``checkpoints(size PRIMARY KEY, body, signature)``: signed ``{type: "vmsentry audit checkpoint", size,
  root, time, key_id}``.
* ``state``: a writer's compact tree edge (size + perfect-subtree hashes) at some size, stored at each
  checkpoint and every STATE_EVERY leaves. A writer keeps the edge in memory while no other process
  wrote (``PRAGMA data_version``), so an append costs one leaf hash, on average one node hash and one
  row; after another writer, it catches up from the stored edge. Verification never trusts it.
* ``base``: after a prune, the signed summary of the dropped prefix (its size, edge and root).

Two writers (a watcher and a scan, separate processes) serialise on ``BEGIN IMMEDIATE``: each reads the
tree state, appends with the next sequence numbers and commits, so sequence numbers are dense and unique.
``synchronous=NORMAL``: a commit survives the process dying at any point; a power cut may lose the last
commits (not reorder or damage them), which the next checkpoint then no longer covers.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sqlite3
import sys
import tempfile
import threading
import time as _time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from vmsentry.model.text import printable, redact_credentials
from vmsentry.report.audit import keys
from vmsentry.report.audit.keys import AuditError
from vmsentry.report.audit.merkle import Compact, leaf_hash

DB_FILE = "audit.db"
FORMAT = 1  # PRAGMA user_version of audit.db: the layout below
CHECKPOINT_FILE = "checkpoint.json"
CHECKPOINT_TYPE = "vmsentry audit checkpoint"
CHECKPOINT_SCHEMA = "vmsentry.audit.checkpoint/1"
CHECKPOINT_EVERY = 15 * 60.0  # seconds: the contract's "at least every 15 minutes"
STATE_EVERY = 4096  # leaves: how far behind the stored edge may be (another writer catches up from it)

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(seq INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL,
                                   leaf BLOB NOT NULL, entry BLOB);
CREATE TABLE IF NOT EXISTS checkpoints(size INTEGER PRIMARY KEY, body BLOB NOT NULL, signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS state(id INTEGER PRIMARY KEY CHECK (id = 1), size INTEGER NOT NULL, edge BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS base(id INTEGER PRIMARY KEY CHECK (id = 1), body BLOB NOT NULL, signature BLOB NOT NULL);
INSERT OR IGNORE INTO state VALUES (1, 0, x'');
"""


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_entry(seq: int, stamp: str, kind: str, actor: str, command: str, host: str, record: object) -> bytes:
    """The bytes a leaf hashes: the sequence number first (so a row moved to another place says so at a
    glance), then the rest with sorted keys."""
    rest = json.dumps(
        {"time": stamp, "kind": kind, "actor": actor, "command": command, "host": host, "record": record},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
        default=str,
    )
    return b'{"seq":%d,' % seq + rest[1:].encode("ascii")


def entry_prefix(seq: int) -> bytes:
    return b'{"seq":%d,' % seq


def default_actor() -> str:
    """Who ran it: the login name, and the sudo caller where there is one."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    caller = os.environ.get("SUDO_USER")
    return f"{user} (sudo by {caller})" if caller and caller != user else user


def default_command() -> str:
    """The command line, secrets (URI passwords, key=value secrets) redacted."""
    return printable(redact_credentials(" ".join(["vmsentry", *sys.argv[1:]])))[:2000]


def edge_bytes(compact: Compact) -> bytes:
    return b"".join(compact.nodes)


def edge_from(size: int, blob: bytes) -> Compact:
    return Compact(size, [blob[i : i + 32] for i in range(0, len(blob), 32)])


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 60000")
    return db


def _stderr(line: str) -> None:
    print(f"vmsentry: {line}", file=sys.stderr, flush=True)


class AuditLog:
    """Appends entries; signs a checkpoint at least every ``checkpoint_every`` seconds of a long run (on the
    next append or ``tick``) and at ``close``. Usable as a context manager."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        actor: str | None = None,
        command: str | None = None,
        host: str | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY,
        clock: Callable[[], float] = _time.time,
        announce: Callable[[str], None] = _stderr,
    ) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"{self.directory}: cannot make the audit folder: {exc.strerror or exc}") from None
        if not self.directory.is_dir():
            raise AuditError(f"{self.directory}: not a folder")
        self.key = keys.load_or_create(self.directory, announce)
        self.key_id = keys.key_id(keys.public_raw(self.key))
        self.actor = actor or default_actor()
        self.command = command or default_command()
        self.host = host or socket.gethostname()
        self.checkpoint_every = checkpoint_every
        self.clock = clock
        self.appended = 0
        self.db_path = self.directory / DB_FILE
        self._tree: Compact | None = None  # the edge as of data_version _version (see _state)
        self._version = self._stored = -1
        self.lock = threading.RLock()  # one transaction at a time per log object (the watcher has threads)
        try:
            self.db = connect(self.directory / DB_FILE)
            self.db.execute("PRAGMA journal_mode = WAL")
            self.db.execute("PRAGMA synchronous = NORMAL")
            with self.transaction():
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, FORMAT):
                    raise AuditError(
                        f"{self.db_path}: an audit log of format {version}, not {FORMAT}: a newer vmsentry?"
                    )
                for statement in filter(str.strip, SCHEMA.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {FORMAT}")
        except sqlite3.Error as exc:
            raise AuditError(f"{self.directory / DB_FILE}: {exc}") from None
        self.last_checkpoint = self.clock()
        self.signed_size = -1

    # -- transactions ------------------------------------------------------------------------------------
    def transaction(self):
        return _Immediate(self)

    def _state(self) -> Compact:
        """Inside a transaction: the tree's edge. Kept in memory while no other process wrote (SQLite's
        data_version says so); otherwise the stored edge plus the leaves appended since it was stored."""
        version = self.db.execute("PRAGMA data_version").fetchone()[0]
        if self._tree is not None and version == self._version:
            return self._tree
        size, edge = self.db.execute("SELECT size, edge FROM state WHERE id = 1").fetchone()
        tree = edge_from(size, edge)
        tree.extend(
            [leaf for (leaf,) in self.db.execute("SELECT leaf FROM entries WHERE seq >= ? ORDER BY seq", (size,))]
        )
        self._tree, self._version, self._stored = tree, version, size
        return tree

    def _store_state(self, tree: Compact) -> None:
        self.db.execute("UPDATE state SET size = ?, edge = ? WHERE id = 1", (tree.size, edge_bytes(tree)))
        self._stored = tree.size

    # -- appending ---------------------------------------------------------------------------------------
    def append(self, kind: str, record: object) -> int:
        """Appends one entry; returns its sequence number."""
        return self.append_many([(kind, record)])[0]

    def append_many(self, items: Iterable[tuple[str, object]]) -> list[int]:
        """Appends many entries in one transaction (the fast path for a caller with many at once)."""
        items = list(items)
        if not items:
            return []
        with self.transaction():
            seqs = self._append_rows(items)
            if self.clock() - self.last_checkpoint >= self.checkpoint_every:
                self._checkpoint()
        return seqs

    def _append_rows(self, items: list[tuple[str, object]]) -> list[int]:
        """Inside a transaction: the rows and the new tree state."""
        tree = self._state()
        first = tree.size
        stamp = iso(self.clock())
        rows = []
        for offset, (kind, record) in enumerate(items):
            entry = canonical_entry(first + offset, stamp, kind, self.actor, self.command, self.host, record)
            rows.append((first + offset, stamp, kind, leaf_hash(entry), entry))
        tree.extend(row[3] for row in rows)
        self.db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?)", rows)
        if tree.size - self._stored >= STATE_EVERY:
            self._store_state(tree)
        self.appended += len(rows)
        return list(range(first, tree.size))

    # -- checkpoints -------------------------------------------------------------------------------------
    def tick(self) -> None:
        """For a long run with no appends for a while: sign a checkpoint if one is due and the tree grew."""
        if self.clock() - self.last_checkpoint >= self.checkpoint_every:
            self.checkpoint()

    def checkpoint(self) -> dict:
        """Signs (size, root, time) of the tree as it is now; returns the checkpoint file's JSON."""
        with self.transaction():
            return self._checkpoint()

    def _checkpoint(self) -> dict:
        tree = self._state()
        if self._stored != tree.size:
            self._store_state(tree)
        self.last_checkpoint = now = self.clock()
        row = self.db.execute("SELECT body, signature FROM checkpoints WHERE size = ?", (tree.size,)).fetchone()
        if row is None:
            signed = keys.sign(self.key, CHECKPOINT_TYPE, size=tree.size, root=keys.b64(tree.root()), time=iso(now))
            self.db.execute("INSERT INTO checkpoints VALUES (?, ?, ?)", (tree.size, signed.body, signed.signature))
        else:
            signed = keys.Signed(bytes(row[0]), bytes(row[1]))
        document = checkpoint_document(signed, keys.public_raw(self.key))
        self._publish(document)
        self.signed_size = tree.size
        return document

    def _publish(self, document: dict) -> None:
        """checkpoint.json, replaced only by a larger checkpoint (we hold the write lock: no race)."""
        path = self.directory / CHECKPOINT_FILE
        try:
            if json.loads(path.read_text())["size"] >= document["size"]:
                return
        except (OSError, ValueError, KeyError, TypeError):
            pass
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(document, out, indent=1, sort_keys=True)
                out.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except OSError as exc:
            os.unlink(tmp)
            raise AuditError(f"{path}: cannot write the checkpoint: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Signs the final checkpoint (if the tree grew since the last) and closes the database."""
        if getattr(self, "db", None) is None:
            return
        try:
            with self.transaction():
                if self._state().size != self.signed_size:
                    self._checkpoint()
        finally:
            self.db.close()
            self.db = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def checkpoint_document(signed: keys.Signed, public: bytes) -> dict:
    fields = signed.fields
    return {
        "schema": CHECKPOINT_SCHEMA,
        "size": fields["size"],
        "root": fields["root"],
        "time": fields["time"],
        "key_id": fields["key_id"],
        "public_key": keys.b64(public),
        "body": signed.body.decode("ascii"),
        "signature": keys.b64(signed.signature),
    }


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): the write lock is taken before anything is read.
    A rollback forgets the in-memory edge (it may hold leaves that were not committed)."""

    def __init__(self, log: AuditLog) -> None:
        self.log, self.db, self.path = log, log.db, log.db_path

    def __enter__(self) -> None:
        self.log.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.log.lock.release()
            raise AuditError(f"{self.path}: {exc}") from None

    def __exit__(self, kind, exc, tb) -> None:
        try:
            if kind is None:
                try:
                    self.db.execute("COMMIT")
                    return
                except sqlite3.Error as error:
                    exc = error
            self.log._tree = None
            self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise AuditError(f"{self.path}: {exc}") from None
        finally:
            self.log.lock.release()
