"""The watcher's libvirt side against a REAL libvirtd (fixture: conftest.py's live_lab, the QEMU/TCG guest):
quarantine by moving the NIC live to ``vmsentry-quarantine`` and release, checked from the host (which bridge
the guest's tap is a port of, read in /sys and with ``ip``), the interface XML from ``virsh dumpxml``; the
follower seeing a redefinition and the drift it makes without a restart; libvirtd restarted under it.

The libvirtd restart test runs last in this file and starts libvirtd again whatever happens (the session
fixture's guest and network outlive the daemon: QEMU and dnsmasq keep running).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from lxml import etree

from vmsentry.act.quarantine import QuarantineError, Target
from vmsentry.act.quarantine.libvirt import NETWORK, LibvirtQuarantine
from vmsentry.analyse.drift import drift_alert, inventory_changes
from vmsentry.collect.libvirt_events import LibvirtFollower

from virsh_cli import URI, interface_xml, virsh

pytestmark = pytest.mark.libvirt

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REPO = HERE.parents[1]
# the lab fixture's timing table (printed at the end of the run); found by file, since tests/conftest.py
# is a module called "conftest" too
TIMINGS = next(
    m.TIMINGS for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(HERE / "conftest.py")
)

PERSISTENT = "vmsentry-it-persist"
PERSISTENT_MAC = "52:54:00:76:6d:21"
DRIFT = "vmsentry-it-drift"
DRIFT_MAC = "52:54:00:76:6d:31"
DRIFT_NET = "vmsentry-it-driftnet"


# --------------------------------------------------------------------------------------------- helpers
def master(tap: str) -> str | None:
    """The bridge ``tap`` is a port of, from /sys (None: no master)."""
    link = Path("/sys/class/net") / tap / "master"
    return Path(link.resolve()).name if link.exists() else None


def ports_of(bridge: str) -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True, check=True)
    return {entry["ifname"] for entry in json.loads(out.stdout or "[]")}


def bridge_of_network(name: str) -> str:
    return etree.fromstring(virsh("net-dumpxml", name).stdout.encode()).xpath("string(bridge/@name)")


def tap_of(domain: str, mac: str) -> str:
    for line in virsh("domiflist", domain).stdout.splitlines()[2:]:
        cols = line.split()
        if len(cols) == 5 and cols[4] == mac:
            return cols[0]
    raise AssertionError(f"{domain} has no NIC {mac}")


def guest_xml(name: str, mac: str, *, network: str = "default", filterref: bool = False) -> str:
    """The session guest's definition under another name, UUID and MAC (persistent test domains)."""
    root = etree.parse(str(FIXTURES / "guest.xml")).getroot()
    root.find("name").text = name
    etree.SubElement(root, "uuid").text = str(uuid.uuid5(uuid.NAMESPACE_DNS, name + ".vmsentry.test"))
    nic = root.find("devices/interface")
    nic.find("mac").set("address", mac)
    nic.find("source").set("network", network)
    if filterref:
        flt = etree.SubElement(nic, "filterref", filter="clean-traffic")
        etree.SubElement(flt, "parameter", name="IP", value="192.168.122.77")
    return etree.tostring(root, encoding="unicode")


def define(tmp_path: Path, xml: str, what: str = "define") -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.xml"
    path.write_text(xml)
    virsh(what, str(path))


def remove_domain(name: str) -> None:
    if virsh("dominfo", name, check=False).returncode != 0:
        return
    virsh("destroy", name, check=False)
    virsh("undefine", name, check=False)
    if virsh("dominfo", name, check=False).returncode == 0:
        pytest.fail(f"test domain {name} could not be removed", pytrace=False)


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"not within {timeout} s: {what}", pytrace=False)


@pytest.fixture(scope="module")
def quarantine_network(live_lab):
    """Removes ``vmsentry-quarantine`` afterwards when this module made it (LibvirtQuarantine defines it)."""
    existed = virsh("net-info", NETWORK, check=False).returncode == 0
    yield NETWORK
    if not existed and virsh("net-info", NETWORK, check=False).returncode == 0:
        virsh("net-destroy", NETWORK, check=False)
        virsh("net-undefine", NETWORK, check=False)


class Follow:
    """A LibvirtFollower whose calls land in queues the test reads."""

    def __init__(self) -> None:
        self.changes: queue.Queue = queue.Queue()
        self.problems: queue.Queue = queue.Queue()
        self.follower = LibvirtFollower(
            URI,
            lambda inv, changes: self.changes.put((inv, changes)),
            self.problems.put,
            diff=inventory_changes,
            backoff=(0.2, 1.0),
        )
        self.first = self.follower.start()

    def next_change(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            try:
                inv, changes = self.changes.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            seen.append([c.to_dict() for c in changes])
            if predicate(inv, changes):
                return inv, changes
        pytest.fail(f"follower: no change {what} within {timeout} s; it reported {seen}", pytrace=False)

    def next_problem(self, timeout: float) -> str:
        try:
            return self.problems.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"follower: no problem line within {timeout} s", pytrace=False)


