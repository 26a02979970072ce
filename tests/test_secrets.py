"""No secret reaches any output (issue 11, 0): a canary planted in each input form that carries one, every
output format and stderr checked. The forms are the ones QEMU, libvirt, Proxmox and the config files really
use: option lists with escaped commas, JSON objects, rbd keys, URL credentials, and config lines that fail
to parse."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from vmsentry.collect.qemu_redact import redacted
from vmsentry.model.text import redact_credentials

CANARY = re.compile(r"CANARY\d+|TAIL\d+")

DOMAIN = """<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>canary-libvirt</name>
  <memory>1024</memory>
  <os><type>hvm</type></os>
  <devices/>
  <qemu:commandline>
    <qemu:arg value='-object'/>
    <qemu:arg value='secret,id=s0,data=CANARY1,,TAIL1'/>
    <qemu:arg value='-object'/>
    <qemu:arg value='{"qom-type":"secret","id":"s1","data":"CANARY2"}'/>
    <qemu:arg value='-drive'/>
    <qemu:arg value='file=rbd:pool/img:id=admin:key=CANARY3:auth_supported=cephx,if=virtio'/>
    <qemu:arg value='-drive'/>
    <qemu:arg value='file=https://user:CANARY4@example.com/disk.qcow2,if=virtio'/>
    <qemu:arg value='-vnc'/>
    <qemu:arg value='0.0.0.0:1,password=CANARY5,,TAIL5'/>
  </qemu:commandline>
</domain>
"""
PROXMOX = (
    "name: canary-pve\nnet0: virtio=52:54:00:12:34:56,bridge=vmbr0\n"
    "args: -object secret,id=s0,data=CANARY6,,TAIL6 -drive file=rbd:pool/img:key=CANARY7,if=virtio "
    '-drive file=https://u:CANARY8@h/x -object {"qom-type":"secret","id":"s2","data":"CANARY9"}\n'
)
QEMU_CONF = 'vnc_listen = "0.0.0.0"\nvnc_password = "CANARY10" junk\nspice_password = CANARY11\n'
CMDLINE_ARGS = [
    "qemu-system-x86_64", "-name", "canary-qemu", "-object", "secret,id=s0,data=CANARY12,,TAIL12",
    "-object", '{"qom-type":"secret","id":"s1","data":"CANARY13"}',
    "-drive", "file=rbd:pool/img:id=admin:key=CANARY14,if=virtio",
    "-drive", "file=https://user:CANARY15@example.com/d.qcow2,if=virtio", "-vnc", "0.0.0.0:1,password=CANARY16",
]  # fmt: skip


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("canary")
    (root / "domain.xml").write_text(DOMAIN)
    pve = root / "etc" / "pve" / "qemu-server"
    pve.mkdir(parents=True)
    (pve / "100.conf").write_text(PROXMOX)
    (root / "qemu.conf").write_text(QEMU_CONF)
    (root / "cmdline").write_bytes(b"\0".join(a.encode() for a in CMDLINE_ARGS) + b"\0")
    return root


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "--format", "json"],
        ["scan", "--format", "text"],
        ["scan", "--format", "sarif"],
        ["scan", "--format", "junit"],
        ["inventory"],
        ["paths", "--format", "json"],
        ["paths", "--format", "text"],
        ["paths", "--format", "html"],
    ],
    ids=lambda a: "-".join(a),
)
def test_no_canary_in_any_output_or_error(planted, run_cli, argv):
    proc = run_cli(argv[0], planted, *argv[1:])
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert not CANARY.findall(proc.stdout + proc.stderr)
    if argv == ["inventory"]:
        assert "<redacted>" in proc.stdout  # the arguments are still shown, their secrets not


def test_the_redactor_keeps_what_is_not_secret():
    shown = redacted(["-object", "secret,id=s0,data=PW,,MORE", "-spice", "port=5930,password-secret=s0"])
    assert shown == "-object secret,id=s0,data=<redacted> -spice port=5930,password-secret=s0"
    assert redact_credentials("line 3: not a 'key: value' setting") == "line 3: not a 'key: value' setting"
    assert redact_credentials('RemoteDisplay.vnc.key = "x"') == "RemoteDisplay.vnc.key = <redacted>"
