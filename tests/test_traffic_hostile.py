"""Issue 11 section 1, traffic and policy verbs: hostile Zeek/eve records and endless lines, damaged gzip
captures, `detect --follow` on a pipe, a FIFO and a growing file with real writers and real signals,
tunables out of range, a --netns that does not exist, and `policy suggest` at 25,000 VMs. Every run is a
real process, bounded in time (timeouts) and, for the endless line, in memory (its peak RSS)."""

from __future__ import annotations

import gzip
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmsentry.act.policy.resolve import resolve
from vmsentry.act.policy.schema import MAX_POLICY_BYTES, parse_policy
from vmsentry.act.policy.suggest import suggest
from vmsentry.analyse.detectors.tunables import DEFAULTS, check

from policy_lab import synth
from traffic_helpers import detect

# the hostile-input suite: bounded subprocesses and many mutated inputs; out of the fast lane, in every
# full run (scripts/test.sh, CI)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NMAP = "lab/nmap-sS-vm1-vs-hostns.pcap"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
VMSENTRY = [sys.executable, "-m", "vmsentry"]
CONN_HEAD = "#separator \\x09\n#path\tconn\n#fields\tts\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tconn_state\thistory\n"
GOOD_CONN = "1.0\t10.0.0.1\t1\t10.0.0.2\t80\ttcp\tS0\tS\n"


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------ line formats
def test_hostile_zeek_and_eve_records_are_skipped_with_their_line(tmp_path, run_cli):
    zeek = tmp_path / "conn.json"
    zeek.write_text(
        "\n".join(
            [
                '{"uid": "a", "ts": null, "id.orig_h": ["x"], "id.resp_h": "10.0.0.2", "proto": "tcp"}',
                '{"_path": {"x": 1}, "uid": "b"}',
                '{"uid": "c", "ts": 1, "id.orig_h": "10.0.0.1", "id.resp_h": "10.0.0.2", "proto": ["tcp"]}',
                '{"uid": "d", "ts": 1e400, "id.orig_h": "10.0.0.1", "id.resp_h": "10.0.0.2", "proto": "tcp",'
                ' "id.resp_p": 1e400}',
                "[" * 200_000,  # deeper than the JSON parser goes
                '{"uid": "e\\u0000", "ts": 2, "id.orig_h": "10.0.0.1\\u0000", "id.resp_h": "10.0.0.2", "proto": "tcp"}',
                '{"uid": "f", "ts": 3, "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "10.0.0.2",'
                ' "id.resp_p": 80, "proto": "tcp", "conn_state": "S0", "history": "S"}',
            ]
        )
        + "\n"
    )
    tsv = tmp_path / "bad-sep-conn.log"
    tsv.write_bytes(b"#separator \\xZZ\n" + CONN_HEAD.encode()[16:] + b"\0\0\0\tjunk\n" + GOOD_CONN.encode())
    eve = tmp_path / "eve.json"
    eve.write_text(
        '{"event_type": "flow", "timestamp": 5, "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2", "flow": 5}\n'
        '{"event_type": ["flow"]}\n'
        '{"event_type": "dns", "dns": [1], "timestamp": "2026-01-01T00:00:00Z"}\n'
        '{"event_type": "flow", "timestamp": "2026-01-01T00:00:00Z", "src_ip": "10.0.0.1", "dest_ip": "10.0.0.2",'
        ' "proto": "TCP", "src_port": 1e400, "tcp": {"tcp_flags_ts": "02"}}\n'
        '\0\0{"a": 1}\n'
    )
    _, stats = detect(zeek, tsv, eve)
    problems = stats["problems"]
    assert problems["malformed-zeek-record"] == 4 and problems["malformed-zeek-line"] == 4
    assert problems["malformed-eve-record"] == 3 and problems["malformed-eve-line"] == 1
    assert stats["events"] == 2  # the two good conn records' SYNs
    examples = "\n".join(stats["problem_examples"])
    assert f"{zeek}: line 5" in examples and "bad #separator" in examples and f"{eve}: line 4 (flow)" in examples
    proc = run_cli("detect", "--zeek", zeek, "--zeek", tsv, "--eve", eve, "--format", "json")
    _no_traceback(proc)
    assert proc.returncode == 2 and f"{zeek}: line 1" in proc.stderr


