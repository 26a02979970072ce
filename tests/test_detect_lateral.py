"""Lateral movement beyond the well-known ports: admin protocols recognised by content on any port, the
endpoint mapper's answers followed to the dynamic RPC port, password guessing as repeated short sessions,
and slow scans. Crafted packets (scapy) pin the details; the captures in fixtures/traffic/lab-tools were made
with the real tools in the namespace lab (their README says how), and the ``lab`` tests run those tools live."""

from __future__ import annotations

import json
import shutil
import struct
import uuid

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from vmsentry.analyse.addresses import MANAGEMENT_PORTS
from vmsentry.analyse.detectors import content, dcerpc
from vmsentry.analyse.detectors.tunables import LATERAL_PORTS

from traffic_helpers import FIXTURES, LAB, detect, lab_inventory, write_pcap

HOST_IP, HOST_MAC = LAB["host"]
VM1_IP, VM1_MAC = LAB["vm1"]
VM2_IP, VM2_MAC = LAB["vm2"]
TOOLS = FIXTURES / "lab-tools"
EXPECTED = json.loads((TOOLS / "expected.json").read_text())["captures"]

RDP_REQUEST = (
    bytes.fromhex("0300002b26e00000000000") + b"Cookie: mstshash=admin\r\n" + bytes.fromhex("0100080003000000")
)
RDP_NO_COOKIE = bytes.fromhex("030000130ee000000000000100080003000000")
SMB2_NEGOTIATE = b"\x00\x00\x00\x66\xfeSMB" + bytes(60)
RPC_BIND = b"\x05\x00\x0b\x03\x10\x00\x00\x00" + bytes(16) + uuid.UUID("12345778-1234-abcd-ef00-0123456789ab").bytes_le


@pytest.mark.parametrize(
    "payload, service",
    [
        (RDP_REQUEST, "rdp"),
        (RDP_NO_COOKIE, "rdp"),
        (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", "ssh"),
        (b"RFB 003.008\n", "vnc"),
        (b"POST /wsman HTTP/1.1\r\nHost: x:5985\r\n", "winrm"),
        (b"POST /wsman?PSVersion=5.1 HTTP/1.1\r\n", "winrm"),
        (SMB2_NEGOTIATE, "smb"),
        (b"\x00\x00\x00\x2f\xffSMBr" + bytes(40), "smb"),
        (RPC_BIND, "rpc"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", None),
        (b"POST /wsmanager HTTP/1.1\r\n", None),
        (b"SSH-", None),
        (b"RFB 3.8\n", None),
        (b"\x03\x00\x00\x08\x02\xf0\x80\x00", None),  # a TPKT data TPDU, not a connection request
        (b"\x00\x00\x00\x10" + bytes(12), None),
        (b"", None),
    ],
)
def test_service_by_content(payload, service):
    assert content.service(payload) == service


# --- by content, on ports that say nothing -----------------------------------------------------------
def session(src, smac, dst, dmac, dport, data, sport=41000, t=0.0, close_after=None):
    """A TCP session's packets as (offset, packet): handshake, the client's data, and FINs after ``close_after``."""
    c2s = Ether(src=smac, dst=dmac) / IP(src=src, dst=dst)
    s2c = Ether(src=dmac, dst=smac) / IP(src=dst, dst=src)
    out = [
        (t, c2s / TCP(sport=sport, dport=dport, flags="S", seq=1)),
        (t + 0.001, s2c / TCP(sport=dport, dport=sport, flags="SA", seq=9, ack=2)),
        (t + 0.002, c2s / TCP(sport=sport, dport=dport, flags="A", seq=2, ack=10)),
        (t + 0.003, c2s / TCP(sport=sport, dport=dport, flags="PA", seq=2, ack=10) / data),
    ]
    if close_after is not None:
        out.append((t + close_after, s2c / TCP(sport=dport, dport=sport, flags="FA", seq=10, ack=2 + len(data))))
        out.append((t + close_after + 0.001, c2s / TCP(sport=sport, dport=dport, flags="FA", seq=2 + len(data))))
    return out


@pytest.mark.parametrize(
    "data, port, service",
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n", 2222, "ssh"),
        (RDP_REQUEST, 13389, "rdp"),
        (b"RFB 003.008\n", 6001, "vnc"),
        (b"POST /wsman HTTP/1.1\r\nHost: vm2\r\n\r\n", 8080, "winrm"),
        (SMB2_NEGOTIATE, 4455, "smb"),
    ],
)
def test_admin_protocol_on_another_port_between_vms_and_to_the_host(tmp_path, data, port, service):
    pcap = write_pcap(tmp_path / "vm.pcap", session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, port, data))
    (alert,) = detect(pcap, inventory=lab_inventory())[0]
    assert (alert["type"], alert["attacker"]["vm"], alert["victims"][0]["vm"]) == ("lateral_movement", "vm1", "vm2")
    assert alert["evidence"]["service"] == service and alert["ports"] == [port]
    pcap = write_pcap(tmp_path / "host.pcap", session(VM1_IP, VM1_MAC, HOST_IP, HOST_MAC, port, data))
    (alert,) = detect(pcap, inventory=lab_inventory())[0]
    assert (alert["type"], alert["evidence"]["service"], alert["severity"]) == ("mgmt_access", service, "high")
    assert detect(pcap)[0] == []  # one connection, no inventory: nothing says it is not sanctioned


