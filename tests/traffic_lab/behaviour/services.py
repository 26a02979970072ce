"""The real servers of the behaviour lab, started by hand (no systemd) inside the namespaces:

web VMs     : http_server.py (Python's http.server) on :80
database VMs: Debian's PostgreSQL (a cluster per VM, copied from one template that already holds
              pgbench's tables) on :5432, trust authentication from the lab's subnet; sshd on :22
build VMs   : sshd on :22 (the desktops' occasional ssh, and the SSH brute-force targets)
gateway     : dnsmasq, the VMs' resolver: ~300 site names in the internet namespace, the VMs' own
              names, and the tunnel domain forwarded to iodined
internet    : http_server.py on :80 of every address; iodined on 198.51.100.53:53 (the tunnel
              domain's authoritative server); nc sinks for the tunnel and raw uploads
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pg_server import SUPERUSER, postgres_bin

from traffic_lab.behaviour.topology import GATEWAY_IP, SUBNET, BehaviourLab, Vm

HTTP_SERVER = Path(__file__).with_name("http_server.py")
SITES = 300  # www.site<i>.example -> 203.0.113.<i % 200 + 1>; cdn<j>.example -> 198.51.100.<j + 20>
MIRROR_IP = "198.51.100.10"  # mirror.example: the build servers' artefact mirror
TUNNEL_DOMAIN, TUNNEL_SERVER, TUNNEL_NET, TUNNEL_PASSWORD = (
    "t.tun.example",
    "198.51.100.53",
    "192.168.99.1",
    "labtunnel",
)
SINK_PORT, EXFIL_PORT = 9000, 9001  # nc sinks in the internet namespace: tunnel data, raw uploads
NEW_PEERS = [f"198.51.100.{i}" for i in range(200, 255)] + [f"203.0.113.{i}" for i in range(201, 255)]
SSH_ROLES = ("database", "build")


def site_ip(i: int) -> str:
    return f"203.0.113.{i % 200 + 1}"


def cdn_ip(j: int) -> str:
    return f"198.51.100.{j + 20}"


def wait_port(lab: BehaviourLab, node: str, port: int, udp: bool = False, seconds: float = 30) -> None:
    """Until ``port`` listens in ``node`` (asked of the socket table, not by connecting: no stray traffic)."""
    flag = "u" if udp else "t"
    deadline = time.time() + seconds
    while time.time() < deadline:
        if lab.sh(node, f"ss -Hl{flag}n 'sport = :{port}'", check=False).stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {node}:{port}")


class Services:
    def __init__(self, lab: BehaviourLab, workdir: Path) -> None:
        self.lab, self.work = lab, workdir
        self.pg_dirs: list[Path] = []
        self.ssh_key = workdir / "ssh" / "client"

    def start(self) -> None:
        self._dnsmasq()
        self._internet()
        webs = [vm for vm in self.lab.vms if vm.role == "web"]
        for vm in webs:
            self.lab.spawn(vm.name, ["/usr/bin/python3", str(HTTP_SERVER), vm.ip, "80"])
        self._ssh([vm for vm in self.lab.vms if vm.role in SSH_ROLES])
        self._postgres([vm for vm in self.lab.vms if vm.role == "database"])
        for vm in webs:
            wait_port(self.lab, vm.name, 80)
        wait_port(self.lab, "gw", 53, udp=True)

    # --- gateway: the resolver
    def _dnsmasq(self) -> None:
        hosts = self.work / "hosts"
        lines = [f"{site_ip(i)} www.site{i}.example site{i}.example" for i in range(SITES)]
        lines += [f"{cdn_ip(j)} cdn{j}.example" for j in range(30)]
        lines += [f"{MIRROR_IP} mirror.example", f"{GATEWAY_IP} gateway.lab.internal"]
        lines += [f"{vm.ip} {vm.name}.lab.internal" for vm in self.lab.vms]
        hosts.write_text("\n".join(lines) + "\n")
        self.lab.spawn(
            "gw",
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
             f"--listen-address={GATEWAY_IP}", f"--addn-hosts={hosts}", "--local-ttl=60", "--cache-size=2000",
             f"--server=/{TUNNEL_DOMAIN}/{TUNNEL_SERVER}", "--local=/example/", "--local=/lab.internal/",
             "--dns-forward-max=500", "--user=root", "--pid-file="],
        )  # fmt: skip

    # --- internet: web sites, mirror, iodined, sinks
    def _internet(self) -> None:
        self.lab.spawn("inet", ["/usr/bin/python3", str(HTTP_SERVER), "0.0.0.0", "80"])
        self.lab.spawn(
            "inet",
            ["iodined", "-f", "-c", "-l", TUNNEL_SERVER, "-P", TUNNEL_PASSWORD, f"{TUNNEL_NET}/27", TUNNEL_DOMAIN],
        )
        for port in (SINK_PORT, EXFIL_PORT):
            self.lab.spawn("inet", ["sh", "-c", f"while :; do nc -l -n {port} >/dev/null; done"])
        wait_port(self.lab, "inet", 80)
        wait_port(self.lab, "inet", 53, udp=True)

    # --- sshd on database and build VMs; the desktops' key is authorised for root
    def _ssh(self, vms: list[Vm]) -> None:
        d = self.work / "ssh"
        d.mkdir(mode=0o700, exist_ok=True)
        for key in ("host", "client"):
            if not (d / key).exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        shutil.copy(d / "client.pub", d / "authorized_keys")
        Path("/run/sshd").mkdir(exist_ok=True)
        for vm in vms:
            self.lab.spawn(
                vm.name,
                ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-h", str(d / "host"), "-p", "22",
                 "-o", f"ListenAddress={vm.ip}", "-o", "UsePAM=no", "-o", "PasswordAuthentication=yes",
                 "-o", f"AuthorizedKeysFile={d}/authorized_keys", "-o", "StrictModes=no", "-o", "MaxStartups=100",
                 "-o", f"PidFile={d}/{vm.name}.pid"],
            )  # fmt: skip

    # --- PostgreSQL: one template with pgbench's tables, copied per database VM
    def _postgres(self, vms: list[Vm]) -> None:
        if not vms:
            return
        bin_ = postgres_bin()
        root = self.work / "pg"
        root.mkdir()
        shutil.chown(root, "nobody", "nogroup")
        template = root / "template"
        self._as_nobody(str(bin_ / "initdb"), "-D", str(template), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                        "--no-sync")  # fmt: skip
        with (template / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = ''\nport = 5432\nshared_buffers = 16MB\nmax_connections = 40\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nautovacuum = off\n"
            )
        with (template / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET} trust\n")
        sock = root / "template-socket"
        sock.mkdir()
        shutil.chown(sock, "nobody", "nogroup")
        pg_ctl = str(bin_ / "pg_ctl")
        self._as_nobody(
            pg_ctl, "-D", str(template), "-l", str(root / "template.log"), "-w", "-o", f"-k {sock}", "start"
        )
        try:
            self._as_nobody(str(bin_ / "pgbench"), "-i", "-q", "-s", "1", "-h", str(sock), "-U", SUPERUSER, "postgres")
        finally:
            self._as_nobody(pg_ctl, "-D", str(template), "-m", "fast", "-w", "stop")
        for vm in vms:
            data = root / vm.name
            subprocess.run(["cp", "-a", str(template), str(data)], check=True)
            self.pg_dirs.append(data)
            self._as_nobody(
                "ip", "netns", "exec", self.lab.ns(vm.name), pg_ctl, "-D", str(data), "-l", str(root / f"{vm.name}.log"),
                "-w", "-o", f"-k {data} -c listen_addresses={vm.ip}", "start", netns=True,
            )  # fmt: skip

    @staticmethod
    def _as_nobody(*argv: str, netns: bool = False) -> None:
        # `ip netns exec` needs root, so in a namespace the order is: ip netns exec NS runuser -u nobody -- ...
        cmd = (
            [*argv[:4], "runuser", "-u", "nobody", "--", *argv[4:]]
            if netns
            else ["runuser", "-u", "nobody", "--", *argv]
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:6])}... failed: {proc.stderr.strip()[-400:]}")

    def stop(self) -> None:
        pg_ctl = str(postgres_bin() / "pg_ctl")
        for data in self.pg_dirs:
            subprocess.run(["runuser", "-u", "nobody", "--", pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        self.pg_dirs.clear()
