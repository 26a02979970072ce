"""``verify(dir, checkpoint=None) -> Report``: is the audit log what its signed checkpoints say it was?

One streaming pass in sequence order (memory bounded by a batch, not by the log):

1. every row's entry hashes to its stored leaf (else: the entry was *changed*), starts with its own
   sequence number (else: it was *reordered*: it holds entry M), and the sequence numbers are dense from the
   pruned prefix on (a gap: an entry was *removed*); an entry cleared by retention must be in the ranges the
   latest prune entry lists;
2. the leaves are added to the tree's compact edge (starting from the signed edge of the pruned prefix),
   and at each checkpoint's size the root must equal the signed root (a leaf hash rewritten to match a
   rewritten entry is caught here, between the previous good checkpoint and this one);
3. a checkpoint larger than the log means entries were *cut off*; ``checkpoint.json`` beside the log and
   an auditor's ``--checkpoint FILE`` count as checkpoints too, and the file's key must be the log's key (a
   log rewritten and re-signed with a new key is caught).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vmsentry.report.audit import keys
from vmsentry.report.audit.keys import AuditError, AuditTampered
from vmsentry.report.audit.log import (
    CHECKPOINT_FILE,
    CHECKPOINT_SCHEMA,
    CHECKPOINT_TYPE,
    DB_FILE,
    FORMAT,
    connect,
    edge_from,
)
from vmsentry.report.audit.merkle import Compact, ProofError, leaf_hash

BASE_TYPE = "vmsentry audit base"
BATCH = 65536


@dataclass
class Problem:
    """What is wrong: ``seq`` the first entry concerned (None when the whole log or a checkpoint is),
    ``kind`` changed|removed|reordered|cut_off|checkpoint|key|damaged."""

    kind: str
    message: str
    seq: int | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "seq": self.seq, "message": self.message}


@dataclass
class Report:
    directory: str
    size: int = 0  # entries in the tree, the pruned prefix included
    start: int = 0  # the first entry still stored (the pruned prefix ends here)
    cleared: int = 0  # entries whose content retention removed (their leaf hashes stay)
    checkpoints: int = 0  # checkpoints checked against the entries
    latest: dict | None = None  # the largest checkpoint checked: size, root, time
    key_id: str | None = None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        """The problem about the earliest entry (or, when none names an entry, the first found)."""
        named = [p for p in self.problems if p.seq is not None]
        return min(named, key=lambda p: p.seq) if named else self.problems[0] if self.problems else None

    def to_dict(self) -> dict:
        fields = asdict(self)
        fields["latest_checkpoint"] = fields.pop("latest")
        return {"intact": self.ok, **fields}


@dataclass(frozen=True)
class _Checkpoint:
    size: int
    root: bytes
    time: str
    source: str  # "the checkpoint at size N signed at T" / the file's name


def read_checkpoint_file(path: str | os.PathLike) -> tuple[dict, bytes]:
    """A checkpoint document (checkpoint.json or a copy an auditor kept): its fields, checked against its own
    signature and key; returns (fields, public key)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8")[: 1 << 16])
        if document.get("schema") != CHECKPOINT_SCHEMA:
            raise ValueError(f"not a {CHECKPOINT_SCHEMA} document")
        public = keys.unb64(document["public_key"])
        signed = keys.Signed(document["body"].encode("ascii"), keys.unb64(document["signature"]))
        fields = signed.fields
    except OSError as exc:
        raise AuditError(f"{path}: cannot read the checkpoint: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeError) as exc:
        raise AuditError(f"{path}: not a vmsentry audit checkpoint ({exc})") from None
    if fields.get("type") != CHECKPOINT_TYPE or keys.key_id(public) != fields.get("key_id"):
        raise AuditTampered(f"{path}: the checkpoint's type or key id is wrong")
    if not signed.valid(public):
        raise AuditTampered(f"{path}: the checkpoint's signature does not verify")
    return fields, public


def verify(
    directory: str | os.PathLike, checkpoint: str | os.PathLike | None = None, public_key: bytes | None = None
) -> Report:
    """Checks the log in ``directory``; ``checkpoint`` is a checkpoint file kept elsewhere, ``public_key`` the
    raw key the auditor kept (else ``audit.pub`` is trusted, which a whole rewrite also replaces)."""
    directory = Path(directory)
    if not (directory / DB_FILE).is_file():
        raise AuditError(f"{directory}: no audit log here ({DB_FILE} missing)")
    report = Report(str(directory))
    external = read_checkpoint_file(checkpoint) if checkpoint is not None else None
    if public_key is None:
        public_key = keys.read_public(directory / keys.PUBLIC_FILE)
    report.key_id = keys.key_id(public_key)
    if external is not None and external[1] != public_key:
        report.problems.append(
            Problem(
                "key",
                f"the log is signed with key {report.key_id}, the checkpoint {checkpoint} with "
                f"{keys.key_id(external[1])}: the log was replaced or re-signed",
            )
        )
        return report
    try:
        db = connect(directory / DB_FILE)
        try:
            _verify(db, directory, report, public_key, external, checkpoint)
        finally:
            db.close()
    except sqlite3.Error as exc:
        report.problems.append(Problem("damaged", f"{directory / DB_FILE}: the database is damaged: {exc}"))
    return report


def _verify(db, directory: Path, report: Report, public: bytes, external, external_path) -> None:
    db.execute("BEGIN")  # one snapshot: a writer appending meanwhile is not seen half-way
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version != FORMAT:
        report.problems.append(
            Problem("damaged", f"{directory / DB_FILE}: not an audit log of format {FORMAT} ({version})")
        )
        return
    base, dropped = _base(db, report, public)
    checkpoints = _checkpoints(db, report, public)
    latest_file = directory / CHECKPOINT_FILE
    if latest_file.exists():
        try:
            fields, file_key = read_checkpoint_file(latest_file)
            if file_key != public:
                report.problems.append(Problem("key", f"{latest_file} is signed with another key than the log"))
            else:
                checkpoints.append(_from_fields(fields, str(latest_file)))
        except AuditError as exc:
            report.problems.append(Problem("checkpoint", str(exc)))
    if external is not None:
        checkpoints.append(_from_fields(external[0], str(external_path)))
    report.start = base.size
    unique = {(c.size, c.root): c for c in reversed(checkpoints)}.values()  # the same one stored and in a file
    later = sorted((c for c in unique if c.size >= base.size), key=lambda c: c.size)
    for c in unique:
        if c.size < base.size:
            _check_pruned(c, dropped, report)
    cleared = _cleared_ranges(db)
    tree = base.copy()
    before = len(report.problems)
    _stream(db, tree, later, cleared, report)
    report.size = tree.size
    if len(report.problems) > before:  # the stream stopped at the first bad entry: the count means nothing
        later = []
    for c in later:
        if c.size > tree.size:
            report.problems.append(
                Problem(
                    "cut_off",
                    f"entries {tree.size}..{c.size - 1} were cut off ({c.source} covers {c.size} entries, "
                    f"the log holds {tree.size})",
                    tree.size,
                )
            )
            break
    db.execute("ROLLBACK")


def _from_fields(fields: dict, source: str) -> _Checkpoint:
    return _Checkpoint(int(fields["size"]), keys.unb64(fields["root"]), str(fields["time"]), source)


def _base(db, report: Report, public: bytes) -> tuple[Compact, dict[int, bytes]]:
    """The signed summary of the pruned prefix (an empty tree when nothing was pruned)."""
    row = db.execute("SELECT body, signature FROM base WHERE id = 1").fetchone()
    if row is None:
        return Compact(), {}
    signed = keys.Signed(bytes(row[0]), bytes(row[1]))
    try:
        fields = signed.fields
        edge = edge_from(int(fields["size"]), b"".join(keys.unb64(h) for h in fields["edge"]))
        dropped = {int(s): keys.unb64(r) for s, r in fields["checkpoints"]}
        good = fields["type"] == BASE_TYPE and signed.valid(public) and edge.root() == keys.unb64(fields["root"])
    except (ValueError, KeyError, TypeError, ProofError):
        good = False
    if not good:
        report.problems.append(Problem("checkpoint", "the signed record of the pruned prefix does not verify"))
        return Compact(), {}
    report.notes.append(f"entries before {edge.size} were pruned on {fields['time']} (signed summary checked)")
    return edge, dropped


def _checkpoints(db, report: Report, public: bytes) -> list[_Checkpoint]:
    out = []
    for size, body, signature in db.execute("SELECT size, body, signature FROM checkpoints ORDER BY size"):
        signed = keys.Signed(bytes(body), bytes(signature))
        try:
            fields = signed.fields
            valid = signed.valid(public) and fields.get("type") == CHECKPOINT_TYPE and int(fields["size"]) == size
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            report.problems.append(Problem("checkpoint", f"the checkpoint at size {size} does not verify"))
            continue
        out.append(_from_fields(fields, f"the checkpoint signed at {fields['time']}"))
    return out


def _check_pruned(c: _Checkpoint, dropped: dict[int, bytes], report: Report) -> None:
    """A checkpoint older than the pruned prefix: the prune record lists the roots it checked then."""
    if c.size not in dropped:
        report.notes.append(f"{c.source} (size {c.size}) predates the pruned prefix and its record: not checked")
    elif dropped[c.size] != c.root:
        report.problems.append(
            Problem("checkpoint", f"{c.source} (size {c.size}) does not match the signed record of the pruned prefix")
        )
    else:
        report.checkpoints += 1


def _cleared_ranges(db) -> list[tuple[int, int]]:
    """Entries whose content retention cleared, as the latest prune entry lists them (it carries the list
    of every earlier prune forward)."""
    row = db.execute(
        "SELECT entry FROM entries WHERE kind = 'prune' AND entry IS NOT NULL ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return []
    try:
        return sorted((int(a), int(b)) for a, b in json.loads(row[0])["record"]["cleared"])
    except (ValueError, KeyError, TypeError):
        return []


def _is_cleared(seq: int, ranges: list[tuple[int, int]]) -> bool:
    at = bisect.bisect_right(ranges, (seq, float("inf"))) - 1
    return at >= 0 and ranges[at][0] <= seq < ranges[at][1]


def _stream(db, tree: Compact, checkpoints: list[_Checkpoint], cleared, report: Report) -> None:
    cursor = db.execute("SELECT seq, leaf, entry, time, kind FROM entries WHERE seq >= ? ORDER BY seq", (tree.size,))
    early = db.execute("SELECT min(seq) FROM entries WHERE seq < ?", (tree.size,)).fetchone()[0]
    if early is not None:
        report.problems.append(Problem("changed", f"entry {early} is inside the pruned prefix", early))
        return
    pending = iter(checkpoints)
    due = next(pending, None)
    good = tree.size  # the end of the last stretch a checkpoint vouched for
    while due is not None and due.size == tree.size:  # checkpoints at the pruned boundary
        good, due = _compare(tree, due, good, report), next(pending, None)
    kinds: dict[str, bytes] = {}
    sha = hashlib.sha256
    while rows := cursor.fetchmany(BATCH):
        first = tree.size
        if rows[0][0] != first or rows[-1][0] != first + len(rows) - 1:
            missing = next(want for want, row in enumerate(rows, first) if row[0] != want)
            report.problems.append(Problem("removed", f"entry {missing} was removed", missing))
            return
        stored = [r[1] for r in rows]
        try:
            computed = [sha(b"\x00" + r[2]).digest() for r in rows]
        except TypeError:  # a cleared entry (NULL)
            computed = None
        bad = _first_bad(rows, cleared, report) if computed != stored else None
        for seq, _, entry, time, kind in rows[: None if bad is None else bad.seq - first]:
            if entry is None:
                continue
            pattern = kinds.get(kind) or kinds.setdefault(kind, f',"kind":{json.dumps(kind)},"record":'.encode())
            if not entry.startswith(b'{"seq":%d,' % seq):
                bad = _moved(seq, entry)
            elif not (entry.endswith(f'"time":"{time}"}}'.encode()) and pattern in entry):
                # the query columns (show --kind/--since, prune's ages) must say what the signed entry says
                bad = Problem("changed", f"entry {seq} was changed (its time or kind column)", seq)
            else:
                continue
            break
        if bad is not None:
            report.problems.append(bad)
            return
        at = 0
        while due is not None and due.size <= first + len(rows):  # leaves up to each checkpoint in the batch
            tree.extend(stored[at : due.size - first])
            at = due.size - first
            good, due = _compare(tree, due, good, report), next(pending, None)
        tree.extend(stored[at:])
        if report.problems and report.problems[-1].kind == "changed":
            return


def _first_bad(rows, cleared, report: Report) -> Problem | None:
    for seq, leaf, entry, *_ in rows:
        if entry is None:
            if not _is_cleared(seq, cleared):
                return Problem("removed", f"entry {seq} was emptied outside any signed prune", seq)
            report.cleared += 1
        elif not isinstance(entry, bytes) or not isinstance(leaf, bytes):  # (SQL's replace() makes TEXT of a BLOB)
            return Problem(
                "changed", f"entry {seq} was changed (stored as {type(entry).__name__}, not the signed bytes)", seq
            )
        elif leaf_hash(entry) != leaf:
            return Problem("changed", f"entry {seq} was changed (its content no longer hashes to its leaf)", seq)
    return None


def _moved(seq: int, entry: bytes) -> Problem:
    head = bytes(entry[:32]).split(b",", 1)[0].removeprefix(b'{"seq":')
    holds = head.decode("ascii", "replace") if head.isdigit() else "another entry"
    return Problem("reordered", f"entry {seq} was reordered (its place holds entry {holds})", seq)


def _compare(tree: Compact, c: _Checkpoint, good: int, report: Report) -> int:
    if tree.root() == c.root:
        report.checkpoints += 1
        report.latest = {"size": c.size, "root": c.root.hex(), "time": c.time}
        return c.size
    report.problems.append(
        Problem(
            "changed",
            f"entries {good}..{c.size - 1} do not match {c.source}: one of them was changed with its leaf hash",
            good,
        )
    )
    return good