def test_plain_http_on_a_high_port_is_not_an_admin_protocol(tmp_path):
    pcap = write_pcap(tmp_path / "web.pcap", session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 8080, b"GET / HTTP/1.1\r\n"))
    assert detect(pcap, inventory=lab_inventory())[0] == []


# --- the endpoint mapper's answers ---------------------------------------------------------------------
def tower(iface: uuid.UUID, port: int, ip: str) -> bytes:
    ndr = uuid.UUID("8a885d04-1ceb-11c9-9fe8-08002b104860").bytes_le
    floors = [
        (b"\x0d" + iface.bytes_le + b"\x01\x00", b"\x00\x00"),
        (b"\x0d" + ndr + b"\x02\x00", b"\x00\x00"),
        (b"\x0b", b"\x00\x00"),
        (b"\x07", port.to_bytes(2, "big")),
        (b"\x09", bytes(int(x) for x in ip.split("."))),
    ]
    body = b"".join(struct.pack("<H", len(lhs)) + lhs + struct.pack("<H", len(rhs)) + rhs for lhs, rhs in floors)
    return struct.pack("<H", len(floors)) + body


def rpc_response(stub: bytes) -> bytes:
    body = struct.pack("<IHBB", len(stub), 0, 0, 0) + stub
    return b"\x05\x00\x02\x03\x10\x00\x00\x00" + struct.pack("<HHI", 16 + len(body), 0, 1) + body


def epm_exchange(request: bytes, answer: bytes, sport=42000):
    """The client's request to the endpoint mapper and its answer, as (offset, packet)."""
    out = session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 135, request, sport=sport)
    s2c = Ether(src=VM2_MAC, dst=VM1_MAC) / IP(src=VM2_IP, dst=VM1_IP)
    out.append((0.01, s2c / TCP(sport=135, dport=sport, flags="PA", seq=10, ack=2 + len(request)) / answer))
    return out


