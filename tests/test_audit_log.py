"""The audit log on disk (report/audit): tampering done to the real SQLite file is caught and named, two
writer processes never corrupt it, the key stays private, retention keeps verification possible."""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.report.audit import NullAudit, open_audit
from vmsentry.report.audit.keys import AuditError, AuditTampered
from vmsentry.report.audit.log import AuditLog
from vmsentry.report.audit.merkle import leaf_hash, verify_inclusion
from vmsentry.report.audit.prune import parse_keep_days, prune
from vmsentry.report.audit.read import entries, export
from vmsentry.report.audit.verify import verify

SRC = str(Path(__file__).resolve().parents[1] / "src")
SIZE = 240


def make_log(directory: Path, size: int = SIZE, seed: int = 1) -> Path:
    """A log written as commands write it: several runs (each signs a checkpoint when it closes)."""
    rng = random.Random(seed)
    written = 0
    while written < size:
        with AuditLog(directory, announce=lambda line: None, command="vmsentry test") as log:
            n = min(size - written, rng.randrange(1, 60))
            log.append_many(
                (rng.choice(["alert", "scan", "policy"]), {"n": written + i, "pad": "x" * rng.randrange(200)})
                for i in range(n)
            )
            written += n
    return directory


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return make_log(tmp_path_factory.mktemp("audit") / "log")


def copy(pristine: Path, tmp_path: Path, name: str = "copy") -> Path:
    target = tmp_path / name
    shutil.copytree(pristine, target)
    return target


def sql(directory: Path, *statements: tuple) -> None:
    db = sqlite3.connect(directory / "audit.db")
    for statement in statements:
        db.execute(*statement)
    db.commit()
    db.close()


def stored(directory: Path, seq: int) -> bytes:
    db = sqlite3.connect(directory / "audit.db")
    (entry,) = db.execute("SELECT entry FROM entries WHERE seq = ?", (seq,)).fetchone()
    db.close()
    return bytes(entry)


def test_an_untouched_log_verifies(pristine):
    report = verify(pristine)
    assert report.ok, report.problems
    assert report.size == SIZE and report.checkpoints >= 2
    assert report.latest["size"] == SIZE


def test_every_single_byte_edit_of_an_entry_in_the_file_is_caught_and_named(pristine, tmp_path):
    rng = random.Random(13)
    original = (pristine / "audit.db").read_bytes()
    for trial in range(60):
        seq = rng.randrange(SIZE)
        entry = stored(pristine, seq)
        at = original.find(entry)
        assert at > 0, "the entry is stored as it is in the file"
        offset = at + rng.randrange(len(entry))
        data = bytearray(original)
        data[offset] ^= rng.randrange(1, 256)
        target = tmp_path / f"edit{trial}"
        shutil.copytree(pristine, target)
        (target / "audit.db").write_bytes(bytes(data))
        report = verify(target)
        assert not report.ok, f"byte {offset} of entry {seq}"
        assert report.first.seq == seq and report.first.kind == "changed", report.first


def _content(directory: Path):
    db = sqlite3.connect(directory / "audit.db")
    try:
        return [
            db.execute("SELECT seq, leaf, entry, time, kind FROM entries ORDER BY seq").fetchall(),
            db.execute("SELECT * FROM checkpoints ORDER BY size").fetchall(),
            db.execute("SELECT * FROM base").fetchall(),
        ]
    except sqlite3.Error:
        return None
    finally:
        db.close()


def test_a_byte_edit_anywhere_in_the_file_is_caught_unless_it_changed_nothing_the_log_says(pristine, tmp_path):
    rng = random.Random(21)
    original = (pristine / "audit.db").read_bytes()
    before = _content(pristine)
    caught = unchanged = 0
    for trial in range(80):
        data = bytearray(original)
        data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
        target = tmp_path / f"any{trial}"
        shutil.copytree(pristine, target)
        (target / "audit.db").write_bytes(bytes(data))
        report = verify(target)
        if report.ok:
            assert _content(target) == before  # free space, page slack: what the log says is the same
            unchanged += 1
        else:
            caught += 1
    assert caught and caught + unchanged == 80


