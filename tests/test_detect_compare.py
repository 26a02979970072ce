"""The comparison in docs/detection.md, checked against the real tools on the lab's arpspoof capture:
arpwatch learns the forged binding first and then reports the real host as the one that "changed"; tshark
flags the duplicate address but names no one; vmsentry names vm1."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from traffic_helpers import detect

ARPSPOOF = "lab/arpspoof-vm1-vs-vm2.pcap"


# arpwatch runs in a network namespace of its own (unshare -n: root)
@pytest.mark.lab
def test_arpwatch_trusts_the_first_binding_it_saw(shared_dir, tmp_path):
    assert shutil.which("arpwatch") and shutil.which("unshare"), "arpwatch missing (scripts/setup.sh installs it)"
    dat = tmp_path / "arp.dat"
    dat.write_text("")
    pcap = (shared_dir / "pcaps" / ARPSPOOF).resolve()
    proc = subprocess.run(
        ["unshare", "-n", "arpwatch", "-d", "-N", "-f", str(dat), "-r", str(pcap)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    reports = re.findall(r"Subject: (.+?) \((10\.99\.0\.1)\)[\s\S]*?ethernet address: (\S+)", proc.stdout)
    assert reports[0] == ("new station", "10.99.0.1", "52:54:00:99:00:11")  # the liar's MAC, learned as truth
    assert ("changed ethernet address", "10.99.0.1", "52:54:00:99:00:01") in reports  # the real host "changed"
    assert proc.stderr.count("ethernet mismatch") == 5


def test_tshark_flags_the_duplicate_but_names_no_attacker(shared_dir):
    assert shutil.which("tshark"), "tshark missing (scripts/setup.sh installs it)"
    out = subprocess.run(
        ["tshark", "-n", "-q", "-z", "expert", "-r", str(shared_dir / "pcaps" / ARPSPOOF)],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert re.search(r"Warns \(7\)", out) and "Duplicate IP address configured (10.99.0.1)" in out


def test_vmsentry_names_the_liar_without_and_with_inventory(shared_dir):
    (alert,) = detect(shared_dir / "pcaps" / ARPSPOOF)[0]
    assert alert["attacker"]["mac"] == "52:54:00:99:00:11"
