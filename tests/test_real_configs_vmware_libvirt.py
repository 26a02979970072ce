"""Issue 11 section 2 on real files (../shared/corpus, MANIFEST.tsv says where each came from): which VMware
product wrote a .vmx, HGFS, .encoding; libvirt listen addresses, tickets, shmem/evdev/host disks, bridges a
libvirt network owns; and the per-VM device cap against amplification."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.rules import load_catalogue
from vmsentry.collect import collect
from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND

RULES = {r.id: r for r in load_catalogue()}


def _one(paths):
    inv, _ = collect([str(p) for p in paths])
    return inv


def _status(inv, rule_id):
    return {f.status for f in evaluate(inv, [RULES[rule_id]])}


def _with_lines(tmp_path: Path, source: Path, *lines: str) -> Path:
    """The real file with settings appended, as the product would write them."""
    out = tmp_path / source.name
    out.write_bytes(source.read_bytes() + "".join(f"{line}\n" for line in lines).encode())
    return out


def test_workstation_vmx_with_migrate_hostlog_stays_hosted(corpus_dir, tmp_path):
    # Workstation and Fusion write migrate.hostLog too: it must not make the VM an ESXi one
    ws = _with_lines(
        tmp_path,
        corpus_dir / "vmware-vmx/libvirt__vmx2xml-ws-in-the-wild-2.vmx",
        'migrate.hostLog = "./debian6-4f2b2a4b.hlog"',
    )
    inv = _one([ws])
    vm = inv.vms[0]
    assert vm.facts["vmx.product"]["value"] == "hosted"
    assert "usb.vbluetooth.startConnected" in vm.facts["vmx.product"]["at"]
    # hosted defaults: clipboard and drag and drop on, so the generic rules find them
    assert (vm.channels.clipboard, vm.channels.drag_and_drop) == ("bidirectional", "bidirectional")
    assert _status(inv, "VMS-VM-070") == {"fail"} and _status(inv, "VMS-VM-071") == {"fail"}
    # ESXi-only rules do not fire
    for rule in ("VMS-VMX-001", "VMS-VMX-002", "VMS-VMX-003", "VMS-VMX-015", "VMS-VMX-016"):
        assert _status(inv, rule) == {"not_applicable"}, rule


def test_product_unknown_without_exclusive_evidence(corpus_dir, tmp_path):
    # migrate.hostLog and productCompatibility = hosted alone decide nothing
    vmx = tmp_path / "bare.vmx"
    vmx.write_text(
        'config.version = "8"\nvirtualHW.version = "19"\nvirtualHW.productCompatibility = "hosted"\n'
        'displayName = "bare"\nmigrate.hostLog = "./bare-1.hlog"\nethernet0.present = "TRUE"\n'
    )
    inv = _one([vmx])
    vm = inv.vms[0]
    assert vm.facts["vmx.product"]["value"] == "unknown"
    assert vm.channels.clipboard == "unknown"
    assert _status(inv, "VMS-VMX-001") == {"not_applicable"}  # no absent-means-disabled pass either
    assert _status(inv, "VMS-VMX-027") == {"unknown"}
    # contradicting evidence: unknown, and both named
    both = _with_lines(
        tmp_path,
        corpus_dir / "vmware-vmx/libvirt__vmx2xml-esx-in-the-wild-1.vmx",
        'ethernet1.present = "TRUE"',
        'ethernet1.connectionType = "nat"',
    )
    vm = _one([both]).vms[0]
    assert vm.facts["vmx.product"]["value"] == "unknown"
    assert "contradicting" in vm.facts["vmx.product"]["at"] and "vpx" in vm.facts["vmx.product"]["at"]


def test_esxi_corpus_files_stay_esxi(corpus_dir):
    for name in (
        "libvirt__esx-in-the-wild-17.vmx",
        "libvirt__esx-in-the-wild-2.vmx",
        "libvirt__vmx2xml-esx-in-the-wild-5.vmx",
    ):
        vm = _one([corpus_dir / "vmware-vmx" / name]).vms[0]
        assert vm.facts["vmx.product"]["value"] == "esxi", name
        assert vm.channels.clipboard == "disabled"


def test_hgfs_disable_closes_the_server_and_shares_in_effect_are_reported(corpus_dir, tmp_path):
    off = _with_lines(
        tmp_path, corpus_dir / "vmware-vmx/minsungchu__Ubuntu_64-bit.vmx", 'isolation.tools.hgfs.disable = "TRUE"'
    )
    inv = _one([off])
    [f] = evaluate(inv, [RULES["VMS-VMX-027"]])
    assert (f.status, f.evidence["key"]) == ("pass", "isolation.tools.hgfs.disable")
    # a share in effect on a file with ESXi evidence is a finding, never "ESXi offers no shared folders"
    shared = _with_lines(
        tmp_path,
        corpus_dir / "vmware-vmx/libvirt__esx-in-the-wild-17.vmx",
        'isolation.tools.hgfs.disable = "FALSE"',
        'sharedFolder0.present = "TRUE"',
        'sharedFolder0.hostPath = "/srv/data"',
        'sharedFolder0.guestName = "data"',
    )
    inv = _one([shared])
    assert len(inv.vms[0].shares) == 1
    [f] = evaluate(inv, [RULES["VMS-VMX-027"]])
    assert f.status == "fail" and "in effect" in f.evidence["value"]


@pytest.mark.parametrize("codec", ["hex", "punycode", "base64", "unicode_escape", "undefined", "idna", "utf-16"])
def test_vmx_encoding_that_is_not_a_character_set(tmp_path, codec):
    vmx = tmp_path / f"{codec}.vmx"
    vmx.write_bytes(f'.encoding = "{codec}"\nconfig.version = "8"\ndisplayName = "caf\xe9"\n'.encode("latin-1"))
    inv = _one([vmx])
    assert inv.vms[0].name == "caf\ufffd"
    assert any("not a character set" in e.message for e in inv.errors)


def test_libvirt_live_listen_address_and_password_valid_to(corpus_dir):
    inv = _one([corpus_dir / "libvirt-domain/vdsm__vm_compat41.xml"])
    spice = [lis for lis in inv.vms[0].listeners if lis.kind == "spice"]
    assert spice and {lis.address for lis in spice} == {"192.168.60.51"}  # not network:vdsm-ovirtmgmt
    assert {lis.auth for lis in spice} == {"ticket"}  # passwdValidTo: a ticket is set
    inv = _one([corpus_dir / "libvirt-domain/vdsm__hostedengine.xml"])
    [vnc] = [lis for lis in inv.vms[0].listeners if lis.kind == "vnc"]
    assert (vnc.address, vnc.auth) == ("0.0.0.0", "password")
    assert _status(inv, "VMS-VM-002") <= {"pass", "not_applicable"}
    # a definition without the address keeps the contract's network:NAME
    inv = _one([corpus_dir / "libvirt-domain/libvirt__graphics-listen-network.xml"])
    assert [lis.address for lis in inv.vms[0].listeners] == ["network:Bobsnetwork"]


def test_shmem_evdev_and_whole_host_disks(corpus_dir):
    inv = _one([corpus_dir / "libvirt-domain/stewi__win11.xml"])
    kinds = [(d.kind, d.detail) for d in inv.vms[0].devices]
    assert ("shared-memory", "looking-glass (ivshmem-plain, 128 M)") in kinds
    disks = [d for k, d in kinds if k == "host-disk"]
    assert len(disks) == 2 and all(d.startswith("/dev/disk/by-id/ata-") for d in disks)
    assert _status(inv, "VMS-VM-042") == {"fail"} and _status(inv, "VMS-VM-044") == {"fail"}
    inv = _one([corpus_dir / "libvirt-domain/virtmgr__virt-install-many-devices.xml"])
    inputs = [d.detail for d in inv.vms[0].devices if d.kind == "host-input"]
    assert inputs == ["/dev/input/event1 (passthrough)", "/dev/input/event1234 (evdev, grab=all)"]
    assert _status(inv, "VMS-VM-043") == {"fail"}
    # logical volumes and pool volumes are not whole host disks
    inv = _one([corpus_dir / "libvirt-domain/libvirt__net-user.xml"])
    assert _status(inv, "VMS-VM-044") == {"not_applicable"} and _status(inv, "VMS-VM-042") == {"not_applicable"}


def test_bridge_nic_on_a_libvirt_networks_own_bridge(corpus_dir, tmp_path):
    # the documented libvirt form <interface type='bridge'><source bridge='virbr0'/>: virbr0 belongs to
    # the NAT network 'default' read in the same run
    dom = tmp_path / "guest.xml"
    dom.write_text(
        "<domain type='kvm'><name>guest</name><devices>"
        "<interface type='bridge'><source bridge='virbr0'/><model type='virtio'/></interface>"
        "<interface type='bridge'><source bridge='br0'/></interface>"
        "</devices></domain>"
    )
    inv = _one([dom, corpus_dir / "libvirt-network/libvirt__nat-network.xml"])
    on_virbr0, on_br0 = inv.vms[0].nics
    assert (on_virbr0.mode, on_virbr0.network) == ("nat", "default")
    assert "virbr0" in on_virbr0.detail
    assert on_br0.mode == "bridged"  # a host bridge no network read owns
    inv = _one([dom])  # without the network: still bridged
    assert inv.vms[0].nics[0].mode == "bridged"


def test_device_cap_per_vm(tmp_path):
    many = MAX_DEVICES_PER_KIND + 40
    vmx = tmp_path / "many.vmx"
    vmx.write_text(
        'config.version = "8"\ndisplayName = "many"\n'
        + "".join(f'ethernet{i}.present = "TRUE"\nethernet{i}.connectionType = "nat"\n' for i in range(many))
    )
    inv = _one([vmx])
    assert len(inv.vms[0].nics) == MAX_DEVICES_PER_KIND
    [err] = [e for e in inv.errors if "ethernetN" in e.message]
    assert err.file == str(vmx) and "the rest are not read" in err.message
    xml = tmp_path / "many.xml"
    xml.write_text(
        "<domain type='kvm'><name>many</name><devices>"
        + "<interface type='user'/>" * many
        + "<graphics type='vnc' port='5900' listen='0.0.0.0'/>" * many
        + "</devices></domain>"
    )
    inv = _one([xml])
    vm = inv.vms[0]
    assert len(vm.nics) == MAX_DEVICES_PER_KIND and len(vm.listeners) == MAX_DEVICES_PER_KIND
    assert sorted(e.message.split(": ", 1)[1] for e in inv.errors if e.file == str(xml)) == [
        f"more than {MAX_DEVICES_PER_KIND} graphics devices in one VM; the rest are not read",
        f"more than {MAX_DEVICES_PER_KIND} interface devices in one VM; the rest are not read",
    ]
