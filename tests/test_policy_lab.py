"""The segmentation policy applied for real in a namespace lab (tests/policy_lab/topology.py): real TCP/UDP
connections, real `arpspoof` (dsniff), nft in the lab's own namespace through `vmsentry policy apply
--netns`, the rollback watchdog, br_netfilter's sysctl, and `policy check` on the live bridge.

Needs root (namespaces, nft); never skips. Nothing here touches the root network namespace. The
connection matrices and rollback timings measured here are written to out/policy-lab/ for the report.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from policy_lab import topology as T
from policy_lab.netns import Servers, probe_many, send_frames

REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "policy"
INV = FIX / "lab-inventory.json"
OUT = REPO / "out" / "policy-lab"
HOST = T.HOST_VM_IP
NFT_ENV = {**os.environ, "TZ": "UTC"}
pytestmark = pytest.mark.lab

# (label, namespace, proto, destination, port, source address or None, expected with the policy)
MATRIX = [
    ("vm1(web) -> host ssh", "vm1", "tcp", HOST, 22, None, "blocked"),
    ("vm1(web) -> host dns", "vm1", "udp", HOST, 53, None, "open"),
    ("vm1(web) -> host 8080", "vm1", "tcp", HOST, 8080, None, "blocked"),
    ("vm1(web) -> vm2(app) 8080 [allow web->app]", "vm1", "tcp", "10.99.0.12", 8080, None, "open"),
    ("vm1(web) -> vm2(app) ssh [outside zone]", "vm1", "tcp", "10.99.0.12", 22, None, "blocked"),
    ("vm2(app) -> vm1(web) 80 [no rule]", "vm2", "tcp", "10.99.0.11", 80, None, "blocked"),
    ("vm2(app) -> vm3(app) ssh [same zone]", "vm2", "tcp", "10.99.0.13", 22, None, "open"),
    ("vm2(app) -> vm5(db) 5432 [allow app->db]", "vm2", "tcp", "10.99.0.15", 5432, None, "open"),
    ("vm1(web) -> vm5(db) 5432 [outside zone]", "vm1", "tcp", "10.99.0.15", 5432, None, "blocked"),
    ("tester 10.77.0.70 -> vm1(web) 80", "tester", "tcp", "10.99.0.11", 80, None, "open"),
    ("tester 10.77.0.70 -> vm1(web) 443", "tester", "tcp", "10.99.0.11", 443, None, "open"),
    ("dev 10.77.0.30 (outside tester range) -> vm1(web) 80", "dev", "tcp", "10.99.0.11", 80, None, "blocked"),
    ("dev 10.77.0.30 -> vm2(app) ssh [in window]", "dev", "tcp", "10.99.0.12", 22, None, "open"),
    ("admin 10.77.0.5 -> vm4(jump) ssh", "admin", "tcp", "10.99.0.14", 22, None, "open"),
    ("admin -> host ssh [not via jump]", "admin", "tcp", T.HOST_OFFICE_IP, 22, None, "blocked"),
    ("admin -> vm1(web) ssh [not via jump]", "admin", "tcp", "10.99.0.11", 22, None, "blocked"),
    ("vm4(jump) -> host ssh", "vm4", "tcp", HOST, 22, None, "open"),
    ("vm4(jump) -> vm1(web) ssh", "vm4", "tcp", "10.99.0.11", 22, None, "open"),
    ("vm4(jump) -> vm1(web) 80 [role is ssh only]", "vm4", "tcp", "10.99.0.11", 80, None, "blocked"),
    ("tester -> host 8080 [not reserved]", "tester", "tcp", T.HOST_OFFICE_IP, 8080, None, "open"),
    ("vm1 spoofing 10.99.0.99 -> host dns", "vm1", "udp", HOST, 53, "10.99.0.99", "blocked"),
]


def run_matrix(rows=MATRIX) -> dict[str, str]:
    res = probe_many([(T.ns(r[1]), r[2], r[3], r[4], r[5]) for r in rows])
    return {r[0]: got for r, got in zip(rows, res)}


def cli(*args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", "policy", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def nft_list(stateless=True, handles=False) -> str:
    args = (
        ["ip", "netns", "exec", T.HV, "nft"]
        + (["-s"] if stateless else [])
        + (["-a"] if handles else [])
        + ["list", "ruleset"]
    )
    return subprocess.run(args, capture_output=True, text=True, check=True, env=NFT_ENV).stdout


def window(offset_min: int, length_min: int, tz: str = "Asia/Shanghai") -> str:
    now = datetime.now(ZoneInfo(tz)).replace(second=0, microsecond=0)
    a = now + timedelta(minutes=offset_min)
    b = a + timedelta(minutes=length_min)
    return f"{a:%H:%M}-{b:%H:%M}"


def write_policy(tmp: Path, name: str, hours: str, edit=lambda s: s) -> Path:
    text = (FIX / "lab-policy.yaml").read_text().replace('"08:00-20:00"', f'"{hours}"')
    p = tmp / name
    p.write_text(edit(text))
    return p


def record(name: str, data) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")


def neigh(netns: str, ip: str) -> str | None:
    return T.neigh_mac(netns, ip)


def arpspoof(seconds: float) -> None:
    """Real dsniff arpspoof from vm1: tells vm2 that the host (10.99.0.1) is at vm1's MAC and, with -r,
    tells the host that vm2 (10.99.0.12) is at vm1's MAC. Killed with SIGKILL so it cannot re-ARP."""
    p = subprocess.Popen(
        ["ip", "netns", "exec", T.ns("vm1"), "arpspoof", "-i", "eth0", "-t", "10.99.0.12", "-r", HOST],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    time.sleep(seconds)
    caches = {"vm2 sees host at": neigh(T.ns("vm2"), HOST), "host sees vm2 at": neigh(T.HV, "10.99.0.12")}
    os.killpg(p.pid, signal.SIGKILL)
    _, err = p.communicate(timeout=5)
    caches["arpspoof said"] = err.decode(errors="replace").strip().splitlines()[-3:]
    return caches


lab_servers: list = []


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the policy lab needs root (network namespaces, nftables): run scripts/test.sh as root")
    for tool in ("ip", "nft", "arpspoof", "unshare"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} not found: run scripts/setup.sh")
    T.up()
    srv = Servers()
    lab_servers.append(srv)
    for port in T.HOST_TCP:
        srv.tcp(T.HV, "0.0.0.0", port, "host")
    for port in T.HOST_UDP:
        srv.udp(T.HV, "0.0.0.0", port, "host")
    for vm in T.VMS:
        for port in T.VM_TCP:
            srv.tcp(T.ns(vm), "0.0.0.0", port, vm)
    T.sh("ip", "-n", T.ns("vm1"), "addr", "add", "10.99.0.99/32", "dev", "eth0")  # for the spoofing probe
    tmp = tmp_path_factory.mktemp("policy-lab")
    try:
        yield {"tmp": tmp, "state": tmp / "state"}
    finally:
        from vmsentry.act.policy.apply import _stop_watchdog, read_pending

        pending = read_pending(tmp / "state")
        if pending:  # a test failed while a rollback was armed: disarm it
            _stop_watchdog(pending)
        srv.close()
        T.down()


def apply(lab, policy: Path, *extra):
    return cli("apply", policy, "--inventory", INV, "--netns", T.HV, "--state-dir", lab["state"], *extra)


# ------------------------------------------------------------------------------------------------ tests
# about 10 s: two connection matrices and two 3.2 s arpspoof runs
@pytest.mark.slow
def test_01_connection_matrix_and_arpspoof_before_and_after(lab):
    before = run_matrix()
    assert all(v == "open" for v in before.values()), before  # no policy: everything reaches everything
    # without the policy, arpspoof poisons both caches (the attack is real)
    probe_many([(T.ns("vm2"), "tcp", HOST, 22), (T.HV, "tcp", "10.99.0.12", 22)])
    poisoned = arpspoof(3.2)
    said = poisoned.pop("arpspoof said")
    assert poisoned == {"vm2 sees host at": "52:54:00:99:00:11", "host sees vm2 at": "52:54:00:99:00:11"}, (
        poisoned,
        said,
    )
    T.flush_neigh()

    pol = write_policy(lab["tmp"], "in-window.yaml", window(-60, 120))
    t = time.perf_counter()
    p = apply(lab, pol)
    apply_s = time.perf_counter() - t
    assert p.returncode == 0, p.stderr
    assert "+table inet vmsentry {" in p.stdout  # the diff against nothing loaded
    assert f"applied to netns {T.HV} in one transaction" in p.stderr
    after = run_matrix()
    expected = {r[0]: r[6] for r in MATRIX}
    assert after == expected, {k: (after[k], expected[k]) for k in after if after[k] != expected[k]}

    # real arpspoof with the policy: nobody's cache changes, and the anti-spoofing counters show the drops
    probe_many([(T.ns("vm2"), "tcp", HOST, 22), (T.HV, "tcp", "10.99.0.12", 22)])  # warm both caches
    kept = arpspoof(3.2)
    said = kept.pop("arpspoof said")
    assert any("arp reply 10.99.0.1 is-at" in line for line in said), said  # it really sent forged replies
    assert kept == {"vm2 sees host at": T.HOST_VM_MAC, "host sees vm2 at": "52:54:00:99:00:12"}, (kept, said)
    listing = nft_list(stateless=False)
    line = next(ln for ln in listing.splitlines() if "ARP spoofing: sender IP is not the port's" in ln)
    drops = int(line.split("counter packets ")[1].split()[0])
    assert drops >= 2, line
    record(
        "matrix",
        {
            "before": before,
            "after": after,
            "expected_after": expected,
            "arpspoof_before": poisoned,
            "arpspoof_after": kept,
            "arp_spoof_drops": drops,
            "cli_apply_seconds": round(apply_s, 3),
        },
    )


def test_02_idempotent_and_time_window_that_excludes_now(lab):
    pol = lab["tmp"] / "in-window.yaml"
    before = nft_list(handles=True)
    p = apply(lab, pol)
    assert p.returncode == 0 and "nothing to change" in p.stderr and p.stdout == ""
    assert nft_list(handles=True) == before  # not even re-loaded
    out = write_policy(lab["tmp"], "out-of-window.yaml", window(120, 60))
    d = apply(lab, out, "--dry-run")
    assert d.returncode == 0 and "meta hour" in d.stdout and "nothing applied" in d.stderr
    assert nft_list(handles=True) == before  # dry run changed nothing
    assert apply(lab, out).returncode == 0
    got = run_matrix([r for r in MATRIX if r[1] == "dev"])
    assert got["dev 10.77.0.30 -> vm2(app) ssh [in window]"] == "blocked"
    assert got["dev 10.77.0.30 (outside tester range) -> vm1(web) 80"] == "blocked"
    # and the window that includes now opens it again
    assert apply(lab, pol).returncode == 0
    assert run_matrix([r for r in MATRIX if r[1] == "dev"])["dev 10.77.0.30 -> vm2(app) ssh [in window]"] == "open"


def test_03_rollback_restores_the_previous_ruleset_byte_for_byte(lab):
    # a table that is not ours must survive everything untouched
    subprocess.run(
        ["ip", "netns", "exec", T.HV, "nft", "-f", "-"],
        input="table inet someone_else {\n"
        " chain c { type filter hook input priority 10; policy accept; tcp dport 4444 counter; }\n}\n",
        text=True,
        check=True,
        env=NFT_ENV,
    )
    previous = nft_list()
    risky = write_policy(
        lab["tmp"],
        "risky.yaml",
        window(-60, 120),
        lambda s: s.replace(
            "- {from: any-vm, to: host, proto: udp, ports: [53, 67]}",
            "- {from: any-vm, to: host, proto: udp, ports: [53, 67]}\n"
            "  - {from: web, to: host, proto: tcp, ports: [22]}",
        ),
    )
    t0 = time.time()
    p = apply(lab, risky, "--confirm-within", "2")
    returned = time.time() - t0
    assert p.returncode == 0, p.stderr
    assert "rolls back by itself at" in p.stderr and f"vmsentry policy confirm --netns {T.HV}" in p.stderr
    assert returned < 2.0  # the prompt comes back at once
    assert run_matrix([MATRIX[0]])[MATRIX[0][0]] == "open"  # the new rule is live
    pending = json.loads((lab["state"] / "pending.json").read_text())
    deadline = pending["deadline"]
    rb_file = lab["state"] / "rollback.json"
    while not rb_file.exists() and time.time() < deadline + 5:
        time.sleep(0.02)
    seen = time.time()
    rb = json.loads(rb_file.read_text())
    assert rb["ok"] and rb["identical"], rb
    # byte for byte: our two tables, and every other table (nft lists tables in creation order, and ours
    # were re-created, so the order of the blocks in the full listing is the one thing that may differ)
    from vmsentry.act.policy.nftexec import other_tables, our_tables

    now = nft_list()
    assert our_tables(now) == our_tables(previous) and our_tables(now)
    assert other_tables(now) == other_tables(previous) and "someone_else" in other_tables(now)
    assert sorted(now.splitlines()) == sorted(previous.splitlines())
    assert run_matrix([MATRIX[0]])[MATRIX[0][0]] == "blocked"
    assert not (lab["state"] / "pending.json").exists()
    c = cli("confirm", "--netns", T.HV, "--state-dir", lab["state"])
    assert c.returncode == 1 and "too late" in c.stderr
    record(
        "rollback",
        {
            "confirm_within_s": 2,
            "apply_returned_after_s": round(returned, 3),
            "watchdog_late_ms": rb["late_ms"],
            "restore_ms": rb["restore_ms"],
            "restored_after_deadline_ms": round((rb["restored_at"] - deadline) * 1000, 1),
            "test_saw_it_after_deadline_ms": round((seen - deadline) * 1000, 1),
            "identical": rb["identical"],
        },
    )


def test_04_confirm_keeps_the_new_ruleset(lab):
    risky = lab["tmp"] / "risky.yaml"
    p = apply(lab, risky, "--confirm-within", "2")
    assert p.returncode == 0, p.stderr
    applied = nft_list()
    c = cli("confirm", "--netns", T.HV, "--state-dir", lab["state"])
    assert c.returncode == 0 and "confirmed with" in c.stderr
    time.sleep(2.5)
    assert nft_list() == applied  # nothing was re-created: same order too
    assert not (lab["state"] / "rollback.json").exists()
    assert cli("confirm", "--netns", T.HV, "--state-dir", lab["state"]).returncode == 1
    # `policy rollback` rolls a pending apply back at once
    assert apply(lab, lab["tmp"] / "in-window.yaml", "--confirm-within", "30").returncode == 0
    r = cli("rollback", "--netns", T.HV, "--state-dir", lab["state"])
    assert r.returncode == 0 and "restored exactly" in r.stderr
    assert nft_list() == applied
    assert apply(lab, lab["tmp"] / "in-window.yaml").returncode == 0


def test_05_nft_error_leaves_the_old_ruleset(lab):
    from vmsentry.act.policy import nftexec

    before = nft_list(handles=True)
    good = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "vmsentry",
                "policy",
                "compile",
                lab["tmp"] / "risky.yaml",
                "--inventory",
                INV,
                "--format",
                "json",
                "--no-probe",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    good["nftables"].append(
        {"add": {"rule": {"family": "bridge", "table": "vmsentry", "chain": "forward", "expr": [{"reject": None}]}}}
    )  # no bridge reject on this kernel
    with pytest.raises(nftexec.NftError) as exc:
        nftexec.apply_json(json.dumps(good), T.HV)
    assert "nothing was changed" in str(exc.value)
    assert nft_list(handles=True) == before


def test_06_bridge_nf_call_iptables_is_checked(lab):
    sysctl = "net.bridge.bridge-nf-call-iptables"
    T.sh("ip", "netns", "exec", T.HV, "sysctl", "-qw", f"{sysctl}=0")
    try:
        # why it matters: with 0 the inet rules never see bridged VM-to-VM traffic
        label = "vm1(web) -> vm2(app) ssh [outside zone]"
        assert run_matrix([r for r in MATRIX if r[0] == label])[label] == "open"
        before = nft_list(handles=True)
        p = apply(lab, lab["tmp"] / "risky.yaml")
        assert p.returncode == 1
        assert f"net.bridge.bridge-nf-call-iptables is 0 in network namespace {T.HV}" in p.stderr
        assert "--set-sysctl" in p.stderr and nft_list(handles=True) == before
        p = apply(lab, lab["tmp"] / "risky.yaml", "--set-sysctl")
        assert p.returncode == 0 and "set net.bridge.bridge-nf-call-iptables=1" in p.stderr
        assert T.sh("ip", "netns", "exec", T.HV, "sysctl", "-n", sysctl).stdout.strip() == "1"
        assert run_matrix([r for r in MATRIX if r[0] == label])[label] == "blocked"
    finally:
        T.sh("ip", "netns", "exec", T.HV, "sysctl", "-qw", f"{sysctl}=1")


def test_07_quarantine_from_the_policy_and_at_run_time(lab):
    from vmsentry.act.policy import nftexec, quarantine_commands

    q = write_policy(
        lab["tmp"], "quarantine.yaml", window(-60, 120), lambda s: s.replace("quarantine: []", "quarantine: [vm5]")
    )
    assert apply(lab, q).returncode == 0
    rows = [
        ("vm5 -> host forensics 9999", "vm5", "tcp", HOST, 9999, None),
        ("vm5 -> host ssh", "vm5", "tcp", HOST, 22, None),
        ("vm5 -> host dns", "vm5", "udp", HOST, 53, None),
        ("vm2(app) -> vm5 5432", "vm2", "tcp", "10.99.0.15", 5432, None),
        ("vm5 -> vm1 80", "vm5", "tcp", "10.99.0.11", 80, None),
        ("tester -> vm5 5432 (routed)", "tester", "tcp", "10.99.0.15", 5432, None),
        ("host -> vm5 ssh (host-initiated)", "hv", "tcp", "10.99.0.15", 22, None),
    ]
    got = run_matrix([(r[0], r[1].replace("hv", T.HV), *r[2:]) for r in rows])
    assert got == {
        "vm5 -> host forensics 9999": "open",
        "vm5 -> host ssh": "blocked",
        "vm5 -> host dns": "blocked",
        "vm2(app) -> vm5 5432": "blocked",
        "vm5 -> vm1 80": "blocked",
        "tester -> vm5 5432 (routed)": "blocked",
        "host -> vm5 ssh (host-initiated)": "open",
    }, got
    # at run time, as the future watcher will: vm3 into the quarantine sets, and out again
    label = "vm2(app) -> vm3(app) ssh [same zone]"
    row = [r for r in MATRIX if r[0] == label]
    t = time.perf_counter()
    nftexec.apply_json(json.dumps(quarantine_commands("52:54:00:99:00:13", ["10.99.0.13"])), T.HV)
    q_ms = (time.perf_counter() - t) * 1000
    assert run_matrix(row)[label] == "blocked"
    nftexec.apply_json(json.dumps(quarantine_commands("52:54:00:99:00:13", ["10.99.0.13"], add=False)), T.HV)
    assert run_matrix(row)[label] == "open"
    record("quarantine", {"matrix": got, "runtime_quarantine_call_ms": round(q_ms, 1)})
    assert apply(lab, lab["tmp"] / "in-window.yaml").returncode == 0


def test_08_policy_check_on_the_live_bridge(lab):
    cap = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vmsentry",
            "policy",
            "check",
            lab["tmp"] / "in-window.yaml",
            "--inventory",
            INV,
            "--interface",
            "br-vsl",
            "--netns",
            T.HV,
            "--duration",
            "2.5",
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    probe_many(
        [
            (T.ns("vm1"), "tcp", "10.99.0.12", 22),
            (T.ns("vm1"), "tcp", HOST, 22),
            (T.ns("vm1"), "tcp", "10.99.0.12", 8080),
        ],
        timeout=0.5,
    )
    out, err = cap.communicate(timeout=30)
    assert cap.returncode == 1, err
    doc = json.loads(out)
    seen = {(a["attacker"]["vm"], a["victims"][0]["ip"], tuple(a["ports"])) for a in doc["alerts"]}
    assert ("vm1", "10.99.0.12", (22,)) in seen and ("vm1", HOST, (22,)) in seen
    assert not any(p == (8080,) for _, _, p in seen)
    assert doc["stats"]["packets"] > 0


def test_09_refuses_to_cut_the_callers_own_ssh_source(lab):
    from vmsentry.act.policy.apply import ApplyError
    from vmsentry.act.policy.apply import apply as do_apply
    from vmsentry.act.policy.nft import compile_nft
    from vmsentry.act.policy.resolve import resolve
    from vmsentry.act.policy.schema import load_policy
    from vmsentry.commands.policy import _lockout
    from vmsentry.model import Inventory

    res = resolve(load_policy(str(lab["tmp"] / "risky.yaml")), Inventory.from_dict(json.loads(INV.read_text())))
    os.environ["SSH_CONNECTION"] = f"10.77.0.5 50000 {HOST} 22"
    try:
        msg = _lockout(res, None)
        assert msg and "blocks new connections from your SSH source 10.77.0.5 to the host port 22" in msg
        os.environ["SSH_CONNECTION"] = f"10.99.0.14 50000 {HOST} 22"  # coming from the jump host: fine
        assert _lockout(res, None) is None
    finally:
        del os.environ["SSH_CONNECTION"]
    rs = compile_nft(res)
    with pytest.raises(ApplyError, match="--confirm-within"):
        do_apply(rs, netns=T.HV, state_dir=str(lab["state"]), lockout_check=lambda: msg)


def _udp_frame(src_mac: str, src_ip: str, marker: bytes) -> bytes:
    from scapy.all import IP, UDP, Ether, Raw

    return bytes(
        Ether(src=src_mac, dst=T.HOST_VM_MAC) / IP(src=src_ip, dst=HOST) / UDP(sport=40053, dport=53) / Raw(marker)
    )


def test_10_impersonating_another_vm_mac_and_ip_from_the_wrong_port(lab):
    """vm1 forges frames with vm3's MAC *and* IP (the one thing an IP-only rule cannot tell apart): only the
    port binding of the bridge table stops them."""
    srv = lab_servers[0]

    def received(marker: bytes) -> int:
        time.sleep(0.4)
        return sum(1 for ns_, peer, port, data in srv.udp_log if data == marker)

    # without our tables the forgery reaches the host's DNS port
    subprocess.run(
        ["ip", "netns", "exec", T.HV, "nft", "delete table bridge vmsentry; delete table inet vmsentry"],
        check=True,
        env=NFT_ENV,
    )
    send_frames(T.ns("vm1"), "eth0", [_udp_frame("52:54:00:99:00:13", "10.99.0.13", b"forged-1")] * 3)
    without = received(b"forged-1")
    assert without == 3
    assert apply(lab, lab["tmp"] / "in-window.yaml").returncode == 0
    send_frames(T.ns("vm1"), "eth0", [_udp_frame("52:54:00:99:00:13", "10.99.0.13", b"forged-2")] * 3)
    send_frames(T.ns("vm3"), "eth0", [_udp_frame("52:54:00:99:00:13", "10.99.0.13", b"genuine")] * 1)
    assert received(b"forged-2") == 0
    assert received(b"genuine") == 1  # the real vm3 still gets through
    line = next(ln for ln in nft_list(stateless=False).splitlines() if "MAC spoofing: source MAC" in ln)
    assert int(line.split("counter packets ")[1].split()[0]) >= 3
    record("impersonation", {"forged_frames_delivered_without_policy": without, "with_policy": 0})
