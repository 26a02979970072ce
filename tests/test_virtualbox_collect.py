"""The VirtualBox collector: .vbox machine files, the global VirtualBox.xml and showvminfo output, on the
real corpus (../shared/corpus/virtualbox) and on fixtures written after VirtualBox-settings.xsd
(tests/fixtures/virtualbox; each default noted in the file and in collect/virtualbox.py)."""

from __future__ import annotations

import json
from pathlib import Path

from vmsentry.collect import collect

FIX = Path(__file__).parent / "fixtures" / "virtualbox"


def _scan(*paths):
    inv, _ = collect([str(p) for p in paths])
    return inv


def _one(path):
    inv = _scan(path)
    assert not inv.errors, [e.line() for e in inv.errors]
    [vm] = inv.vms
    return vm


def test_every_corpus_file_is_read(corpus_dir):
    inv = _scan(corpus_dir / "virtualbox")
    assert not inv.errors
    assert len(inv.vms) == 1 and len(inv.networks) == 1


def test_libvirt_generated_vbox_file(corpus_dir):
    """Settings 1.12, legacy innotek namespace, ISO-8859-1 declaration: VRDE on port 5900 with authType
    Null on every address; one bridged adapter (hns0000000v) of eight; clipboard and DnD disabled."""
    vm = _one(corpus_dir / "virtualbox/libvirt__2disks-nosnap.vbox")
    assert vm.name == vm.uuid == "74864f52-a7b7-4172-a7a5-54b6f3e9cd21"
    assert [(n.id, n.mode, n.bridge, n.mac, n.model) for n in vm.nics] == [
        ("nic1", "bridged", "hns0000000v", "08:00:27:2a:58:9d", "82540EM")
    ]
    [vrde] = vm.listeners
    assert (vrde.kind, vrde.address, vrde.port, vrde.auth) == ("vrde", None, 5900, "none")
    assert vm.facts["vbox.VRDE.allowMultiConnection"]["value"] is True
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("disabled", "disabled")
    assert vm.security.disk_encryption is False
    assert vm.nics[0].locator == "line 66, /VirtualBox/Machine/Hardware/Network/Adapter[@slot='0']/BridgedInterface"


def test_global_virtualbox_xml_from_corpus(corpus_dir):
    inv = _scan(corpus_dir / "virtualbox/ndwarshuis__VirtualBox.xml")
    [net] = inv.networks
    assert (net.name, net.mode, net.subnets, net.dhcp, net.dhcp_servers) == (
        "vboxnet0",
        "host-only",
        ["192.168.56.0/24"],
        True,
        ["192.168.56.100"],
    )
    assert net.facts["vbox.DHCPServer.range"]["value"] == "192.168.56.101-192.168.56.254"


def test_risky_machine_every_attachment_and_default():
    vm = _one(FIX / "risky-7.0.vbox")
    nics = {n.id: n for n in vm.nics}
    assert [(n.id, n.mode) for n in vm.nics] == [
        ("nic1", "user"),
        ("nic2", "user"),
        ("nic3", "bridged"),
        ("nic4", "host-only"),
        ("nic5", "internal"),
        ("nic6", "unknown"),
        ("nic7", "nat"),
    ]  # slot 7 not enabled
    assert nics["nic4"].connected is False and nics["nic4"].network == "vboxnet0"
    assert nics["nic6"].detail == "generic driver UDPTunnel"
    assert nics["nic7"].network == "NatNet1"
    # localhost-reachable: absent in a 1.19 file = false; explicit true on slot 1
    assert vm.facts["vbox.Adapter0.NAT.localhost-reachable"]["value"] is False
    assert (
        "absent: default false for settings version 1.19-linux"
        in vm.facts["vbox.Adapter0.NAT.localhost-reachable"]["at"]
    )
    assert vm.facts["vbox.Adapter1.NAT.localhost-reachable"]["value"] is True
    assert vm.facts["vbox.Adapter2.promiscuousModePolicy"]["value"] == "AllowAll"
    assert [(f.protocol, f.host_address, f.host_ports, f.guest_ports) for f in vm.forwards] == [
        ("tcp", None, [2222, 2222], [22, 22]),
        ("tcp", "127.0.0.1", [8080, 8080], [80, 80]),
        ("udp", "0.0.0.0", [5353, 5353], [53, 53]),
    ]
    assert [(listener.kind, listener.address, listener.port, listener.auth) for listener in vm.listeners] == [
        ("vrde", None, 5000, "none"),
        ("serial", None, 7002, "none"),
        ("migration", None, 6000, "none"),
    ]
    assert [(s.host_path, s.guest_tag, s.writable) for s in vm.shares] == [
        ("/home/alice", "home", True),
        ("/", "root", True),
        ("/srv/isos", "isos", False),
    ]
    assert vm.facts["vbox.SharedFolder.root.symlinkPolicy"]["value"] == "any"
    assert vm.facts["vbox.SharedFolder.home.symlinkPolicy"]["value"] == "forbidden"
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("bidirectional", "guest-to-host")
    assert sorted(d.kind for d in vm.devices) == [
        "pci-passthrough",
        "serial-port",
        "serial-port",
        "usb-controller",
        "usb-passthrough",
    ]
    pci = next(d for d in vm.devices if d.kind == "pci-passthrough")
    assert pci.detail == "host 03:00.0 -> guest 05:00.0 nic-passthrough"
    assert [(s.name, s.created) for s in vm.snapshots] == [("before-upgrade", "2024-01-15T10:00:00Z")]
    assert vm.facts["vbox.VRDE.VNCPassword"]["value"] == "<set>"
    assert "vrde-S3cret" not in json.dumps(vm.facts)


