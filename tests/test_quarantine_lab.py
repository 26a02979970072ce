"""The nft quarantine on a real bridge (tests/traffic_lab: namespaces vm1, vm2, host on br-test): a held VM
reaches nobody and nobody reaches it, both ways, except the host's forensics port; release gives everything
back and leaves the ruleset exactly as it was; the holds are read back by a fresh object (a restart); a
refusal by nft is one line with nothing applied; holding twice is one element. Both ways of talking to nft
(libnftables and the nft command) are exercised, and the verbs `vmsentry quarantine` / `release` too."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmsentry.act.quarantine import QuarantineError, Target
from vmsentry.act.quarantine.nft import TABLE, NftQuarantine

from traffic_helpers import FIXTURES
from traffic_lab.lab import Lab

pytestmark = pytest.mark.lab
REPO = Path(__file__).resolve().parent.parent
INVENTORY = str(FIXTURES / "lab-inventory.json")
VM1 = Target("vm1", "52:54:00:99:00:11", "p-vm1", "br-test", "lab", "10.99.0.11")
VM2 = Target("vm2", "52:54:00:99:00:12", "p-vm2", "br-test", "lab", "10.99.0.12")
# frames from vm1's eth0 every 5 ms until killed: an EtherType 0x88b5 broadcast (the bridge learns its
# source MAC, as from any frame) or an ARP reply, both with a source MAC and sender of our choosing
FORGER = """
import socket, sys, time
kind, src, sender_ip, dst = sys.argv[1:]
mac = bytes.fromhex(src.replace(":", ""))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
if kind == "arp":
    target = bytes.fromhex(dst.replace(":", ""))
    arp = bytes.fromhex("0001080006040002") + mac + socket.inet_aton(sender_ip) + target + socket.inet_aton("10.99.0.1")
    frame = target + mac + b"\\x08\\x06" + arp + bytes(18)
else:
    frame = b"\\xff" * 6 + mac + b"\\x88\\xb5" + bytes(46)
while True:
    s.send(frame)
    time.sleep(0.005)
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if Lab.missing_tools():
        pytest.fail(f"missing tools for the lab: {', '.join(Lab.missing_tools())} (scripts/setup.sh installs them)")
    with Lab(prefix=f"vsq{os.getpid() % 100000}") as lab:
        # the forensics port on the host, and another service there that a held VM must not reach
        for port in (22, 8080):
            lab.spawn("host", ["python3", "-m", "http.server", str(port), "--bind", "10.99.0.1", "--directory", "/"])
        _wait(lambda: _http(lab, "vm2", 22) and _http(lab, "vm2", 8080), "host services")
        yield lab


def _wait(ok, what, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if ok():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what} did not come up")


def _ping(lab, node, ip) -> bool:
    return lab.sh(node, f"ping -c 1 -W 1 {ip}", check=False).returncode == 0


def _http(lab, node, port, ip="10.99.0.1") -> bool:
    return lab.sh(node, f"curl -s -o /dev/null --max-time 2 http://{ip}:{port}/", check=False).returncode == 0


