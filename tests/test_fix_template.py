"""Host baseline templates (`vmsentry fix --template`), applied FOR REAL: the linux-kvm shell script inside a
private network namespace (its sysctls are per namespace) with its config files in a temporary root that
`ip netns exec` mounts on /etc/libvirt and /etc/sysctl.d (files in /etc/netns/NAME/ replace /etc/NAME in
that namespace only), so `vmsentry fix --template linux-kvm --check` (a live scan of that namespace) reads
what the script wrote. Before: --check exits 1; after: it exits 0, the script's own --check exits 0 and a
second run changes nothing (files byte-identical). The playbook: `ansible-playbook --check` changes
nothing, then the real run, then a second run reports changed=0. windows-hyperv: see test_fix_platforms."""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid

import pytest

from fix_shell import BIN, ENV, LAB, PYTHON, REPO, digest
from fix_shell import sh as _sh
from fix_shell import vmsentry as _vmsentry
from vmsentry.cli import main


def sh(*argv, **kw):
    return _sh(*argv, timeout=300, **kw)  # (the Ansible runs take longer)


def vmsentry(*args, ns=None):
    return _vmsentry(*args, ns=ns, timeout=300)


# the lab host's files with every qemu.conf / libvirtd.conf setting a template item fixes set to fail
# ((old, new) replaced; ("", text) appended)
FAILING_CONF = {
    "qemu.conf": [
        ('spice_listen = "127.0.0.1"', 'spice_listen = "0.0.0.0"'),
        (
            "",
            "security_default_confined = 0\nseccomp_sandbox = 0\nnamespaces = []\nrelaxed_acs_check = 1\n"
            'stdio_handler = "file"\nmigrate_tls_x509_verify = 0\n',
        ),
    ],
    "libvirtd.conf": [
        ('auth_unix_rw = "polkit"', 'auth_unix_rw = "none"'),
        ('unix_sock_rw_perms = "0770"', 'unix_sock_rw_perms = "0777"'),
        ("", "tls_no_verify_certificate = 1\n"),
    ],
}
# the template items the fixture makes fail (the rules given fixes with the first template)
NEW_ITEMS = {
    "VMS-HOST-003",
    "VMS-HOST-005",
    "VMS-LVD-004",
    "VMS-LVD-005",
    "VMS-LVD-007",
    "VMS-LVD-010",
    "VMS-LVD-011",
    "VMS-LVD-013",
    "VMS-LVD-016",
    "VMS-LVD-017",
    "VMS-LVD-020",
    "VMS-LVD-021",
}


