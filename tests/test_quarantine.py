"""The quarantine's records and checks that need no kernel (act/quarantine), and the verbs' usage errors. The
holds themselves, on a real bridge, are in tests/test_quarantine_lab.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.act.quarantine import Held, QuarantineError, Target, compact, find_held, from_compact, normalise_mac
from vmsentry.act.quarantine.nft import COMMENT_MAX, NftQuarantine, _fit

from traffic_helpers import FIXTURES

REPO = Path(__file__).resolve().parent.parent
INVENTORY = str(FIXTURES / "lab-inventory.json")
T = Target("vm1", "52:54:00:99:00:11", "p-vm1", "br-test", "lab")


def test_mac_spellings():
    assert normalise_mac("52-54-00-AA-BB-CC") == "52:54:00:aa:bb:cc"
    assert normalise_mac(" 52:54:00:aa:bb:cc ") == "52:54:00:aa:bb:cc"
    assert normalise_mac("vm1") is None and normalise_mac("52:54:00:aa:bb") is None


def test_held_records_round_trip():
    h = Held(T, "nft", "arp_spoof alert", 1700000000.125, 1700003600.125, "0123456789abcdef")
    assert Held.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    assert from_compact(json.dumps(compact(h)), "nft") == h
    bare = Held(Target("02:00:00:00:00:01", "02:00:00:00:00:01"), "nft", "r", 5.0)
    assert compact(bare) == {"v": "02:00:00:00:00:01", "m": "02:00:00:00:00:01", "r": "r", "s": 5.0}
    assert from_compact(json.dumps(compact(bare)), "nft") == bare
    for other in ("", "not json", '{"v": "x"}', "[1]", '{"v":"a","m":"b","s":"soon"}'):
        assert from_compact(other, "nft") is None


def test_find_held_by_name_or_any_mac_spelling():
    holds = [Held(T, "nft", "r", 1.0), Held(Target("vm2", "52:54:00:99:00:12"), "nft", "r", 2.0)]
    assert find_held(holds, "vm1") is holds[0]
    assert find_held(holds, "52-54-00-99-00-12") is holds[1]
    assert find_held(holds, "vm3") is None


def test_comment_fits_the_kernel_limit():
    long = Held(T, "nft", "é" * 400, 1.0, None, "a" * 16)
    text = _fit(long)
    assert len(text.encode()) <= COMMENT_MAX
    back = from_compact(text, "nft")
    assert back.reason.endswith("...") and back.reason.startswith("éé") and back.alert_id == "a" * 16
    short = Held(T, "nft", 'a "quoted" reason', 1.0)
    assert from_compact(_fit(short), "nft") == short
    with pytest.raises(QuarantineError, match="too long to record"):
        _fit(Held(Target("v" * 300, T.mac), "nft", "r", 1.0))


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"forensics": ("icmp", 22)}, "forensics port icmp/22"),
        ({"forensics": ("tcp", 0)}, "forensics port tcp/0"),
        ({"host_ips": ["10.0.0.300"]}, "host address '10.0.0.300' is not an IP"),
        ({"host_ports": ["a/b"]}, "'a/b' is not a network interface name"),
        ({"host_ports": ["x" * 16]}, "is not a network interface name"),
        ({"netns": "../../etc"}, "is not a network namespace name"),
    ],
)
def test_bad_settings_are_one_line(kw, words):
    with pytest.raises(QuarantineError) as err:
        NftQuarantine(**kw)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_target_refused_before_nft(tmp_path):
    q = NftQuarantine(lock_dir=str(tmp_path), prefer_library=False)
    with pytest.raises(QuarantineError, match="'nonsense' is not a MAC address"):
        q.hold(Target("vm1", "nonsense"), "r", None, None)
    with pytest.raises(QuarantineError, match="is not a network interface name"):
        q.hold(Target("vm1", T.mac, "vnet0; drop"), "r", None, None)


# ------------------------------------------------------------------------------------------------- verbs
def vmsentry(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "vmsentry", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["quarantine", "--reason", "r"], 3, "give the VM (or MAC) to quarantine"),
        (["quarantine", "vm1"], 3, "give --reason TEXT"),
        (["quarantine", "vm1", "--reason", " "], 3, "give --reason TEXT"),
        (["quarantine", "vm1", "--reason", "r"], 3, "give --inventory INV or --libvirt URI"),
        (["quarantine", "vm1", "--list"], 3, "--list takes no VM or MAC"),
        (["quarantine", "vm9", "--reason", "r", "--inventory", INVENTORY], 3, "no VM named vm9 in the inventory"),
        (["quarantine", "vm1", "--reason", "r", "--inventory", "/no/such.json"], 2, "/no/such.json: no such file"),
        (["quarantine", "vm1", "--reason", "r", "--ttl", "0"], 3, "give a finite number of seconds above 0"),
        (["quarantine", "vm1", "--reason", "r", "--forensics-port", "tcp"], 3, "give PROTO/PORT"),
        (["quarantine", "vm1", "--reason", "r", "--method", "libvirt", "--inventory", INVENTORY], 3, "needs --libvirt"),
        (
            ["quarantine", "vm1", "--reason", "r", "--inventory", INVENTORY, "--netns", "vsq-absent-ns"],
            3,
            "network namespace 'vsq-absent-ns' does not exist",
        ),
        (["release", "vm1", "--netns", "../x"], 3, "is not a network namespace name"),
        (["release", "vm1", "--method", "libvirt"], 3, "needs --libvirt"),
        (["release"], 3, "the following arguments are required"),
    ],
)
def test_verb_usage_errors_are_one_line(args, code, words):
    p = vmsentry(*args)
    assert p.returncode == code, (p.stdout, p.stderr)
    assert words in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""