def test_ept_map_answer_makes_the_dynamic_port_that_interface(tmp_path):
    svcctl = uuid.UUID("367abb81-9844-35f1-ad32-98f038001003")
    stub = bytes(20) + struct.pack("<IIII", 1, 4, 0, 1) + struct.pack("<I", 2) + tower(svcctl, 49667, VM2_IP)
    answer = rpc_response(stub)
    assert dcerpc.mapped_endpoints(answer) == [(bytes([10, 99, 0, 12]), 49667, svcctl.bytes_le)]
    # the bind on the dynamic port is not seen (only the handshake): the mapper's answer says what it is
    follow = [(0.5 + t, p) for t, p in session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 49667, b"", sport=42001)[:3]]
    pcap = write_pcap(tmp_path / "epm.pcap", epm_exchange(RPC_BIND, answer) + follow)
    (alert,) = detect(pcap)[0]  # no inventory
    assert alert["type"] == "lateral_movement" and alert["severity"] == "critical"
    assert alert["ports"] == [49667] and alert["attacker"]["ip"] == VM1_IP
    assert alert["evidence"]["signatures"] == [
        "svcctl (PsExec-style remote service) on a port the endpoint mapper gave"
    ]
    # an interface that is not remote execution: nothing without an inventory
    lsarpc = tower(uuid.UUID("12345778-1234-abcd-ef00-0123456789ab"), 49667, VM2_IP)
    quiet = epm_exchange(RPC_BIND, rpc_response(bytes(20) + struct.pack("<IIIII", 1, 4, 0, 1, 2) + lsarpc))
    assert detect(write_pcap(tmp_path / "lsa.pcap", quiet + follow))[0] == []


def test_dcom_activation_of_wmi_followed_to_its_port(tmp_path):
    """wmiexec-style: RemoteCreateInstance for WbemLevel1Login on 135; the answer's string binding names the
    port where the client then talks to WMI (its first bytes there are not the WMI interface)."""
    clsid = uuid.UUID("8bc3f05e-d86b-11d0-a075-00c04fb68820").bytes_le
    request = b"\x05\x00\x00\x03\x10\x00\x00\x00" + bytes(16) + bytes(40) + clsid + bytes(20)
    binding = b"\x07\x00" + "VM2[49666]".encode("utf-16-le") + b"\x00\x00"
    answer = rpc_response(bytes(64) + struct.pack("<HH", 20, 18) + binding + bytes(8))
    assert dcerpc.mapped_endpoints(answer) == [(None, 49666, None)]
    follow = [(0.5 + t, p) for t, p in session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 49666, RPC_BIND, sport=42002)]
    (alert,) = detect(write_pcap(tmp_path / "wmi.pcap", epm_exchange(request, answer) + follow))[0]
    assert alert["severity"] == "critical" and alert["ports"] == [49666]
    assert alert["evidence"]["signatures"] == [
        "WbemLevel1Login (remote WMI over DCOM) on a port the endpoint mapper gave"
    ]
    # the same answer without the activation request: a port, but nothing says it is WMI
    alone = [(t, p) for t, p in epm_exchange(RPC_BIND, answer)] + follow
    assert detect(write_pcap(tmp_path / "plain.pcap", alone))[0] == []


# --- password guessing ----------------------------------------------------------------------------------
def test_repeated_short_sessions_are_guessing_and_long_ones_are_not(tmp_path):
    banner = b"SSH-2.0-libssh_0.10.4\r\n"
    tries = []
    for i in range(12):  # 12 logins failing within 2 s each, one every 5 s, on a port that says nothing
        tries += session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 2222, banner, sport=43000 + i, t=i * 5.0, close_after=2.0)
    (alert,) = detect(write_pcap(tmp_path / "guess.pcap", tries))[0]
    assert alert["type"] == "lateral_movement" and alert["evidence"]["service"] == "ssh"
    assert alert["evidence"]["brute_force"] == {"short_sessions": 12, "window_seconds": 300.0}
    assert alert["count"] == 12 and alert["ports"] == [2222]
    assert "password guessing (ssh" in alert["summary"]
    (alert,) = detect(write_pcap(tmp_path / "guess-inv.pcap", tries), inventory=lab_inventory())[0]
    assert alert["attacker"]["vm"] == "vm1" and alert["evidence"]["brute_force"]["short_sessions"] == 12
    admin = []
    for i in range(12):  # the same number of sessions, each an hour's work
        admin += session(VM1_IP, VM1_MAC, VM2_IP, VM2_MAC, 22, banner, sport=44000 + i, t=i * 5.0, close_after=3600)
    assert detect(write_pcap(tmp_path / "admin.pcap", admin))[0] == []


# --- the real captures ----------------------------------------------------------------------------------
def summary(alerts):
    return sorted(
        [a["type"], a["attacker"].get("vm") or a["attacker"].get("ip"), a["evidence"].get("service"), a["ports"]]
        for a in alerts
    )