def test_every_deletion_is_caught_and_names_the_entry(pristine, tmp_path):
    rng = random.Random(5)
    for trial, seq in enumerate([0, SIZE - 1, *rng.sample(range(1, SIZE - 1), 25)]):
        target = copy(pristine, tmp_path, f"del{trial}")
        sql(target, ("DELETE FROM entries WHERE seq = ?", (seq,)))
        report = verify(target)
        assert not report.ok
        assert report.first.seq == seq
        assert report.first.kind == ("cut_off" if seq == SIZE - 1 else "removed")


def test_every_swap_of_two_rows_is_caught_and_names_the_first(pristine, tmp_path):
    rng = random.Random(7)
    for trial in range(25):
        first, second = sorted(rng.sample(range(SIZE), 2))
        target = copy(pristine, tmp_path, f"swap{trial}")
        db = sqlite3.connect(target / "audit.db")
        a = db.execute("SELECT time, kind, leaf, entry FROM entries WHERE seq = ?", (first,)).fetchone()
        b = db.execute("SELECT time, kind, leaf, entry FROM entries WHERE seq = ?", (second,)).fetchone()
        for seq, row in ((first, b), (second, a)):
            db.execute("UPDATE entries SET time = ?, kind = ?, leaf = ?, entry = ? WHERE seq = ?", (*row, seq))
        db.commit()
        db.close()
        report = verify(target)
        assert not report.ok
        assert (report.first.seq, report.first.kind) == (first, "reordered"), report.first
        assert f"holds entry {second}" in report.first.message


def test_every_truncation_is_caught(pristine, tmp_path):
    rng = random.Random(11)
    for trial in range(15):
        keep = rng.randrange(SIZE)
        target = copy(pristine, tmp_path, f"cut{trial}")
        sql(
            target, ("DELETE FROM entries WHERE seq >= ?", (keep,)), ("DELETE FROM checkpoints WHERE size > ?", (keep,))
        )
        report = verify(target)  # checkpoint.json beside the log still says how long it was
        assert (report.first.seq, report.first.kind) == (keep, "cut_off"), report.first
    original = (pristine / "audit.db").read_bytes()
    for trial in range(15):
        target = copy(pristine, tmp_path, f"file{trial}")
        (target / "audit.db").write_bytes(original[: rng.randrange(len(original))])
        assert not verify(target).ok


def test_an_entry_rewritten_with_its_leaf_hash_is_caught_by_the_signed_checkpoints(pristine, tmp_path):
    target = copy(pristine, tmp_path)
    seq = 100
    forged = stored(pristine, seq).replace(b'"n":100', b'"n":999')
    sql(target, ("UPDATE entries SET entry = ?, leaf = ? WHERE seq = ?", (forged, leaf_hash(forged), seq)))
    report = verify(target)
    assert not report.ok and report.first.kind == "changed"
    assert report.first.seq <= seq  # the stretch since the last good checkpoint


def test_a_whole_log_rewritten_with_a_new_key_is_caught_by_a_checkpoint_kept_elsewhere(pristine, tmp_path):
    kept = tmp_path / "auditor"
    kept.mkdir()
    shutil.copy(pristine / "checkpoint.json", kept / "checkpoint.json")
    shutil.copy(pristine / "audit.pub", kept / "audit.pub")
    forged = make_log(tmp_path / "forged", SIZE, seed=99)  # a new key, other entries, all signed
    assert verify(forged).ok  # on its own it is consistent: that is why the checkpoint is kept elsewhere
    report = verify(forged, checkpoint=kept / "checkpoint.json")
    assert not report.ok and report.first.kind == "key"
    from vmsentry.report.audit.keys import read_public

    report = verify(forged, public_key=read_public(kept / "audit.pub"))
    assert not report.ok


