"""`vmsentry fix --format sh` against the real libvirtd: a domain of its own (fixtures/fix-guest.xml, defined,
never started) gets the script's `virsh dumpxml | xmlstarlet ed | virsh define` edits; `virsh dumpxml` is
re-scanned: every finding the script fixes is gone and no new one appears. The second run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from virsh_cli import URI, virsh

pytestmark = pytest.mark.libvirt

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NAME = "vmsentry-fix-it"
ENV = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src"), "LC_ALL": "C"}
# what a definition alone fails (VM-002 and VM-050 also need the host's qemu.conf and LSM, not read here)
FIXED = {"VMS-VM-001", "VMS-VM-004", "VMS-VM-041", "VMS-VM-060", "VMS-VM-070", "VMS-VM-071"}


def vmsentry(*args):
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", *args], capture_output=True, text=True, env=ENV, timeout=120
    )


def failing(path):
    report = json.loads(vmsentry("scan", path, "--format", "json", "--fail-on", "none").stdout)
    return {(f["rule_id"], f["evidence"].get("key")) for f in report["findings"] if f["status"] == "fail"}


@pytest.fixture
def domain(live_lab, tmp_path):
    virsh("undefine", NAME, check=False)
    virsh("define", os.path.join(HERE, "fixtures", "fix-guest.xml"))
    try:
        yield NAME
    finally:
        virsh("undefine", NAME, check=False)


def dump(tmp_path, name):
    path = tmp_path / f"{name}.xml"
    path.write_text(virsh("dumpxml", "--inactive", NAME).stdout)
    return str(path)


def test_virsh_edits_then_dumpxml_rescanned(domain, tmp_path):
    before_file = dump(tmp_path, "before")
    before = failing(before_file)
    assert {r for r, _ in before} >= FIXED, before
    script = tmp_path / "fix.sh"
    r = vmsentry("fix", before_file, "-o", str(script))
    assert r.returncode == 0, r.stderr
    env = {**ENV, "VIRSH": f"virsh -c {URI}"}
    first = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"takes effect at the next start: domain:{NAME}" in first.stdout
    after = failing(dump(tmp_path, "after"))
    assert not {f for f in after if f[0] in FIXED}, after
    assert after <= before, f"new findings: {after - before}"
    xml_after = virsh("dumpxml", "--inactive", "--security-info", NAME).stdout
    assert "<readonly/>" in xml_after and "listen='127.0.0.1'" in xml_after and "<redirdev" not in xml_after
    second = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 0 and "vmsentry fix: nothing to change" in second.stdout, second.stdout
    assert virsh("dumpxml", "--inactive", "--security-info", NAME).stdout == xml_after
