"""VMware host networking: Workstation/Fusion vmnet files and the ESXi PowerCLI export, linked to the VMs
read in the same scan (collect/vmware_host.py, collect/vmware_link.py)."""

from __future__ import annotations

import json
from pathlib import Path

from vmsentry.collect import collect, vmware_host

FIX = Path(__file__).parent / "fixtures" / "vmware"
HOST = FIX / "host-linux"


def _scan(*paths):
    inv, skipped = collect([str(p) for p in paths])
    return inv


def test_host_files_are_claimed_by_name():
    assert vmware_host.kind_of("/etc/vmware/netmap.conf", b"network0.name") == "netmap"
    assert vmware_host.kind_of("/etc/vmware/networking", b"VERSION=1,0\nanswer VNET_1_DHCP yes") == "networking"
    assert vmware_host.kind_of("/etc/vmware/vmnet8/nat/nat.conf", b"[host]\nip = 1.2.3.4") == "nat"
    assert vmware_host.kind_of("C:/ProgramData/VMware/vmnetnat.conf", b"[incomingtcp]") == "nat"
    assert vmware_host.kind_of("/etc/vmware/vmnet8/dhcpd/dhcpd.conf", b"subnet") == "dhcp"
    assert vmware_host.kind_of("/etc/dhcp/dhcpd.conf", b"subnet") is None  # an ordinary ISC dhcpd file
    assert vmware_host.kind_of("x.json", b'{"schema": "vmsentry.esxi-export/1"}') == "esxi"


def test_vmnet_files_merge_into_one_network_per_vmnet():
    inv = _scan(HOST)
    nets = {n.name: n for n in inv.networks}
    assert set(nets) == {"vmnet0", "vmnet1", "vmnet2", "vmnet8"}
    assert (nets["vmnet0"].mode, nets["vmnet0"].bridge) == ("bridged", "eth0")
    assert (nets["vmnet1"].mode, nets["vmnet1"].subnets, nets["vmnet1"].dhcp) == (
        "host-only",
        ["192.168.47.0/24"],
        True,
    )
    assert nets["vmnet2"].facts["vmware.netmap.name"]["value"] == "Lab"
    v8 = nets["vmnet8"]
    assert (v8.mode, v8.subnets, v8.host_address) == ("nat", ["192.168.150.0/24"], "192.168.150.1")
    assert v8.forwards == ["tcp *:2222 -> 192.168.150.130:22", "tcp *:8443 -> 192.168.150.200:443"]
    assert [h["mac"] for h in v8.facts["vmware.dhcp.hosts"]["value"]] == ["00:50:56:3f:00:10"]
    errors = sorted(e.message for e in inv.errors)
    assert errors == [
        "line 18: not an 'answer VNET_N_...' line; ignored",
        "line 38: [incomingtcp] entry is not 'HOSTPORT = GUESTIP:GUESTPORT'; ignored",
    ]


def test_custom_vmnet_resolved_and_nat_forward_reaches_the_vm():
    inv = _scan(HOST, FIX / "ws-risky.vmx")
    vm = next(v for v in inv.vms if v.name == "ws-risky")
    nics = {n.id: n for n in vm.nics}
    assert nics["ethernet0"].mode == "host-only"  # custom vmnet2 = host-only per the networking file
    assert "vmnet2 is host-only" in nics["ethernet0"].detail
    [fwd] = vm.forwards  # 2222 -> .130:22 (DHCP host entry for ethernet1's MAC)
    assert (fwd.protocol, fwd.host_address, fwd.host_ports, fwd.guest_ports, fwd.nic) == (
        "tcp",
        None,
        [2222, 2222],
        [22, 22],
        "ethernet1",
    )
    assert fwd.locator.endswith("line 36, [incomingtcp]")
    assert nics["ethernet1"].ip == "192.168.150.130"


