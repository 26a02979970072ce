"""The benign traffic of every VM, played by ONE process (the machine has two cores shared with other
work: a process or a curl per request would cost more than the traffic itself).

Sockets are opened inside each VM's namespace (``setns`` for the moment of ``socket()``: a socket stays in
the namespace it was made in) and driven by one asyncio loop; pgbench and ssh, which are real clients
of real servers, run as processes started inside the namespaces. Everything random comes from the seed.

Roles (all rates follow ``day(t)``: the run is a compressed working day, quiet start, morning ramp, lunch
dip, afternoon, quiet end; and each VM has idle and busy spells of its own):
    web      : public clients from internet addresses GET pages and objects (Poisson, ~0.3-3 per s);
               its application talks to one database VM through pgbench (rate-limited, one connection
               per segment of 1-4 min, select-only or TPC-B-like, pauses)
    database : serves the web VMs' pgbench (and the desktops' occasional ssh)
    build    : jobs: a git-like burst of small GETs to an intranet web VM, 1-4 artefacts of 2-30 MB
               from the mirror, a quiet "compile", an upload of the result to an intranet web VM
    desktop  : browsing: DNS lookups at the gateway's resolver, a page and its objects from one of ~300
               sites (Zipf) and a few CDN hosts, think time; sometimes the intranet; idle spells with a
               lookup now and then; an occasional ssh to a database or build VM

    python -m traffic_lab.behaviour.driver CONFIG.json      (as root; stops on SIGTERM or after duration)
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import random
import signal
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from traffic_lab.behaviour.services import site_ip

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
BODY = os.urandom(1 << 20)  # upload payload, sent again and again


class Namespaces:
    """Sockets made inside named network namespaces by a single-threaded caller."""

    def __init__(self) -> None:
        self.home = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.fds: dict[str, int] = {}

    def _enter(self, ns: str) -> None:
        fd = self.fds.get(ns)
        if fd is None:
            fd = self.fds[ns] = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")

    def socket(self, ns: str, kind: int) -> socket.socket:
        self._enter(ns)
        try:
            sock = socket.socket(socket.AF_INET, kind)
        finally:
            if _libc.setns(self.home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
        sock.setblocking(False)
        return sock


def day(fraction: float) -> float:
    """Activity 0.15..1 over the run seen as one working day (fraction 0..1)."""
    points = [
        (0, 0.15),
        (0.12, 0.3),
        (0.3, 1.0),
        (0.45, 0.9),
        (0.5, 0.45),
        (0.58, 0.95),
        (0.8, 0.85),
        (0.92, 0.35),
        (1, 0.15),
    ]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if fraction <= x1:
            return y0 + (y1 - y0) * (fraction - x0) / (x1 - x0)
    return points[-1][1]


class Driver:
    def __init__(self, config: dict) -> None:
        self.cfg = config
        self.rng = random.Random(config["seed"])
        self.ns = Namespaces()
        self.start = time.time()
        self.duration = float(config["duration"])
        # the day curve spans ``duration``; the traffic goes on (at the curve's last level) until SIGTERM, so
        # that benign frames follow the last attack; ``max_seconds`` bounds it if nobody stops the driver
        self.end = self.start + float(config.get("max_seconds", self.duration))
        self.vms = config["vms"]
        self.by_role: dict[str, list[dict]] = {}
        for vm in self.vms:
            self.by_role.setdefault(vm["role"], []).append(vm)
        self.procs: set[asyncio.subprocess.Process] = set()
        self.stats = {"http": 0, "http_errors": 0, "dns": 0, "pgbench": 0, "ssh": 0}
        self.stopping = asyncio.Event()

    # --- time
    def level(self) -> float:
        return day(min(1.0, max(0.0, (time.time() - self.start) / self.duration)))

    def left(self) -> float:
        return self.end - time.time()

    async def sleep(self, seconds: float) -> bool:
        """Sleep; False when the run is over."""
        seconds = min(seconds, max(0.0, self.left()))
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            pass
        return not self.stopping.is_set() and self.left() > 0

    # --- protocols
    async def http(self, vm_ns: str, dst: str, path: str, upload: int = 0, src: str | None = None) -> int:
        loop = asyncio.get_running_loop()
        sock = self.ns.socket(vm_ns, socket.SOCK_STREAM)
        writer = None
        try:
            if src:
                sock.bind((src, 0))
            await asyncio.wait_for(loop.sock_connect(sock, (dst, 80)), 5)
            reader, writer = await asyncio.open_connection(sock=sock)
            method = "PUT" if upload else "GET"
            head = f"{method} {path} HTTP/1.1\r\nHost: {dst}\r\nUser-Agent: lab/1\r\nConnection: close\r\n"
            writer.write((head + (f"Content-Length: {upload}\r\n" if upload else "") + "\r\n").encode())
            left = upload
            while left > 0:
                n = min(left, len(BODY))
                writer.write(BODY[:n])
                await writer.drain()
                left -= n
            got = 0
            while chunk := await asyncio.wait_for(reader.read(1 << 18), 30):
                got += len(chunk)
            self.stats["http"] += 1
            return got
        except (TimeoutError, OSError):
            self.stats["http_errors"] += 1
            return 0
        finally:
            if writer is not None:
                writer.close()
            else:
                sock.close()

    async def fetch_with(self, sem: asyncio.Semaphore, vm_ns: str, dst: str, path: str) -> None:
        async with sem:
            await self.http(vm_ns, dst, path)

    async def dns(self, vm_ns: str, name: str) -> str | None:
        """An A query for ``name`` to the gateway's resolver; the first address of the answer."""
        loop = asyncio.get_running_loop()
        sock = self.ns.socket(vm_ns, socket.SOCK_DGRAM)
        ident = self.rng.randrange(65536)
        query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
        query += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
        try:
            sock.connect((self.cfg["resolver"], 53))
            await loop.sock_sendall(sock, query)
            answer = await asyncio.wait_for(loop.sock_recv(sock, 1500), 2)
            self.stats["dns"] += 1
            if len(answer) >= 16 and answer[-6:-4] == b"\0\x04":
                return socket.inet_ntoa(answer[-4:])
            return None
        except (TimeoutError, OSError):
            return None
        finally:
            sock.close()

    async def run_in(self, vm_ns: str, argv: list[str], timeout: float) -> None:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", vm_ns, *argv,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self.procs.add(proc)
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.terminate()
            await proc.wait()
        finally:
            self.procs.discard(proc)

    # --- roles
    async def web_public(self, vm: dict, rng: random.Random) -> None:
        base = rng.uniform(0.6, 4.0)
        while True:
            rate = base * max(self.level(), 0.35) * rng.choice((1, 1, 1, 0.3, 2.5))
            if not await self.sleep(rng.expovariate(max(rate, 0.02))):
                return
            client = f"{rng.choice(('203.0.113', '198.51.100'))}.{rng.randrange(1, 200)}"
            size = int(min(2e6, rng.lognormvariate(9.5, 1.2)))
            asyncio.ensure_future(
                self.http(self.cfg["inet_ns"], vm["ip"], f"/obj/{size}/p{rng.randrange(999)}", src=client)
            )

    async def web_app_db(self, vm: dict, rng: random.Random, db: dict) -> None:
        base = rng.uniform(2.0, 10.0)
        while self.left() > 5:
            if rng.random() < 0.04:
                if not await self.sleep(rng.uniform(20, 90)):
                    return
                continue
            seconds = int(min(self.left() - 1, rng.uniform(60, 240)))
            if seconds < 5:
                return
            rate = max(1.5, base * self.level() * rng.uniform(0.6, 1.4))
            argv = ["pgbench", "-n", "-h", db["ip"], "-U", "vmsentry", "-c", "1", "-j", "1", "-R", f"{rate:.2f}",
                    "-T", str(seconds)]  # fmt: skip
            if rng.random() < 0.7:
                argv.append("-S")
            self.stats["pgbench"] += 1
            await self.run_in(vm["ns"], [*argv, "postgres"], seconds + 30)

    async def ci_poll(self, vm: dict, rng: random.Random, coordinator: str) -> None:
        """A build server's CI runner asks the coordinator (an intranet web VM) for a job every 3-8 s, as
        gitlab-runner (check_interval 3 s) or a Jenkins agent does."""
        while await self.sleep(rng.uniform(3, 8)):
            await self.http(vm["ns"], coordinator, "/api/v4/jobs/request", upload=rng.randrange(300, 700))

    async def build(self, vm: dict, rng: random.Random) -> None:
        webs = self.by_role.get("web", [])
        if webs:
            asyncio.ensure_future(self.ci_poll(vm, random.Random(rng.random()), webs[0]["ip"]))
        while True:
            if not await self.sleep(rng.expovariate(1 / 60) / max(self.level(), 0.2)):
                return
            mirror = await self.dns(vm["ns"], "mirror.example") or self.cfg["mirror"]
            git = rng.choice(webs)["ip"] if webs else mirror
            burst = rng.randrange(20, 200)
            sem = asyncio.Semaphore(4)

            await asyncio.gather(
                *(
                    self.fetch_with(sem, vm["ns"], git, f"/obj/{int(rng.lognormvariate(8, 1))}/git/{i}")
                    for i in range(burst)
                )
            )
            for _ in range(rng.randrange(1, 5)):
                size = int(rng.uniform(2e6, 30e6))
                await self.http(vm["ns"], mirror, f"/obj/{size}/artefact-{rng.randrange(9999)}.tar.gz")
                if not await self.sleep(rng.uniform(0.5, 5)):
                    return
            if not await self.sleep(rng.uniform(20, 120)):  # compiling
                return
            if webs:
                await self.http(
                    vm["ns"], rng.choice(webs)["ip"], "/upload/result.tar.gz", upload=int(rng.uniform(1e6, 8e6))
                )

    async def desktop(self, vm: dict, rng: random.Random) -> None:
        favourites = [int(rng.paretovariate(1.1)) % 300 for _ in range(12)]
        ssh_hosts = self.by_role.get("database", []) + self.by_role.get("build", [])
        webs = self.by_role.get("web", [])
        cache: dict[str, tuple[str, float]] = {}

        async def resolve(name: str) -> str | None:
            hit = cache.get(name)
            if hit and hit[1] > time.time():
                return hit[0]
            ip = await self.dns(vm["ns"], name)
            if ip:
                cache[name] = (ip, time.time() + 60)
            return ip

        asyncio.ensure_future(self.chat(vm, rng))
        while self.left() > 0:
            # an idle spell: a lookup now and then (update checks, mail)
            idle_until = time.time() + rng.expovariate(1 / 90) / max(self.level(), 0.25)
            while time.time() < idle_until:
                if not await self.sleep(min(idle_until - time.time(), rng.uniform(20, 90))):
                    return
                await resolve(rng.choice(("updates", "mail", "calendar")) + f".site{rng.randrange(300)}.example")
            busy_until = time.time() + rng.expovariate(1 / 240) * self.level()
            while time.time() < busy_until and self.left() > 0:
                if webs and rng.random() < 0.12:
                    host = rng.choice(webs)
                    name, ip = f"{host['name']}.lab.internal", None
                    ip = await resolve(name)
                else:
                    site = rng.choice(favourites) if rng.random() < 0.6 else rng.randrange(300)
                    ip = await resolve(f"www.site{site}.example")
                if ip:
                    await self.http(vm["ns"], ip, f"/obj/{int(rng.lognormvariate(10.5, 0.8))}/index.html")
                    objects = []
                    for _ in range(rng.randrange(2, 12)):
                        target = ip
                        if rng.random() < 0.3:
                            target = await resolve(f"cdn{rng.randrange(30)}.example") or ip
                        objects.append(self.http(vm["ns"], target, f"/obj/{int(rng.lognormvariate(9, 1.3))}/o"))
                    await asyncio.gather(*objects)
                if ssh_hosts and rng.random() < 0.01:
                    host = rng.choice(ssh_hosts)
                    self.stats["ssh"] += 1
                    asyncio.ensure_future(self.run_in(vm["ns"], [
                        "ssh", "-i", self.cfg["ssh_key"], "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                        "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
                        f"root@{host['ip']}", rng.choice(("uptime", "df -h", "ps aux", "ls -la /tmp"))], 30))  # fmt: skip
                if not await self.sleep(rng.lognormvariate(1.6, 0.8)):  # reading: median 5 s
                    return

    async def chat(self, vm: dict, rng: random.Random) -> None:
        """A desktop's messaging client: one chat service, polled every 3-10 s with a small POST."""
        server = site_ip(rng.randrange(200, 210))
        while await self.sleep(rng.uniform(3, 10)):
            await self.http(vm["ns"], server, "/chat/poll", upload=rng.randrange(200, 900))

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        tasks = []
        dbs = self.by_role.get("database", [])
        for i, vm in enumerate(self.vms):
            rng = random.Random(f"{self.cfg['seed']}/{vm['name']}")
            if vm["role"] == "web":
                tasks.append(self.web_public(vm, rng))
                if dbs:
                    tasks.append(
                        self.web_app_db(vm, random.Random(f"{self.cfg['seed']}/{vm['name']}/db"), dbs[i % len(dbs)])
                    )
            elif vm["role"] == "build":
                tasks.append(self.build(vm, rng))
            elif vm["role"] == "desktop":
                tasks.append(self.desktop(vm, rng))
        runner = asyncio.gather(*tasks, return_exceptions=True)
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([runner, stop], timeout=self.end - time.time() + 5, return_when=asyncio.FIRST_COMPLETED)
        self.stopping.set()  # every role's next sleep returns False
        for proc in list(self.procs):
            if proc.returncode is None:
                proc.terminate()
        await asyncio.wait([runner], timeout=10)
        print(json.dumps(self.stats), flush=True)
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[1]).read_text())
    asyncio.run(Driver(config).main())
