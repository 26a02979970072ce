"""What the tests that apply `vmsentry fix` scripts for real share (test_fix_lab.py, test_fix_template.py):
running a command (inside a network namespace when asked) and vmsentry itself from this checkout, and a
digest of a folder's files to tell that a second run changed nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(REPO, "examples", "lab")
PYTHON = sys.executable
BIN = os.path.dirname(sys.executable)
ENV = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src"), "LC_ALL": "C"}


def sh(*argv, ns=None, env=None, check=True, timeout=120):
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} rc {r.returncode}: {r.stdout}{r.stderr}")
    return r


def vmsentry(*args, ns=None, timeout=120):
    return sh(PYTHON, "-m", "vmsentry", *args, ns=ns, check=False, timeout=timeout)


def digest(root: str) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root``."""
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, root)] = hashlib.sha256(handle.read()).hexdigest()
    return out
