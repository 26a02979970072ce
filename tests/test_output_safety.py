"""Writing reports as root in folders others can write to, and failing without a traceback (issue 11, 0)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from vmsentry import cli
from vmsentry.report.output import OutputError, write_output

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(REPO, "examples", "lab")


def test_a_link_planted_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    report = tmp_path / "report.json"
    report.symlink_to(victim)
    write_output("{}\n", str(report))
    assert victim.read_text() == "precious\n"
    assert not report.is_symlink() and report.read_text() == "{}\n"


def test_the_temporary_file_has_an_unpredictable_name_and_is_never_left_behind(tmp_path, monkeypatch):
    # a link planted under the old predictable name (.NAME.PID.tmp) is not written through
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / f".report.json.{os.getpid()}.tmp").symlink_to(victim)
    write_output("{}\n", str(tmp_path / "report.json"))
    assert victim.read_text() == "precious\n"

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_output("x" * 100_000, str(tmp_path / "other.json"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".report.json.{os.getpid()}.tmp", "report.json", "victim"]


def test_an_existing_report_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path):
    private = tmp_path / "private.json"
    private.write_text("old")
    private.chmod(0o600)
    write_output("new", str(private))
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "new"
    old = os.umask(0o022)
    try:
        write_output("new", str(tmp_path / "fresh.json"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o644


def test_a_folder_or_a_missing_folder_is_one_error(tmp_path):
    with pytest.raises(OutputError, match="a folder"):
        write_output("x", str(tmp_path))
    with pytest.raises(OutputError, match="No such file"):
        write_output("x", str(tmp_path / "missing" / "r.json"))


def test_a_full_device_on_stdout_is_one_line_and_exit_3():
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "vmsentry", "scan", LAB, "--format", "json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "No space left on device" in proc.stderr


def test_an_unexpected_error_is_one_line_exit_3_and_shows_no_input_text(monkeypatch, capsys):
    from vmsentry.commands import scan

    def broken(self, args):
        raise RuntimeError("password=hunter2 from a hostile file")

    monkeypatch.setattr(scan.ScanCommand, "run", broken)
    assert cli.main(["scan", LAB]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "hunter2" not in err and err.count("\n") == 1
    assert "RuntimeError" in err and "--debug" in err
    assert cli.main(["--debug", "scan", LAB]) == 3
    assert "Traceback" in capsys.readouterr().err
