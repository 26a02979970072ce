"""--syslog: RFC 5424 + CEF over UDP, TCP and a local socket, to receivers the tests open and to a real
rsyslogd; a dead receiver costs one line and nothing else; the queue is bounded."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from vmsentry.report import syslog as syslog_mod
from vmsentry.report.syslog import SyslogError, SyslogSender, cef, cef_header, cef_value, parse_url, rfc5424

RFC5424 = re.compile(
    r"^<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>\S+) vmsentry (?P<pid>\d+) "
    r"(?P<msgid>\S+) - (?P<msg>CEF:0\|.*)$",
    re.S,
)


@pytest.fixture(scope="module")
def alerts(shared_dir, run_cli):
    pcaps = sorted((shared_dir / "pcaps").glob("*.pcap"))
    proc = run_cli("detect", *pcaps, "--format", "json")
    assert proc.returncode == 1, proc.stderr
    return json.loads(proc.stdout)["alerts"]


def _cef_fields(msg: str) -> tuple[list[str], dict[str, str]]:
    """Split a CEF record as a CEF reader does: 7 header fields (\\| escaped), then key=value pairs."""
    head, pos = [], 0
    for _ in range(7):
        match = re.compile(r"((?:\\.|[^|\\])*)\|").match(msg, pos)
        head.append(re.sub(r"\\(.)", r"\1", match.group(1)))
        pos = match.end()
    ext = {}
    for key, value in re.findall(r"(\w+)=((?:\\.|[^=\\])*?)(?= \w+=|$)", msg[pos:]):
        ext[key] = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), value)
    return head, ext


def _free_port(kind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cef_escapes_what_the_cef_specification_says():
    assert cef_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert cef_value("x=1\\y\r\nz\n") == "x\\=1\\\\y\\nz\\n"
    hostile = {
        "id": "0123456789abcdef",
        "type": "arp_spoof",
        "severity": "critical",
        "first_seen": 1.0,
        "last_seen": 2.5,
        "count": 3,
        "attacker": {"ip": "10.0.0.9", "mac": "52:54:00:00:00:09", "vm": "evil|vm=1"},
        "victims": [{"ip": "fe80::1", "mac": None, "vm": None}],
        "ports": [],
        "confidence": 0.97,
        "summary": "line one\nline two = x | y \\ z",
        "evidence": {"reasons": {"contradicts_inventory": 1}},
    }
    head, ext = _cef_fields(cef(hostile, "sensor|1", "virbr0"))
    assert head[:7] == [
        "CEF:0",
        "vmsentry",
        "vmsentry",
        head[3],
        "9100101",
        "ARP reply claims an address the inventory gives another MAC: arp_spoof",
        "10",
    ]
    assert ext["msg"] == hostile["summary"] and ext["cs3"] == "evil|vm=1" and ext["dvchost"] == "sensor|1"
    assert ext["src"] == "10.0.0.9" and ext["c6a3"] == "fe80::1" and ext["cs1"] == "T1557.002"
    assert ext["externalId"] == "0123456789abcdef" and ext["start"] == "1000" and ext["end"] == "2500"
    line = rfc5424(hostile, "sensor 1\x1b", None).decode()
    match = RFC5424.match(line)
    assert match and match["pri"] == str(4 * 8 + 2) and match["host"] == "sensor1" and match["msgid"] == "arp_spoof"
    assert "\n" not in line


def test_urls():
    assert parse_url("udp://127.0.0.1:5514") == ("udp", ("127.0.0.1", 5514))
    assert parse_url("tcp://[::1]") == ("tcp", ("::1", 514))
    assert parse_url("unix:///dev/log") == ("unix", "/dev/log") and parse_url("/run/x.sock") == ("unix", "/run/x.sock")
    for bad in ("http://x", "udp://", "udp://h:99999", "unix://"):
        with pytest.raises(SyslogError):
            parse_url(bad)


def test_udp_tcp_and_unix_receivers_get_every_alert(alerts, tmp_path):
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    path = str(tmp_path / "log.sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(path)
    senders = [
        SyslogSender(f"udp://127.0.0.1:{udp.getsockname()[1]}", "sensor1"),
        SyslogSender(f"tcp://127.0.0.1:{tcp.getsockname()[1]}", "sensor1"),
        SyslogSender(f"unix://{path}", "sensor1"),
    ]
    for sender in senders:
        for alert in alerts:
            sender.send(alert, iface="virbr0")
    for sock in (udp, unix):
        sock.settimeout(5)
        got = [sock.recv(65536).decode() for _ in alerts]
        _check(got, alerts)
    conn, _ = tcp.accept()
    conn.settimeout(5)
    data = b""
    while data.count(b" - CEF:0|") < len(alerts):
        data += conn.recv(65536)
    frames = []
    while data:  # RFC 6587 octet counting: "LEN SP MSG"
        length, _, rest = data.partition(b" ")
        frames.append(rest[: int(length)].decode())
        data = rest[int(length) :]
    _check(frames, alerts)
    for sender in senders:
        sender.close()
        assert sender.sent == len(alerts) and sender.dropped == 0
    for sock in (udp, tcp, conn, unix):
        sock.close()


def _check(messages: list[str], alerts: list[dict]) -> None:
    assert len(messages) == len(alerts)
    for message, alert in zip(messages, alerts):
        match = RFC5424.match(message)
        assert match, message
        head, ext = _cef_fields(match["msg"])
        assert head[4] == str(alert["signature_id"]) and ext["externalId"] == alert["id"]
        assert ext["deviceInboundInterface"] == "virbr0" and match["msgid"] == alert["type"]


@pytest.mark.parametrize("scheme", ["udp", "tcp", "unix"])
def test_a_dead_receiver_is_one_line_and_no_stop(alerts, tmp_path, scheme, monkeypatch):
    monkeypatch.setattr(syslog_mod, "RETRY_SECONDS", 0.05)
    if scheme == "unix":
        url = f"unix://{tmp_path / 'nobody.sock'}"
    else:
        url = f"{scheme}://127.0.0.1:{_free_port(socket.SOCK_DGRAM if scheme == 'udp' else socket.SOCK_STREAM)}"
    problems: list[str] = []
    sender = SyslogSender(url, "sensor1", on_problem=problems.append)
    for _ in range(5):
        for alert in alerts:
            sender.send(alert)
        time.sleep(0.1)  # UDP: the port-unreachable answer makes the next send fail
    sender.close(timeout=1)
    down = [p for p in problems if "cannot send" in p]
    assert len(down) == 1 and url in down[0], problems
    assert sender.dropped >= len(alerts) * 4


def test_the_queue_is_bounded_while_the_receiver_is_slow(alerts, monkeypatch):
    monkeypatch.setattr(syslog_mod, "QUEUE", 50)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts, never reads: the sender's socket buffer fills, then the queue
    problems: list[str] = []
    sender = SyslogSender(f"tcp://127.0.0.1:{server.getsockname()[1]}", "sensor1", on_problem=problems.append)
    big = dict(alerts[0], summary="x" * 1000)
    for _ in range(20_000):
        sender.send(big)
        assert sender.queue.qsize() <= 50
    assert sender.dropped > 0
    sender.close(timeout=0.5)
    server.close()


def test_detect_sends_each_alert_to_syslog(shared_dir, run_cli):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    pcap = shared_dir / "pcaps" / "lab" / "arpspoof-vm1-vs-vm2.pcap"
    proc = run_cli("detect", pcap, "--format", "json", "--syslog", f"udp://127.0.0.1:{receiver.getsockname()[1]}")
    assert proc.returncode == 1, proc.stderr
    alerts = json.loads(proc.stdout)["alerts"]
    got = [receiver.recv(65536).decode() for _ in alerts]
    assert {RFC5424.match(m)["msgid"] for m in got} == {a["type"] for a in alerts}
    receiver.close()
    bad = run_cli("detect", pcap, "--syslog", "http://nowhere")
    assert bad.returncode == 3 and bad.stderr.count("\n") == 1 and "http://nowhere" in bad.stderr


def test_a_real_rsyslogd_receives_them_over_udp_tcp_and_its_socket(alerts, tmp_path):
    rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
    assert Path(rsyslogd).exists(), "rsyslog is in scripts/setup.sh APT_PACKAGES"
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    sock, out = tmp_path / "log.sock", tmp_path / "received.log"
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(
        f"""global(workDirectory="{tmp_path}")