@pytest.mark.parametrize("flag", ["--eve", "--zeek"])
def test_endless_line_on_stdin_is_skipped_in_bounded_memory(flag):
    """256 MB without a newline from a real writer, then a good record: memory stays far below the line."""
    good = (
        '{"event_type": "arp", "timestamp": "2026-01-01T00:00:00.000000+0000", "arp": {"opcode": "reply",'
        ' "src_mac": "00:11:22:33:44:55", "src_ip": "10.0.0.9", "dest_mac": "00:00:00:00:00:01", "dest_ip": "10.0.0.1"}}'
        if flag == "--eve"
        else '{"uid": "f", "ts": 3, "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "10.0.0.2",'
        ' "id.resp_p": 80, "proto": "tcp", "conn_state": "S0", "history": "S"}'
    )
    # the first line tells the format; the second never ends (256 MB), the third is read again
    script = f'import sys; o = sys.stdout.buffer; o.write({good!r}.encode() + b\'\\n{{"x": "\')\n'
    script += "for _ in range(256): o.write(b'A' * (1 << 20))\n"
    script += f"o.write(b'\"}}\\n' + {good!r}.encode() + b'\\n')\n"
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    reader = subprocess.Popen(
        [*VMSENTRY, "detect", flag, "-", "--format", "json"],
        stdin=writer.stdout,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    writer.stdout.close()
    out, err = reader.communicate(timeout=120)
    writer.wait(timeout=10)
    stats = json.loads(out)["stats"]
    assert "Traceback" not in err.decode()
    assert reader.returncode == 2 and "line 2: longer than 1048576 bytes, skipped" in err.decode()
    assert stats["packets"] == 2  # the records on both sides of the long line
    assert stats["inputs"][0]["problems"] == 1


def test_endless_line_peak_memory():
    """The reader's peak RSS while a 256 MB line goes by stays under 128 MB (VmHWM of its own memory, read
    while it runs: wait4's ru_maxrss would also count the forked test runner before exec)."""
    script = 'import sys; o = sys.stdout.buffer; o.write(b\'{"event_type": "x"}\\n\')\n'
    script += "for _ in range(256): o.write(b'B' * (1 << 20))\n"
    writer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    reader = subprocess.Popen(
        [*VMSENTRY, "detect", "--eve", "-", "--format", "json"],
        stdin=writer.stdout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )
    writer.stdout.close()
    deadline, peak_kib = time.monotonic() + 120, 0
    while reader.poll() is None:
        assert time.monotonic() < deadline, "the reader hangs"
        try:
            status = Path(f"/proc/{reader.pid}/status").read_text()
        except OSError:
            break  # (just exited)
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak_kib = max(peak_kib, int(line.split()[1]))
        time.sleep(0.02)
    writer.wait(timeout=10)
    assert reader.wait(timeout=10) == 2
    assert 0 < peak_kib * 1024 < 128 << 20


# ------------------------------------------------------------------------------------------ damaged gzip
def _damaged_gz(shared_dir, tmp_path) -> Path:
    data = bytearray(gzip.compress((shared_dir / "pcaps" / NMAP).read_bytes()))
    for i in range(len(data) // 2, len(data) // 2 + 40):
        data[i] ^= 0x55
    bad = tmp_path / "damaged.pcap.gz"
    bad.write_bytes(bytes(data))
    return bad


def test_damaged_gzip_capture_detect(shared_dir, tmp_path, run_cli):
    bad = _damaged_gz(shared_dir, tmp_path)
    proc = run_cli("detect", bad, "--format", "json")
    _no_traceback(proc)
    assert proc.returncode == 2
    [line] = [x for x in proc.stderr.splitlines() if "read-error" in x]
    assert str(bad) in line and "damaged gzip data" in line and "read up to byte" in line
    assert not [x for x in proc.stderr.splitlines() if "truncated" in x]  # the read error is the one line
    report = json.loads(proc.stdout)
    assert report["alerts"][0]["type"] == "port_scan" and report["stats"]["packets"] > 500  # what came before


def test_damaged_gzip_cut_and_header(shared_dir, tmp_path, run_cli):
    whole = gzip.compress((shared_dir / "pcaps" / NMAP).read_bytes())
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    header = tmp_path / "header.pcap.gz"
    header.write_bytes(b"\x1f\x8b\x08\xff" + whole[4:])
    for path, words in ((cut, "read up to byte"), (header, "cannot read: damaged gzip data")):
        proc = run_cli("detect", path, "--format", "json")
        _no_traceback(proc)
        assert proc.returncode == 2 and str(path) in proc.stderr and words in proc.stderr


def test_damaged_gzip_policy_check(shared_dir, tmp_path, run_cli):
    lab = REPO / "examples" / "lab"
    pol = tmp_path / "p.yaml"
    assert run_cli("policy", "suggest", "--inventory", lab, "-o", pol).returncode == 0
    bad = _damaged_gz(shared_dir, tmp_path)
    proc = run_cli("policy", "check", pol, bad, "--inventory", lab, "--format", "json")
    _no_traceback(proc)
    assert proc.returncode == 2 and "read up to byte" in proc.stderr
    assert json.loads(proc.stdout)["stats"]["packets"] > 500


# ------------------------------------------------------------------------------------------ --follow
class _Lines:
    """A child's stdout read line by line with a deadline (no hang if nothing comes)."""

    def __init__(self, proc) -> None:
        self.proc, self.buf = proc, b""

    def next(self, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            data = os.read(self.proc.stdout.fileno(), 65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def rest(self) -> list[dict]:
        out, self.err = self.proc.communicate(timeout=30)
        assert b"Traceback" not in self.err
        return [json.loads(x) for x in (self.buf + out).splitlines() if x.strip()]


WRITER = """
import sys, time
data = open(sys.argv[1], 'rb').read()
out = sys.stdout.buffer if sys.argv[2] == '-' else open(sys.argv[2], 'ab')
for i in range(0, len(data), 4000):
    out.write(data[i:i + 4000]); out.flush(); time.sleep(0.02)
time.sleep(float(sys.argv[3]))  # keep the pipe open: the detector must not wait for its end
"""


def _detect_follow(*args, stdin=None):
    return subprocess.Popen(
        [*VMSENTRY, "detect", *args, "--follow"], stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )


def _alerts_then_stop(proc, sig) -> list[dict]:
    lines = _Lines(proc)
    first = lines.next(timeout=60)
    assert first is not None and first["type"] == "port_scan" and first["event"] == "raised"
    proc.send_signal(sig)
    rest = lines.rest()
    assert "stats" in rest[-1]
    return [first, *rest]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_follow_stdin_alerts_before_the_end_and_flushes_on_signal(shared_dir, sig):
    capture = shared_dir / "pcaps" / NMAP
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(capture), "-", "60"], stdout=subprocess.PIPE)
    proc = _detect_follow("-", stdin=writer.stdout)
    writer.stdout.close()
    try:
        got = _alerts_then_stop(proc, sig)
    finally:
        writer.kill()
        writer.wait()
    assert proc.returncode == 1  # alerts, and no damage: the stop cut the input, it is not broken
    assert got[-1]["stats"]["packets"] > 0


def test_follow_fifo_opened_before_its_writer(shared_dir, tmp_path):
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    proc = _detect_follow(str(fifo))
    time.sleep(0.5)  # the detector waits for a writer without blocking in open
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(shared_dir / "pcaps" / NMAP), str(fifo), "0"])
    lines = _Lines(proc)
    first = lines.next(timeout=60)
    assert first is not None and first["type"] == "port_scan"
    assert writer.wait(timeout=60) == 0
    rest = lines.rest()  # the writer closed the FIFO: the run ends by itself
    assert proc.returncode == 1 and rest[-1]["stats"]["packets"] == 2056