def test_old_settings_versions_take_the_old_defaults():
    vm = _one(FIX / "old-4.3.vbox")
    assert vm.facts["vbox.Adapter0.NAT.localhost-reachable"]["value"] is True  # before 1.19
    assert vm.facts["vbox.VRDE.enabled"]["value"] is True  # before 1.16
    [vrde] = vm.listeners
    assert (vrde.port, vrde.auth) == (3390, "password")  # External
    assert vm.channels.clipboard == "disabled"  # no <Clipboard>


def test_hardened_machine():
    vm = _one(FIX / "hardened-7.0.vbox")
    assert vm.listeners == []  # VRDE off by default (1.19)
    assert vm.security.disk_encryption is True
    assert [s.writable for s in vm.shares] == [False]


def test_global_file_with_nat_networks():
    inv = _scan(FIX / "VirtualBox.xml")
    nets = {n.name: n for n in inv.networks}
    assert set(nets) == {"vboxnet0", "NatNet1", "QuietNet"}
    assert (nets["vboxnet0"].host_address, nets["vboxnet0"].subnets) == ("192.168.56.1", ["192.168.56.0/24"])
    nat = nets["NatNet1"]
    assert (nat.mode, nat.subnets, nat.dhcp, nat.dhcp_servers) == ("nat", ["10.0.5.0/24"], True, ["10.0.5.3"])
    rules = nat.facts["vbox.NATNetwork.forwards"]["value"]
    assert [(r["name"], r["host_address"], r["host_port"], r["guest_ip"], r["guest_port"]) for r in rules] == [
        ("web", None, 8081, "10.0.5.15", 80),
        ("mgmt", "127.0.0.1", 2223, "10.0.5.15", 22),
    ]


def test_showvminfo_machinereadable():
    inv = _scan(FIX / "vbox-risky.showvminfo")
    assert [e.message for e in inv.errors] == [
        "line 25: Forwarding entry is not name,proto,hostip,hostport,guestip,guestport; ignored"
    ]
    [vm] = inv.vms
    assert (vm.name, vm.uuid, vm.state) == ("vbox-cli", "9e5b4f60-1d70-4b88-af4d-3a5b6c7d8e9f", "running")
    assert [(n.id, n.mode, n.bridge, n.mac) for n in vm.nics] == [
        ("nic1", "user", None, "08:00:27:aa:bb:01"),
        ("nic2", "bridged", "eth0", "08:00:27:aa:bb:02"),
    ]
    assert [(f.host_address, f.host_ports, f.guest_ports, f.nic) for f in vm.forwards] == [
        (None, [2222, 2222], [22, 22], "nic1"),
        ("127.0.0.1", [8080, 8080], [80, 80], "nic1"),
    ]
    assert [(listener.kind, listener.address, listener.port, listener.auth) for listener in vm.listeners] == [
        ("vrde", None, 3389, "none"),
        ("serial", None, 7010, "none"),
    ]
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("bidirectional", "host-to-guest")
    assert vm.facts["vbox.Adapter1.promiscuousModePolicy"]["value"] == "AllowAll"


def test_malformed_vbox_is_one_error_and_other_files_still_read():
    inv = _scan(FIX / "broken.vbox", FIX / "hardened-7.0.vbox")
    assert [e.message for e in inv.errors] == ["line 5: malformed XML: Premature end of data in tag Hardware line 4"]
    assert [v.name for v in inv.vms] == ["vbox-hardened"]


def test_entities_are_refused(tmp_path):
    evil = tmp_path / "evil.vbox"
    evil.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n'
        '<VirtualBox xmlns="http://www.virtualbox.org/" version="1.19-linux"><Machine name="&a;"/></VirtualBox>'
    )
    inv = _scan(evil)
    assert len(inv.errors) == 1 and "entity declarations are refused" in inv.errors[0].message


def test_showvminfo_saved_by_windows_powershell_as_utf16(tmp_path):
    text = (FIX / "vbox-risky.showvminfo").read_text(encoding="utf-8").replace("\n", "\r\n")
    wide = tmp_path / "vbox-cli.txt"
    wide.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    inv = _scan(wide)
    [vm] = inv.vms
    assert vm.name == "vbox-cli" and [n.mode for n in vm.nics] == ["user", "bridged"]
    assert len(inv.errors) == 1  # the broken Forwarding line, as in the UTF-8 file