module(load="imudp")
module(load="imtcp")
module(load="imuxsock" SysSock.Use="off")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
input(type="imuxsock" Socket="{sock}" UseSpecialParser="off" ParseHostname="on")
template(name="fields" type="string" string="%protocol-version% %app-name% %msgid% %syslogseverity% %msg%\\n")
*.* action(type="omfile" file="{out}" template="fields")
"""
    )
    proc = subprocess.Popen(
        [rsyslogd, "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while not sock.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert sock.exists(), proc.stdout.read().decode() if proc.poll() is not None else "rsyslogd did not start"
        time.sleep(0.3)  # the network inputs open beside the socket
        for url in (f"udp://127.0.0.1:{udp}", f"tcp://127.0.0.1:{tcp}", f"unix://{sock}"):
            sender = SyslogSender(url, "sensor1")
            for alert in alerts:
                sender.send(alert)
            sender.close()
            assert sender.sent == len(alerts), url
        want = 3 * len(alerts)
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < want):
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = [line for line in out.read_text().splitlines() if " vmsentry " in line]
    assert len(lines) == want, out.read_text()
    severity = {"critical": "2", "high": "3", "medium": "4", "low": "5", "info": "6"}
    for n, line in enumerate(lines):
        alert = alerts[n % len(alerts)]
        version, app, msgid, sev, msg = line.split(" ", 4)
        assert (version, app, msgid, sev) == ("1", "vmsentry", alert["type"], severity[alert["severity"]])
        head, ext = _cef_fields(msg.strip())
        assert head[4] == str(alert["signature_id"]) and ext["externalId"] == alert["id"]
    assert os.path.getsize(out) > 0
