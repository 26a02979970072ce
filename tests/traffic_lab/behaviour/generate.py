"""One labelled capture: the lab up, its services, tcpdump on the bridge, the benign driver for the run's
length and the planned attacks at their times; then the truth file, the inventory and a summary.
benchmarks/make_labelled_captures.py is the command line over ``generate``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from traffic_lab.behaviour import attacks as attack_mod
from traffic_lab.behaviour.services import MIRROR_IP, Services
from traffic_lab.behaviour.topology import BRIDGE, GATEWAY_IP, BehaviourLab, plan_vms
from traffic_lab.behaviour.truth import check_truth, inventory_doc, summarise, truth_doc, write_json

TESTS = Path(__file__).resolve().parents[2]
TOOLS = ("ip", "tcpdump", "nmap", "hping3", "arpspoof", "macof", "iodine", "iodined", "hydra", "curl", "nc", "ssh",
         "dnsmasq", "pgbench", "runuser", "/usr/sbin/sshd")  # fmt: skip


@dataclass
class Settings:
    split: str
    out: Path
    seed: int
    vms: int
    minutes: float
    quick: bool
    kinds: tuple[str, ...] = attack_mod.KINDS
    prefix: str | None = None


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def attack_counts(s: Settings) -> dict[str, int]:
    if s.split == "train":
        return {}
    if s.quick:
        return dict.fromkeys(s.kinds, 1)
    return {k: n for k, n in attack_mod.FULL_COUNTS.items() if k in s.kinds}


def generate(s: Settings) -> dict:
    vms = plan_vms(s.vms)
    duration = s.minutes * 60
    s.out.mkdir(parents=True, exist_ok=True)
    pcap = s.out / f"{s.split}.pcap"
    part = s.out / f".{s.split}.pcap.part"
    work = Path(tempfile.mkdtemp(prefix="vmsentry-behaviour-"))
    os.chmod(work, 0o755)
    lab = BehaviourLab(vms, s.prefix)
    services = Services(lab, work)
    planned = attack_mod.plan(vms, s.split, s.seed, duration, attack_counts(s), s.quick)
    t0 = time.time()
    try:
        lab.up()
        log(f"{s.split}: lab up ({len(vms)} VMs, prefix {lab.prefix}) in {time.time() - t0:.1f} s")
        services.start()
        log(f"{s.split}: services up in {time.time() - t0:.1f} s")
        dump = lab.spawn(
            lab.bridge_ns,
            ["tcpdump", "-i", BRIDGE, "-n", "-s", "256", "-B", "32768", "-Z", "root", "-w", str(part)],
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        ready = dump.stderr.readline()
        if "listening on" not in ready:
            raise RuntimeError(f"tcpdump did not start: {ready.strip()}")
        config = work / "driver.json"
        config.write_text(json.dumps({
            "seed": s.seed, "duration": duration, "max_seconds": duration + 900, "resolver": GATEWAY_IP, "mirror": MIRROR_IP,
            "inet_ns": lab.ns("inet"), "ssh_key": str(services.ssh_key),
            "vms": [{"name": vm.name, "role": vm.role, "ip": vm.ip, "ns": lab.ns(vm.name)} for vm in vms],
        }))  # fmt: skip
        env = {**os.environ, "PYTHONPATH": f"{TESTS}:{TESTS.parent / 'src'}"}
        driver = subprocess.Popen([sys.executable, "-m", "traffic_lab.behaviour.driver", str(config)], env=env,
                                  stdout=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        start = time.time()
        runner = attack_mod.Runner(lab, work, start)
        runner.launch(planned)
        log(f"{s.split}: benign traffic for {duration:.0f} s, {len(planned)} attacks planned")
        next_note = start + 60
        while driver.poll() is None and (time.time() < start + duration or not runner.done()):
            time.sleep(1)
            if time.time() >= next_note:
                done = sum(1 for a in planned if a.incident)
                log(f"{s.split}: {time.time() - start:.0f}/{duration:.0f} s, {done}/{len(planned)} attacks done")
                next_note += 60
            if time.time() > start + duration + 600:  # an attack that hangs: its thread is abandoned
                break
        runner.join(0)
        time.sleep(3.0)  # benign frames after the last attack: every incident lies inside the capture
        driver.send_signal(signal.SIGTERM)
        try:
            stats_line = driver.communicate(timeout=30)[0].strip().splitlines()
        except subprocess.TimeoutExpired:
            os.killpg(driver.pid, signal.SIGKILL)
            stats_line = []
        time.sleep(1.0)
        lab.stop(dump, signal.SIGINT, timeout=30)
        dropped = [line.strip() for line in dump.stderr.read().splitlines() if "dropped" in line]
    finally:
        services.stop()
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    incidents = [a.incident for a in planned if a.incident]
    problems = [f"{a.kind} by {a.attacker.name}: {a.problem}" for a in planned if a.problem]
    problems += [f"{a.kind} by {a.attacker.name}: did not run" for a in planned if not a.incident]
    summary = summarise(part, vms)
    doc = truth_doc(s.split, pcap.name, vms, incidents)
    outside = check_truth(doc, summary["first"] or 0, summary["last"] or 0)
    os.replace(part, pcap)
    write_json(s.out / f"{s.split}.inventory.json", inventory_doc(vms))
    write_json(s.out / f"{s.split}.truth.json", doc)
    summary.update({
        "split": s.split, "pcap": str(pcap), "seed": s.seed, "vms": len(vms), "wall_seconds": round(time.time() - t0, 1),
        "driver": json.loads(stats_line[-1]) if stats_line else None, "tcpdump": dropped,
        "incidents": len(incidents), "incidents_per_kind": {k: sum(1 for i in incidents if i.kind == k) for k in attack_mod.KINDS},
        "problems": problems + outside,
    })  # fmt: skip
    return summary