# ------------------------------------------------------------------------------------------ quarantine
def test_quarantine_moves_the_tap_live_and_release_restores_exactly(live_lab, quarantine_network):
    guest, mac, tap = live_lab.guest, live_lab.guest_mac, live_lab.tap
    home = live_lab.network_xml.xpath("string(bridge/@name)")
    assert master(tap) == home, f"{tap} should start on {home}"
    before = interface_xml(guest, mac)

    q = LibvirtQuarantine(URI)
    q.held()  # connect first: the time measured is the decision's, not the connection's
    started = time.perf_counter()
    held = q.hold(Target(vm=guest, mac=mac), "integration test", None, "it-alert-1")
    call = time.perf_counter() - started
    qbridge = bridge_of_network(NETWORK)
    in_force = master(tap) == qbridge  # read at once: in force when the call returns
    TIMINGS["libvirt quarantine call (first, defines the network)"] = call
    assert in_force, f"{tap} is on {master(tap)} right after hold returned, not {qbridge}"
    assert call <= 2.0
    assert tap in ports_of(qbridge) and tap not in ports_of(home)
    assert (held.target.vm, held.target.mac, held.target.network, held.target.port) == (guest, mac, "default", tap)
    quarantined = etree.fromstring(interface_xml(guest, mac).encode())
    assert quarantined.xpath("string(source/@network)") == NETWORK
    net = etree.fromstring(virsh("net-dumpxml", NETWORK).stdout.encode())
    assert net.find("forward") is None and net.find("ip") is None
    assert net.xpath("string(bridge/@stp)") == "off" and net.xpath("string(port/@isolated)") == "yes"

    # a second hold changes nothing and returns the first; a new object (a restarted watcher) sees it
    again = q.hold(Target(vm=guest, mac=mac), "again", 60, None)
    assert again.since == pytest.approx(held.since, abs=0.01) and again.reason == "integration test"
    (seen,) = LibvirtQuarantine(URI).held()
    assert (seen.target, seen.reason, seen.alert_id, seen.method) == (held.target, held.reason, "it-alert-1", "libvirt")

    started = time.perf_counter()
    released = q.release(mac.upper().replace(":", "-"))
    TIMINGS["libvirt release call"] = time.perf_counter() - started
    assert released.target == held.target
    assert master(tap) == home and tap in ports_of(home) and tap not in ports_of(qbridge)
    assert interface_xml(guest, mac) == before
    assert LibvirtQuarantine(URI).held() == []
    with pytest.raises(QuarantineError, match="nothing held"):
        q.release(guest)

    # timing once the network exists: decision -> NIC on the quarantine bridge
    calls = []
    for _ in range(3):
        started = time.perf_counter()
        q.hold(Target(vm=guest, mac=mac), "timing", None, None)
        calls.append(time.perf_counter() - started)
        assert master(tap) == qbridge
        q.release(guest)
        assert master(tap) == home
    TIMINGS["libvirt quarantine call (network defined), max of 3"] = max(calls)
    assert max(calls) <= 2.0
    assert interface_xml(guest, mac) == before
    q.close()


def test_persistent_domain_stays_quarantined_when_it_restarts(live_lab, quarantine_network, tmp_path):
    remove_domain(PERSISTENT)
    define(tmp_path, guest_xml(PERSISTENT, PERSISTENT_MAC, filterref=True))
    try:
        stored_before = interface_xml(PERSISTENT, PERSISTENT_MAC, "--inactive")
        q = LibvirtQuarantine(URI)
        held = q.hold(Target(vm=PERSISTENT, mac=PERSISTENT_MAC), "shut off when held", None, None)
        assert held.target.network == "default"
        stored = etree.fromstring(interface_xml(PERSISTENT, PERSISTENT_MAC, "--inactive").encode())
        assert stored.xpath("string(source/@network)") == NETWORK
        # the filter and its parameter stay: the NIC is the same, only where it is plugged changed
        assert stored.xpath("string(filterref/@filter)") == "clean-traffic"

        qbridge = bridge_of_network(NETWORK)
        for _ in range(2):  # started, then stopped and started again (what a reboot from the definition does)
            virsh("start", PERSISTENT)
            tap = tap_of(PERSISTENT, PERSISTENT_MAC)
            assert master(tap) == qbridge
            virsh("destroy", PERSISTENT)
        virsh("start", PERSISTENT)
        tap = tap_of(PERSISTENT, PERSISTENT_MAC)
        assert [h.target.vm for h in LibvirtQuarantine(URI).held()] == [PERSISTENT]

        q.release(PERSISTENT)
        assert master(tap) == bridge_of_network("default")
        assert interface_xml(PERSISTENT, PERSISTENT_MAC, "--inactive") == stored_before
        live = etree.fromstring(interface_xml(PERSISTENT, PERSISTENT_MAC).encode())
        assert live.xpath("string(source/@network)") == "default"
        assert live.xpath("string(filterref/parameter[@name='IP']/@value)") == "192.168.122.77"
        assert "vmsentry.dev" not in virsh("dumpxml", PERSISTENT, "--inactive").stdout
        q.close()
    finally:
        remove_domain(PERSISTENT)