def test_a_checkpoint_kept_elsewhere_catches_a_rewrite_with_the_same_key(pristine, tmp_path):
    kept = tmp_path / "checkpoint.json"
    shutil.copy(pristine / "checkpoint.json", kept)
    target = copy(pristine, tmp_path)
    # whoever holds the key rewrites history: entries, leaves, checkpoints and checkpoint.json
    sql(
        target,
        ("DELETE FROM entries WHERE seq >= 50",),
        ("DELETE FROM checkpoints",),
        ("UPDATE state SET size = 0, edge = x''",),
    )
    os.unlink(target / "checkpoint.json")
    db = sqlite3.connect(target / "audit.db")
    db.execute("DELETE FROM entries")
    db.commit()
    db.close()
    make_log(target, SIZE, seed=42)
    assert verify(target).ok
    report = verify(target, checkpoint=kept)
    assert not report.ok and report.first.kind == "changed"
    with pytest.raises(AuditTampered):
        bad = json.loads(kept.read_text())
        bad["signature"] = bad["signature"][:-4] + "AAA="
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        verify(pristine, checkpoint=tmp_path / "bad.json")


def test_a_forged_checkpoint_signature_is_caught(pristine, tmp_path):
    target = copy(pristine, tmp_path)
    db = sqlite3.connect(target / "audit.db")
    size, body = db.execute("SELECT size, body FROM checkpoints ORDER BY size LIMIT 1").fetchone()
    db.execute(
        "UPDATE checkpoints SET body = ? WHERE size = ?", (bytes(body).replace(b'"time":"2', b'"time":"1'), size)
    )
    db.commit()
    db.close()
    report = verify(target)
    assert not report.ok and report.first.kind == "checkpoint"


