"""collect_host() on this real machine (root netns), and on a copied host tree given as root=."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from vmsentry.collect.linux_host import collect_host

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
TEST_BRIDGE = "vmsbrtest0"
TEST_BRIDGE_ADDRESS = "10.253.77.1/24"


def host_facts(inv):
    assert len(inv.hosts) == 1
    return inv.hosts[0].all_facts()


def needs_root():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2")


@pytest.fixture
def tcp_listener():
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def test_bridge():
    """A bridge in the root namespace (collect_host reads that one), removed afterwards."""
    needs_root()
    subprocess.run(["ip", "link", "del", TEST_BRIDGE], capture_output=True)  # left over from a killed run
    subprocess.run(["ip", "link", "add", TEST_BRIDGE, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", TEST_BRIDGE_ADDRESS, "dev", TEST_BRIDGE], check=True)
        subprocess.run(["ip", "link", "set", TEST_BRIDGE, "up"], check=True)
        yield TEST_BRIDGE
    finally:
        subprocess.run(["ip", "link", "del", TEST_BRIDGE], check=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"QEMU exited early: {process.stderr.read()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"QEMU did not open port {port}")


@pytest.fixture
def hand_started_qemu():
    """A real QEMU started by hand (no libvirt): paused, no machine, one user-mode port forward."""
    binary = shutil.which("qemu-system-x86_64")
    if binary is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "-machine",
            "none",
            "-S",
            "-nodefaults",
            "-display",
            "none",
            "-name",
            "guest=vmsentry-hostfwd-test,debug-threads=on",
            "-netdev",
            f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(port, process)
        yield process, port
    finally:
        process.kill()
        process.wait()


# -- this machine --------------------------------------------------------------------------------------


def test_collect_host_on_this_machine():
    started = time.monotonic()
    inv = collect_host()
    elapsed = time.monotonic() - started
    facts = host_facts(inv)
    host = inv.hosts[0]
    assert host.name == socket.gethostname() == facts["hostname"]
    assert host.platform == "linux"
    assert facts["kernel"] == os.uname().release
    with open("/proc/sys/net/ipv4/ip_forward") as fh:
        assert facts["sysctl"]["net.ipv4.ip_forward"] == fh.read().strip()
    loopback = next(i for i in facts["interfaces"] if i["name"] == "lo")
    assert loopback["kind"] == "loopback" and "127.0.0.1/8" in loopback["addresses"]
    assert isinstance(facts["collection_errors"], list)
    assert facts["cpu"]["vendor"] and isinstance(facts["cpu"]["vmx"], bool)
    assert facts["kvm"]["dev_kvm"] == os.path.exists("/dev/kvm")
    assert facts["iommu"]["enabled"] == (facts["iommu"]["groups"] > 0)
    assert facts["firewall"]["forward_policy"] in ("drop", "accept", "unknown")
    assert set(facts["groups"]) == {"libvirt", "kvm", "libvirt-qemu"}
    if shutil.which("qemu-system-x86_64"):
        assert facts["versions"]["qemu"] and facts["versions"]["qemu"][0].isdigit()
    json.dumps(inv.to_dict())  # everything is plain JSON
    assert elapsed < 1.5, f"collect_host took {elapsed:.2f} s"


def test_a_listener_we_open_shows_up(tcp_listener):
    facts = host_facts(collect_host())
    with open("/proc/self/comm") as fh:
        own_name = fh.read().strip()
    mine = [s for s in facts["listening"] if s["port"] == tcp_listener and s["proto"] == "tcp"]
    assert len(mine) == 1
    assert mine[0]["address"] == "127.0.0.1"
    if shutil.which("ss"):
        assert mine[0]["process"] == own_name and mine[0]["pid"] == os.getpid()


@pytest.mark.lab
def test_bridge_and_its_sysctls(test_bridge):
    facts = host_facts(collect_host())
    bridge = next(b for b in facts["bridges"] if b["name"] == test_bridge)
    assert TEST_BRIDGE_ADDRESS in bridge["addresses"]  # (an IPv6 link-local address may follow)
    assert bridge["ports"] == [] and bridge["physical_ports"] == []
    assert bridge["stp"] is False
    interface = next(i for i in facts["interfaces"] if i["name"] == test_bridge)
    assert interface["kind"] == "bridge"
    sysctl = facts["sysctl"]
    for family, setting in (
        ("ipv4", "rp_filter"),
        ("ipv4", "forwarding"),
        ("ipv6", "accept_ra"),
        ("ipv6", "forwarding"),
        ("ipv6", "disable_ipv6"),
    ):
        with open(f"/proc/sys/net/{family}/conf/{test_bridge}/{setting}") as fh:
            assert sysctl[f"net.{family}.conf.{test_bridge}.{setting}"] == fh.read().strip()


def test_a_hand_started_qemu_is_a_vm(hand_started_qemu):
    process, port = hand_started_qemu
    inv = collect_host()
    vm = next(v for v in inv.vms if v.name == "vmsentry-hostfwd-test")
    assert vm.platform == "qemu" and vm.state == "running"
    assert vm.source.file == f"/proc/{process.pid}/cmdline"
    assert vm.host == inv.hosts[0].name
    assert vm.facts["qemu.process.pid"]["value"] == process.pid
    assert vm.facts["qemu.process.uid"]["value"] == os.getuid()
    assert vm.facts["qemu.netdev.n0.restrict"]["value"] == "on"
    [nic] = vm.nics
    assert nic.id == "n0" and nic.mode == "user"
    [forward] = vm.forwards
    assert (forward.protocol, forward.host_address, forward.host_ports, forward.guest_ports) == (
        "tcp",
        "127.0.0.1",
        [port, port],
        [22, 22],
    )
    listening = [s for s in inv.hosts[0].all_facts()["listening"] if s["port"] == port]
    assert listening and listening[0]["pid"] == process.pid


# -- a copied host tree ----------------------------------------------------------------------------------


def write(root, relative: str, content: str | bytes) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


def copy_fixture(root, relative: str, fixture: str) -> None:
    with open(os.path.join(FIXTURES, fixture), "rb") as fh:
        write(root, relative, fh.read())


@pytest.fixture
def host_tree(tmp_path):
    root = tmp_path / "hv1"
    write(root, "proc/sys/kernel/hostname", "hv1\n")
    write(root, "proc/sys/kernel/osrelease", "6.1.0-57-amd64\n")
    write(root, "etc/os-release", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    write(root, "proc/sys/net/ipv4/ip_forward", "1\n")
    write(root, "proc/sys/net/bridge/bridge-nf-call-iptables", "0\n")
    copy_fixture(root, "proc/net/tcp", "host/proc-net-tcp.txt")
    copy_fixture(root, "proc/net/udp", "host/proc-net-udp.txt")
    copy_fixture(root, "proc/cpuinfo", "host/cpuinfo-amd.txt")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/sda1 amd_iommu=on iommu=pt\n")
    write(root, "sys/module/kvm_amd/parameters/nested", "1\n")
    write(root, "sys/module/kvm_amd/parameters/sev", "Y\n")
    write(root, "sys/module/kvm_amd/parameters/sev_snp", "N\n")
    write(root, "sys/kernel/mm/ksm/run", "1\n")
    for group in ("0", "1", "2"):
        (root / "sys/kernel/iommu_groups" / group).mkdir(parents=True)
    write(root, "sys/kernel/security/lsm", "lockdown,capability,apparmor\n")
    write(root, "sys/module/apparmor/parameters/enabled", "Y\n")
    copy_fixture(root, "etc/group", "host/group.txt")
    copy_fixture(root, "etc/passwd", "host/passwd.txt")
    copy_fixture(root, "etc/libvirt/qemu.conf", "conf/qemu.conf")
    copy_fixture(root, "etc/libvirt/libvirtd.conf", "conf/libvirtd.conf")
    copy_fixture(root, "etc/libvirt/virtproxyd.conf", "conf/host1-virtproxyd.conf")
    write(root, "proc/100/comm", "virtproxyd\n")
    write(root, "proc/101/comm", "virtlogd\n")
    # a QEMU started by hand, and one of libvirt's own (read through libvirt, so skipped here)
    write(root, "proc/200/comm", "qemu-system-x86\n")
    write(
        root,
        "proc/200/cmdline",
        b"\0".join(
            [
                b"/usr/bin/qemu-system-x86_64",
                b"-name",
                b"handmade",
                b"-vnc",
                b":3",
                b"-netdev",
                b"user,id=u0,hostfwd=tcp::2222-:22",
                b"-device",
                b"e1000,netdev=u0",
            ]
        )
        + b"\0",
    )
    write(root, "proc/200/status", "Name:\tqemu-system-x86\nUid:\t0\t0\t0\t0\n")
    write(root, "proc/200/attr/current", "unconfined\n")
    write(root, "proc/300/comm", "qemu-system-x86\n")
    write(
        root,
        "proc/300/cmdline",
        b"\0".join(
            [
                b"/usr/bin/qemu-system-x86_64",
                b"-name",
                b"guest=web",
                b"-object",
                b"secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-1-web/master-key.aes",
            ]
        )
        + b"\0",
    )
    return root


def test_collect_from_a_copied_host_tree(host_tree):
    inv = collect_host(str(host_tree))
    facts = host_facts(inv)
    assert inv.hosts[0].name == "hv1" == facts["hostname"]
    assert facts["kernel"] == "6.1.0-57-amd64"
    assert facts["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert facts["sysctl"] == {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "0"}
    # commands would describe this machine, not hv1: those groups are not collected
    assert facts["interfaces"] is None and facts["bridges"] is None
    errors = "\n".join(facts["collection_errors"])
    assert "interfaces: ip not run" in errors and "bridges: not read" in errors
    assert "firewall.nftables: nft not run" in errors
    assert facts["firewall"]["nftables"] is None and facts["firewall"]["forward_policy"] == "unknown"
    # listening sockets come from /proc/net instead of ss
    assert [(s["proto"], s["address"], s["port"]) for s in facts["listening"]] == [
        ("tcp", "0.0.0.0", 2024),
        ("tcp", "127.0.0.1", 5900),
        ("udp", "192.168.122.1", 53),
    ]
    assert "listening: ss not run" in errors
    assert facts["cpu"] == {
        "vendor": "AuthenticAMD",
        "vmx": False,
        "svm": True,
        "model": "AMD EPYC 7763 64-Core Processor",
    }
    assert facts["kvm"] == {"dev_kvm": False, "nested": "Y", "ksm_run": "1"}
    assert facts["iommu"] == {"groups": 3, "cmdline_flags": ["amd_iommu=on", "iommu=pt"], "enabled": True}
    assert facts["memory_encryption"] == {
        "sev": True,
        "sev_es": None,
        "sev_snp": False,
        "tdx": None,
        "cpu_flags": ["sme", "sev", "sev_es"],
    }
    assert facts["lsm"] == {
        "apparmor": "enabled",
        "selinux": "absent",
        "active": ["lockdown", "capability", "apparmor"],
    }
    assert facts["versions"] == {"qemu": None, "libvirt": None, "kernel": "6.1.0-57-amd64"}
    assert facts["libvirt"] == {"daemon_running": True, "processes": ["virtproxyd", "virtlogd"]}
    assert facts["groups"] == {"libvirt": ["alice", "bob"], "kvm": ["alice", "libvirt-qemu"], "libvirt-qemu": None}
    # the same structure as the file reader; virtproxyd runs, so its file holds the remote settings
    assert facts["qemu_conf"]["values"]["vnc_listen"] == "0.0.0.0"
    assert facts["qemu_conf"]["values"]["vnc_password"] == "<set>"
    assert facts["libvirtd_conf"]["file"].endswith("etc/libvirt/virtproxyd.conf")
    assert facts["libvirtd_conf"]["values"]["auth_tcp"] == "sasl"
    assert any("remote_display_port_min" in e.message for e in inv.errors)  # qemu.conf's typo
    assert "XYZ12345" not in json.dumps(inv.to_dict())

    [vm] = inv.vms  # the libvirt-managed QEMU is left to the libvirt reader
    assert vm.name == "handmade" and vm.source.file == "/proc/200/cmdline"
    assert vm.host == "hv1" and vm.state == "running"
    assert vm.security.confinement == "none"
    assert vm.facts["qemu.process.uid"] == {"value": 0, "at": "/proc/200/status"}
    assert [(listener.kind, listener.address, listener.port, listener.auth) for listener in vm.listeners] == [
        ("vnc", None, 5903, "none")
    ]
    assert [(f.host_address, f.host_ports, f.nic) for f in vm.forwards] == [(None, [2222, 2222], "u0")]
    assert vm.nics[0].model == "e1000"


def test_libvirtd_conf_preferred_without_virtproxyd(host_tree):
    os.remove(host_tree / "proc/100/comm")
    facts = host_facts(collect_host(str(host_tree)))
    assert facts["libvirtd_conf"]["file"].endswith("etc/libvirt/libvirtd.conf")
    assert facts["libvirt"] == {"daemon_running": False, "processes": ["virtlogd"]}


def test_unreadable_group_becomes_none_with_an_error(host_tree):
    os.remove(host_tree / "proc/cpuinfo")
    facts = host_facts(collect_host(str(host_tree)))
    assert facts["cpu"] is None
    assert "cpu: /proc/cpuinfo is missing" in facts["collection_errors"]
    assert facts["memory_encryption"]["cpu_flags"] == []  # the rest is still collected
