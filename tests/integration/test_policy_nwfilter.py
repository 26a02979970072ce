"""The nwfilter compiled from a policy, attached to a REAL QEMU/TCG guest on libvirt's `default` network,
stops a spoofed source address (lab notes §2.5; the guest kit is scripts/build-test-guest.sh).

The guest has its own address (given in the inventory, so in the filter's IP parameter) and a second,
spoofed one; it pings the host from both, every 0.3 s. Seen on its tap (what the guest sends) and on
virbr0 (what gets past the filter): with the generated filter the spoofed pings never reach the bridge;
after the filter is redefined from the same policy with anti_spoofing: false (libvirt re-instantiates the
filter of the running guest), they do. Needs root and libvirtd (tests/integration/conftest.py); never skips.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from virsh_cli import virsh

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.libvirt

PID = os.getpid()
VM = f"nwfguest{PID % 100000}"
FILTER = f"vmsentry-{VM}"
MAC = "52:54:00:76:6e:%02x" % (PID % 250)
OWN = f"192.168.122.{200 + PID % 50}"
SPOOF = f"192.168.122.{140 + PID % 50}"


class Sniffer:
    """ICMP echo requests/replies seen on one interface: [(time, type, src, dst)]."""

    def __init__(self, ifname: str):
        self.events: list[tuple[float, int, str, str]] = []
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        self.sock.bind((ifname, 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                buf, addr = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            # Ethernet + IPv4 + ICMP echo request/reply, read straight from the bytes
            if len(buf) < 42 or buf[12:14] != b"\x08\x00" or buf[23] != 1:
                continue
            icmp = 14 + (buf[14] & 0x0F) * 4
            if len(buf) > icmp and buf[icmp] in (0, 8):
                self.events.append((time.time(), buf[icmp], socket.inet_ntoa(buf[26:30]), socket.inet_ntoa(buf[30:34])))

    def count(self, icmp_type: int, src: str | None = None, dst: str | None = None, since: float = 0) -> int:
        return sum(
            1
            for t, ty, s, d in self.events
            if t >= since and ty == icmp_type and (src is None or s == src) and (dst is None or d == dst)
        )

    def close(self):
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()


def _compile(tmp: Path, anti_spoofing: bool, host: str) -> Path:
    pol = tmp / f"policy-{anti_spoofing}.yaml"
    pol.write_text(f"""version: 1
defaults: {{vm_to_host: deny, vm_to_vm: deny, anti_spoofing: {str(anti_spoofing).lower()}}}
zones:
  lab: {{vms: [{VM}]}}
allow:
  - {{from: any-vm, to: host, proto: icmp}}
  - {{from: any-vm, to: host, proto: udp, ports: [53, 67]}}
