"""Real tools in the namespace lab (lab.py), each recorded on the bridge with tcpdump: how the captures in
tests/fixtures/traffic/lab-tools/ were made, and what the ``lab``-marked tests run live.

    python tests/traffic_lab/captures.py NAME... [--out DIR]     (as root; NAME from CAPTURES, or "all")

Every function takes a running Lab (vm1 attacks vm2 unless said otherwise) and returns when the tool is done.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from traffic_lab.lab import Lab

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "traffic" / "lab-tools"
TOOLS = ("ip", "tcpdump", "nmap", "sshd", "ssh", "ssh-keygen", "hydra", "smbd", "smbclient", "ss", "/usr/bin/python3")
TOOLS += ("xrdp", "xfreerdp", "Xvfb", "Xvnc", "vncpasswd", "vncviewer")
WORDS = ["123456", "password", "admin", "root", "letmein", "qwerty", "dragon", "monkey", "master", "shadow"]
WORDS += [f"guess{i}" for i in range(38)]
USERS = [
    "admin",
    "administrator",
    "root",
    "user",
    "guest",
    "test",
    "backup",
    "operator",
    "support",
    "svc",
    "sql",
    "web",
]
RDP_PORT, VNC_PORT, WINRM_PORT = 3390, 15900, 8585


def _wait_port(lab: Lab, node: str, port: int, seconds: float = 10) -> None:
    """Until ``port`` listens in ``node`` (asked of the socket table: a test connection would be in the capture)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if lab.sh(node, f"ss -Hltn 'sport = :{port}'", check=False).stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on {node}:{port}")


def _sshd(lab: Lab, port: int, tmp: Path) -> None:
    key = tmp / "hostkey"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Path("/run/sshd").mkdir(exist_ok=True)
    lab.spawn(
        "vm2",
        ["/usr/sbin/sshd", "-D", "-e", "-f", "/dev/null", "-h", str(key), "-p", str(port), "-o", "UsePAM=no",
         "-o", "PasswordAuthentication=yes", "-o", "MaxStartups=100"],
    )  # fmt: skip
    _wait_port(lab, "vm2", port)


def slow_nmap(lab: Lab, tmp: Path, timing: str = "-T1") -> None:
    """nmap's "sneaky" timing: one probe every 15 s (-T1), 16 ports of vm2 (4 minutes); the live test uses
    ``--scan-delay 5s`` (80 s: 12 ports in any minute, under the fast threshold)."""
    lab.sh("vm1", f"nmap -sS -n -Pn {timing} -p 1-16 10.99.0.12 >/dev/null", timeout=600)


def ssh_other_port(lab: Lab, tmp: Path) -> None:
    """OpenSSH's client to sshd on port 2222 (the login fails: no key; the banners and key exchange are real)."""
    _sshd(lab, 2222, tmp)
    lab.sh(
        "vm1",
        "ssh -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
        "-o ConnectTimeout=5 nobody@10.99.0.12 true",
        check=False,
    )


def ssh_brute(lab: Lab, tmp: Path) -> None:
    """hydra guessing root's password over SSH on port 22 from 48 words, eight tasks at once."""
    _sshd(lab, 22, tmp)
    words = tmp / "words"
    words.write_text("\n".join(WORDS) + "\n")
    lab.sh("vm1", f"hydra -l root -P {words} -t 8 -I -q ssh://10.99.0.12 >/dev/null 2>&1", check=False, timeout=300)


