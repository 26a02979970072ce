"""`vmsentry watch` end to end in the namespace lab (tests/traffic_lab/lab.py): a watcher on br-test with
`--respond auto --quarantine nft`, real attack tools in the "VM" namespaces, and the victims' own captures
as the judge of whether the attacker's frames still arrive.

    vm1 arpspoof  -> arp_spoof  -> vm1 quarantined -> vm2 sees no frame of vm1, its ARP cache stays true
                  -> `vmsentry release vm1` -> vm1 reaches vm2 again; the incident bundle verifies
    vm1 dnsmasq   -> rogue_dhcp -> vm1 quarantined -> vm3's DHCP discover gets no offer
    vm1 macof     -> mac_flood  -> vm1 quarantined (named by the port its random MACs came in on)
    vm1 with vm2's MAC -> vm1 quarantined, vm2 not; vm2 reaches the host and vm3 while the attack goes on
    a benign minute -> nothing; the bridge deleted and re-created -> two lines, detection resumes;
    nft refusing (no CAP_NET_ADMIN) -> one line, the watcher goes on; two watchers on one bridge -> exit 3.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from traffic_lab.lab import BRIDGE, NODES, Lab

pytestmark = [pytest.mark.lab]

REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "tests" / "fixtures" / "traffic" / "lab-inventory.json"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
TOOLS = ("arpspoof", "macof", "dnsmasq", "busybox", "tcpdump", "nft", "setpriv", "curl", "dig")
VM1_MAC, VM2_MAC, HOST_MAC = NODES["vm1"][1], NODES["vm2"][1], NODES["host"][1]


@pytest.fixture(autouse=True)
def tools():
    import shutil

    missing = [t for t in (*TOOLS, *Lab.missing_tools()) if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools for the watch lab: {', '.join(missing)} (scripts/setup.sh installs them)")


@pytest.fixture
def lab():
    with Lab(f"vw{os.getpid() % 10000}") as lab:
        lab.services()
        yield lab


def vmsentry(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=str(REPO),
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watch:
    """`vmsentry watch` running on the lab bridge; its JSON lines (stdout) and its stderr lines, as they come."""

    def __init__(self, lab: Lab, tmp: Path, *extra: str, netns: bool = True, prefix: list[str] | None = None):
        self.lab = lab
        self.evidence = tmp / "evidence"
        argv = [sys.executable, "-m", "vmsentry", "watch", "-i", BRIDGE, "--inventory", str(INVENTORY)]
        argv += ["--format", "jsonl", "--evidence", str(self.evidence), *extra]
        if netns:
            argv += ["--netns", lab.bridge_ns]
        else:  # started inside the namespace (with a reduced capability set: `prefix`)
            argv = ["ip", "netns", "exec", lab.bridge_ns, *(prefix or []), *argv]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=str(REPO),
        )
        self.lines: list[dict] = []
        self.errors: list[str] = []
        self.threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines, json.loads), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors, str.rstrip), daemon=True),
        ]
        for t in self.threads:
            t.start()
        assert self.wait(lambda: any("watching br-test" in e for e in self.errors), 20), self.stderr()

    @staticmethod
    def _read(stream, into: list, parse) -> None:
        for line in stream:
            into.append(parse(line))

    def wait(self, condition, timeout: float = 10.0) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return bool(condition())
            time.sleep(0.02)
        return False

    def raised(self, kind: str) -> list[dict]:
        return [a for a in self.lines if a.get("event") == "raised" and a.get("type") == kind]

    def said(self, pattern: str) -> list[str]:
        return [e for e in self.errors if re.search(pattern, e)]

    def stderr(self) -> str:
        return "\n".join(self.errors)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(60)
        for t in self.threads:
            t.join(5)
        return rc


def in_force_time(watch: Watch, vm: str, timeout: float = 10) -> float:
    """When the watcher says the quarantine of ``vm`` came into force (the line's own time is after it)."""
    assert watch.wait(lambda: watch.said(rf"quarantined {vm} \(nft"), timeout), watch.stderr()
    return time.time()


class Capture:
    """tcpdump in a lab VM's own namespace, on its eth0: what the VM really received."""

    def __init__(self, lab: Lab, node: str, path: Path, bpf: str = "") -> None:
        self.lab, self.path = lab, path
        argv = ["tcpdump", "-i", "eth0", "-n", "-e", "--immediate-mode", "-U", "-s", "128", "-w", str(path)]
        self.proc = lab.spawn(node, argv + ([bpf] if bpf else []), stderr=subprocess.PIPE, text=True)
        assert "listening on" in self.proc.stderr.readline()

    def times(self, bpf: str) -> list[float]:
        """Time stamps of the captured frames matching ``bpf`` (read with tcpdump itself)."""
        out = subprocess.run(
            ["tcpdump", "-r", str(self.path), "-n", "-tt", bpf], capture_output=True, text=True, timeout=30
        ).stdout
        return [float(line.split()[0]) for line in out.splitlines() if line[:1].isdigit()]

    def stop(self) -> None:
        time.sleep(0.3)
        self.lab.stop(self.proc, signal.SIGINT)


def neighbour_mac(lab: Lab, node: str, ip: str) -> str | None:
    out = lab.sh(node, f"ip neigh show {ip} dev eth0", check=False).stdout.split()
    return out[out.index("lladdr") + 1] if "lladdr" in out else None


def pings(lab: Lab, node: str, ip: str, count: int = 3) -> bool:
    return lab.sh(node, f"ping -c {count} -i 0.2 -W 1 {ip}", check=False).returncode == 0


def release(lab: Lab, name: str) -> subprocess.CompletedProcess:
    return vmsentry("release", name, "--netns", lab.bridge_ns)


def held_ports(lab: Lab) -> str:
    return lab.sh(lab.bridge_ns, "nft list table bridge vmsentry_quarantine", check=False).stdout


def fdb_ports(lab: Lab, mac: str) -> set[str]:
    """The ports br-test has learned ``mac`` on (`bridge fdb show`)."""
    out = lab.sh(lab.bridge_ns, f"bridge fdb show br {BRIDGE}").stdout.splitlines()
    return {line.split()[2] for line in out if line.startswith(mac + " ") and "permanent" not in line}


def verify_bundle(watch: Watch) -> dict:
    (bundle,) = [p for p in watch.evidence.iterdir() if p.is_dir() and not p.name.startswith(".")]
    done = vmsentry("incidents", "verify", bundle.name, "--evidence", str(watch.evidence))
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (bundle / "capture.pcap").stat().st_size > 24
    return manifest


# ------------------------------------------------------------------------------------------------ attacks
@pytest.mark.slow
def test_arpspoof_is_quarantined_the_victim_stays_true_and_release_restores(lab, tmp_path):
    lab.sh("vm2", "ping -c 1 -W 1 10.99.0.1")  # vm2 knows the host's true MAC
    port = free_port()
    audit = tmp_path / "audit"
    watch = Watch(
        lab,
        tmp_path,
        "--respond",
        "auto",
        "--quarantine",
        "nft",
        "--metrics",
        f"127.0.0.1:{port}",
        "--audit",
        str(audit),
    )
    victim = Capture(lab, "vm2", tmp_path / "vm2.pcap")
    tool = lab.spawn("vm1", ["arpspoof", "-i", "eth0", "-t", "10.99.0.12", "10.99.0.1"])
    try:
        assert watch.wait(lambda: watch.raised("arp_spoof"), 10), watch.stderr()
        in_force = in_force_time(watch, "vm1")
        (alert,) = watch.raised("arp_spoof")
        assert alert["attacker"]["vm"] == "vm1"
        assert "p-vm1" in held_ports(lab) and VM2_MAC not in held_ports(lab)
        # arpspoof goes on (a forged reply every 2 s): none reaches vm2, whose cache is true again and stays so
        lab.sh("vm2", "ip neigh flush dev eth0; ping -c 1 -W 1 10.99.0.1", check=False)
        time.sleep(5)
        assert neighbour_mac(lab, "vm2", "10.99.0.1") == HOST_MAC
        assert not pings(lab, "vm1", "10.99.0.12", 2)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        lab.stop(tool, signal.SIGKILL)  # (SIGINT would make arpspoof re-ARP the true binding: not wanted here)
        victim.stop()
    forged = victim.times(f"ether src {VM1_MAC}")
    before = [t for t in forged if t <= in_force]  # the first forged reply: it raised the alert
    after = [t for t in forged if t > in_force + 0.5]
    assert before and not after, (len(before), len(after))
    assert 'vmsentry_quarantines_total{method="nft"} 1.0' in metrics
    assert "vmsentry_response_seconds_count 1.0" in metrics
    assert 'vmsentry_alerts_total{type="arp_spoof"} 1.0' in metrics
    done = release(lab, "vm1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert pings(lab, "vm1", "10.99.0.12")
    assert "vmsentry_quarantine" not in lab.sh(lab.bridge_ns, "nft list tables").stdout
    assert watch.stop() == 0
    manifest = verify_bundle(watch)
    assert 0 < manifest["response_seconds"] < 2
    assert watch.said(r"response|in force \d+ ms")
    # the signed audit log holds the detection, the decision and the action, and verifies
    intact = vmsentry("audit", "verify", str(audit))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    entries = json.loads(vmsentry("audit", "show", str(audit), "--format", "json").stdout)["entries"]
    kinds = {e["kind"] for e in entries}
    assert {"alert", "decision", "quarantine", "watch"} <= kinds, kinds
    (action,) = [e["record"] for e in entries if e["kind"] == "quarantine"]
    assert action["vm"] == "vm1" and action["ok"] is True


@pytest.mark.slow
def test_rogue_dhcp_server_is_quarantined(lab, tmp_path):
    watch = Watch(lab, tmp_path, "--respond", "auto")
    rogue = lab.spawn(
        "vm1",
        [
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--interface=eth0",
            "--bind-interfaces",
            "--dhcp-range=10.99.0.100,10.99.0.150,1h",
            "--dhcp-option=3,10.99.0.11",
            "--user=root",
            "--pid-file=",
            "--dhcp-leasefile=/dev/null",
        ],
    )
    client = Capture(lab, "vm3", tmp_path / "vm3.pcap", "udp port 67 or udp port 68")
    try:
        time.sleep(1)
        lab.sh("vm3", "busybox udhcpc -i eth0 -n -q -t 2 -T 1 -s /bin/true", check=False)
        assert watch.wait(lambda: watch.raised("rogue_dhcp"), 10), watch.stderr()
        in_force = in_force_time(watch, "vm1")
        lab.sh("vm3", "busybox udhcpc -i eth0 -n -q -t 3 -T 1 -s /bin/true", check=False)
    finally:
        lab.stop(rogue)
        client.stop()
    offers = client.times(f"ether src {VM1_MAC}")
    assert [t for t in offers if t < in_force] and not [t for t in offers if t > in_force + 0.5]
    assert release(lab, "vm1").returncode == 0
    assert watch.stop() == 0
    verify_bundle(watch)


@pytest.mark.slow
def test_mac_flood_is_quarantined_by_the_port_it_came_in_on(lab, tmp_path):
    watch = Watch(lab, tmp_path, "--respond", "auto")
    victim = Capture(lab, "vm2", tmp_path / "vm2.pcap", "not arp")
    tool = lab.spawn("vm1", ["macof", "-i", "eth0", "-n", "200000"])
    try:
        assert watch.wait(lambda: watch.raised("mac_flood"), 15), watch.stderr()
        in_force = in_force_time(watch, "vm1")
        time.sleep(2)
    finally:
        lab.stop(tool, signal.SIGKILL)
        victim.stop()
    known = " and ".join(f"not ether src {mac}" for _, mac in NODES.values())
    flood = victim.times(known)
    assert [t for t in flood if t < in_force] and not [t for t in flood if t > in_force + 0.5]
    assert watch.said(r"learned on bridge br-test port p-vm1") or "p-vm1" in held_ports(lab)
    assert release(lab, "vm1").returncode == 0
    assert watch.stop() == 0


@pytest.mark.slow
def test_an_attacker_forging_another_vms_mac_is_quarantined_itself(lab, tmp_path):
    lab.sh("vm1", f"ip link set eth0 address {VM2_MAC}")
    watch = Watch(lab, tmp_path, "--respond", "auto")
    tool = lab.spawn("vm1", ["arpspoof", "-i", "eth0", "-t", "10.99.0.13", "10.99.0.1"])
    # and a steady stream from vm2's MAC besides arpspoof's reply every 2 s: ICMP to vm3, 10 a second
    lab.sh("vm1", f"ip neigh replace 10.99.0.13 lladdr {NODES['vm3'][1]} dev eth0 nud permanent")
    stream = lab.spawn("vm1", ["ping", "-i", "0.1", "10.99.0.13"])
    try:
        assert watch.wait(lambda: watch.raised("arp_spoof"), 10), watch.stderr()
        in_force_time(watch, "vm1")
        # during the attack (both still sending from vm2's MAC): vm2 keeps its network, and once it has spoken
        # the bridge keeps its MAC on vm2's port (the held port's frames are dropped before the bridge learns)
        seen = set()
        for _ in range(3):
            assert pings(lab, "vm2", "10.99.0.1") and pings(lab, "vm2", "10.99.0.13")
            seen |= fdb_ports(lab, VM2_MAC)
            time.sleep(1)
            seen |= fdb_ports(lab, VM2_MAC)
        assert seen == {"p-vm2"}, seen
        assert tool.poll() is None and stream.poll() is None  # the attack went on all along
    finally:
        lab.stop(tool, signal.SIGKILL)
        lab.stop(stream, signal.SIGKILL)
    (alert,) = watch.raised("arp_spoof")
    assert alert["attacker"]["mac"] == VM2_MAC  # what the frames said
    listed = vmsentry("quarantine", "--list", "--netns", lab.bridge_ns)
    assert "vm1" in listed.stdout and "vm2" not in listed.stdout, listed.stdout + listed.stderr
    assert watch.said(r"forged by vm1") or "forged" in json.dumps(watch.lines)
    assert not pings(lab, "vm1", "10.99.0.13", 2)
    assert pings(lab, "vm2", "10.99.0.1")  # the VM whose MAC was forged keeps its network
    assert release(lab, "vm1").returncode == 0
    assert watch.stop() == 0


@pytest.mark.slow
def test_a_benign_minute_triggers_nothing(lab, tmp_path):
    watch = Watch(lab, tmp_path, "--respond", "auto")
    end = time.time() + 60
    while time.time() < end:
        for node, peer in (("vm1", "10.99.0.12"), ("vm2", "10.99.0.13"), ("vm3", "10.99.0.1")):
            lab.sh(node, f"ping -c 2 -i 0.2 -W 1 {peer} >/dev/null", check=False)
        lab.sh("vm1", "curl -s -o /dev/null --max-time 2 http://10.99.0.12:8000/", check=False)
        lab.sh("vm3", "curl -s -o /dev/null --max-time 2 http://10.99.0.1:8080/", check=False)
        lab.sh("vm2", "dig +short +time=1 +tries=1 @10.99.0.1 www.lab.test", check=False)
        time.sleep(1)
    assert watch.stop() == 0
    assert [a for a in watch.lines if a.get("event") == "raised"] == []
    assert not watch.said(r"quarantined|quarantine of")
    assert not watch.evidence.exists() or not list(watch.evidence.iterdir())  # no incident, no bundle


# ------------------------------------------------------------------------------------------------ faults
@pytest.mark.slow
def test_the_bridge_deleted_and_recreated_gives_two_lines_and_detection_resumes(lab, tmp_path):
    out = tmp_path / "alerts.jsonl"
    watch = Watch(lab, tmp_path, "--respond", "observe", "-o", str(out))
    br = lab.bridge_ns
    lab.sh(br, f"ip link del {BRIDGE}")
    assert watch.wait(lambda: watch.said(r"br-test.*(lost|gone|cannot capture|deleted|down)"), 10), watch.stderr()
    lab.sh(br, f"ip link add {BRIDGE} type bridge stp_state 0 forward_delay 0 && ip link set {BRIDGE} up")
    for node in NODES:
        lab.sh(br, f"ip link set p-{node} master {BRIDGE} up")
    assert watch.wait(lambda: len(watch.said(r"br-test")) >= 3, 10), watch.stderr()  # watching, gone, back
    problems = [e for e in watch.errors if "br-test" in e and "watching" not in e]
    assert len(problems) == 2, problems
    # logrotate's way: the file renamed, SIGHUP, the next alert in a new file
    out.rename(tmp_path / "alerts.jsonl.1")
    watch.proc.send_signal(signal.SIGHUP)
    assert watch.wait(lambda: watch.said("reopen"), 5), watch.stderr()
    tool = lab.spawn("vm1", ["arpspoof", "-i", "eth0", "-t", "10.99.0.12", "10.99.0.1"])
    try:
        assert watch.wait(lambda: out.exists() and "arp_spoof" in out.read_text(), 10), watch.stderr()
    finally:
        lab.stop(tool, signal.SIGKILL)
    assert watch.stop() == 0


def test_nft_refusing_is_one_line_and_the_watcher_goes_on(lab, tmp_path):
    # without CAP_NET_ADMIN the kernel refuses every nftables change: capture (CAP_NET_RAW) still works
    drop = ["setpriv", "--inh-caps=-net_admin", "--bounding-set=-net_admin"]
    watch = Watch(lab, tmp_path, "--respond", "auto", netns=False, prefix=drop)
    tool = lab.spawn("vm1", ["arpspoof", "-i", "eth0", "-t", "10.99.0.12", "10.99.0.1"])
    try:
        assert watch.wait(lambda: watch.raised("arp_spoof"), 10), watch.stderr()
        assert watch.wait(lambda: watch.said(r"quarantine of vm1 failed"), 5), watch.stderr()
        assert watch.proc.poll() is None
        assert len(watch.said(r"quarantine of vm1 failed")) == 1
    finally:
        lab.stop(tool, signal.SIGKILL)
    assert pings(lab, "vm1", "10.99.0.12")  # nothing half-applied
    assert watch.stop() == 0
    assert "Traceback" not in watch.stderr()


def test_two_watchers_on_one_bridge(lab, tmp_path):
    first = Watch(lab, tmp_path / "a", "--respond", "auto")
    second = vmsentry("watch", "-i", BRIDGE, "--netns", lab.bridge_ns, "--inventory", str(INVENTORY), "--duration", "5")
    assert second.returncode == 3, second.stderr
    (line,) = second.stderr.splitlines()
    assert "another watcher" in line and str(first.proc.pid) in line
    assert first.proc.poll() is None
    assert first.stop() == 0
