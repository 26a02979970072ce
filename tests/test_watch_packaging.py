"""The watcher's packaging: the systemd unit passes `systemd-analyze verify` and is rated by `systemd-analyze
security` (offline: no systemd needs to run here), the logrotate file parses (`logrotate -d`), and the example
configuration is a valid response policy."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.act.response import load_response_config

REPO = Path(__file__).resolve().parents[1]
UNIT = REPO / "packaging" / "vmsentry-watch.service"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing (scripts/setup.sh installs it)")
    return path


def _unit_here(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's vmsentry (verify checks the program exists)."""
    exe = Path(sys.executable).with_name("vmsentry")
    text = UNIT.read_text().replace("/usr/local/bin/vmsentry", str(exe if exe.exists() else sys.executable))
    path = tmp_path / UNIT.name
    path.write_text(text)
    return path


def test_unit_verifies(tmp_path):
    done = subprocess.run(
        [_tool("systemd-analyze"), "verify", "--man=no", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_unit_is_hardened(tmp_path):
    done = subprocess.run(
        [_tool("systemd-analyze"), "security", "--offline=yes", "--no-pager", str(_unit_here(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout + done.stderr)
    assert exposure, done.stdout + done.stderr
    assert float(exposure.group(1)) <= 3.0  # "OK" is below 4.0; this unit rates about 2.4
    text = UNIT.read_text()
    for line in (
        "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_PACKET",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text.splitlines(), line


def test_logrotate_config_parses(tmp_path):
    done = subprocess.run(
        [_tool("logrotate"), "-d", "-s", str(tmp_path / "state"), str(REPO / "packaging/logrotate/vmsentry-watch")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "error" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    assert "systemctl reload vmsentry-watch.service" in (REPO / "packaging/logrotate/vmsentry-watch").read_text()


def test_example_config_is_a_valid_response_policy():
    config = load_response_config(str(REPO / "packaging" / "watch.yaml"))
    assert config.respond == "ask" and config.quarantine == "nft" and config.libvirt == "qemu:///system"
    assert config.output == "/var/log/vmsentry/alerts.jsonl"
