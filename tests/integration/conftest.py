"""The live libvirt lab the integration tests inspect: a real libvirtd (started by
scripts/start-libvirtd.sh when none answers), the ``default`` NAT network and one QEMU/TCG guest.

Never skips: without root, a libvirtd that will not start, or a guest that will not run, the tests FAIL
with the reason (in CI a skip for a missing component counts as a failure anyway).

Only what the fixture created is torn down: a ``default`` network that was already active is reused and
left alone; one that existed but was inactive is started and stopped again; one that did not exist is
defined from fixtures/default-net.xml and undefined again.  The guest is transient (``virsh create``), so
destroying it removes it.  A leftover ``vmsentry-it-guest`` from a crashed run is removed first.
libvirtd itself is left running (scripts/test.sh decides whether to stop it).  The empty LIBVIRT_* iptables
chains libvirt leaves behind after its last network stops are also left: libvirtd creates them only once
per daemon lifetime and would fail to add rules later if they were deleted under it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from lxml import etree

from virsh_cli import URI, virsh

GUEST = "vmsentry-it-guest"
GUEST_MAC = "52:54:00:76:6d:01"
NETWORK = "default"
HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
REPO = HERE.parents[1]
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")

TIMINGS: dict[str, float] = {}


def domiflist(name: str) -> list[dict[str, str]]:
    """``virsh domiflist`` rows as dicts (Interface, Type, Source, Model, MAC)."""
    rows = []
    for line in virsh("domiflist", name).stdout.splitlines()[2:]:
        cols = line.split()
        if len(cols) == 5:
            rows.append(dict(zip(("interface", "type", "source", "model", "mac"), cols)))
    return rows


@dataclass
class LiveLab:
    uri: str
    guest: str
    guest_mac: str
    guest_uuid: str
    guest_xml: etree._Element  # live `virsh dumpxml` of the running guest
    tap: str  # host-side device from `virsh domiflist`
    vnc_port: int  # allocated port from the live XML
    network: str
    network_xml: etree._Element  # live `virsh net-dumpxml default`
    created_network: bool = False
    started_network: bool = False
    timings: dict[str, float] = field(default_factory=dict)


def _fail(msg: str) -> None:
    pytest.fail(msg, pytrace=False)


def _ensure_libvirtd() -> None:
    if virsh("version", check=False, timeout=15).returncode == 0:
        return
    script = REPO / "scripts" / "start-libvirtd.sh"
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if r.returncode != 0 or virsh("version", check=False, timeout=15).returncode != 0:
        _fail(
            f"no libvirtd answers on {URI} and {script} could not start one (rc {r.returncode}):\n{r.stdout}{r.stderr}"
        )


def _net_state(name: str) -> str | None:
    """None (not defined), 'active' or 'inactive'."""
    r = virsh("net-info", name, check=False)
    if r.returncode != 0:
        return None
    m = re.search(r"^Active:\s*(\S+)", r.stdout, re.M)
    return "active" if m and m.group(1) == "yes" else "inactive"


def _remove_leftover_guest() -> None:
    r = virsh("dominfo", GUEST, check=False)
    if r.returncode != 0:
        return
    if re.search(r"^State:\s*(running|paused|idle|in shutdown|blocked)", r.stdout, re.M):
        virsh("destroy", GUEST, check=False)
    if re.search(r"^Persistent:\s*yes", r.stdout, re.M):
        virsh("undefine", GUEST, check=False)
    if virsh("dominfo", GUEST, check=False).returncode == 0:
        _fail(f"a domain {GUEST} from an earlier run exists and could not be removed")


@pytest.fixture(scope="session")
def live_lab():
    t0 = time.monotonic()
    if os.geteuid() != 0:
        _fail(
            "the live libvirt tests need root (they start libvirtd, a NAT network and a QEMU guest): "
            "run them through `sudo scripts/test.sh`"
        )
    for tool in ("virsh", "libvirtd", "qemu-system-x86_64"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            _fail(f"{tool} not found: run scripts/setup.sh")
    _ensure_libvirtd()
    TIMINGS["libvirtd ready"] = time.monotonic() - t0

    created_network = started_network = False
    ip_forward_before = IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else None
    cleanup_errors: list[str] = []
    guest_started = False
    try:
        # --- the `default` NAT network ---------------------------------------------------------------
        t = time.monotonic()
        state = _net_state(NETWORK)
        if state is None:
            virsh("net-define", str(FIXTURES / "default-net.xml"))
            created_network = True
            virsh("net-start", NETWORK)
        elif state == "inactive":
            virsh("net-start", NETWORK)
            started_network = True
        network_xml = etree.fromstring(virsh("net-dumpxml", NETWORK).stdout.encode())
        TIMINGS["network up"] = time.monotonic() - t

        # --- the guest ------------------------------------------------------------------------------
        t = time.monotonic()
        _remove_leftover_guest()
        virsh("create", str(FIXTURES / "guest.xml"))
        guest_started = True
        deadline = time.monotonic() + 30
        while True:
            state_out = virsh("domstate", GUEST, check=False).stdout.strip()
            xml = etree.fromstring(virsh("dumpxml", GUEST).stdout.encode())
            port = xml.xpath("string(devices/graphics[@type='vnc']/@port)")
            ifaces = domiflist(GUEST)
            if state_out == "running" and port not in ("", "-1") and ifaces and ifaces[0]["interface"] != "-":
                break
            if time.monotonic() > deadline:
                _fail(
                    f"guest {GUEST} not running with a tap and a VNC port within 30 s "
                    f"(state {state_out!r}, vnc port {port!r}, domiflist {ifaces})"
                )
            time.sleep(0.2)
        TIMINGS["guest running"] = time.monotonic() - t
        TIMINGS["fixture set-up total"] = time.monotonic() - t0

        lab = LiveLab(
            uri=URI,
            guest=GUEST,
            guest_mac=GUEST_MAC,
            guest_uuid=xml.findtext("uuid"),
            guest_xml=xml,
            tap=ifaces[0]["interface"],
            vnc_port=int(port),
            network=NETWORK,
            network_xml=network_xml,
            created_network=created_network,
            started_network=started_network,
            timings=dict(TIMINGS),
        )
        yield lab
    finally:
        t = time.monotonic()
        if guest_started:
            r = virsh("destroy", GUEST, check=False)
            if r.returncode != 0 and virsh("dominfo", GUEST, check=False).returncode == 0:
                cleanup_errors.append(f"virsh destroy {GUEST}: {r.stderr.strip()}")
        if created_network or started_network:
            r = virsh("net-destroy", NETWORK, check=False)
            if r.returncode != 0:
                cleanup_errors.append(f"virsh net-destroy {NETWORK}: {r.stderr.strip()}")
        if created_network:
            r = virsh("net-undefine", NETWORK, check=False)
            if r.returncode != 0:
                cleanup_errors.append(f"virsh net-undefine {NETWORK}: {r.stderr.strip()}")
        # libvirt switched IPv4 forwarding on for the NAT network; switch it back if it was off and no
        # libvirt network is active any more.
        if (created_network or started_network) and ip_forward_before == "0":
            active = virsh("net-list", "--name", check=False).stdout.split()
            if not active:
                try:
                    IP_FORWARD.write_text("0\n")
                except OSError as e:
                    cleanup_errors.append(f"restore ip_forward=0: {e}")
        TIMINGS["teardown"] = time.monotonic() - t
        if cleanup_errors:
            raise RuntimeError("live_lab teardown: " + "; ".join(cleanup_errors))


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_line("live libvirt lab: " + ", ".join(f"{k} {v:.2f} s" for k, v in TIMINGS.items()))