# --------------------------------------------------------------------------------------------- follower
def test_follower_sees_redefinition_and_the_drift_it_makes(live_lab, quarantine_network, tmp_path):
    remove_domain(DRIFT)
    if virsh("net-info", DRIFT_NET, check=False).returncode == 0:
        virsh("net-destroy", DRIFT_NET, check=False)
        virsh("net-undefine", DRIFT_NET, check=False)
    follow = Follow()
    try:
        assert live_lab.guest in [vm.name for vm in follow.first.vms]
        (tmp_path / "net.xml").write_text(f"<network><name>{DRIFT_NET}</name><bridge stp='off'/></network>")
        virsh("net-define", str(tmp_path / "net.xml"))
        follow.next_change(
            lambda inv, ch: any(c.what == "network_added" and c.asset == DRIFT_NET for c in ch), 10, "network_added"
        )

        started = time.monotonic()
        define(tmp_path, guest_xml(DRIFT, DRIFT_MAC, filterref=True))
        inv, changes = follow.next_change(
            lambda inv, ch: any(c.what == "vm_added" and c.asset == DRIFT for c in ch), 10, "vm_added"
        )
        TIMINGS["follower: virsh define -> on_change"] = time.monotonic() - started
        (vm,) = [v for v in inv.vms if v.name == DRIFT]
        assert (vm.nics[0].network, vm.nics[0].mode, vm.nics[0].filter) == ("default", "nat", "clean-traffic")

        # redefined: the NIC moved to another network and lost its filter
        define(tmp_path, guest_xml(DRIFT, DRIFT_MAC, network=DRIFT_NET))
        inv, changes = follow.next_change(
            lambda inv, ch: any(c.asset == DRIFT and c.what == "nic_network" for c in ch), 10, "nic_network"
        )
        mine = {c.what: c for c in changes if c.asset == DRIFT}
        assert set(mine) == {"nic_network", "nic_mode", "nic_filter"}
        assert (mine["nic_network"].before, mine["nic_network"].after) == ("default", DRIFT_NET)
        assert (mine["nic_mode"].before, mine["nic_mode"].after) == ("nat", "isolated")
        assert (mine["nic_filter"].before, mine["nic_filter"].after) == ("clean-traffic IP=192.168.122.77", None)
        assert mine["nic_network"].item == f"net0 {DRIFT_MAC}"
        assert mine["nic_network"].where.startswith(f"{URI}#domain={DRIFT}: line ")
        alert = drift_alert(mine["nic_filter"], time.time()).to_dict()
        assert alert["type"] == "config_drift" and alert["severity"] == "high"
        assert "clean-traffic IP=192.168.122.77" in alert["summary"] and alert["attacker"]["vm"] == DRIFT

        # the running guest quarantined: a live move libvirt sends no event for, seen through the metadata
        q = LibvirtQuarantine(URI)
        q.hold(Target(vm=live_lab.guest, mac=live_lab.guest_mac), "follower test", None, None)
        try:
            _, changes = follow.next_change(
                lambda inv, ch: any(c.asset == live_lab.guest and c.what == "nic_network" for c in ch), 10, "the move"
            )
            move = next(c for c in changes if c.asset == live_lab.guest and c.what == "nic_network")
            assert (move.before, move.after) == ("default", NETWORK)
        finally:
            q.release(live_lab.guest)
            q.close()
        follow.next_change(
            lambda inv, ch: any(c.asset == live_lab.guest and c.after == "default" for c in ch), 10, "the release"
        )

        virsh("undefine", DRIFT)
        follow.next_change(lambda inv, ch: any(c.what == "vm_removed" and c.asset == DRIFT for c in ch), 10, "removed")
    finally:
        started = time.monotonic()
        follow.follower.stop()
        assert time.monotonic() - started < 1.0
        remove_domain(DRIFT)
        virsh("net-undefine", DRIFT_NET, check=False)


def test_follower_rides_out_a_libvirtd_restart(live_lab, tmp_path):
    """Runs last: libvirtd is stopped and started again under a follower; it says so once each way, reads
    everything again and goes on following."""
    remove_domain(DRIFT)
    follow = Follow()
    stopped = False
    try:
        r = subprocess.run(["bash", str(REPO / "scripts" / "stop-libvirtd.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        stopped = True
        lost = follow.next_problem(15)
        assert lost.startswith(f"libvirt {URI}: connection lost") and "reconnecting" in lost
        time.sleep(1.5)  # a few reconnection attempts while it is away: still one line
        assert follow.problems.empty(), follow.problems.get()
        r = subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        stopped = False
        back = follow.next_problem(15)
        assert back.startswith(f"libvirt {URI}: connected again after ")
        assert follow.problems.empty()

        define(tmp_path, guest_xml(DRIFT, DRIFT_MAC))
        inv, _ = follow.next_change(
            lambda inv, ch: any(c.what == "vm_added" and c.asset == DRIFT for c in ch), 15, "vm_added after restart"
        )
        assert live_lab.guest in [vm.name for vm in inv.vms]
    finally:
        if stopped:
            subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], capture_output=True, text=True)
        follow.follower.stop()
        remove_domain(DRIFT)