@pytest.fixture
def host(tmp_path):
    """(namespace, ROOT): a namespace with two bridges and the lab host's failing sysctls; ROOT/etc is
    /etc/netns/NAME, holding the lab host's qemu.conf and libvirtd.conf."""
    if os.geteuid() != 0:
        pytest.fail("needs root: network namespaces")
    if not os.path.isdir("/etc/libvirt") or not os.path.isdir("/etc/sysctl.d"):
        pytest.fail("needs /etc/libvirt and /etc/sysctl.d to mount the copies on")
    name = f"vmstpl-{uuid.uuid4().hex[:8]}"
    etc = f"/etc/netns/{name}"
    made_netns_dir = not os.path.isdir("/etc/netns")
    os.makedirs(os.path.join(etc, "libvirt"))
    os.makedirs(os.path.join(etc, "sysctl.d"))
    for conf, edits in FAILING_CONF.items():
        with open(os.path.join(LAB, "host", conf), encoding="utf-8") as handle:
            text = handle.read()
        for old, new in edits:
            assert old in text or not old
            text = text.replace(old, new) if old else text + new
        with open(os.path.join(etc, "libvirt", conf), "w", encoding="utf-8") as handle:
            handle.write(text)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(etc, root / "etc")
    sh("ip", "netns", "add", name)
    try:
        for bridge in ("br0", "virbr0"):
            sh("ip", "link", "add", bridge, "type", "bridge", ns=name)
            sh("ip", "link", "set", bridge, "up", ns=name)
        # a guest port (tap) on br0, a host address on br0 and another elsewhere, a filtered FORWARD path
        sh("ip", "tuntap", "add", "dev", "vnet0", "mode", "tap", ns=name)
        sh("ip", "link", "set", "vnet0", "master", "br0", ns=name)
        sh("ip", "addr", "add", "10.99.0.1/24", "dev", "br0", ns=name)
        sh("ip", "addr", "add", "10.98.0.1/24", "dev", "virbr0", ns=name)  # no guest on it: another address
        sh(
            "nft",
            "add table inet vmstest; add chain inet vmstest forward "
            "{ type filter hook forward priority 0; policy drop; }",
            ns=name,
        )
        failing = {
            "net/bridge/bridge-nf-call-iptables": "0",
            "net/bridge/bridge-nf-call-ip6tables": "0",
            "net/bridge/bridge-nf-call-arptables": "0",
            "net/ipv4/conf/all/arp_ignore": "0",
            "net/ipv4/conf/all/rp_filter": "0",
            "net/ipv4/conf/default/rp_filter": "0",
            "net/ipv4/conf/br0/rp_filter": "0",
            "net/ipv6/conf/br0/accept_ra": "1",
            "net/ipv4/conf/all/accept_redirects": "1",
            "net/ipv4/conf/all/send_redirects": "1",
        }
        sh("sh", "-c", " ; ".join(f"echo {v} > /proc/sys/{k}" for k, v in failing.items()), ns=name)
        yield name, str(root)
    finally:
        sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(etc, ignore_errors=True)
        if made_netns_dir and not os.listdir("/etc/netns"):
            os.rmdir("/etc/netns")


def template_check(ns):
    return vmsentry("fix", "--template", "linux-kvm", "--check", ns=ns)


def items(report: str, label: str) -> set[str]:
    """The rule ids of the --check lines with this label (would change, cannot tell, compliant)."""
    found = (re.match(rf"\s+{label}\s+(VMS-\S+)", line) for line in report.split("not in the template")[0].splitlines())
    return {m.group(1) for m in found if m}


@pytest.mark.lab
def test_linux_kvm_sh_template_applied_then_checked(host, tmp_path):
    ns, root = host
    script = tmp_path / "baseline.sh"
    r = vmsentry("fix", "--template", "linux-kvm", "-o", str(script))
    assert r.returncode == 0, r.stderr
    text = script.read_text()
    for needed in (
        "# VMS-HOST-004: Reverse-path filtering",
        "# source: ComplianceAsCode",
        "# could break:",
        "VMS-HOST-010",
    ):
        assert needed in text, needed
    assert "generated vnc-password" in r.stderr and oct(os.stat(script).st_mode & 0o777) == "0o600"

    before = template_check(ns)
    assert before.returncode == 1, before.stdout + before.stderr
    pending = items(before.stdout, "would change")
    assert {"VMS-HOST-004", "VMS-HOST-007", "VMS-HOST-008", "VMS-LVD-001", "VMS-LVD-019"} <= pending, before.stdout
    assert pending >= NEW_ITEMS, sorted(NEW_ITEMS - pending)
    env = {**ENV, "ROOT": root, "VIRSH": "false"}
    dry = sh("sh", str(script), "--check", ns=ns, env=env, check=False)
    assert dry.returncode == 1 and "would change: sysctl net.ipv4.conf.all.rp_filter = 1" in dry.stdout
    assert template_check(ns).stdout == before.stdout  # --check changed nothing

    first = sh("sh", str(script), ns=ns, env=env)
    assert "change(s) made" in first.stdout and "changed: sysctl net.ipv6.conf.br0.accept_ra = 0" in first.stdout
    after = template_check(ns)
    assert after.returncode == 0, after.stdout + after.stderr
    assert not items(after.stdout, "would change") and not items(after.stdout, "cannot tell")
    assert sh("sh", str(script), "--check", ns=ns, env=env, check=False).returncode == 0

    files = digest(os.path.realpath(os.path.join(root, "etc")))
    second = sh("sh", str(script), ns=ns, env=env)
    assert "changed:" not in second.stdout and "vmsentry fix: nothing to change" in second.stdout
    assert digest(os.path.realpath(os.path.join(root, "etc"))) == files