def test_esxi_export_port_group_policies():
    inv = _scan(FIX / "esxi-export.json")
    assert not inv.errors
    pgs = {n.name: n for n in inv.networks}
    vm_net = pgs["VM Network"].facts
    # inherited from vSwitch0, which accepts MAC changes and forged transmits
    assert vm_net["esxi.security.MacChanges"]["value"] is True
    assert "switch vSwitch0" in vm_net["esxi.security.MacChanges"]["at"]
    assert pgs["Secure PG"].facts["esxi.security.ForgedTransmits"]["value"] is False
    assert pgs["Sniffer"].facts["esxi.security.AllowPromiscuous"]["value"] is True
    assert pgs["Sniffer"].facts["esxi.vlan"]["value"] == 4095
    # distributed port group: defaults Reject
    dv = pgs["dvportgroup-1285"].facts
    assert (
        dv["esxi.security.MacChanges"]["value"] is False
        and "distributed port group default" in dv["esxi.security.MacChanges"]["at"]
    )
    assert inv.hosts == []  # ESXi hosts are named on VMs and port groups only
    assert pgs["VM Network"].host == "esx01.lab.example"
    vms = {v.name: v for v in inv.vms}
    only = vms["export-only"]
    assert only.host == "esx01.lab.example"
    assert only.facts["vmx.RemoteDisplay.maxConnections"]["value"] == "1"
    assert only.facts["vmx.RemoteDisplay.vnc.password"]["value"] == "<set>"
    assert "never-shown-pw" not in json.dumps(inv.to_dict())
    assert only.nics[0].spoof_protection is True  # Secure PG rejects both


def test_vmx_and_export_of_the_same_vm_are_one_vm():
    inv = _scan(FIX / "esx-risky.vmx", FIX / "esxi-export.json")
    risky = [v for v in inv.vms if v.name == "esx-risky"]
    assert len(risky) == 1
    vm = risky[0]
    assert vm.source.file.endswith("esx-risky.vmx")  # the .vmx copy has every key
    assert vm.host == "esx01.lab.example"
    assert vm.nics[0].spoof_protection is False  # VM Network accepts MAC changes/forged transmits
    assert "MAC changes Accept" in vm.nics[0].detail


def test_bad_esxi_export(tmp_path):
    bad = tmp_path / "export.json"
    bad.write_text('{"schema": "vmsentry.esxi-export/1", "vms": [}')
    inv = _scan(bad)
    assert len(inv.errors) == 1 and inv.errors[0].message.startswith("line 1, column")
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"schema": "vmsentry.esxi-export/1", "portgroups": [{"vlan": 3}, {"name": "PG"}]}))
    inv = _scan(partial)
    assert [e.message for e in inv.errors] == ["portgroups[0]: no name; ignored"]
    assert [n.name for n in inv.networks] == ["PG"]


def test_windows_vmnetdhcp_with_several_subnets_and_vmnetnat():
    inv = _scan(HOST.parent / "host-windows", FIX / "ws-risky.vmx")
    nets = {n.name: n for n in inv.networks}
    assert (nets["vmnet1"].subnets, nets["vmnet1"].host_address) == (["192.168.47.0/24"], "192.168.47.1")
    assert nets["vmnet8"].mode == "nat" and nets["vmnet8"].host_address == "192.168.150.1"
    assert [h["ip"] for h in nets["vmnet8"].facts["vmware.dhcp.hosts"]["value"]] == ["192.168.150.130"]
    vm = next(v for v in inv.vms if v.name == "ws-risky")
    [fwd] = vm.forwards
    assert (fwd.host_ports, fwd.guest_ports, fwd.nic) == ([3389, 3389], [3389, 3389], "ethernet1")
    assert fwd.locator.endswith("vmnetnat.conf: line 13, [incomingtcp]")


def test_evidence_names_the_file_each_fact_came_from():
    from vmsentry.analyse.engine import evaluate
    from vmsentry.analyse.rules import load_catalogue

    rules = [r for r in load_catalogue() if r.id in ("VMS-VMW-001", "VMS-VMW-002")]
    fails = [f for f in evaluate(_scan(HOST), rules) if f.status == "fail" and f.asset == "network:vmnet8"]
    got = {(f.rule_id, Path(f.evidence["file"]).name, f.evidence["locator"]) for f in fails}
    assert got == {
        ("VMS-VMW-002", "networking", "line 16"),
        ("VMS-VMW-001", "nat.conf", "line 36, [incomingtcp]"),
        ("VMS-VMW-001", "nat.conf", "line 37, [incomingtcp]"),
    }
