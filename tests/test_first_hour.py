"""A new user's first hour (issue 11, 4): `rules -o`, NO_COLOR and TERM=dumb, a progress bar that fits a narrow
terminal and says how long is left, shell completion, and a man page that matches the parsers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "examples" / "lab"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def vmsentry_on_terminal(run_on_terminal):
    """``vmsentry ARGV`` on a terminal ``columns`` wide."""
    return lambda argv, columns, env: run_on_terminal([sys.executable, "-m", "vmsentry", *argv], columns, env)


@pytest.fixture(scope="module")
def many_vms(tmp_path_factory):
    """400 real libvirt definitions (the lab's build VM, renamed): more than the bar's 200-file threshold."""
    folder = tmp_path_factory.mktemp("many")
    template = (LAB / "domains" / "build.xml").read_text()
    for i in range(400):
        (folder / f"build-{i}.xml").write_text(template.replace("<name>build</name>", f"<name>build-{i}</name>"))
    return folder


@pytest.mark.parametrize("columns", [40, 60, 120])
def test_the_progress_bar_stays_on_one_line_and_shows_the_time_left(many_vms, tmp_path, columns, vmsentry_on_terminal):
    code, screen = vmsentry_on_terminal(["scan", str(many_vms), "-o", str(tmp_path / "r.json")], columns, {})
    assert code == 1, screen
    frames = [ANSI.sub("", f) for f in re.split(r"[\r\n]", screen)]
    bars = [f for f in frames if f.startswith("vmsentry:") and "/400" in f]
    assert bars, screen
    assert all(len(f) <= columns for f in frames), [f for f in frames if len(f) > columns]
    assert all("ETA" in f and re.search(r"\d:\d\d:\d\d|-:--:--", f) for f in bars), bars


def test_no_color_takes_the_colour_out_of_the_bar_and_the_report(many_vms, vmsentry_on_terminal):
    code, screen = vmsentry_on_terminal(["scan", str(many_vms), "--format", "text"], 100, {"NO_COLOR": "1"})
    assert code == 1
    assert "/400" in screen  # the bar is still drawn, without colour (no-color.org: colour only)
    assert not COLOUR.search(screen), COLOUR.findall(screen)[:5]
    code, screen = vmsentry_on_terminal(["scan", str(LAB), "--format", "text"], 100, {})
    assert COLOUR.search(screen)  # the same report on the same terminal is coloured without it


def test_term_dumb_has_neither_colour_nor_a_bar(many_vms, vmsentry_on_terminal):
    code, screen = vmsentry_on_terminal(["scan", str(many_vms), "--format", "text"], 100, {"TERM": "dumb"})
    assert code == 1
    assert "/400" not in screen and "\x1b" not in screen


def test_rules_writes_where_o_says(run_cli, tmp_path):
    out = tmp_path / "rules.md"
    proc = run_cli("rules", "--format", "md", "-o", out)
    assert proc.returncode == 0 and proc.stdout == ""
    assert out.read_text().startswith("| id | severity |")
    proc = run_cli("rules", "--matrix", "--format", "html", "--output", tmp_path / "matrix.html")
    assert proc.returncode == 0 and (tmp_path / "matrix.html").read_text().startswith("<!DOCTYPE html>")
    proc = run_cli("rules", "-o", tmp_path / "missing" / "rules.txt")
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "No such file" in proc.stderr


def test_bash_completion_completes_verbs_sub_verbs_options_and_choices(run_cli, tmp_path):
    proc = run_cli("completion", "bash")
    assert proc.returncode == 0
    script = tmp_path / "vmsentry.bash"
    script.write_text(proc.stdout)

    def complete(*words: str) -> list[str]:
        line = " ".join(words)
        probe = (
            f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
            f"COMP_LINE={line!r}; COMP_POINT={len(line)}; _shtab_vmsentry; printf '%s\\n' \"${{COMPREPLY[@]}}\""
        )
        return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()

    assert complete("vmsentry", "pa") == ["paths"]
    assert complete("vmsentry", "policy", "comp") == ["compile"]
    assert "--target" in complete("vmsentry", "policy", "compile", "--ta")
    assert complete("vmsentry", "scan", "--format", "") == ["text", "json", "sarif", "junit", "html"]
    assert complete("vmsentry", "rules", "-") and "--output" in complete("vmsentry", "rules", "--o")


@pytest.mark.parametrize("shell", ["zsh", "tcsh"])
def test_zsh_and_tcsh_scripts_name_every_verb(run_cli, shell):
    proc = run_cli("completion", shell)
    assert proc.returncode == 0
    for verb in ("scan", "inventory", "rules", "paths", "detect", "policy", "completion"):
        assert verb in proc.stdout


def test_the_committed_man_page_is_current():
    """docs/man/vmsentry.1 is generated from the parsers: an option added without regenerating it fails here."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make-manpage.py"), "--check"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    page = (REPO / "docs" / "man" / "vmsentry.1").read_text()
    for text in ("vmsentry policy compile", r"\-\-what\-if", "NO_COLOR", "EXIT STATUS"):
        assert text in page


def test_the_man_page_renders_without_warnings():
    proc = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(REPO / "docs" / "man" / "vmsentry.1")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_help_does_not_import_rich_or_shtab():
    code = (
        "import sys\nfrom vmsentry.cli import main\ntry:\n    main(['scan', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in ('rich', 'shtab', 'argparse_manpage') if m in sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1].strip() == ""