@pytest.mark.lab
@pytest.mark.slow
def test_linux_kvm_ansible_template_check_then_applied(host, tmp_path):
    ns, root = host
    playbook = tmp_path / "baseline.yml"
    assert vmsentry("fix", "--template", "linux-kvm", "--format", "ansible", "-o", str(playbook)).returncode == 0
    cmd = [os.path.join(BIN, "ansible-playbook"), "-c", "local", "-i", "localhost,", "-e", f"root={root}"]
    cmd += ["-e", "virsh=false", "-e", f"ansible_python_interpreter={PYTHON}", str(playbook)]
    env = {**ENV, "LC_ALL": "C.UTF-8", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    etc = os.path.realpath(os.path.join(root, "etc"))
    files = digest(etc)
    dry = sh(*cmd, "--check", "--diff", ns=ns, env=env)
    assert "changed=0" not in dry.stdout and digest(etc) == files, dry.stdout
    assert template_check(ns).returncode == 1
    first = sh(*cmd, ns=ns, env=env)
    assert "failed=0" in first.stdout, first.stdout
    after = template_check(ns)
    assert after.returncode == 0, after.stdout
    files = digest(etc)
    second = sh(*cmd, ns=ns, env=env)
    assert "changed=0" in second.stdout and "failed=0" in second.stdout, second.stdout
    assert digest(etc) == files


def test_template_check_from_a_scan_and_usage(tmp_path, capsys):
    """--check on a saved scan of the lab: what the lab host fails of the baseline, exit 1; unknown never
    counts as compliant; usage errors exit 3."""
    from vmsentry.cli import main

    code = main(["scan", LAB, "--format", "json", "--fail-on", "none", "-o", str(tmp_path / "scan.json")])
    assert code == 0
    capsys.readouterr()
    assert main(["fix", "--template", "linux-kvm", "--check", "--from-scan", str(tmp_path / "scan.json")]) == 1
    out = capsys.readouterr().out
    assert "would change" in out and "VMS-LVD-001" in out and "not in the template" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.xml").write_text("<network><name>n</name></network>")
    assert main(["fix", "--template", "linux-kvm", "--check", str(empty)]) == 1  # no host: every item unknown
    assert "cannot tell" in capsys.readouterr().out
    assert main(["fix", "--template", "linux-kvm", "--format", "powershell"]) == 3
    assert main(["fix", "--template", "linux-kvm", LAB]) == 3
    assert main(["fix", "--check", LAB]) == 3
    assert main(["fix", "--template", "windows-hyperv", "--check"]) == 3
    capsys.readouterr()
    assert (
        main(["fix", "--template", "windows-hyperv", "--check", os.path.join(REPO, "tests", "fixtures", "hyperv")]) == 1
    )
    assert "VMS-HV-001" in capsys.readouterr().out


def test_template_plan_json_names_items(capsys):
    assert main(["fix", "--template", "linux-kvm", "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["template"] == "linux-kvm" and plan["summary"]["fixes"] >= 10
    assert all(f["title"] and f["source"] and f["breaks"] for f in plan["fixes"])
    assert all(u["reason"] for u in plan["unfixable"])
    assert {"net.ipv4.conf.all.rp_filter", "net.ipv6.conf.{bridge}.accept_ra"} <= {
        c["key"] for f in plan["fixes"] for c in f["changes"]
    }
