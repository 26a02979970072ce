"""Hostile and broken inputs: one clear line each (in `errors` and on stderr), the rest of the scan
carries on, nothing from an external entity is read, memory stays bounded, exit code 2."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

GOOD = """<domain type='kvm'><name>good-vm</name><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br0'/></interface>
</devices></domain>"""

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<domain type='kvm'><name>&lol9;</name></domain>
"""


def _xxe(target: Path) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE domain [ <!ENTITY xxe SYSTEM "file://{target}"> ]>
<domain type='kvm'><name>&xxe;</name></domain>
"""


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "inputs"
    folder.mkdir()
    secret = tmp_path / "host-secret.txt"
    secret.write_text("TOP-SECRET-HOST-FILE-CONTENT\n")
    (folder / "00-good.xml").write_text(GOOD)
    (folder / "billion-laughs.xml").write_text(BILLION_LAUGHS)
    (folder / "xxe.xml").write_text(_xxe(secret))
    (folder / "latin1.xml").write_bytes("<domain><name>caf\xe9</name></domain>".encode("latin-1"))
    (folder / "truncated.xml").write_text(GOOD[: len(GOOD) // 2])
    (folder / "junk.xml").write_bytes(os.urandom(4096) + b"\x00\x01\x02")
    huge = folder / "huge.xml"
    with open(huge, "wb") as fh:  # 200 MB, sparse: costs no disk, must not be read
        fh.truncate(200 * 1024 * 1024)
    os.symlink(folder / "does-not-exist.xml", folder / "dangling.xml")
    return folder


def _scan(run_cli, *args):
    proc = run_cli("scan", *args, "--format", "json")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(proc.stdout)


def test_each_bad_file_gives_one_line_and_the_scan_goes_on(run_cli, bad_folder):
    proc, report = _scan(run_cli, str(bad_folder))
    assert proc.returncode == 2
    errors = {Path(e["file"]).name: e["message"] for e in report["inventory"]["errors"]}
    assert set(errors) == {"billion-laughs.xml", "xxe.xml", "latin1.xml", "truncated.xml", "junk.xml", "huge.xml"}
    assert "entity" in errors["billion-laughs.xml"] and "line 3" in errors["billion-laughs.xml"]
    assert "entity" in errors["xxe.xml"]
    assert "line 1" in errors["latin1.xml"]
    assert "malformed XML" in errors["truncated.xml"]
    assert "binary" in errors["junk.xml"]
    assert "200.0 MiB" in errors["huge.xml"] and "limit" in errors["huge.xml"]
    # a link inside a folder is not followed (it may point anywhere); the report says it was passed over
    assert any("1 file(s) inside folders passed over" in note for note in report["notes"])
    named, named_report = _scan(run_cli, str(bad_folder / "dangling.xml"))
    assert named.returncode == 2 and "No such file" in named_report["inventory"]["errors"][0]["message"]
    # one stderr line per bad file, each naming it
    lines = [line for line in proc.stderr.splitlines() if line.startswith("vmsentry: ")]
    for name in errors:
        assert sum(name in line for line in lines) == 1, (name, lines)
    # the good file is still there and audited
    assert [v["name"] for v in report["inventory"]["vms"]] == ["good-vm"]
    assert any(f["asset"] == "vm:good-vm" and f["status"] == "fail" for f in report["findings"])


def test_external_entities_are_never_read(run_cli, bad_folder):
    proc, report = _scan(run_cli, str(bad_folder / "xxe.xml"))
    assert "TOP-SECRET-HOST-FILE-CONTENT" not in proc.stdout + proc.stderr
    assert proc.returncode == 2


def test_billion_laughs_memory_stays_bounded(bad_folder):
    code = (
        "import resource,sys; from vmsentry.collect import collect; "
        f"inv,_=collect([{str(bad_folder / 'billion-laughs.xml')!r}]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) < 200 * 1024  # KiB: far below what an expansion would take


@pytest.mark.lab
def test_unreadable_file_as_an_unprivileged_user(tmp_path: Path):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.fail("this test needs root and setpriv (util-linux) to drop privileges")
    # pytest's tmp_path lives under a 0700 folder of root's: use a world-readable one of our own
    folder = Path(tempfile.mkdtemp(prefix="vmsentry-perm-", dir="/tmp"))
    folder.chmod(0o755)
    (folder / "good.xml").write_text(GOOD)
    (folder / "good.xml").chmod(0o644)
    locked = folder / "locked.xml"
    locked.write_text(GOOD.replace("good-vm", "locked-vm"))
    locked.chmod(0o000)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(folder)}
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            sys.executable,
            "-m",
            "vmsentry",
            "inventory",
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    assert proc.returncode == 2, proc.stderr
    inv = json.loads(proc.stdout)
    assert [v["name"] for v in inv["vms"]] == ["good-vm"]
    assert len(inv["errors"]) == 1 and "Permission denied" in inv["errors"][0]["message"]
    # a folder that cannot be read is an error too, never a clean "nothing found" (exit 0)
    locked_folder = folder / "locked-folder"
    locked_folder.mkdir(mode=0o000)
    locked.unlink()
    for target in (folder, locked_folder):
        proc = subprocess.run(
            ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", sys.executable, "-m", "vmsentry"]
            + ["scan", str(target), "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
        )
        assert proc.returncode == 2, (target, proc.stderr)
        assert "locked-folder: cannot read folder: Permission denied" in proc.stderr
    shutil.rmtree(folder)


def test_hostile_names_are_kept_on_one_line(run_cli, tmp_path: Path):
    evil = tmp_path / "evil.xml"
    evil.write_text(
        "<domain><name>x\x1b[31mRED\x1b[0m&#10;second-line</name><devices>"
        "<graphics type='vnc' listen='0.0.0.0' port='5900' autoport='no'/></devices></domain>"
    )
    (tmp_path / "broken\x1b[2J.xml").write_text("<domain>")
    proc = run_cli("scan", str(tmp_path), "--format", "text")
    assert "\x1b[2J" not in proc.stderr and "\x1b[31m" not in proc.stdout
    assert proc.returncode == 2


def test_nothing_is_written_half_way_when_the_output_cannot_be_written(run_cli, tmp_path: Path):
    good = tmp_path / "good.xml"
    good.write_text(GOOD)
    proc = run_cli("scan", str(good), "--format", "json", "-o", str(tmp_path / "no-such-dir" / "out.json"))
    assert proc.returncode == 3 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    out = tmp_path / "report.json"
    proc = run_cli("scan", str(good), "--format", "json", "-o", str(out))
    assert proc.returncode in (0, 1) and json.loads(out.read_text())["findings"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_output_to_a_device_writes_into_it_instead_of_replacing_it(run_cli, tmp_path: Path):
    good = tmp_path / "good.xml"
    good.write_text(GOOD)
    before = os.stat("/dev/null")
    proc = run_cli("scan", str(good), "--format", "json", "-o", "/dev/null")
    assert proc.returncode in (0, 1), proc.stderr
    after = os.stat("/dev/null")
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


def test_usage_errors_exit_3(run_cli, tmp_path: Path):
    assert run_cli("scan", "--format", "nope", str(tmp_path)).returncode == 3
    assert run_cli("scan").returncode == 3


def test_a_missing_path_is_an_input_error_and_the_rest_is_reported(run_cli, tmp_path: Path):
    proc, report = _scan(run_cli, str(tmp_path / "missing"), str(Path(__file__).parents[1] / "examples" / "lab"))
    assert proc.returncode == 2 and "No such file" in proc.stderr
    assert report["summary"]["vms"] == 5 and report["inventory"]["errors"][0]["file"].endswith("missing")


def test_progress_bar_on_a_terminal_for_long_scans(tmp_path: Path):
    """stderr on a real pseudo-terminal: a bar with counts appears, and is cleared at the end."""
    import pty

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        (folder / f"vm{i:03d}.xml").write_text(GOOD.replace("good-vm", f"vm{i:03d}"))
    out = tmp_path / "report.json"
    script = (
        f"import sys; sys.argv=['vmsentry','scan',{str(folder)!r},'--format','json','-o',{str(out)!r}];"
        "from vmsentry.cli import main; main()"
    )
    chunks = []

    def read(fd):
        data = os.read(fd, 65536)
        chunks.append(data)
        return data

    pty.spawn([sys.executable, "-c", script], read)
    text = b"".join(chunks).decode(errors="replace")
    assert "400/400" in text and "ETA" in text  # rich's bar: counts and the time left (issue 11, 4)
    assert text.rstrip().endswith("\x1b[2K")  # cleared at the end
    assert json.loads(out.read_text())["summary"]["vms"] == 400


def test_every_verb_reports_an_unwritable_output_in_one_line(run_cli, tmp_path: Path):
    """scan and policy share one writer: a missing folder is one line and exit 3, never a traceback."""
    repo = Path(__file__).resolve().parents[1]
    target = str(tmp_path / "no-such-dir" / "out")
    proc = run_cli(
        "policy",
        "compile",
        str(repo / "examples/policy/lab-policy.yaml"),
        "--inventory",
        str(repo / "examples/lab"),
        "-o",
        target,
    )
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert f"{target}: cannot write" in proc.stderr
