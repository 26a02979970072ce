"""scripts/fix_labs.py on examples/lab: the patch and the shell script applied for real to a copy (the
script's sysctls in a private namespace), the copy re-scanned: fewer failing findings and none new."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.lab
def test_fix_labs_on_the_lab():
    if os.geteuid() != 0:
        pytest.fail("needs root: unshare --net")
    env = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src")}
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "fix_labs.py"), "examples/lab"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    row = re.search(r"^\| examples/lab +\| (\d+) +\| (\d+) +\| (\d+) +\| (\d+) +\| (\d+) +\|$", r.stdout, re.M)
    assert row, r.stdout
    before, fixes, unfixable, after, new = map(int, row.groups())
    assert fixes > 0 and unfixable > 0
    assert after < before and new == 0
    assert before - after >= fixes  # every fix closes at least one finding
