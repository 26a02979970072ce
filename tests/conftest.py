"""Fixtures shared by every test.  Keep this small: topic fixtures live in the topic's own conftest/module.

* ``SHARED``: the project's shared folder, ``../shared`` beside the repository (CI lays a read-only copy
  there), or ``$VMSENTRY_SHARED`` when set (e.g. for a clone somewhere else).
* ``shared_dir`` / ``corpus_dir``: the same as fixtures; a missing folder FAILS the test (a skip for a
  missing component counts as a failure in CI anyway, and a failure says what is missing).
* ``run_cli``: runs ``python -m vmsentry ARGS...`` with this interpreter and returns the CompletedProcess
  (text mode, stdout/stderr captured, 120 s timeout).  Also importable as ``conftest.run_vmsentry``.
* ``run_on_terminal``: runs a command with stdout and stderr on a pseudo-terminal of a given width and
  returns (exit code, what the terminal received): for what vmsentry does only on a terminal (colour,
  progress bar, the text format by default).
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VMSENTRY_SHARED") or REPO.parent / "shared").resolve()


def run_vmsentry(
    *args: str | os.PathLike,
    input: str | None = None,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """``[sys.executable, "-m", "vmsentry", *args]`` -> CompletedProcess (never raises on a non-zero exit)."""
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", *map(str, args)],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        stdin=None if input is not None else subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(
            f"shared folder not found at {SHARED}: put the project's shared/ beside the repository "
            f"or set VMSENTRY_SHARED"
        )
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir: Path) -> Path:
    corpus = shared_dir / "corpus"
    if not corpus.is_dir():
        pytest.fail(f"corpus folder not found at {corpus}")
    return corpus


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli("scan", path, "--format", "json")`` -> CompletedProcess."""
    return run_vmsentry


def _run_on_terminal(
    argv: list[str],
    columns: int = 200,
    env: dict | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float = 120,
) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=cwd,
        env={**environ, "TERM": "xterm-256color", **(env or {})},
        close_fds=True,
    )
    os.close(slave)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(timeout=10), received.decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.fixture(scope="session")
def run_on_terminal():
    """``run_on_terminal(argv, columns=200, env=None, cwd=None)`` -> (exit code, what the terminal received)."""
    return _run_on_terminal
