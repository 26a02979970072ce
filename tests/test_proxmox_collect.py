"""Proxmox VE collector: qm.conf, pve-firewall files, /etc/network/interfaces and the link step.
Every corpus file is read without a crash; concrete values are checked for real corpus files and for
the hand-written /etc/pve tree in tests/fixtures/proxmox."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vmsentry.collect import collect, proxmox, read_paths
from vmsentry.collect.source_file import BadInput

FIX = Path(__file__).parent / "fixtures" / "proxmox"


@pytest.fixture(scope="module")
def pve_corpus(corpus_dir: Path) -> Path:
    return corpus_dir / "proxmox"


def _vm(inv, name):
    hits = [v for v in inv.vms if v.name == name]
    assert len(hits) == 1, [v.name for v in inv.vms]
    return hits[0]


def test_every_corpus_file_is_read(pve_corpus: Path):
    files = sorted(pve_corpus.iterdir())
    assert len(files) >= 28
    for path in files:
        assert proxmox.claims(str(path), path.read_bytes()[:4096]), path.name
        inv = proxmox.read(str(path))  # never raises for the corpus
        assert not inv.errors, (path.name, [e.line() for e in inv.errors])
    inv, skipped = collect([str(pve_corpus)])
    assert skipped == 0 and not inv.errors
    assert sum(1 for v in inv.vms if "proxmox.fw_only" not in v.facts) == 17


def test_corpus_homelab_vm(pve_corpus: Path):
    inv = proxmox.read(str(pve_corpus / "alexjbarnes__100.conf"))
    vm = _vm(inv, "Dev-VM")
    assert vm.platform == "proxmox" and vm.uuid == "9c839b57-e25a-404d-bac8-d52dc6ad3f78"
    assert vm.facts["proxmox.vmid"]["value"] == "100"
    (nic,) = vm.nics
    assert (nic.id, nic.mode, nic.bridge, nic.mac, nic.model) == (
        "net0",
        "bridged",
        "vmbr0",
        "bc:24:11:fb:9f:25",
        "virtio",
    )
    assert vm.facts["proxmox.net0.firewall"] == {"value": "1", "at": "line 8, net0"}
    assert vm.facts["proxmox.agent"]["value"] == "1"
    # the built-in console is qemu-server's UNIX socket, not a network listener
    assert [(listener.kind, listener.transport, listener.address) for listener in vm.listeners] == [
        ("vnc", "unix", "/var/run/qemu-server/100.vnc")
    ]
    assert vm.channels.clipboard == "disabled"


def test_corpus_snapshots_and_sections(pve_corpus: Path):
    vm = _vm(proxmox.read(str(pve_corpus / "qemuserver__parse-config-input_snapshots.conf")), "win-machine-ver")
    assert [s.name for s in vm.snapshots] == [
        "machine_version_5_1",
        "machine_version_5_1_with_virtio",
        "ovmf_machine_version_5_1",
        "ovmf_machine_version_5_1_virtio",
        "static-network",
        "win19_5_2",
        "win19_5_2_plus_stuff",
    ]
    assert vm.snapshots[0].created == "2025-01-15T11:05:09+00:00"
    # snapshot sections do not leak into the current configuration: two NICs, not more
    assert [(n.id, n.model, n.bridge) for n in vm.nics] == [("net0", "virtio", "vnet0"), ("net1", "e1000", "vnet0")]
    assert vm.channels.clipboard == "bidirectional" and "proxmox.spice" in vm.facts  # vga: qxl


def test_corpus_passthrough_args_and_spice(pve_corpus: Path):
    vm = _vm(proxmox.read(str(pve_corpus / "technomagniaque__666.conf")), "osxgpu")
    assert [d.detail for d in vm.devices if d.kind == "pci-passthrough"] == [
        "0000:05:00.0",
        "0000:05:00.1",
        "0000:42:00.0",
        "0000:21:00.0",
    ]
    assert [d.kind for d in vm.devices if d.detail == "spice"] == ["usb-redirection", "usb-redirection"]
    assert vm.facts["proxmox.args"]["value"].startswith("-device isa-applesmc,osk=")
    assert vm.security.secure_boot is False  # ovmf without pre-enrolled keys
    hostpci = _vm(
        proxmox.read(str(pve_corpus / "qemuserver__cfg2cmd_q35-linux-hostpci.conf")),
        "qemuserver__cfg2cmd_q35-linux-hostpci",
    )
    assert len([d for d in hostpci.devices if d.kind == "pci-passthrough"]) == 6
    spice = proxmox.read(str(pve_corpus / "qemuserver__cfg2cmd_spice-enhancments.conf")).vms[0]
    assert [(s.kind, s.guest_tag) for s in spice.shares] == [("spice-folder", "spice-webdav")]
    vnc = proxmox.read(str(pve_corpus / "qemuserver__cfg2cmd_vnc-clipboard-std.conf")).vms[0]
    assert vnc.channels.clipboard == "bidirectional" and vnc.facts["proxmox.vga.clipboard"]["value"] == "vnc"
    serial = proxmox.read(str(pve_corpus / "qemuserver__cfg2cmd_seabios_serial.conf")).vms[0]
    assert ("serial", "unix") in [(listener.kind, listener.transport) for listener in serial.listeners]


def test_corpus_firewall_files(pve_corpus: Path):
    host = proxmox.read(str(pve_corpus / "pvefw__debian_example_host.fw")).hosts[0]
    assert host.platform == "proxmox" and host.facts["proxmox.kind"] == "host"
    opts = host.facts["proxmox.host_fw"]["options"]
    assert opts["enable"]["value"] == "0" and opts["nosmurfs"]["value"] == "0" and opts["tcpflags"]["value"] == "1"
    cluster = proxmox.read(str(pve_corpus / "pvefw__debian_example_cluster.fw")).hosts[0]
    fw = cluster.facts["proxmox.cluster_fw"]
    assert fw["options"]["enable"]["value"] == "1" and fw["aliases"]["myserveralias"] == "10.0.0.111"
    assert set(fw["groups"]) == {"group1", "group3"} and len(fw["ipsets"]["myipset"]) == 7
    vmfw = proxmox.read(str(pve_corpus / "pvefw__debian_example_100.fw")).vms[0]
    v = vmfw.facts["proxmox.vm_fw"]["value"]
    assert v["options"]["macfilter"]["value"] == "0" and v["ipsets"] == {"ipfilter-net0": ["192.168.2.10"]}
    rules = v["rules"]
    assert len(rules) == 14 and rules[9]["enabled"] is False  # '|IN SSH(ACCEPT)' is disabled
    assert rules[0]["action"] == "SSH(ACCEPT)" and rules[0]["options"] == {"i": "net0"}


def test_corpus_ambiguous_vmids_are_not_linked(pve_corpus: Path):
    inv, _ = collect([str(pve_corpus)])
    dev = _vm(inv, "Dev-VM")
    assert "2 configurations for VMID 100" in dev.facts["proxmox.link"]["value"]
    assert dev.facts["proxmox.net0.firewall_effective"]["value"] is None  # unknown, not guessed
    assert dev.nics[0].spoof_protection is None


def test_lab_tree_links_firewall_and_bridges():
    inv, _ = collect([str(FIX / "lab")])
    hardened = _vm(inv, "web-hardened")
    nic = hardened.nics[0]
    assert hardened.facts["proxmox.net0.firewall_effective"]["value"] is True
    assert nic.filter == "pve-firewall" and nic.spoof_protection is True and nic.mode == "bridged"
    assert hardened.security.secure_boot is True
    risky = _vm(inv, "lab-risky")
    by_id = {n.id: n for n in risky.nics}
    assert by_id["net0"].spoof_protection is False  # macfilter: 0
    assert by_id["net1"].mode == "user"  # no bridge = user-mode NAT
    assert by_id["hack0"].mode == "user"  # from args: -netdev user
    assert [(f.protocol, f.host_ports, f.guest_ports, f.host_address) for f in risky.forwards] == [
        ("tcp", [2222, 2222], [22, 22], None)
    ]
    endpoints = [(listener.kind, listener.transport, listener.address, listener.port) for listener in risky.listeners]
    assert ("vnc", "tcp", "0.0.0.0", 5977) in endpoints
    assert ("monitor", "tcp", "0.0.0.0", 4444) in endpoints
    assert [s.name for s in risky.snapshots] == ["before-update"]  # [PENDING] is not a snapshot
    assert risky.facts["proxmox.snapshot.before-update.vmstate"]["value"] == "local-lvm:vm-102-state-before-update"
    assert risky.facts["proxmox.pending"]["value"] == ["memory"]
    internal = _vm(inv, "internal-only")
    assert internal.nics[0].mode == "host-only"  # vmbr1 has bridge-ports none
    assert internal.facts["proxmox.net0.firewall_effective"] == {
        "value": False,
        "why": "net0 firewall=0",
        "at": "line 5, net0",
    }
    assert not any(v.name.startswith("vmid-") for v in inv.vms)  # every VMID.fw joined its VM
    bridges = {n.name: n for n in inv.networks if n.platform == "proxmox"}
    assert bridges["vmbr0"].mode == "bridged" and bridges["vmbr0"].forwards == ["eno1"]
    assert bridges["vmbr0"].facts["interfaces.bridge-vlan-aware"]["value"] == "yes"
    assert bridges["vmbr1"].host_address == "10.10.10.1" and bridges["vmbr1"].subnets == ["10.10.10.0/24"]
    assert [e.line() for e in inv.errors] == [
        f"{FIX / 'lab/etc/pve/firewall/102.fw'}: line 9: not a firewall rule (IN|OUT|GROUP ...); skipped"
    ]


def test_cluster_firewall_off_makes_every_nic_unfiltered():
    inv, _ = collect([str(FIX / "disabled")])
    vm = _vm(inv, "sev-guest")
    assert vm.facts["proxmox.net0.firewall_effective"]["value"] is False
    assert vm.facts["proxmox.cluster_fw.enable"]["value"] == "0"
    assert vm.nics[0].spoof_protection is False
    assert vm.security.memory_encryption == "sev-snp"


def test_bad_input_one_line_each(tmp_path: Path):
    conf = tmp_path / "300.conf"
    conf.write_text(
        "name: broken\nmemory: 1024\nthis line is garbage\nnet0: virtio=AA:BB:CC:DD:EE:FF,bridge=vmbr0\n"
        "cores 4\nvga: std\n"
    )
    inv = proxmox.read(str(conf))
    assert [e.message for e in inv.errors] == [
        "line 3: not a 'key: value' setting; skipped",
        "line 5: not a 'key: value' setting; skipped",
    ]
    assert inv.vms[0].nics[0].bridge == "vmbr0"  # the rest is still read
    bad_args = tmp_path / "301.conf"
    bad_args.write_text("name: quotes\nmemory: 512\nargs: -vnc '0.0.0.0:1\nvga: std\n")
    inv = proxmox.read(str(bad_args))
    assert len(inv.errors) == 1 and "cannot split args" in inv.errors[0].message
    binary = tmp_path / "302.conf"
    binary.write_bytes(b"name: x\x00\x01\x02memory: 5\n")
    with pytest.raises(BadInput):
        proxmox.read(str(binary))
    snaptime = tmp_path / "303.conf"
    snaptime.write_text("name: s\nmemory: 512\n\n[snap1]\nsnaptime: yesterday\nvmstate: local:x\n")
    inv = proxmox.read(str(snaptime))
    assert inv.vms[0].snapshots[0].created is None and "snaptime 'yesterday'" in inv.errors[0].message


def test_firewall_bad_lines_and_secrets_never_printed(tmp_path: Path, run_cli):
    fw = tmp_path / "cluster.fw"
    fw.write_text("enable: 1\n[OPTIONS]\nenable 1\n[BOGUS]\nx\n[RULES]\nIN ACCEPT -p tcp -dport 22\nnonsense\n")
    inv = proxmox.read(str(fw))
    assert [e.message for e in inv.errors] == [
        "line 1: text before the first [SECTION]; skipped",
        "line 3: not an option 'key: value' in [OPTIONS]; skipped",
        "line 4: unknown section [BOGUS]; its lines are skipped",
        "line 8: not a firewall rule (IN|OUT|GROUP ...); skipped",
    ]
    assert len(inv.hosts[0].facts["proxmox.cluster_fw"]["rules"]) == 1
    conf = tmp_path / "400.conf"
    conf.write_text(
        "name: secret\nmemory: 512\nargs: -vnc 0.0.0.0:1,password=hunter2 -object secret,id=s0,data=topsecret\n"
        "cipassword: $5$rounds=5000$saltsalt$HASHHASHHASH\nsshkeys: ssh-ed25519%20AAAAC3Nza\n"
        "cipassword $5$broken-line-HASH2\n"
    )
    for verb in ("scan", "inventory"):
        proc = run_cli(verb, conf, "--format", "json") if verb == "scan" else run_cli(verb, conf)
        out = proc.stdout + proc.stderr
        for secret in ("hunter2", "topsecret", "HASHHASHHASH", "AAAAC3Nza", "HASH2"):
            assert secret not in out, (verb, secret)
        assert "line 6: not a 'key: value' setting; skipped" in proc.stderr


def test_interfaces_file_alone_and_unknown_fw_name(tmp_path: Path):
    path = FIX / "lab" / "etc" / "network" / "interfaces"
    assert proxmox.claims(str(path), path.read_bytes())
    odd = tmp_path / "notes.fw"
    odd.write_text("[OPTIONS]\nenable: 1\n")
    inv, _ = read_paths([str(odd)])
    assert [e.message for e in inv.errors] == [
        "a Proxmox firewall file that is neither cluster.fw, host.fw nor VMID.fw; not read"
    ]


def test_fw_only_vm_kept_when_no_config(tmp_path: Path, pve_corpus: Path):
    shutil.copy(pve_corpus / "pvefw__test_test-vm-ipfilter1_100.fw", tmp_path / "100.fw")
    inv, _ = collect([str(tmp_path)])
    (vm,) = inv.vms
    assert vm.name == "vmid-100" and vm.facts["proxmox.vm_fw"]["value"]["ipsets"]["ipfilter-net2"] == []


@pytest.mark.parametrize(
    "text",
    [
        '-device isa-applesmc,osk="ourhardwork(c)AppleComputerInc" -smbios type=2',
        "-vnc '0.0.0.0:1",
        'a "b c" d\\ e \'f g\'h "x\\"y" "p\\q"',
        "",
        "   ",
        'x "a\\\\b"',
        "a'b'c",
        '"open',
        "a\\",
        "-cpu host,+x",
    ],
)
def test_split_args_matches_shlex(text):
    import shlex

    try:
        expected = shlex.split(text)
    except ValueError:
        with pytest.raises(ValueError):
            proxmox.split_args(text)
        return
    assert proxmox.split_args(text) == expected


def test_mangled_files_never_crash(tmp_path: Path, pve_corpus: Path):
    import random

    texts = [p.read_text() for p in sorted(pve_corpus.iterdir())]
    noise = ["=", ",", ":", "[", "]", "\n", " ", "|", "-", "é", "net0: ", "args: '", "snaptime: x", "[x]\n"]
    for seed in range(300):
        rnd = random.Random(seed)
        chars = list(rnd.choice(texts))
        for _ in range(rnd.randint(1, 20)):
            chars.insert(rnd.randrange(len(chars) + 1), rnd.choice(noise))
        path = tmp_path / rnd.choice(["100.conf", "cluster.fw", "host.fw", "101.fw", "interfaces"])
        path.write_text("".join(chars))
        try:
            proxmox.read(str(path))
        except BadInput:
            pass
    collect([str(tmp_path)])
