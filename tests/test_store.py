"""Scan history (issue 13 part 2): ``scan --store``, ``vmsentry history``, ``vmsentry drift --store``, the same
tests on a real SQLite file and on a real PostgreSQL server (Debian's ``postgresql``, started here in a
temporary folder by ``tests/pg_server.py``; as root it runs as ``nobody``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import Counter
from itertools import count
from pathlib import Path

import pytest

from pg_server import PostgresServer
from vmsentry.analyse.drift import inventory_changes
from vmsentry.model.findings import SEVERITIES
from vmsentry.report.store import StoreError, open_store

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "examples" / "lab"
FINANCE = REPO / "examples" / "incident-2022-finance"
RUN_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_databases = count()


@pytest.fixture(scope="module")
def postgres():
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """A fresh, empty store target of each backend: a folder, or a URL of a new database."""
    if request.param == "sqlite":
        return str(tmp_path / "history")
    server = request.getfixturevalue("postgres")
    return server.create_database(f"t{next(_databases)}")


@pytest.fixture(scope="module")
def drifted_lab(tmp_path_factory) -> Path:
    """The example lab with vm web moved to the bridged LAN, its filter removed, VNC on every address."""
    lab = tmp_path_factory.mktemp("lab2") / "lab"
    shutil.copytree(LAB, lab)
    web = lab / "domains" / "web.xml"
    text = web.read_text()
    text = text.replace("<source network='default'/>", "<source network='lan'/>")
    text = re.sub(r"\s*<filterref filter='clean-traffic'>.*?</filterref>", "", text, flags=re.S)
    text = text.replace("127.0.0.1", "0.0.0.0")
    web.write_text(text)
    return lab


def cli(run_cli, *args: str, code: int | None = None):
    proc = run_cli(*args)
    assert "Traceback" not in proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr)
    return proc


def scan(run_cli, store: str, *paths: Path, tmp_path: Path | None = None) -> dict:
    proc = cli(run_cli, "scan", *map(str, paths), "--store", store, "--format", "json", "--no-progress")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def history(run_cli, store: str, *more: str) -> dict:
    return json.loads(cli(run_cli, "history", "--store", store, "--format", "json", *more, code=0).stdout)


def failing(document: dict, asset: str | None = None) -> dict[str, int]:
    counts = Counter(
        f["severity"] for f in document["findings"] if f["status"] == "fail" and (asset is None or f["asset"] == asset)
    )
    return {s: counts[s] for s in SEVERITIES}


# -------------------------------------------------------------------------------------------- scan JSON
def test_scan_json_has_a_run_id_and_a_timestamp(run_cli):
    doc = json.loads(cli(run_cli, "scan", str(LAB), "--format", "json", "--no-progress").stdout)
    assert RUN_ID.match(doc["run_id"]) and TIMESTAMP.match(doc["timestamp"])
    assert list(doc)[:4] == ["tool", "run_id", "timestamp", "summary"]
    assert doc["run_id"][:8] == doc["timestamp"][:10].replace("-", "")


# ------------------------------------------------------------------------------------- store and history
def test_runs_are_kept_and_listed_with_their_trend(run_cli, store, drifted_lab):
    first = scan(run_cli, store, LAB)
    second = scan(run_cli, store, LAB, FINANCE)
    third = scan(run_cli, store, drifted_lab)
    runs = history(run_cli, store)["runs"]
    assert [r["run_id"] for r in runs] == [first["run_id"], second["run_id"], third["run_id"]]
    for run, doc in zip(runs, (first, second, third)):
        assert run["timestamp"] == doc["timestamp"]
        assert run["failing_by_severity"] == doc["summary"]["failing_by_severity"] == failing(doc)
        assert run["vms"] == doc["summary"]["vms"]
        assert run["exit_code"] == 1
    assert runs[1]["inputs"]["paths"] == [str(LAB), str(FINANCE)]
    # one asset's trend: the web VM got worse in the third run
    web = history(run_cli, store, "--asset", "vm:web")["runs"]
    assert [r["failing_by_severity"] for r in web] == [failing(d, "vm:web") for d in (first, second, third)]
    assert web[2]["failing"] > web[0]["failing"]
    assert history(run_cli, store, "--asset", "web")["runs"] == [{**r, "asset": "web"} for r in web]
    assert [r["run_id"] for r in history(run_cli, store, "--last", "2")["runs"]] == [second["run_id"], third["run_id"]]
    text = cli(run_cli, "history", "--store", store, code=0).stdout
    assert "3 runs" in text.splitlines()[0]
    assert all(doc["run_id"] in text for doc in (first, second, third))
    change = third["summary"]["failing_by_severity"]
    assert f"{sum(change.values()) - sum(second['summary']['failing_by_severity'].values()):+d}" in text


def test_a_stored_run_reads_back_whole(run_cli, store):
    doc = scan(run_cli, store, LAB, FINANCE)
    with open_store(store, create=False) as kept:
        run_id = kept.resolve(doc["run_id"][:17])  # a unique prefix names a run
        run, inventory = kept.run_inventory(run_id)
        findings = kept.findings(run_id)
    assert run.run_id == doc["run_id"]
    key = lambda f: json.dumps(f, sort_keys=True)
    assert sorted(map(key, findings)) == sorted(map(key, doc["findings"]))
    assert inventory.to_dict() == doc["inventory"]
    from vmsentry.model import Inventory

    assert inventory_changes(Inventory.from_dict(doc["inventory"]), inventory) == []


def test_drift_between_stored_runs(run_cli, store, drifted_lab):
    before = scan(run_cli, store, LAB)
    after = scan(run_cli, store, drifted_lab)
    proc = cli(run_cli, "drift", "--store", store, before["run_id"][:20], "latest", "--format", "json", code=1)
    doc = json.loads(proc.stdout)
    assert doc["old"]["run_id"] == before["run_id"] and doc["new"]["run_id"] == after["run_id"]
    by_what = {c["what"]: c for c in doc["changes"]}
    assert set(by_what) == {"nic_network", "nic_mode", "nic_filter", "listener_changed"}
    mode = by_what["nic_mode"]
    assert (mode["before"], mode["after"], mode["severity"]) == ("nat", "bridged", "high")
    assert mode["where_before"] == "examples/lab/domains/web.xml: line 18, /domain/devices/interface".replace(
        "examples/lab", str(LAB)
    )
    assert mode["where"] == f"{drifted_lab}/domains/web.xml: line 18, /domain/devices/interface"
    cli(run_cli, "drift", "--store", store, "latest", "latest", code=0)
    cli(run_cli, "drift", "--store", store, "latest~1", "latest", code=1)
    for bad in ("nosuchrun", "latest~9", "latest~x"):
        proc = cli(run_cli, "drift", "--store", store, bad, "latest", code=2)
        assert proc.stderr.count("\n") == 1 and bad in proc.stderr


def test_two_scans_writing_at_once_both_kept(store):
    argv = [sys.executable, "-m", "vmsentry", "scan", str(LAB), "--store", store, "--no-progress", "-o", "/dev/null"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    open_store(store).close()  # the first scan creating the schema is tested below, not raced here
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
    with open_store(store, create=False) as kept:
        runs = kept.runs()
        assert len(runs) == 4 and len({r.run_id for r in runs}) == 4
        assert {len(kept.findings(r.run_id)) for r in runs} == {len(kept.findings(runs[0].run_id))}


def test_first_scans_racing_to_create_the_schema(store):
    argv = [sys.executable, "-m", "vmsentry", "scan", str(LAB), "--store", store, "--no-progress", "-o", "/dev/null"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
    with open_store(store, create=False) as kept:
        assert len(kept.runs()) == 3


def test_empty_store_history(run_cli, store):
    open_store(store).close()
    assert history(run_cli, store)["runs"] == []
    assert "0 runs" in cli(run_cli, "history", "--store", store, code=0).stdout


def test_a_store_of_another_schema_version_is_refused(store):
    open_store(store).close()
    with open_store(store) as kept:
        cur = kept.db.cursor()
        cur.execute("UPDATE vmsentry_meta SET value = '99' WHERE key = 'schema'")
        kept.db.commit()
    with pytest.raises(StoreError, match="schema '99'"):
        open_store(store)


# ------------------------------------------------------------------------------------- unusable stores
def test_sqlite_store_that_is_not_a_database(run_cli, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "scans.db").write_bytes(b"this is not SQLite" * 100)
    proc = cli(run_cli, "scan", str(LAB), "--store", str(folder), "--no-progress", code=3)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "scans.db" in proc.stderr
    proc = cli(run_cli, "history", "--store", str(folder), code=2)
    assert proc.stderr.count("\n") == 1
    assert cli(run_cli, "history", "--store", str(tmp_path / "none"), code=2).stderr.startswith("vmsentry: ")
    assert not (tmp_path / "none").exists()  # a reader creates nothing


def test_sqlite_store_is_private_and_in_wal_mode(run_cli, tmp_path):
    folder = tmp_path / "h"
    scan(run_cli, str(folder), LAB)
    assert (folder.stat().st_mode & 0o777, (folder / "scans.db").stat().st_mode & 0o777) == (0o700, 0o600)
    with sqlite3.connect(folder / "scans.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreachable_postgresql_never_prints_its_password(run_cli, postgres):
    url = f"postgresql://vmsentry:hunter2secret@/nosuchdb?host={postgres.dir}&port={postgres.port}"
    for argv, code in ((("scan", str(LAB), "--store", url, "--no-progress"), 3), (("history", "--store", url), 2)):
        proc = cli(run_cli, *argv, code=code)
        assert "hunter2secret" not in proc.stderr + proc.stdout
        assert proc.stderr.count("\n") == 1 and "nosuchdb" in proc.stderr


def test_history_reads_the_store_named_by_the_environment(run_cli, tmp_path, monkeypatch):
    folder = tmp_path / "env-store"
    doc = scan(run_cli, str(folder), LAB)
    monkeypatch.setenv("VMSENTRY_STORE", str(folder))
    proc = cli(run_cli, "history", "--format", "json", code=0)
    assert json.loads(proc.stdout)["runs"][0]["run_id"] == doc["run_id"]


# ------------------------------------------------------------------------------------ drift of two files
def test_drift_of_saved_scans_inventories_and_folders(run_cli, tmp_path, drifted_lab):
    before, after, inventory = tmp_path / "before.json", tmp_path / "after.json", tmp_path / "inventory.json"
    for path, source in ((before, LAB), (after, drifted_lab)):
        assert cli(run_cli, "scan", str(source), "--format", "json", "--no-progress", "-o", str(path)).returncode == 1
    cli(run_cli, "inventory", str(LAB), "-o", str(inventory), code=0)
    doc = json.loads(cli(run_cli, "drift", str(before), str(after), "--format", "json", code=1).stdout)
    assert doc["old"] == {"path": str(before)} and doc["new"] == {"path": str(after)}
    filt = next(c for c in doc["changes"] if c["what"] == "nic_filter")
    assert (filt["before"], filt["after"], filt["severity"]) == ("clean-traffic IP=192.168.122.10", None, "high")
    assert filt["where_before"].startswith(f"{LAB}/domains/web.xml: line 18")
    assert filt["where"].startswith(f"{drifted_lab}/domains/web.xml: line 18")
    text = cli(run_cli, "drift", str(inventory), str(drifted_lab), code=1).stdout
    assert text.splitlines()[0].endswith("4 changes") and "[HIGH]" in text and "before: read at" in text
    # the same configuration read three ways: no drift
    assert "no configuration change" in cli(run_cli, "drift", str(before), str(inventory), code=0).stdout
    cli(run_cli, "drift", str(LAB), str(before), code=0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": "vmsentry", "inventory": {"schema": "vmsentry.inventory/1", "vms": 5}}')
    proc = cli(run_cli, "drift", str(bad), str(after), code=2)
    assert proc.stderr.startswith(f"vmsentry: {bad}") and proc.stderr.count("\n") == 1
    cli(run_cli, "drift", str(tmp_path / "missing.json"), str(after), code=2)
    cli(run_cli, "drift", str(before), code=3)