def _ruleset(ns: str | None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + ["nft", "list", "ruleset"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _quarantine(lab, tmp_path, **kw) -> NftQuarantine:
    return NftQuarantine(lab.bridge_ns, host_ips=["10.99.0.1"], host_ports=["p-host"], lock_dir=str(tmp_path), **kw)


def _connectivity(lab) -> dict:
    return {
        "vm1->vm2": _ping(lab, "vm1", "10.99.0.12"),
        "vm2->vm1": _ping(lab, "vm2", "10.99.0.11"),
        "host->vm1": _ping(lab, "host", "10.99.0.11"),
        "vm1->host:22": _http(lab, "vm1", 22),
        "vm1->host:8080": _http(lab, "vm1", 8080),
        "vm2->host:8080": _http(lab, "vm2", 8080),
    }


@pytest.mark.parametrize("library", [True, False], ids=["libnftables", "nft-command"])
def test_hold_isolates_both_ways_keeps_forensics_release_restores(lab, tmp_path, library):
    everything = dict.fromkeys(_connectivity(lab), True)
    assert _connectivity(lab) == everything
    before = _ruleset(lab.bridge_ns)
    q = _quarantine(lab, tmp_path, prefer_library=library)
    assert q.nft.backend == ("libnftables" if library else "nft")

    held = q.hold(VM1, "arp_spoof alert (lab)", ttl=600, alert_id="0123456789abcdef")
    assert held.target == VM1 and held.until and held.until - held.since == pytest.approx(600)
    assert _connectivity(lab) == {
        "vm1->vm2": False,
        "vm2->vm1": False,
        "host->vm1": False,  # ICMP is not the forensics port
        "vm1->host:22": True,  # the forensics port, and its replies
        "vm1->host:8080": False,
        "vm2->host:8080": True,  # the others are untouched
    }
    # only the namespace's ruleset changed (the host's own is not compared whole: libvirtd, started by other
    # tests on this machine, changes it at any time)
    assert f"table bridge {TABLE}" in _ruleset(lab.bridge_ns) and f"table bridge {TABLE}" not in _ruleset(None)

    # a restart: a fresh object (fresh nft context) reads the hold back from the kernel
    again = _quarantine(lab, tmp_path, prefer_library=not library)
    assert again.held() == [held]
    assert f"table bridge {TABLE}" in again.ruleset()

    released = q.release("vm1")
    assert released == held
    assert _ruleset(lab.bridge_ns) == before  # exactly what was there: our table is gone with the last hold
    assert q.held() == [] and q.ruleset() == ""
    assert _connectivity(lab) == everything
    with pytest.raises(QuarantineError, match="vm1 is not held"):
        q.release("vm1")


def test_hold_twice_is_one_element_and_release_of_one_keeps_the_other(lab, tmp_path):
    q = _quarantine(lab, tmp_path)
    before = _ruleset(lab.bridge_ns)
    first = q.hold(VM1, "first", None, None)
    assert q.hold(VM1, "second", 30, "x") == first  # idempotent: the first hold stays
    q.hold(VM2, "other", None, None)
    listing = subprocess.run(
        ["ip", "netns", "exec", lab.bridge_ns, "nft", "-j", "list", "set", "bridge", TABLE, "macs"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    elems = [e["elem"]["val"] for o in json.loads(listing)["nftables"] if "set" in o for e in o["set"]["elem"]]
    assert sorted(elems) == [VM1.mac, VM2.mac]
    assert [h.target.vm for h in q.held()] == ["vm1", "vm2"]
    with_both = _ruleset(lab.bridge_ns)
    q.release("52-54-00-99-00-12")  # by MAC, any spelling
    assert [h.target.vm for h in q.held()] == ["vm1"]
    assert not _ping(lab, "vm1", "10.99.0.12") and _ping(lab, "vm2", "10.99.0.13")
    q.hold(VM2, "other", None, None)
    # holding vm2 again gives the same ruleset but its comment (a new time): compare the structure
    assert _ruleset(lab.bridge_ns).count("comment") == with_both.count("comment")
    q.release("vm2")
    q.release("vm1")
    assert _ruleset(lab.bridge_ns) == before


@pytest.mark.parametrize("library", [True, False], ids=["libnftables", "nft-command"])
def test_nft_refusing_is_one_line_and_nothing_is_applied(lab, tmp_path, library):
    before = _ruleset(lab.bridge_ns)
    # overlapping host prefixes: nft refuses the first hold's transaction (table, chains, elements): none of it stays
    q = NftQuarantine(
        lab.bridge_ns, host_ips=["10.0.0.0/8", "10.99.0.0/16"], lock_dir=str(tmp_path), prefer_library=library
    )
    with pytest.raises(QuarantineError) as err:
        q.hold(VM1, "x", None, None)
    msg = str(err.value)
    assert msg.startswith("nft refused to hold vm1, nothing was changed: ") and "\n" not in msg, msg
    assert _ruleset(lab.bridge_ns) == before
    assert _connectivity(lab)["vm1->vm2"]

    # someone else's table under our name, with a set of another type: the element is refused, the table kept
    subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            lab.bridge_ns,
            "nft",
            "add table bridge",
            TABLE,
            "; add set bridge",
            TABLE,
            "macs { type ipv4_addr; }",
        ],
        check=True,
    )
    foreign = _ruleset(lab.bridge_ns)
    with pytest.raises(QuarantineError, match="nft refused to hold vm1, nothing was changed"):
        _quarantine(lab, tmp_path, prefer_library=library).hold(VM1, "x", None, None)
    assert _ruleset(lab.bridge_ns) == foreign
    subprocess.run(["ip", "netns", "exec", lab.bridge_ns, "nft", "delete table bridge", TABLE], check=True)


def _vmsentry(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "vmsentry", *args], capture_output=True, text=True, env=env)


def test_verbs_quarantine_list_release(lab, tmp_path):
    before = _ruleset(lab.bridge_ns)
    ns = ["--netns", lab.bridge_ns]
    p = _vmsentry(
        "quarantine", "vm1", "--reason", "by hand", "--inventory", INVENTORY, *ns,
        "--host-address", "10.99.0.1", "--host-port", "p-host", "--ttl", "60", "--audit", str(tmp_path / "audit"),
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "quarantined vm1 (52:54:00:99:00:11 on port p-vm1) by nft" in p.stdout
    assert f"release with: vmsentry release vm1 --method nft --netns {lab.bridge_ns}" in p.stdout
    assert not _ping(lab, "vm2", "10.99.0.11") and _http(lab, "vm1", 22)

    p = _vmsentry("quarantine", "vm1", "--reason", "again", "--inventory", INVENTORY, *ns)
    assert p.returncode == 0 and "already quarantined: vm1" in p.stdout and "by hand" in p.stdout

    p = _vmsentry("quarantine", "--list", "--format", "json", *ns)
    held = json.loads(p.stdout)["held"]
    assert [(h["target"]["vm"], h["target"]["port"], h["reason"]) for h in held] == [("vm1", "p-vm1", "by hand")]

    p = _vmsentry("quarantine", "vm1", "--reason", "x", "--inventory", INVENTORY, "--netns", "vsq-no-such-ns")
    assert p.returncode == 3 and len(p.stderr.strip().splitlines()) == 1 and "does not exist" in p.stderr

    p = _vmsentry("release", "vm1", *ns, "--audit", str(tmp_path / "audit"))
    assert p.returncode == 0 and p.stdout.startswith("released vm1 ("), p.stderr
    assert _ruleset(lab.bridge_ns) == before
    # the signed audit log holds the hold and the release, and verifies
    assert _vmsentry("audit", "verify", str(tmp_path / "audit")).returncode == 0
    entries = json.loads(_vmsentry("audit", "show", str(tmp_path / "audit"), "--format", "json").stdout)["entries"]
    assert [(e["kind"], e["record"]["target"]["vm"], e["record"]["by"]) for e in entries] == [
        ("quarantine", "vm1", "hand"),
        ("release", "vm1", "hand"),
    ]
    # (vm2's neighbour entry for vm1 may still be mid-resolution from the ping refused during the hold)
    _wait(lambda: _ping(lab, "vm2", "10.99.0.11"), "vm2 reaching vm1 after the release", 5)
    p = _vmsentry("release", "vm1", *ns)
    assert p.returncode == 1 and "vm1 is not quarantined" in p.stderr

    # a MAC alone (no inventory): its port found in the bridge's FDB (read inside the namespace); released by MAC
    assert _ping(lab, "vm2", "10.99.0.1")  # the bridge has learned vm2's MAC on p-vm2
    p = _vmsentry("quarantine", "52:54:00:99:00:12", "--reason", "mac only", *ns, "--host-address", "10.99.0.1")
    assert p.returncode == 0 and "quarantined 52:54:00:99:00:12 (52:54:00:99:00:12 on port p-vm2)" in p.stdout
    assert "warning" not in p.stdout and not _ping(lab, "vm1", "10.99.0.12")
    assert _vmsentry("release", "52:54:00:99:00:12", *ns).returncode == 0
    assert _ruleset(lab.bridge_ns) == before

    # a MAC no bridge has learned: held by MAC only, and the output says what that leaves open
    p = _vmsentry("quarantine", "52:54:00:99:00:77", "--reason", "unknown", *ns, "--host-address", "10.99.0.1")
    assert p.returncode == 0, p.stderr
    assert (
        "warning: no bridge port known for 52:54:00:99:00:77: frames it sends from other MACs are not stopped"
        in p.stdout
    )
    assert _vmsentry("release", "52:54:00:99:00:77", *ns).returncode == 0
    assert _ruleset(lab.bridge_ns) == before


def test_call_times(lab, tmp_path):
    """The numbers in act/libnft.py's docstring: one hold and one release (a second VM already held, so the
    table exists), each way, median of 40."""
    report = {}
    for library in (True, False):
        q = _quarantine(lab, tmp_path, prefer_library=library)
        q.hold(VM2, "keeps the table", None, None)
        holds, releases = [], []
        for _ in range(40):
            t0 = time.perf_counter()
            q.hold(VM1, "timing", None, None)
            t1 = time.perf_counter()
            q.release("vm1")
            releases.append(time.perf_counter() - t1)
            holds.append(t1 - t0)
        q.release("vm2")
        t0 = time.perf_counter()
        q.hold(VM1, "first", None, None)  # creates the table
        first = time.perf_counter() - t0
        q.release("vm1")
        report[q.nft.backend] = (statistics.median(holds) * 1e3, statistics.median(releases) * 1e3, first * 1e3)
    print("\nquarantine call times, ms (hold, release, first hold):", report)
    assert report["libnftables"][0] < report["nft"][0]


def _forge(lab, *args):
    return lab.spawn("vm1", ["python3", "-c", FORGER, *args])


def _fdb_ports(lab, mac) -> set[str]:
    """The bridge ports br-test has learned ``mac`` on (`bridge fdb show`)."""
    out = lab.sh(lab.bridge_ns, "bridge fdb show br br-test").stdout.splitlines()
    return {line.split()[2] for line in out if line.startswith(mac + " ") and "permanent" not in line}


def _neighbour(lab, node, ip) -> str | None:
    out = lab.sh(node, f"ip neigh show {ip} dev eth0", check=False).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def test_a_held_vm_forging_another_vms_mac_draws_nothing(lab, tmp_path):
    """vm1 held, then sending continuously from vm2's MAC: the bridge never learns vm2's MAC on vm1's port
    (dropped in prerouting, before learning), so vm2 reaches the host and vm3 during the attack."""
    # the control: not held, the forged frames move vm2's MAC to vm1's port, and vm2's traffic goes there
    forger = _forge(lab, "raw", VM2.mac, "0.0.0.0", "")
    try:
        _wait(lambda: _fdb_ports(lab, VM2.mac) == {"p-vm1"}, "the forged MAC learned on p-vm1", 5)
    finally:
        lab.stop(forger, 9)
    _wait(lambda: _ping(lab, "vm2", "10.99.0.1"), "vm2 back")  # vm2 speaks: its MAC is learned on its port

    q = _quarantine(lab, tmp_path)
    q.hold(VM1, "forging", None, None)
    forger = _forge(lab, "raw", VM2.mac, "0.0.0.0", "")
    try:
        time.sleep(1)
        seen = set()
        for _ in range(5):  # during the attack
            seen |= _fdb_ports(lab, VM2.mac)
            assert _ping(lab, "vm2", "10.99.0.1") and _ping(lab, "vm2", "10.99.0.13")
            assert _http(lab, "vm2", 8080)
            seen |= _fdb_ports(lab, VM2.mac)
        assert forger.poll() is None  # it kept sending all along
    finally:
        lab.stop(forger, 9)
        q.release("vm1")
    assert seen == {"p-vm2"}, seen


def test_a_held_vm_cannot_poison_the_hosts_arp_cache(lab, tmp_path):
    """A held VM's ARP reaches the host only with its own MAC and inventory address as sender: replies
    claiming vm2's address are dropped, while its own ARP (for the forensics port) still works."""
    true = VM2.mac
    host_mac = "52:54:00:99:00:01"

    def poisoned() -> bool:
        return _neighbour(lab, "host", "10.99.0.12") == VM1.mac

    # the control: not held, the forged replies change the host's entry for vm2's address
    assert _ping(lab, "host", "10.99.0.12") and _neighbour(lab, "host", "10.99.0.12") == true
    forger = _forge(lab, "arp", VM1.mac, "10.99.0.12", host_mac)
    try:
        _wait(poisoned, "the host's cache poisoned (control)", 5)
    finally:
        lab.stop(forger, 9)
    lab.sh("host", "ip neigh flush dev eth0")
    assert _ping(lab, "host", "10.99.0.12") and _neighbour(lab, "host", "10.99.0.12") == true

    q = _quarantine(lab, tmp_path)
    q.hold(VM1, "arp", None, None)
    forger = _forge(lab, "arp", VM1.mac, "10.99.0.12", host_mac)
    try:
        time.sleep(2.5)  # past the neighbour table's locktime (1 s): the control was poisoned by now
        assert not poisoned()
        assert _ping(lab, "host", "10.99.0.12")
        assert _neighbour(lab, "host", "10.99.0.12") == true
    finally:
        lab.stop(forger, 9)
    lab.sh("vm1", "ip neigh flush dev eth0")
    lab.sh("host", "ip neigh del 10.99.0.11 dev eth0", check=False)
    assert _http(lab, "vm1", 22)  # its own ARP still resolves the host: the forensics port works
    assert _neighbour(lab, "host", "10.99.0.11") == VM1.mac
    q.release("vm1")