def test_two_writer_processes_never_corrupt_the_log(tmp_path):
    directory = tmp_path / "shared"
    AuditLog(directory, announce=lambda line: None).close()  # the key exists before both start
    script = (
        "import sys; from vmsentry.report.audit import open_audit\n"
        "with open_audit(sys.argv[1], command=sys.argv[2]) as log:\n"
        "    for i in range(400):\n"
        "        log.append('alert', {'writer': sys.argv[2], 'i': i})\n"
        "        if i % 50 == 0: log.append_many([('scan', {'writer': sys.argv[2], 'batch': i})] * 5)\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(directory), name], env=env, stderr=subprocess.PIPE)
        for name in ("watch", "scan")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
    report = verify(directory)
    assert report.ok, report.problems
    assert report.size == 2 * (400 + 8 * 5)
    rows = entries(directory)
    assert [r["seq"] for r in rows] == list(range(report.size))
    for name in ("watch", "scan"):
        assert sorted(r["record"]["i"] for r in rows if r["command"] == name and "i" in r["record"]) == list(range(400))


def test_the_key_is_private_and_only_its_public_half_is_printed(tmp_path):
    directory = tmp_path / "keyed"
    printed: list[str] = []
    with AuditLog(directory, announce=printed.append) as log:
        log.append("scan", {"ok": True})
    assert stat.S_IMODE((directory / "audit.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert len(printed) == 1 and "keep its public half elsewhere" in printed[0]
    AuditLog(directory, announce=printed.append).close()
    assert len(printed) == 1  # once: on first use
    (directory / "audit.key").chmod(0o644)
    with pytest.raises(AuditError, match="readable by others"):
        AuditLog(directory)


def test_checkpoints_are_signed_every_fifteen_minutes_of_a_long_run(tmp_path):
    now = [1_800_000_000.0]
    log = AuditLog(tmp_path / "long", clock=lambda: now[0], announce=lambda line: None)
    for _ in range(5):
        log.append("alert", {"x": 1})
        now[0] += 400
    db = sqlite3.connect(tmp_path / "long" / "audit.db")
    assert [s for (s,) in db.execute("SELECT size FROM checkpoints ORDER BY size")] == [4]  # the append 1200 s in signs
    now[0] += 901
    log.append("alert", {"x": 2})
    log.tick()
    log.close()
    assert [s for (s,) in db.execute("SELECT size FROM checkpoints ORDER BY size")] == [4, 6]
    db.close()


NOW = 1_900_000_000.0
DAY = 86400.0


def aged_log(directory: Path, plan: list[tuple[float, str, int]]) -> Path:
    """A log whose entries were written ``age`` days before NOW: (age, kind, count) in order, one run each."""
    written = 0
    for age, kind, count in plan:
        with AuditLog(directory, clock=lambda age=age: NOW - age * DAY, announce=lambda line: None) as log:
            log.append_many((kind, {"n": written + i}) for i in range(count))
        written += count
    return directory


def test_prune_leaves_a_verifiable_log_and_a_signed_record(tmp_path):
    target = aged_log(tmp_path / "log", [(365, "scan", 60), (300, "policy", 40), (100, "alert", 50), (1, "scan", 90)])
    kept_old = tmp_path / "old-checkpoint.json"
    shutil.copy(target / "checkpoint.json", kept_old)
    record = prune(target, parse_keep_days(["alerts=90"]), clock=lambda: NOW, announce=lambda line: None)
    assert record["dropped_before"] == 150 and record["dropped_now"] == 150
    assert record["cleared_now"] == {"scan": 60, "policy": 40, "alert": 50}
    report = verify(target)
    assert report.ok, report.problems
    assert report.start == 150 and report.size == 241
    assert verify(target, checkpoint=kept_old).ok  # an auditor's checkpoint from before the prune still checks
    last = entries(target, kinds=["prune"])[-1]
    assert last["record"]["dropped_now"] == 150
    # clearing content outside a prune is caught
    sql(target, ("UPDATE entries SET entry = NULL WHERE seq = 200",))
    report = verify(target)
    assert (report.first.seq, report.first.kind) == (200, "removed")
    with pytest.raises(AuditTampered):
        prune(target, parse_keep_days([]))


def test_prune_clears_inside_the_log_and_verification_skips_only_what_it_lists(tmp_path):
    plan = [(40 if n % 3 == 1 else 10, "snapshot" if n % 3 == 1 else "scan", 5) for n in range(12)]
    target = aged_log(tmp_path / "log", [(0.5, "scan", 3), *plan])
    record = prune(target, parse_keep_days([]), clock=lambda: NOW, announce=lambda line: None)
    assert record["dropped_now"] == 0 and record["cleared_now"] == {"snapshot": 20}
    report = verify(target)
    assert report.ok and report.cleared == 20
    # a second prune carries the list forward; a changed time column cannot make it clear recent entries
    prune(target, parse_keep_days(["365"]), clock=lambda: NOW + DAY, announce=lambda line: None)
    assert verify(target).ok
    sql(target, ("UPDATE entries SET time = 0 WHERE seq = 60",))
    with pytest.raises(AuditTampered, match="entry 60 was changed"):
        prune(target, parse_keep_days([]))


def test_export_gives_an_inclusion_proof_per_entry_against_the_signed_root(pristine, tmp_path):
    import base64
    import io

    target = copy(pristine, tmp_path)
    out = io.StringIO()
    assert export(target, out, announce=lambda line: None) == SIZE
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    checkpoint = lines[0]["checkpoint"]
    root = base64.b64decode(checkpoint["root"])
    for line in lines[1:]:
        leaf = leaf_hash(line["entry"].encode())
        assert leaf.hex() == line["leaf"]
        verify_inclusion(line["seq"], line["tree_size"], leaf, [bytes.fromhex(p) for p in line["proof"]], root)


def test_open_audit_of_none_records_nothing():
    with open_audit(None) as audit:
        assert isinstance(audit, NullAudit)
        assert audit.append("scan", {}) is None and audit.append_many([("alert", {})]) == []
        audit.tick()


def test_threads_sharing_one_log_object_take_turns(tmp_path):
    import threading

    with AuditLog(tmp_path / "threads", announce=lambda line: None) as log:
        workers = [
            threading.Thread(target=lambda t=t: [log.append("alert", {"thread": t, "i": i}) for i in range(300)])
            for t in range(3)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    report = verify(tmp_path / "threads")
    assert report.ok and report.size == 900


def test_an_entry_rewritten_as_text_by_sql_is_caught_and_named(pristine, tmp_path):
    # SQL's replace() returns TEXT: the row then holds a string where the signed bytes were
    target = copy(pristine, tmp_path)
    sql(target, ("UPDATE entries SET entry = replace(entry, 'seq', 'seq') WHERE seq = 7",))
    report = verify(target)
    assert not report.ok and report.first.seq == 7 and report.first.kind == "changed", report.first
