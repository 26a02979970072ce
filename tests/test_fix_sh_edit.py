"""The shell fix's config-key edit (``vms_line`` in report/fix/sh.py), run for real with /bin/sh on files
shaped like the ones it meets: a key whose value is a list over several lines (qemu.conf's
``cgroup_device_acl``, ``namespaces``), a key set twice, a key absent, a file that is a symbolic link."""

from __future__ import annotations

import os
import subprocess

from vmsentry.report.fix.sh import EPILOGUE, PRELUDE

QEMU_CONF = """# qemu.conf
#namespaces = [ "mount" ]
namespaces = [
    "mount",
    "ipc"
]
cgroup_device_acl = [
    "/dev/null", "/dev/full", "/dev/zero",
    "/dev/random", "/dev/urandom"
]
vnc_listen = "0.0.0.0"
"""


def run(tmp_path, body: str, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "fix.sh"
    script.write_text(PRELUDE + body + EPILOGUE)
    return subprocess.run(["sh", str(script), *args], capture_output=True, text=True, timeout=30)


def test_multi_line_list_is_replaced_whole_and_the_rest_kept(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text(QEMU_CONF)
    os.chmod(conf, 0o640)
    body = f"vms_line {conf} 'namespaces' 'namespaces = [ \"mount\" ]'\n"
    done = run(tmp_path, body)
    assert done.returncode == 0, done.stderr
    text = conf.read_text()
    assert text == QEMU_CONF.replace('namespaces = [\n    "mount",\n    "ipc"\n]\n', 'namespaces = [ "mount" ]\n')
    assert oct(conf.stat().st_mode & 0o777) == "0o640"  # mode kept
    assert not list(tmp_path.glob("*.vmsentry-new"))
    again = run(tmp_path, body)
    assert "nothing to change" in again.stdout and conf.read_text() == text


def test_absent_key_is_appended_and_check_changes_nothing(tmp_path):
    conf = tmp_path / "qemu.conf"
    conf.write_text(QEMU_CONF)
    body = f"vms_line {conf} 'spice_listen' 'spice_listen = \"127.0.0.1\"'\n"
    checked = run(tmp_path, body, "--check")
    assert checked.returncode == 1 and "would change" in checked.stdout
    assert conf.read_text() == QEMU_CONF
    assert run(tmp_path, body).returncode == 0
    assert conf.read_text() == QEMU_CONF + 'spice_listen = "127.0.0.1"\n'


def test_a_key_set_twice_ends_set_once(tmp_path):
    conf = tmp_path / "libvirtd.conf"
    conf.write_text('listen_tcp = 1\nauth_tcp = "none"\nlisten_tcp = 1\n')
    assert run(tmp_path, f"vms_line {conf} 'listen_tcp' 'listen_tcp = 0'\n").returncode == 0
    assert conf.read_text() == 'listen_tcp = 0\nauth_tcp = "none"\n'


def test_symbolic_link_is_not_written_through(tmp_path):
    target = tmp_path / "real.conf"
    target.write_text('vnc_listen = "0.0.0.0"\n')
    link = tmp_path / "qemu.conf"
    link.symlink_to(target)
    done = run(tmp_path, f"vms_line {link} 'vnc_listen' 'vnc_listen = \"127.0.0.1\"'\n")
    assert done.returncode == 2
    assert "symbolic link" in done.stderr
    assert link.is_symlink() and target.read_text() == 'vnc_listen = "0.0.0.0"\n'
