"""``vmsentry watch --libvirt qemu:///system --respond auto --quarantine libvirt`` end to end against a REAL
libvirtd (conftest.py's live_lab: the ``default`` network on virbr0) and a QEMU/TCG guest that attacks
(scripts/build-test-guest.sh with ``vms.attack=garp``: forged gratuitous ARPs claiming the host's address,
started by a TCP connection to the guest's port 7777).

One watcher runs for the whole module, with no ``-i``: it must find virbr0 itself. In file order:
1. it starts and says what it watches; 2. the running guest's stored definition loses its NIC filter
(``virsh define``): a ``config_drift`` alert and an audit entry, no restart; 3. the guest attacks: an
``arp_spoof`` alert naming it, its tap moved to the ``vmsentry-quarantine`` bridge (read in /sys), the time
from the first forged frame (seen on the tap) to the move, the attacker's later frames never on virbr0;
``vmsentry release`` puts the NIC back exactly and the watcher notices; 4. libvirtd restarted: one line each
way, the capture goes on (Prometheus packet counter), events followed again; 5. SIGTERM: the incident
bundle holds the domain XML (without its VNC password) and verifies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from lxml import etree

from virsh_cli import URI, interface_xml, virsh

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TIMINGS = next(
    m.TIMINGS for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(HERE / "conftest.py")
)
VM = "vmsentry-it-attacker"
MAC = "52:54:00:76:6d:41"
TRIGGER = 7777
VNC_SECRET = "s3cretVn"  # must not reach the bundle
QNET = "vmsentry-quarantine"


# --------------------------------------------------------------------------------------------- helpers
def master(dev: str) -> str | None:
    link = Path("/sys/class/net") / dev / "master"
    return Path(link.resolve()).name if link.exists() else None


def wait_until(predicate, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"not within {timeout} s: {what}", pytrace=False)


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Frames:
    """ARP frames from ``mac`` seen on ``dev`` (AF_PACKET): the times they were read."""

    def __init__(self, dev: str, mac: str) -> None:
        self.mac = bytes.fromhex(mac.replace(":", ""))
        self.times: list[float] = []
        # ETH_P_ALL: a bridge port's frames reach only the all-protocol taps (the bridge takes them after that)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind((dev, 0))
        self.sock.settimeout(0.1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                buf = self.sock.recv(2048)
            except (TimeoutError, OSError):
                continue
            if buf[6:12] == self.mac and buf[12:14] == b"\x08\x06":
                self.times.append(time.time())

    def after(self, t: float) -> int:
        return sum(1 for x in self.times if x > t)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in the metrics"
    return float(m.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------- fixtures
class Lab:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.console = tmp / "console.log"
        self.evidence = tmp / "evidence"
        self.audit_dir = tmp / "audit"
        self.alerts = tmp / "alerts.jsonl"
        self.stderr = tmp / "watch.err"
        self.metrics_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.tap = self.ip = None
        self.state: dict = {}

    @property
    def audit(self) -> list[dict]:
        """The watcher's entries in its signed audit log (each record keeps the watcher's own kind)."""
        path = self.audit_dir / "audit.db"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT entry FROM entries ORDER BY seq").fetchall()
        except sqlite3.Error:  # (the first transaction may not have committed yet)
            return []
        finally:
            db.close()
        return [json.loads(bytes(entry))["record"] for (entry,) in rows if entry is not None]

    def said(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""


@pytest.fixture(scope="module")
def lab(live_lab):
    # its own folder, not pytest's tmp_path: the evidence must outlive other pytest sessions on the machine,
    # which prune older /tmp/pytest-of-USER/pytest-N folders while this one runs
    tmp = Path(tempfile.mkdtemp(prefix="vmsentry-watch-libvirt-"))
    kit = subprocess.run(["bash", str(REPO / "scripts" / "build-test-guest.sh")], capture_output=True, text=True)
    assert kit.returncode == 0, kit.stderr
    kit_dir = Path(kit.stdout.strip().splitlines()[-1])
    qnet_existed = virsh("net-info", QNET, check=False).returncode == 0
    lab = Lab(tmp)
    dom = f"""<domain type='qemu'>
  <name>{VM}</name><uuid>{uuid.uuid5(uuid.NAMESPACE_DNS, VM + ".vmsentry.test")}</uuid>
  <memory unit='MiB'>192</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kit_dir}/vmlinuz</kernel><initrd>{kit_dir}/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=3 vms.attack=garp vms.trigger={TRIGGER} vms.attack_for=6</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <interface type='network'><source network='default'/><mac address='{MAC}'/><model type='virtio'/>
      <filterref filter='allow-arp'/></interface>
    <serial type='file'><source path='{lab.console}'/><target port='0'/></serial>
    <console type='file'><source path='{lab.console}'/><target type='serial' port='0'/></console>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1' passwd='{VNC_SECRET}'/>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>"""
    (tmp / "dom.xml").write_text(dom)
    virsh("destroy", VM, check=False)
    virsh("undefine", VM, check=False)
    virsh("define", str(tmp / "dom.xml"))
    try:
        virsh("start", VM)
        wait_until(
            lambda: "GUEST: attack waits" in (lab.console.read_text() if lab.console.exists() else ""),
            60,
            "the guest booted and got its DHCP lease",
            0.2,
        )
        lab.tap = next(line.split()[0] for line in virsh("domiflist", VM).stdout.splitlines()[2:] if MAC in line)
        lab.ip = wait_until(
            lambda: re.search(rf"{MAC}\s+ipv4\s+(\S+)/", virsh("net-dhcp-leases", "default").stdout), 20, "the lease"
        ).group(1)
        args = [sys.executable, "-m", "vmsentry", "watch", "--libvirt", URI, "--respond", "auto", "--quarantine",
                "libvirt", "--evidence", str(lab.evidence), "--audit", str(lab.audit_dir), "--format", "jsonl",
                "-o", str(lab.alerts), "--metrics", f"127.0.0.1:{lab.metrics_port}"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        with open(lab.stderr, "wb") as err:
            lab.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=tmp)
        yield lab
    finally:
        if lab.proc is not None and lab.proc.poll() is None:
            lab.proc.kill()
            lab.proc.wait(timeout=10)
        virsh("destroy", VM, check=False)
        virsh("undefine", VM, check=False)
        if not qnet_existed and virsh("net-info", QNET, check=False).returncode == 0:
            virsh("net-destroy", QNET, check=False)
            virsh("net-undefine", QNET, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- tests
def test_1_watcher_finds_the_bridge_and_learns_the_guest(lab, live_lab):
    home = live_lab.network_xml.xpath("string(bridge/@name)")
    started = time.monotonic()
    line = wait_until(lambda: re.search(r"vmsentry: watching (.*) \(respond auto, quarantine libvirt\)", lab.said()),
                      30, "the watching line")  # fmt: skip
    TIMINGS["watch --libvirt: start -> watching"] = time.monotonic() - started
    assert home in line.group(1).split(", ")
    assert lab.proc.poll() is None
    # what it learned is in its metrics now and in the bundle's inventory (test 5)
    assert metric(lab.metrics_port, "vmsentry_quarantined") == 0


def test_2_redefined_nic_is_config_drift_without_restart(lab):
    stored = virsh("dumpxml", "--inactive", "--security-info", VM).stdout
    assert "filterref filter='allow-arp'" in stored
    (lab.tmp / "redefined.xml").write_text(stored.replace("<filterref filter='allow-arp'/>", ""))
    started = time.time()
    virsh("define", str(lab.tmp / "redefined.xml"))
    alert = wait_until(lambda: [a for a in lines(lab.alerts) if a["type"] == "config_drift"], 10, "config_drift")[0]
    TIMINGS["config_drift: virsh define -> alert"] = alert["first_seen"] - started
    change = alert["evidence"]["change"]
    assert (change["asset"], change["what"], change["before"], change["after"]) == (VM, "nic_filter", "allow-arp", None)
    assert change["where"].startswith(f"{URI}#inactive-domain={VM}: line ")
    assert alert["severity"] == "high" and alert["attacker"]["vm"] == VM and alert["attacker"]["mac"] == MAC
    # (the watcher commits its audit entries at its next tick, within 0.1 s)
    audit = wait_until(
        lambda: [e for e in lab.audit if e["kind"] == "change" and e.get("alert") == alert["id"]], 5, "audit entry"
    )
    assert audit[0]["change"]["what"] == "nic_filter"
    assert lab.proc.poll() is None


def test_3_attacker_quarantined_through_libvirt_and_released_exactly(lab, live_lab):
    home = live_lab.network_xml.xpath("string(bridge/@name)")
    assert master(lab.tap) == home
    live_before, stored_before = interface_xml(VM, MAC), interface_xml(VM, MAC, "--inactive")
    on_tap, on_home = Frames(lab.tap, MAC), Frames(home, MAC)
    moved: list[float] = []

    def watch_master() -> None:  # the moment the tap leaves virbr0, read from /sys every 2 ms
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and master(lab.tap) == home:
            time.sleep(0.002)
        moved.append(time.time())

    poller = threading.Thread(target=watch_master, daemon=True)
    poller.start()
    try:
        socket.create_connection((lab.ip, TRIGGER), timeout=5).close()  # the guest starts its attack
        alert = wait_until(lambda: [a for a in lines(lab.alerts) if a["type"] == "arp_spoof"], 15, "arp_spoof")[0]
        poller.join(timeout=20)
        qbridge = etree.fromstring(virsh("net-dumpxml", QNET).stdout.encode()).xpath("string(bridge/@name)")
        assert master(lab.tap) == qbridge, f"{lab.tap} is on {master(lab.tap)}, not the quarantine bridge {qbridge}"
        first_frame = on_tap.times[0]
        response = moved[0] - first_frame
        TIMINGS["libvirt quarantine: first forged frame on the tap -> tap on the quarantine bridge"] = response
        assert response <= 2.0
        assert alert["attacker"]["vm"] == VM and alert["attacker"]["mac"] == MAC
        assert alert["attacker"]["ip"] == lab.ip and "192.168.122.1" in alert["evidence"]["impersonated"]
        action = wait_until(lambda: [e for e in lab.audit if e["kind"] == "action" and e.get("ok")], 5, "action")[0]
        TIMINGS["libvirt quarantine: response the watcher recorded"] = action["response_seconds"]
        assert action["vm"] == VM and action["method"] == "libvirt" and action["response_seconds"] <= 2.0
        assert abs(action["first_seen"] - first_frame) < 0.5
        # the guest goes on attacking for a while: its frames still leave it, none reaches virbr0
        wait_until(lambda: "GUEST: attack garp done" in lab.console.read_text(), 20, "the attack's end", 0.2)
        later = on_tap.after(moved[0] + 0.05)
        assert later >= 5 and on_home.after(moved[0] + 0.05) == 0, (later, on_home.after(moved[0] + 0.05))
        # the watcher's own move is audited, not alerted as drift
        time.sleep(1.5)
        assert not [a for a in lines(lab.alerts) if a["type"] == "config_drift" and QNET in json.dumps(a)]
        assert [e for e in lab.audit if e["kind"] == "change" and e.get("by") == "vmsentry quarantine"]
        assert metric(lab.metrics_port, "vmsentry_quarantined") == 1
        lab.state["incident_vm"] = VM
    finally:
        on_tap.close()
        on_home.close()

    release = subprocess.run(
        [sys.executable, "-m", "vmsentry", "release", VM, "--method", "libvirt", "--libvirt", URI],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=60,
    )  # fmt: skip
    assert release.returncode == 0, release.stderr
    assert master(lab.tap) == home
    assert interface_xml(VM, MAC) == live_before and interface_xml(VM, MAC, "--inactive") == stored_before
    wait_until(lambda: [e for e in lab.audit if e["kind"] == "release" and e.get("vm") == VM], 5, "release noticed")
    assert metric(lab.metrics_port, "vmsentry_quarantined") == 0
    time.sleep(1.5)  # the move back is no drift alert either
    assert not [a for a in lines(lab.alerts) if a["type"] == "config_drift" and QNET in json.dumps(a)]


def test_4_libvirtd_restart_one_line_each_way_and_events_again(lab):
    packets = metric(lab.metrics_port, "vmsentry_packets_total")
    stopped = False
    try:
        r = subprocess.run(["bash", str(REPO / "scripts" / "stop-libvirtd.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        stopped = True
        wait_until(lambda: "connection lost" in lab.said(), 15, "the connection lost line")
        time.sleep(2.0)  # reconnection attempts and held() polls while it is away: still one line
        assert lab.said().count("vmsentry: libvirt") == 1, lab.said()
        r = subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        stopped = False
        wait_until(lambda: "connected again after" in lab.said(), 20, "the connected again line")
        said = [line for line in lab.said().splitlines() if line.startswith("vmsentry: libvirt")]
        assert said == [f"vmsentry: libvirt {URI}: connection lost (end of file); reconnecting", said[1]] and said[
            1
        ].startswith(f"vmsentry: libvirt {URI}: connected again after ")
        assert lab.proc.poll() is None
        # still capturing (the guest pings the host every 0.3 s) and following events
        wait_until(lambda: metric(lab.metrics_port, "vmsentry_packets_total") > packets + 5, 10, "packets counted")
        before = len([a for a in lines(lab.alerts) if a["type"] == "config_drift"])
        stored = virsh("dumpxml", "--inactive", "--security-info", VM).stdout
        (lab.tmp / "again.xml").write_text(
            stored.replace("<model type='virtio'/>", "<model type='virtio'/><filterref filter='allow-arp'/>", 1)
        )
        virsh("define", str(lab.tmp / "again.xml"))
        drift = wait_until(
            lambda: [a for a in lines(lab.alerts) if a["type"] == "config_drift"][before:], 10, "drift after restart"
        )
        assert drift[0]["evidence"]["change"]["after"] == "allow-arp"
    finally:
        if stopped:
            subprocess.run(["bash", str(REPO / "scripts" / "start-libvirtd.sh")], capture_output=True, text=True)


def test_5_sigterm_finishes_the_bundle_with_the_domain_xml(lab):
    assert lab.state.get("incident_vm") == VM, "needs test 3's incident"
    lab.proc.send_signal(signal.SIGTERM)
    assert lab.proc.wait(timeout=30) == 0
    # the attacker's incident: it may have opened on an earlier alert about the guest (its boot's IPv6 is
    # ipv6_unexpected on this IPv4-only network) and grown by the arp_spoof one
    bundles = [
        p
        for p in lab.evidence.iterdir()
        if not p.name.startswith(".") and "arp_spoof" in {a["type"] for a in lines(p / "alerts.jsonl")}
    ]
    assert len(bundles) == 1, f"{[p.name for p in lab.evidence.iterdir()]}; the watcher said:\n{lab.said()}"
    (bundle,) = bundles
    xml = (bundle / "config" / f"{VM}.xml").read_text()
    assert f"<name>{VM}</name>" in xml and MAC in xml
    assert VNC_SECRET not in xml and "passwd" not in xml
    inventory = json.loads((bundle / "inventory.json").read_text())
    (vm,) = [v for v in inventory["vms"] if v["name"] == VM]
    (nic,) = vm["nics"]
    assert (nic["mac"], nic["ip"], nic["target"], nic["network"]) == (MAC, lab.ip, lab.tap, "default")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["response_seconds"] <= 2.0
    # the capture holds the forged frames (pcap records: 16-byte header, then the frame)
    data = (bundle / "capture.pcap").read_bytes()
    off, forged = 24, 0
    mac = bytes.fromhex(MAC.replace(":", ""))
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        frame = data[off + 16 : off + 16 + incl]
        forged += frame[6:12] == mac and frame[12:14] == b"\x08\x06"
        off += 16 + incl
    assert forged >= 1
    verify = subprocess.run(
        [sys.executable, "-m", "vmsentry", "incidents", "verify", bundle.name, "--evidence", str(lab.evidence)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