def test_follow_growing_file_then_sigint(shared_dir, tmp_path):
    capture = (shared_dir / "pcaps" / NMAP).read_bytes()
    growing = tmp_path / "growing.pcap"
    growing.write_bytes(capture[:24])
    proc = _detect_follow(str(growing))
    time.sleep(0.5)
    tail = tmp_path / "tail.bin"
    tail.write_bytes(capture[24:])
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tail), str(growing), "0"])
    assert writer.wait(timeout=60) == 0
    got = _alerts_then_stop(proc, signal.SIGINT)
    assert proc.returncode == 1 and got[-1]["stats"]["packets"] > 0


def test_follow_gzip_and_log_lines_on_a_pipe(shared_dir, tmp_path):
    gz = tmp_path / "nmap.pcap.gz"
    gz.write_bytes(gzip.compress((shared_dir / "pcaps" / NMAP).read_bytes()))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(gz), "-", "0"], stdout=subprocess.PIPE)
    proc = _detect_follow("-", stdin=writer.stdout)
    writer.stdout.close()
    out, err = proc.communicate(timeout=60)
    writer.wait(timeout=10)
    lines = [json.loads(x) for x in out.splitlines()]
    assert proc.returncode == 1 and lines[0]["type"] == "port_scan" and lines[-1]["stats"]["packets"] == 2056


