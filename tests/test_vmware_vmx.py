"""The VMware .vmx collector on the real corpus (../shared/corpus/vmware-vmx) and on hand-written fixtures:
what a careful auditor reads from each file, defaults applied, broken lines reported one by one, secrets
never shown."""

from __future__ import annotations

import json
from pathlib import Path

from vmsentry.collect import collect, vmware_vmx

FIX = Path(__file__).parent / "fixtures" / "vmware"


def _vm(path: Path):
    inv, _ = collect([str(path)])
    assert len(inv.vms) == 1, inv.vms
    return inv.vms[0], inv


def test_every_corpus_vmx_is_read_without_errors(corpus_dir):
    folder = corpus_dir / "vmware-vmx"
    files = sorted(p for p in folder.iterdir() if p.suffix == ".vmx")
    inv, skipped = collect([str(folder)])
    assert skipped == 0
    assert not inv.errors, [e.line() for e in inv.errors]
    assert len(inv.vms) == len(files) == 16
    assert {vm.platform for vm in inv.vms} == {"vmware"}


def test_esxi_8_vm_on_a_port_group(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__esx-in-the-wild-17.vmx")
    assert vm.name == "esx8.0-win11-with-second-disk-in-subfolder"
    assert vm.uuid == "42256ec1-e066-9364-3dd1-36a0b75263dd"
    assert vm.facts["vmx.product"]["value"] == "esxi"
    [nic] = vm.nics
    assert (nic.id, nic.mode, nic.network, nic.mac, nic.model) == (
        "ethernet0",
        "bridged",
        "Mgmt Network",
        "00:50:56:a5:b8:68",
        "e1000e",
    )
    assert nic.type == "bridged (default)"  # no connectionType: bridged
    assert vm.facts["vmx.RemoteDisplay.maxConnections"]["value"] == "-1"
    assert vm.facts["vmx.migrate.encryptionMode"]["value"] == "opportunistic"
    assert vm.facts["vmx.tools.guest.desktop.autolock"]["value"] == "TRUE"
    # ESXi default: copy, paste and drag and drop off
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("disabled", "disabled")
    assert [d.kind for d in vm.devices] == ["usb-controller"]


def test_distributed_switch_port_group(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__ethernet-vds.vmx")
    [nic] = vm.nics
    assert (nic.mode, nic.network, nic.type) == ("bridged", "dvportgroup-1285", "dvs")
    assert "50 34 26 b2" in nic.detail


def test_workstation_nat_and_bridged(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/minsungchu__Ubuntu_64-bit.vmx")
    assert vm.name == "Ubuntu 64-bit" and vm.facts["vmx.product"]["value"] == "hosted"
    assert [(n.mode, n.network, n.mac) for n in vm.nics] == [("nat", "vmnet8", "00:0c:29:b7:34:dd")]
    assert vm.facts["vmx.mks.enable3d"]["value"] == "TRUE"
    # Workstation default: copy/paste and drag and drop on
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("bidirectional", "bidirectional")
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__fusion-in-the-wild-1.vmx")
    assert [(n.id, n.mode, n.network) for n in vm.nics] == [
        ("ethernet0", "bridged", "VMnet0"),
        ("ethernet1", "bridged", "VMnet0"),
    ]
    assert all(n.spoof_protection is False for n in vm.nics)  # no anti-spoofing on hosted vmnets


def test_custom_vmnet_without_host_files(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-ethernet-custom.vmx")
    [nic] = vm.nics
    assert (nic.mode, nic.network, nic.mac) == ("unknown", "vmnet7", "00:50:56:11:22:33")
    assert "netmap.conf" in nic.detail
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-gsx-in-the-wild-1.vmx")
    [nic] = vm.nics
    assert (nic.mode, nic.network) == ("host-only", "vmnet1")  # Workstation default for vmnet1
    assert "Workstation default" in nic.detail


def test_vnc_and_network_serial(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-graphics-vnc.vmx")
    [vnc] = vm.listeners
    assert (vnc.kind, vnc.address, vnc.port, vnc.auth) == ("vnc", None, 5903, "password")
    assert vm.facts["vmx.RemoteDisplay.vnc.password"]["value"] == "<set>"
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-serial-network-server.vmx")
    [ser] = vm.listeners
    assert (ser.kind, ser.address, ser.port, ser.auth, ser.tls) == ("serial", None, 42001, "none", True)


def test_esx_serial_to_file_and_parallel(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-esx-in-the-wild-4.vmx")
    assert vm.listeners == []
    assert [d.kind for d in vm.devices] == ["serial-port", "parallel-port"]
    assert [n.network for n in vm.nics] == ["VM Network", "VM Switch 2"]


def test_secret_in_corpus_file_is_recorded_as_present_only(corpus_dir):
    vm, _ = _vm(corpus_dir / "vmware-vmx/libvirt__vmx2xml-esx-in-the-wild-5.vmx")
    assert vm.facts["vmx.guest.commands.sharedSecretLogin.hostd-quiescedsnap"]["value"] == "<set>"
    assert "9ARGZmWQ" not in json.dumps(vm.facts)


def test_broken_lines_are_reported_and_the_rest_is_read():
    vm, inv = _vm(FIX / "ws-risky.vmx")
    messages = sorted(e.message for e in inv.errors)
    assert len(messages) == 3
    assert any(m.startswith("line 70: value of annotation has no closing quote") for m in messages)
    assert any(m.startswith("line 71: not a 'key = \"value\"' line") for m in messages)
    assert any(m.startswith("line 73: bytes that are not valid") for m in messages)
    # keys after the broken lines are still there (CRLF file, trailing comment stripped)
    assert vm.facts["vmx.isolation.tools.hgfs.disable"]["value"] == "FALSE"
    assert vm.facts["vmx.encryption.keySafe"]["value"] == "<set>"
    assert vm.security.disk_encryption is True
    # the duplicate key is recorded, last value wins
    assert any("mks.enable3d" in d for d in vm.facts["vmx.duplicate_keys"]["value"])


def test_workstation_fixture_model():
    vm, _ = _vm(FIX / "ws-risky.vmx")
    nics = {n.id: n for n in vm.nics}
    assert set(nics) == {"ethernet0", "ethernet1", "ethernet3", "ethernet4"}  # ethernet2 present FALSE
    assert nics["ethernet0"].mode == "unknown" and nics["ethernet0"].network == "vmnet2"
    assert nics["ethernet0"].filter == "dvfilter-maclearn"
    assert (nics["ethernet1"].mode, nics["ethernet1"].mac) == ("nat", "00:50:56:3f:00:10")
    assert nics["ethernet3"].connected is False and nics["ethernet3"].mode == "host-only"
    assert nics["ethernet4"].mode == "private"
    assert [(listener.kind, listener.address, listener.port, listener.auth) for listener in vm.listeners] == [
        ("serial", None, 7001, "none"),
        ("vnc", None, 5901, "none"),
    ]
    assert [(s.kind, s.host_path, s.guest_tag, s.writable) for s in vm.shares] == [
        ("hgfs", "/", "root", True),
        ("hgfs", "/srv/isos", "isos", False),
    ]  # writeAccess absent = read-only
    kinds = sorted(d.kind for d in vm.devices)
    assert kinds == ["floppy", "parallel-port", "pci-passthrough", "serial-port", "usb-controller", "usb-passthrough"]


def test_hgfs_disable_suppresses_shares():
    vm, inv = _vm(FIX / "ws-hardened.vmx")
    assert not inv.errors
    assert vm.shares == []
    assert vm.facts["vmx.sharedFolder0.suppressed"]["value"].startswith("/home/me/share")
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("disabled", "disabled")
    assert vm.facts["vmx.duplicate_keys"]["value"] == ["displayName (lines 5, 30)"]


def test_declared_encoding_and_pipe_escapes():
    vm, inv = _vm(FIX / "cp949.vmx")
    assert not inv.errors
    assert vm.name == "\ud14c\uc2a4\ud2b8 VM"
    entries, problems, _ = vmware_vmx.parse_vmx(vmware_vmx.decode_vmx((FIX / "cp949.vmx").read_bytes())[0])
    assert entries["annotation"][0] == 'quote "here" and pipe |'
    assert not problems


def test_keys_are_case_insensitive_and_comments_ignored():
    text = 'ETHERNET0.Present = "TRUE"\n# comment\n  ethernet0.CONNECTIONTYPE = nat # bare value\nDisplayName="x"\n'
    entries, problems, _ = vmware_vmx.parse_vmx(text)
    assert not problems
    vm = vmware_vmx.build_vm(entries, "x.vmx")
    assert vm.name == "x" and [(n.mode, n.network) for n in vm.nics] == [("nat", "vmnet8")]


def test_not_a_vmx_file_is_one_error(tmp_path):
    bad = tmp_path / "empty.vmx"
    bad.write_text("# nothing here\n")
    inv, _ = collect([str(bad)])
    assert [e.message for e in inv.errors] == ["no 'key = \"value\"' settings: not a VMware .vmx file"]
    binary = tmp_path / "disk.vmx"
    binary.write_bytes(b"KDMV\x00\x00\x01")
    inv, _ = collect([str(binary)])
    assert inv.errors[0].message == "binary data, not a VMware .vmx file"


def test_secrets_never_appear_in_cli_output(run_cli):
    out = run_cli("scan", FIX / "esx-risky.vmx", FIX / "ws-risky.vmx", FIX / "esxi-export.json", "--format", "json")
    assert out.returncode in (1, 2), out.stderr
    text = out.stdout + out.stderr
    for secret in ("Vnc-S3cret-42", "c2VjcmV0LXRva2Vu", "T0pS3cretKeySafe", "never-shown-pw"):
        assert secret not in text
    inv = run_cli("inventory", FIX / "esx-risky.vmx")
    assert "Vnc-S3cret-42" not in inv.stdout and '"<set>"' in inv.stdout