@pytest.mark.parametrize("case", EXPECTED, ids=[c["file"] for c in EXPECTED])
def test_real_tool_capture(case):
    plain, _ = detect(TOOLS / case["file"])
    assert summary(plain) == case["plain"]
    with_inventory, _ = detect(TOOLS / case["file"], inventory=lab_inventory())
    assert summary(with_inventory) == case["with_inventory"]
    for key, value in case.get("evidence", {}).items():
        assert with_inventory[0]["evidence"][key] == value


ODD_PORTS = [
    ("rdp-port-3390.pcap", "rdp", 3390),
    ("rdp-hydra-brute.pcap", "rdp", 3390),
    ("vnc-port-15900.pcap", "vnc", 15900),
    ("vnc-hydra-brute.pcap", "vnc", 15900),
    ("winrm-port-8585.pcap", "winrm", 8585),
    ("ssh-port-2222.pcap", "ssh", 2222),
    ("smb-port-4455.pcap", "smb", 4455),
]


@pytest.mark.parametrize("name, service, port", ODD_PORTS)
def test_real_clients_first_bytes_name_the_protocol_on_a_port_that_does_not(name, service, port):
    """The real client's first payload on the odd port is what content.py reads; the port alone says nothing
    (neither a lateral-movement nor a management port)."""
    assert port not in LATERAL_PORTS and port not in MANAGEMENT_PORTS
    first = next(
        bytes(p[TCP].payload)
        for p in rdpcap(str(TOOLS / name))
        if TCP in p and p[IP].src == VM1_IP and p[TCP].dport == port and bytes(p[TCP].payload)
    )
    assert content.service(first) == service
    (alert,) = detect(TOOLS / name, inventory=lab_inventory())[0]
    assert (alert["attacker"]["vm"], alert["victims"][0]["vm"], alert["severity"]) == ("vm1", "vm2", "high")
    assert alert["evidence"]["service"] == service and alert["ports"] == [port]


def test_every_lab_tool_capture_is_expected_and_described():
    on_disk = {p.name for p in TOOLS.glob("*.pcap")}
    assert on_disk == {c["file"] for c in EXPECTED}
    readme = (TOOLS / "README.md").read_text()
    assert all(name in readme for name in on_disk)


@pytest.mark.lab
@pytest.mark.parametrize(
    "name",
    [
        "ssh-port-2222",
        "ssh-hydra-brute",
        "smb-port-4455",
        "rpc-epm-dynamic-port",
        "rdp-port-3390",
        pytest.param("rdp-hydra-brute", marks=pytest.mark.slow),
        "vnc-port-15900",
        "vnc-hydra-brute",
        "winrm-port-8585",
        pytest.param("slow-nmap-scan-delay", marks=pytest.mark.slow),
    ],
)
def test_real_tool_live(tmp_path, name):
    """The tool runs again in a fresh namespace lab; what it sends is found as in the committed capture."""
    from traffic_lab.captures import TOOLS as NEEDED
    from traffic_lab.captures import record

    missing = [t for t in NEEDED if shutil.which(t) is None]
    assert not missing, f"missing tools: {missing} (scripts/setup.sh installs them)"
    pcap = record(name, tmp_path)
    case = next(c for c in EXPECTED if c["file"] == f"{name}.pcap" or c.get("live") == name)
    alerts, _ = detect(pcap, inventory=lab_inventory())
    got = summary(alerts)
    if name == "slow-nmap-scan-delay":
        assert [g[:2] for g in got] == [["port_scan", "vm1"]]
        assert alerts[0]["evidence"]["window_seconds"] == 3600 and alerts[0]["evidence"]["distinct_ports"] >= 15
        return
    assert [g[:3] for g in got] == [w[:3] for w in case["with_inventory"]]
    if "brute_force" in case.get("evidence", {}):  # the count depends on the run's timing: at least the threshold
        assert alerts[0]["evidence"]["brute_force"]["short_sessions"] >= 10