# ------------------------------------------------------------------------------------------ tunables
@pytest.mark.parametrize(
    "tune",
    [
        "scan.max_state=0",
        "scan.max_state=-5",
        "scan.ports=0",
        "scan.window=0",
        "scan.window=nan",
        "scan.window=inf",
        "mac_flood.window=-1",
        "arp_spoof.garp_window=1e400",
        "dhcp.flood_clients=10000000000",
    ],
)
def test_tunables_out_of_range_refused_before_reading(shared_dir, run_cli, tune):
    proc = run_cli("detect", shared_dir / "pcaps" / NMAP, "--tune", tune, "--format", "json")
    _no_traceback(proc)
    assert proc.returncode == 3 and proc.stdout == "" and len(proc.stderr.strip().splitlines()) == 1
    assert tune.split("=")[0] in proc.stderr


def test_tunables_in_range_accepted(shared_dir, run_cli):
    for det, obj in DEFAULTS.items():
        check(det, obj)  # every default is in its documented range
    proc = run_cli(
        "detect",
        shared_dir / "pcaps" / NMAP,
        "--tune",
        "policy_violation.suppress=inf",
        "--tune",
        "scan.window=0.5",
        "--format",
        "json",
    )
    assert proc.returncode == 1, proc.stderr


# ------------------------------------------------------------------------------------------ --netns
def test_missing_netns_is_one_error_in_every_verb(tmp_path, run_cli):
    lab = REPO / "examples" / "lab"
    pol = tmp_path / "p.yaml"
    assert run_cli("policy", "suggest", "--inventory", lab, "-o", pol).returncode == 0
    name = "vmsentry-no-such-ns"
    assert not Path(f"/run/netns/{name}").exists()
    for argv, code in (
        (["compile", pol, "--inventory", lab], 2),
        (["apply", pol, "--inventory", lab, "--dry-run"], 2),
        (["check", pol, "--inventory", lab, "--interface", "lo"], 2),
        (["confirm"], 3),
        (["rollback"], 3),
    ):
        proc = run_cli("policy", *argv, "--netns", name)
        _no_traceback(proc)
        assert proc.returncode == code, (argv, proc.stderr)
        assert f"network namespace {name!r} does not exist" in proc.stderr and proc.stdout == ""


# ------------------------------------------------------------------------------------------ suggest at scale
def test_suggest_for_25000_vms_is_what_compile_accepts():
    inv = synth.inventory(25_000, n_nets=4, ports=False)
    for i, vm in enumerate(inv.vms):
        if i % 5 == 0:
            vm.nics[0].network = None  # only on a host bridge: listed by name
        if i % 3 == 0:
            vm.nics[0].ip = None
    text = suggest(inv, "synthetic")
    assert len(text.encode()) < MAX_POLICY_BYTES // 20
    zones = resolve(parse_policy(text, "s.yaml"), inv).zones
    expected: dict[str, set] = {}
    for vm in inv.vms:
        nic = vm.nics[0]
        expected.setdefault(nic.network or nic.bridge, set()).add(vm.name)
    assert {z: set(m) for z, m in zones.items()} == expected
    assert "(8,334): vm00000/net0" in text and "and 8,326 more" in text


@pytest.mark.slow
def test_suggest_then_compile_25000_vms_cli(tmp_path, run_cli):
    inv = synth.inventory(25_000, n_nets=4, ports=False).to_dict()
    parts = []
    for k in range(3):  # (a saved inventory is capped at 16 MiB: three files)
        part = tmp_path / f"inv{k}.json"
        part.write_text(json.dumps({**inv, "vms": inv["vms"][k::3]}))
        parts += ["--inventory", part]
    pol = tmp_path / "suggested.yaml"
    assert run_cli("policy", "suggest", *parts, "-o", pol).returncode == 0
    proc = run_cli("policy", "compile", pol, *parts, "--no-probe", "-o", tmp_path / "rules.nft")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "for 25000 VM NICs" in proc.stderr