""")
    out = tmp / f"nwf-{anti_spoofing}"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "vmsentry",
            "policy",
            "compile",
            str(pol),
            "--inventory",
            str(tmp / "inv.json"),
            "--target",
            "nwfilter",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    return out


# 18-35 s: a TCG guest boots (docs/policy.md)
@pytest.mark.slow
def test_generated_nwfilter_drops_a_real_guests_spoofed_source(live_lab, tmp_path):
    t0 = time.monotonic()
    kit = subprocess.run(
        ["bash", str(REPO / "scripts" / "build-test-guest.sh")], capture_output=True, text=True, timeout=600
    )
    assert kit.returncode == 0, kit.stderr
    kit_dir = Path(kit.stdout.strip().splitlines()[-1])
    net = live_lab.network_xml
    host = net.find("ip").get("address")
    bridge = net.find("bridge").get("name")
    inv = {
        "schema": "vmsentry.inventory/1",
        "networks": [
            {
                "name": "default",
                "platform": "libvirt",
                "mode": "nat",
                "bridge": bridge,
                "subnets": ["192.168.122.0/24"],
                "host_address": host,
            }
        ],
        "vms": [
            {
                "name": VM,
                "platform": "libvirt",
                "nics": [{"id": "net0", "mac": MAC, "ip": OWN, "mode": "nat", "network": "default", "bridge": bridge}],
            }
        ],
    }
    (tmp_path / "inv.json").write_text(json.dumps(inv))
    strict = _compile(tmp_path, True, host)
    loose = _compile(tmp_path, False, host)
    snippet = (strict / "interfaces.txt").read_text().strip()
    assert snippet == f"{VM}: <filterref filter='{FILTER}'><parameter name='IP' value='{OWN}'/></filterref>"
    assert "<filterref filter='clean-traffic'/>" in (strict / f"{FILTER}.xml").read_text()
    assert "clean-traffic" not in (loose / f"{FILTER}.xml").read_text()

    console = tmp_path / "console.log"
    dom = f"""<domain type='qemu'>
  <name>{VM}</name>
  <memory unit='MiB'>192</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kit_dir}/vmlinuz</kernel><initrd>{kit_dir}/initrd.gz</initrd>
    <cmdline>console=ttyS0 panic=-1 loglevel=3 vms.ip={OWN}/24 vms.gw={host} vms.spoof={SPOOF}</cmdline></os>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <interface type='network'><source network='default'/><mac address='{MAC}'/><model type='virtio'/>
      {snippet.split(": ", 1)[1]}</interface>
    <serial type='file'><source path='{console}'/><target port='0'/></serial>
    <console type='file'><source path='{console}'/><target type='serial' port='0'/></console>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>"""
    (tmp_path / "dom.xml").write_text(dom)
    virsh("destroy", VM, check=False)
    virsh("nwfilter-define", str(strict / f"{FILTER}.xml"))
    br = Sniffer(bridge)
    tap_sniffer = None
    started = False
    try:
        virsh("create", str(tmp_path / "dom.xml"))
        started = True
        tap = next(line.split()[0] for line in virsh("domiflist", VM).stdout.splitlines()[2:] if MAC in line)
        tap_sniffer = Sniffer(tap)
        deadline = time.monotonic() + 45
        while "GUEST: ready" not in (console.read_text(errors="replace") if console.exists() else ""):
            assert time.monotonic() < deadline, (
                f"guest not ready in 45 s; console:\n{console.read_text(errors='replace')[-2000:] if console.exists() else '(none)'}"
            )
            time.sleep(0.2)
        boot_s = time.monotonic() - t0
        time.sleep(1.0)

        def wait_for(cond, limit: float) -> float:
            """Watch until cond() holds (TCG guests are slow on a busy machine) or limit seconds pass."""
            start = time.monotonic()
            while not cond() and time.monotonic() - start < limit:
                time.sleep(0.2)
            return time.monotonic() - start

        t_strict = time.time()
        window = wait_for(
            lambda: tap_sniffer.count(8, SPOOF, host, t_strict) >= 6 and tap_sniffer.count(8, OWN, host, t_strict) >= 6,
            15,
        )
        sent_spoof = tap_sniffer.count(8, SPOOF, host, t_strict)
        sent_own = tap_sniffer.count(8, OWN, host, t_strict)
        on_bridge_spoof = br.count(8, SPOOF, host, t_strict)
        on_bridge_own = br.count(8, OWN, host, t_strict)
        replies_own = tap_sniffer.count(0, host, OWN, t_strict)
        assert sent_spoof >= 6 and sent_own >= 6, (sent_spoof, sent_own)  # the guest really sends both
        assert on_bridge_own >= 4 and replies_own >= 4  # its own address gets through
        assert on_bridge_spoof == 0  # the spoofed one never does
        assert tap_sniffer.count(0, host, SPOOF, t_strict) == 0

        # control: the same policy without anti-spoofing, redefined live -> the spoofed pings pass
        virsh("nwfilter-define", str(loose / f"{FILTER}.xml"))
        t_loose = time.time()
        wait_for(lambda: br.count(8, SPOOF, host, t_loose) >= 4 and tap_sniffer.count(0, host, SPOOF, t_loose) >= 4, 15)
        assert br.count(8, SPOOF, host, t_loose) >= 4
        assert tap_sniffer.count(0, host, SPOOF, t_loose) >= 4
        log = console.read_text(errors="replace")
        assert "GUEST: legit ok" in log and "GUEST: spoof ok" in log
        out = REPO / "out" / "policy-lab"
        out.mkdir(parents=True, exist_ok=True)
        (out / "nwfilter.json").write_text(
            json.dumps(
                {
                    "guest_ready_after_s": round(boot_s, 1),
                    "window_s": round(window, 1),
                    "with_filter": {
                        "spoofed_sent_on_tap": sent_spoof,
                        "spoofed_on_virbr0": on_bridge_spoof,
                        "own_sent_on_tap": sent_own,
                        "own_on_virbr0": on_bridge_own,
                        "own_replies": replies_own,
                    },
                    "filter_without_anti_spoofing": {
                        "spoofed_on_virbr0": br.count(8, SPOOF, host, t_loose),
                        "spoofed_replies": tap_sniffer.count(0, host, SPOOF, t_loose),
                    },
                    "total_s": round(time.monotonic() - t0, 1),
                },
                indent=2,
            )
            + "\n"
        )
    finally:
        br.close()
        if tap_sniffer:
            tap_sniffer.close()
        if started:
            virsh("destroy", VM, check=False)
        virsh("nwfilter-undefine", FILTER, check=False)
