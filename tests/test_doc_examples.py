"""Every console example in the README, docs/*.md and the examples' READMEs runs and shows what the tool
prints (issue 11, 4: the finance example's `--what-if` claim and its "Preview" line had drifted).

An example is a ``$ vmsentry ...`` (or ``$ .venv/bin/vmsentry ...``) line in a fenced block, with the lines
after it as its output, or a paragraph that is only a backticked ``vmsentry ...`` command followed by a fenced
block (the incident READMEs). Each runs here, in a folder holding ``examples/`` and the files the docs name
as placeholders (``inv.json``, ``policy.yaml``, ``capture.pcap``), on a terminal (the text format, as a reader
sees it). Its essentials are compared with the doc:

* the exit code: 0 or 1 (findings, paths, violations), or the one a ``# exit N`` comment states; never a
  traceback;
* the first line: the doc's first output line is found in the tool's first line;
* every other line the doc shows is found, in order, in the tool's output (``...`` in a doc line stands for
  text left out; a line that is only ``...`` skips any number of lines), so the counts shown (paths,
  changes, cuts, findings) are the real ones.

Examples that need a real host or network are listed in NEEDS_A_HOST with the reason; nothing else is skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "examples").glob("*/README.md"))]
COMMAND = re.compile(r"^\$ (?:sudo )?(?:\.venv/bin/)?vmsentry\b")
INLINE_COMMAND = re.compile(r"^`((?:\.venv/bin/)?vmsentry [^`]+)`[^`]*:$")
ELISION = re.compile(r"\s*(?:\.\.\.|\u2026)\s*")

# (file, command as written) -> why it cannot run here
NEEDS_A_HOST = {
    (
        "README.md",
        "sudo vmsentry scan --libvirt qemu:///system --host /etc/libvirt/qemu.conf /etc/libvirt/libvirtd.conf",
    ): ("reads the live libvirtd and this machine's host facts as root"),
    ("README.md", "vmsentry scan /srv/vm-definitions/ --format sarif -o vmsentry.sarif"): (
        "names the user's own folder of definitions (the same scan of examples/lab runs above)"
    ),
    ("README.md", "vmsentry inventory --libvirt qemu+ssh://root@hv1/system > hv1.json"): (
        "connects to a remote hypervisor over SSH"
    ),
    ("policy.md", "sudo vmsentry policy apply policy.yaml --inventory inv.json --dry-run"): (
        "reads the host's loaded nftables ruleset as root"
    ),
    ("policy.md", "sudo vmsentry policy apply policy.yaml --inventory inv.json --confirm-within 60"): (
        "changes the host's firewall as root (tests/test_policy_lab.py applies it in a network namespace)"
    ),
    ("policy.md", "sudo vmsentry policy confirm"): "confirms a pending apply on the host, as root",
}


@dataclass
class Example:
    doc: Path
    line: int
    command: str  # as written, without the "$ " and the trailing comment
    output: list[str] = field(default_factory=list)
    exit_codes: tuple[int, ...] = (0, 1)

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def extract(doc: Path) -> list[Example]:
    examples: list[Example] = []
    lines = doc.read_text(encoding="utf-8").splitlines()
    in_block, pending_inline, current = False, None, None
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if in_block:
                in_block, current = False, None
            else:
                in_block = True
                if pending_inline is not None:
                    current = pending_inline
                    examples.append(current)
                pending_inline = None
            continue
        if not in_block:
            match = INLINE_COMMAND.match(line.strip())
            if match:
                pending_inline = Example(doc, number, match[1].strip())
            elif line.strip() and pending_inline is not None and not line.startswith(("`", " ")):
                pending_inline = None
            continue
        if line.startswith("$ "):
            current = None
            if COMMAND.match(line):
                command, comment = ([*re.split(r"\s+#\s", line[2:], maxsplit=1), ""])[:2]
                current = Example(doc, number, command.strip())
                code = re.search(r"\bexit (\d)", comment)
                if code:
                    current.exit_codes = (int(code[1]),)
                examples.append(current)
            continue
        if current is not None:
            current.output.append(line)
    return examples


def all_examples() -> list[Example]:
    return [e for doc in DOCS for e in extract(doc)]


def _needs_a_host(example: Example) -> str | None:
    return NEEDS_A_HOST.get((example.doc.name, example.command))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, shared_dir):
    """A folder as a reader's: examples/ and the placeholder files the docs name."""
    folder = tmp_path_factory.mktemp("reader")
    (folder / "examples").symlink_to(REPO / "examples")
    inventory = subprocess.run(
        [sys.executable, "-m", "vmsentry", "inventory", str(REPO / "examples" / "lab")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (folder / "inv.json").write_text(inventory)
    shutil.copy(REPO / "examples" / "policy" / "lab-policy.yaml", folder / "policy.yaml")
    shutil.copy(shared_dir / "pcaps" / "lab" / "arpspoof-vm1-vs-vm2.pcap", folder / "capture.pcap")
    return folder


def run_example(run_on_terminal, command: str, cwd: Path) -> tuple[int, str]:
    """``command`` in bash, ``vmsentry`` being this checkout, on a wide terminal (TERM=dumb: the text
    format as a reader sees it, no colour, no progress bar)."""
    script = 'vmsentry() { "$VMSENTRY_PY" -m vmsentry "$@"; }\n' + command.replace(".venv/bin/vmsentry", "vmsentry")
    python_path = os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    env = {"TERM": "dumb", "VMSENTRY_PY": sys.executable, "PYTHONPATH": python_path}
    return run_on_terminal(["bash", "-c", script], 250, env, cwd)


def _pattern(doc_line: str) -> re.Pattern[str]:
    """A doc line as a pattern over one output line: white space is any white space, ``...`` any text."""
    pieces = [re.escape(" ".join(p.split())) for p in ELISION.split(doc_line.strip())]
    return re.compile(r".*?".join(p.replace(r"\ ", r"\s+") for p in pieces))


def essentials_differ(doc_output: list[str], actual: str) -> str | None:
    """None when the output has the doc's essentials, else what differs."""
    shown = [line for line in doc_output if line.strip()]
    if not shown:
        return None
    got = [" ".join(line.split()) for line in actual.splitlines() if line.strip()]
    if not got:
        return "no output"
    if not ELISION.fullmatch(shown[0]) and not _pattern(shown[0]).search(got[0]):
        return f"first line: the doc shows {shown[0].strip()!r}, the tool prints {got[0]!r}"
    at = 0
    for line in shown:
        if ELISION.fullmatch(line):
            continue
        pattern = _pattern(line)
        found = next((i for i in range(at, len(got)) if pattern.search(got[i])), None)
        if found is None:
            return f"the doc shows {line.strip()!r}; not in the tool's output (after line {at + 1})"
        at = found + 1
    return None


EXAMPLES = all_examples()


def test_the_docs_have_examples_and_every_skip_is_a_real_example():
    assert len(EXAMPLES) >= 8, [e.id for e in EXAMPLES]
    listed = {(e.doc.name, e.command) for e in EXAMPLES}
    assert set(NEEDS_A_HOST) <= listed, set(NEEDS_A_HOST) - listed


def test_runnable_examples_by_document(workdir, run_on_terminal):
    """All examples of a document run in one folder, in the order they are written (one writes
    ``policy.yaml``, the next compiles it); each failure names the doc line."""
    failures = []
    ran = 0
    for example in EXAMPLES:
        if _needs_a_host(example):
            continue
        ran += 1
        code, output = run_example(run_on_terminal, example.command, workdir)
        if "Traceback" in output:
            failures.append(f"{example.id}: {example.command}: traceback\n{output[-2000:]}")
            continue
        if code not in example.exit_codes:
            failures.append(
                f"{example.id}: {example.command}: exit {code}, expected {example.exit_codes}\n{output[-800:]}"
            )
            continue
        differ = essentials_differ(example.output, output)
        if differ:
            failures.append(f"{example.id}: {example.command}: {differ}")
    assert ran >= 6
    assert not failures, "\n\n".join(failures)


def test_the_essentials_check_catches_drift():
    """The comparison itself: a count changed or a line missing is found, an elision is not."""
    actual = "5 VMs, 3 networks | failing: 4 critical\n\nSmallest fix found: 4 change(s), total cost 15\n  x cuts 11\n"
    assert essentials_differ(["5 VMs, 3 networks | ...", "Smallest fix found: 4 change(s) ...", "..."], actual) is None
    assert "first line" in essentials_differ(["6 VMs, 3 networks | ..."], actual)
    assert "not in the tool's output" in essentials_differ(["5 VMs ...", "Smallest fix found: 2 change(s) ..."], actual)
    assert json.dumps(essentials_differ(["..."], actual)) == "null"


def test_every_relative_link_in_the_docs_resolves():
    """README's speed section sent users to figures that did not exist (issue 11, 4)."""
    missing = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target and not (doc.parent / target).exists():
                missing.append(f"{doc.relative_to(REPO)}: {target}")
    assert not missing, missing