def _samba(lab: Lab, tmp: Path, extra: str = "") -> Path:
    """Samba's smb.conf for vm2 (a standalone server with a guest share), its state under ``tmp``. The daemons
    run in a session of their own (``--no-process-group`` keeps them in it): on exit Samba signals its whole
    process group, which must not be ours."""
    conf, state = tmp / "smb.conf", tmp / "samba"
    for sub in ("lock", "state", "cache", "pid", "private", "ncalrpc"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    conf.write_text(
        "[global]\n  interfaces = 10.99.0.12\n  bind interfaces only = yes\n  disable netbios = yes\n"
        "  map to guest = bad user\n  server role = standalone server\n  log level = 0\n"
        f"  lock directory = {state}/lock\n  state directory = {state}/state\n  cache directory = {state}/cache\n"
        f"  pid directory = {state}/pid\n  private dir = {state}/private\n  ncalrpc dir = {state}/ncalrpc\n"
        f"{extra}[share]\n  path = /tmp\n  guest ok = yes\n"
    )
    return conf


def smb_other_port(lab: Lab, tmp: Path) -> None:
    """Samba's smbclient listing the shares of Samba's smbd on port 4455."""
    conf = _samba(lab, tmp, "  smb ports = 4455\n")
    lab.spawn(
        "vm2", ["smbd", "--foreground", "--no-process-group", "-s", str(conf)], start_new_session=True
    )  # see _samba
    _wait_port(lab, "vm2", 4455)
    lab.sh("vm1", "smbclient -N -p 4455 -L //10.99.0.12 -s /dev/null -m SMB3 >/dev/null 2>&1", check=False)


def rpc_dynamic_port(lab: Lab, tmp: Path) -> None:
    """impacket asks Samba's endpoint mapper (samba-dcerpcd, tcp/135) for winreg and lsarpc, then binds to each
    on the dynamic port it was given."""
    conf = _samba(lab, tmp, "  rpc start on demand helpers = no\n")
    dcerpcd = ["/usr/libexec/samba/samba-dcerpcd", "-F", "--no-process-group", "--libexec-rpcds", "-s", str(conf)]
    lab.spawn("vm2", dcerpcd, start_new_session=True)  # see _samba
    _wait_port(lab, "vm2", 135)
    time.sleep(2.0)  # the rpcd workers register their dynamic ports after the mapper listens
    client = Path(__file__).with_name("rpc_client.py")
    lab.sh("vm1", f"/usr/bin/python3 {client} 10.99.0.12 lsarpc winreg", timeout=60)


def _display(lab: Lab, node: str, server: list[str]) -> str:
    """An X server (Xvfb for a client, Xvnc for a VNC server) started in ``node`` on the first free display
    (``-displayfd``: the server picks it and writes its number); its DISPLAY. The socket is a file under
    /tmp/.X11-unix, so the namespace does not hide it."""
    proc = lab.spawn(node, [*server, "-displayfd", "1", "-nolisten", "tcp"], stdout=subprocess.PIPE)
    number = proc.stdout.readline().strip()
    if not number.isdigit():
        raise RuntimeError(f"{server[0]} did not start")
    return f":{number.decode()}"


def _xrdp(lab: Lab, tmp: Path) -> None:
    """xrdp on vm2 on RDP_PORT, Debian's configuration otherwise (TLS with the snakeoil certificate; the
    login itself is xrdp's own screen after the connection). Threads, not a process per connection, so that
    nothing outlives the lab."""
    conf = Path("/etc/xrdp/xrdp.ini").read_text()
    conf = re.sub(r"(?m)^port=.*$", f"port={RDP_PORT}", conf)
    (tmp / "xrdp.ini").write_text(re.sub(r"(?m)^fork=.*$", "fork=false", conf))
    lab.spawn("vm2", ["xrdp", "--nodaemon", "--config", str(tmp / "xrdp.ini")])
    _wait_port(lab, "vm2", RDP_PORT)


def rdp_other_port(lab: Lab, tmp: Path) -> None:
    """FreeRDP's ``xfreerdp /auth-only`` to xrdp on port 3390: X.224 with the mstshash cookie, TLS, MCS."""
    _xrdp(lab, tmp)
    display = _display(lab, "vm1", ["Xvfb"])
    lab.sh(
        "vm1",
        f"DISPLAY={display} xfreerdp /auth-only /v:10.99.0.12:{RDP_PORT} /u:admin /p:wrong /cert:ignore "
        ">/dev/null 2>&1",
        check=False,
    )


def rdp_brute(lab: Lab, tmp: Path) -> None:
    """hydra's rdp module (FreeRDP inside) against xrdp on port 3390: 12 user names, 3 passwords each. xrdp
    asks for the password on its login screen, after the connection, so FreeRDP's connection succeeds and
    hydra counts the first password as found and moves to the next name: one short session per name."""
    _xrdp(lab, tmp)
    (tmp / "users").write_text("\n".join(USERS) + "\n")
    (tmp / "words").write_text("\n".join(WORDS[:3]) + "\n")
    lab.sh(
        "vm1",
        f"cd {tmp} && hydra -L users -P words -t 1 -I -q rdp://10.99.0.12:{RDP_PORT} >/dev/null 2>&1",
        check=False,
        timeout=300,
    )


def _xvnc(lab: Lab, tmp: Path) -> Path:
    """TigerVNC's Xvnc on vm2, RFB on VNC_PORT with VNC password authentication; the password file's path.
    Its blacklist (10 s, then longer, after 5 failures) is raised so that hydra is not held back: the
    detector counts sessions, not their pace."""
    subprocess.run(f"echo vm2-secret | vncpasswd -f > {tmp}/vncpass", shell=True, check=True)
    vnc = ["Xvnc", "-rfbport", str(VNC_PORT), "-SecurityTypes", "VncAuth", "-PasswordFile", f"{tmp}/vncpass"]
    _display(lab, "vm2", [*vnc, "-BlacklistThreshold", "1000", "-geometry", "640x480"])
    _wait_port(lab, "vm2", VNC_PORT)
    return tmp / "vncpass"


def vnc_other_port(lab: Lab, tmp: Path) -> None:
    """TigerVNC's viewer logs in to Xvnc on port 15900 with the right password and is closed after 3 s."""
    password = _xvnc(lab, tmp)
    display = _display(lab, "vm1", ["Xvfb"])
    lab.sh(
        "vm1",
        f"DISPLAY={display} timeout 3 vncviewer -passwd {password} 10.99.0.12::{VNC_PORT} >/dev/null 2>&1",
        check=False,
    )


def vnc_brute(lab: Lab, tmp: Path) -> None:
    """hydra's vnc module guessing Xvnc's password on port 15900 from 14 wrong words, four tasks at once."""
    _xvnc(lab, tmp)
    (tmp / "words").write_text("\n".join(WORDS[:14]) + "\n")
    lab.sh("vm1", f"cd {tmp} && hydra -P words -t 4 -I -q vnc://10.99.0.12:{VNC_PORT} >/dev/null 2>&1", check=False)


def winrm_other_port(lab: Lab, tmp: Path) -> None:
    """pywinrm opening a shell on port 8585 with NTLM; the server is a stand-in (winrm_standin.py) that
    answers 401 as Windows does before authentication."""
    here = Path(__file__).parent
    lab.spawn("vm2", ["/usr/bin/python3", str(here / "winrm_standin.py"), "10.99.0.12", str(WINRM_PORT)])
    _wait_port(lab, "vm2", WINRM_PORT)
    client = here / "winrm_client.py"
    lab.sh("vm1", f"/usr/bin/python3 {client} 10.99.0.12 {WINRM_PORT} administrator Passw0rd", timeout=60)


CAPTURES = {
    "slow-nmap-T1": slow_nmap,
    "slow-nmap-scan-delay": lambda lab, tmp: slow_nmap(lab, tmp, "--scan-delay 5s"),
    "ssh-port-2222": ssh_other_port,
    "ssh-hydra-brute": ssh_brute,
    "smb-port-4455": smb_other_port,
    "rpc-epm-dynamic-port": rpc_dynamic_port,
    "rdp-port-3390": rdp_other_port,
    "rdp-hydra-brute": rdp_brute,
    "vnc-port-15900": vnc_other_port,
    "vnc-hydra-brute": vnc_brute,
    "winrm-port-8585": winrm_other_port,
}


def record(name: str, out: Path, prefix: str | None = None) -> Path:
    """Run CAPTURES[name] in a fresh lab while tcpdump records the bridge; the capture's path."""
    out.mkdir(parents=True, exist_ok=True)
    pcap = out / f"{name}.pcap"
    with tempfile.TemporaryDirectory() as tmp, Lab(prefix) as lab:
        os.chmod(tmp, 0o755)
        dump = lab.spawn(lab.bridge_ns, ["tcpdump", "-i", "br-test", "-U", "-s", "0", "-w", str(pcap)])
        time.sleep(1.0)
        try:
            CAPTURES[name](lab, Path(tmp))
            time.sleep(1.0)
        finally:
            lab.stop(dump, signal.SIGINT)
    return pcap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--prefix", default=None)
    args = parser.parse_args()
    for name in list(CAPTURES) if args.names == ["all"] else args.names:
        print(record(name, args.out, args.prefix))


if __name__ == "__main__":
    main()
