"""The per-kind cap of every reader (issue 11, "Amplification"): a generated definition declares far more
devices, rules or reservations than the cap; the run keeps the first ones, says so once per kind naming
the file and place, exits 2, and stays bounded in time and memory (RLIMIT_AS in the subprocess), with a
report that grows with what is kept, not with the input."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND, MAX_RULES_PER_FILE

# the hostile-input suite: bounded subprocesses and many mutated inputs; out of the fast lane, in every
# full run (scripts/test.sh, CI)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MEMORY = 1 << 30  # 1 GiB of address space; an uncapped reader went to 3.1 GB
TIMEOUT = 120
MANY = MAX_DEVICES_PER_KIND * 8
ENDING = "the rest are not read"


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _inventory(path: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    out = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "vmsentry", "inventory", str(path), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_bounded,
        cwd=REPO,
    )
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    capped = [line for line in proc.stderr.splitlines() if ENDING in line]
    assert capped and all(str(path) in line for line in capped), proc.stderr
    assert len(capped) == len(set(capped)), "one line per capped kind"
    doc = json.loads(out.read_text())
    # the report holds what is kept: a few hundred bytes per record, not the input's hundred thousand
    assert out.stat().st_size < 2_000_000 + 400 * MAX_RULES_PER_FILE
    return doc, capped


def _vbox(n: int) -> str:
    adapters = "".join(f'<Adapter slot="{i}" enabled="true"><NAT/></Adapter>' for i in range(n))
    return (
        '<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux"><Machine name="m" uuid="{1}">'
        f"<Hardware><Network>{adapters}</Network></Hardware></Machine></VirtualBox>"
    )


def _showvminfo(n: int) -> str:
    forwards = "".join(f'Forwarding({i})="r{i},tcp,,{1000 + i},,22"\n' for i in range(n))
    return f'name="m"\nUUID="1"\nnic1="nat"\n{forwards}'


def _proxmox(n: int) -> str:
    return "name: m\nmemory: 512\n" + "".join(f"net{i}: virtio,bridge=vmbr0\n" for i in range(n))


def _proxmox_fw(n: int) -> str:
    return "[OPTIONS]\nenable: 1\n[RULES]\n" + "IN ACCEPT -p tcp -dport 22\n" * n


def _hyperv(n: int) -> str:
    adapters = [{"Name": f"a{i}", "SwitchName": "s"} for i in range(n)]
    return json.dumps(
        {
            "schema": "vmsentry.hyperv-export/1",
            "host": {"ComputerName": "h"},
            "vms": [{"Name": "m", "NetworkAdapters": adapters}],
        }
    )


def _qemu(n: int) -> str:
    netdevs = " ".join(f"-netdev user,id=n{i} -device virtio-net,netdev=n{i}" for i in range(n))
    return f"qemu-system-x86_64 -name m {netdevs}\n"


def _saved(n: int) -> str:
    nics = [{"id": f"n{i}", "mode": "nat"} for i in range(n)]
    return json.dumps({"schema": "vmsentry.inventory/1", "vms": [{"name": "m", "platform": "kvm", "nics": nics}]})


def _packer(n: int) -> str:
    return json.dumps({"builders": [{"type": "qemu", "name": f"b{i}"} for i in range(n)]})


def _terraform(n: int) -> str:
    nics = "".join('  network_interface {\n    network_name = "default"\n  }\n' for _ in range(n))
    return f'resource "libvirt_domain" "m" {{\n  name = "m"\n{nics}}}\n'


def _vagrant(n: int) -> str:
    nets = "".join(f'  config.vm.network "forwarded_port", guest: {i}, host: {1000 + i}\n' for i in range(n))
    return f'Vagrant.configure("2") do |config|\n  config.vm.box = "x"\n{nets}end\n'


def _dsc(n: int) -> str:
    nics = ", ".join(f"'s{i}'" for i in range(n))
    return (
        "Configuration C\n{\n    Import-DscResource -ModuleName 'HyperVDsc'\n    Node localhost\n    {\n"
        f"        VMHyperV m\n        {{\n            Name = 'm'\n            SwitchName = @({nics})\n        }}\n    }}\n}}\n"
    )


def _network(n: int) -> str:
    hosts = "".join(
        f"<host mac='52:54:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}' ip='10.{i >> 16}.{i >> 8 & 255}.{i & 255}'/>"
        for i in range(n)
    )
    return (
        "<network><name>n</name><forward mode='nat'/><bridge name='virbr9'/>"
        f"<ip address='10.0.0.1' netmask='255.0.0.0'><dhcp>{hosts}</dhcp></ip></network>"
    )


def _nics(doc: dict) -> int:
    return len(doc["vms"][0]["nics"])


def _dhcp_hosts(doc: dict) -> int:
    return len(doc["networks"][0]["facts"]["libvirt.dhcp.hosts"]["value"])


# name, generator, how many it declares, what is counted in the report, the cap
CASES = [
    ("m.vbox", _vbox, MANY, _nics, MAX_DEVICES_PER_KIND),
    ("showvminfo.txt", _showvminfo, MANY, lambda d: len(d["vms"][0]["forwards"]), MAX_DEVICES_PER_KIND),
    ("qemu-server/100.conf", _proxmox, MANY, _nics, MAX_DEVICES_PER_KIND),
    ("firewall/100.fw", _proxmox_fw, MAX_RULES_PER_FILE * 2, None, MAX_RULES_PER_FILE),
    ("h.hyperv.json", _hyperv, MANY, _nics, MAX_DEVICES_PER_KIND),
    ("m.qemu", _qemu, MANY, _nics, MAX_DEVICES_PER_KIND),
    ("saved.json", _saved, MANY * 50, _nics, MAX_DEVICES_PER_KIND),
    ("m.pkr.json", _packer, MANY, lambda d: len(d["vms"]), MAX_DEVICES_PER_KIND),
    ("main.tf", _terraform, MANY, _nics, MAX_DEVICES_PER_KIND),
    # Vagrant adds its own ssh forward to the ones written
    ("Vagrantfile", _vagrant, MANY, lambda d: len(d["vms"][0]["forwards"]) - 1, MAX_DEVICES_PER_KIND),
    ("m.ps1", _dsc, MANY, _nics, MAX_DEVICES_PER_KIND),
    ("net.xml", _network, MAX_RULES_PER_FILE * 2, _dhcp_hosts, MAX_RULES_PER_FILE),
]


@pytest.mark.parametrize(("name", "make", "count", "kept", "cap"), CASES, ids=[c[0] for c in CASES])
def test_reader_caps_per_kind(tmp_path, name, make, count, kept, cap):
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True)
    path.write_text(make(count))
    doc, capped = _inventory(path, tmp_path)
    assert any(f"more than {cap} " in line for line in capped), capped
    if kept is not None:
        assert kept(doc) == cap
