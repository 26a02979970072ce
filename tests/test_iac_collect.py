"""VM definitions kept as code: Packer templates, the Terraform libvirt provider, Vagrantfiles and PowerShell
DSC Hyper-V configurations, read into the inventory before the VM exists (collect/packer.py,
terraform_libvirt.py, vagrant.py, dsc_hyperv.py over collect/hcl_reader.py).

The real files are the corpus ones (../shared/corpus/hyperv: HyperVDsc examples, the AzureStackHCI-EvalGuide
host configuration, a Packer template); the fixtures in tests/fixtures/iac are written from each tool's
documented examples (cited in each fixture's header)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsentry.collect import _adapters, collect, iter_files, read_paths
from vmsentry.collect.source_file import read_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "iac"
IAC_ADAPTERS = {"packer", "terraform_libvirt", "vagrant", "dsc_hyperv"}


def _vm(inv, name):
    return next(vm for vm in inv.vms if vm.name == name)


def _scan(run_cli, *paths):
    proc = run_cli("scan", "--format", "json", *paths)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def _failing(doc, asset):
    return {f["rule_id"] for f in doc["findings"] if f["asset"] == asset and f["status"] == "fail"}


# ------------------------------------------------------------------------------------ corpus files


def test_claims_only_their_own_files_across_the_corpus(corpus_dir: Path):
    claimed = {}
    for path, _ in iter_files([str(corpus_dir)]):
        head = read_bytes(path)[:4096]
        adapter = next((module for module, claims in _adapters() if claims(path, head)), None)
        name = adapter.__name__.rsplit(".", 1)[-1] if adapter else None
        if name in IAC_ADAPTERS:
            claimed[Path(path).name] = name
    assert claimed == {
        "azshci__AzSHCIHost.ps1": "dsc_hyperv",
        "hypervdsc__VMHyperV_6-MultipleNICs.ps1": "dsc_hyperv",
        "hypervdsc__VMNetworkAdapter_5-VMStaticNetworkSettings.ps1": "dsc_hyperv",
        "hypervdsc__VMNetworkAdapter_6-VMVlanTagging.ps1": "dsc_hyperv",
        "hypervdsc__VMSwitch_1-External.ps1": "dsc_hyperv",
        "hypervdsc__VMSwitch_2-ExternalSET_LBMode.ps1": "dsc_hyperv",
        "hypervdsc__VMSwitch_4-Internal.ps1": "dsc_hyperv",
        "packerwin__windows_2019_hyperv.json": "packer",
    }


def test_dsc_switches_from_the_hypervdsc_examples(corpus_dir: Path):
    folder = corpus_dir / "hyperv"
    inv, _ = read_paths([str(folder / f"hypervdsc__VMSwitch_{n}.ps1") for n in ("1-External", "4-Internal")])
    assert not inv.errors
    external, internal = inv.networks
    assert (external.mode, internal.mode) == ("bridged", "host-only")
    # the name is a configuration parameter: unknown until compiled, kept as written
    assert external.name == "$SwitchName"
    assert external.facts["hyperv.switch.SwitchType"] == {"value": "External", "at": "line 37, Type"}


def test_dsc_adapter_vlan_and_mac(corpus_dir: Path):
    inv, _ = read_paths([str(corpus_dir / "hyperv" / "hypervdsc__VMNetworkAdapter_6-VMVlanTagging.ps1")])
    vm = _vm(inv, "MyVM01")
    nic = vm.nics[0]
    assert (nic.id, nic.network, nic.mode, nic.mac) == ("MyVM01-NIC", "SETSwitch", "unknown", "00:15:23:be:0c:00")
    assert vm.facts["hyperv.nic.MyVM01-NIC.Vlan.AccessVlanId"]["value"] == "1"
    assert vm.facts["hyperv.nic.MyVM01-NIC.Vlan.AccessVlanId"]["at"].startswith("line 16,")


def test_dsc_real_host_configuration(corpus_dir: Path):
    """AzureStackHCI-EvalGuide's host: nested VMs on an Internal switch with MAC spoofing turned on."""
    inv, _ = read_paths([str(corpus_dir / "hyperv" / "azshci__AzSHCIHost.ps1")])
    assert not inv.errors
    (switch,) = inv.networks
    assert (switch.name, switch.mode) == ("$vSwitchNameHost", "host-only")
    (vm,) = inv.vms
    assert vm.facts["hyperv.processor.ExposeVirtualizationExtensions"]["value"] is True
    assert [n.mode for n in vm.nics] == ["host-only", "host-only"]
    assert all(n.spoof_protection is False for n in vm.nics)
    assert vm.facts["hyperv.nic.$mgmtNicName.MacAddressSpoofing"]["value"] == "On"


def test_dsc_findings(run_cli, corpus_dir: Path):
    doc = _scan(run_cli, corpus_dir / "hyperv" / "azshci__AzSHCIHost.ps1")
    assert "VMS-HV-017" in _failing(doc, "network:$vSwitchNameHost")  # Internal switch: a path to the host


def test_packer_json_template(corpus_dir: Path):
    inv, _ = read_paths([str(corpus_dir / "hyperv" / "packerwin__windows_2019_hyperv.json")])
    assert not inv.errors
    assert sorted((vm.name, vm.platform) for vm in inv.vms) == [
        ("HyperVServer2019 (hyperv-iso)", "hyperv"),
        ("HyperVServer2019 (virtualbox-iso)", "virtualbox"),
        ("HyperVServer2019 (vmware-iso)", "vmware"),
    ]
    hv = _vm(inv, "HyperVServer2019 (hyperv-iso)")
    assert hv.nics[0].mode == "unknown"  # switch_name is {{user `hyperv_switchname`}}
    assert hv.facts["packer.switch_name"] == {"value": "{{user `hyperv_switchname`}}", "at": "builders[0].switch_name"}
    assert hv.facts["packer.enable_virtualization_extensions"]["value"] is True
    vmw = _vm(inv, "HyperVServer2019 (vmware-iso)")
    assert vmw.facts["vmx.remotedisplay.vnc.enabled"]["value"] == "false"
    assert [(lst.kind, lst.address, lst.auth) for lst in vmw.listeners] == [("vnc", "127.0.0.1", "password")]
    vbox = _vm(inv, "HyperVServer2019 (virtualbox-iso)")
    (fwd,) = vbox.forwards
    assert (fwd.host_address, fwd.host_ports, fwd.guest_ports) == ("127.0.0.1", [2222, 4444], [5985, 5985])


def test_packer_hcl_from_the_docs(run_cli):
    path = FIXTURES / "ubuntu.pkr.hcl"
    inv, _ = read_paths([str(path)])
    assert not inv.errors
    qemu = _vm(inv, "ubuntu-build")
    assert qemu.platform == "qemu" and qemu.nics[0].mode == "user"
    (vnc,) = qemu.listeners
    assert (vnc.address, vnc.auth, vnc.locator) == ("0.0.0.0", "none", "line 15, source.qemu.ubuntu.vnc_bind_address")
    assert qemu.facts["packer.http_bind_address"]["value"] == "0.0.0.0"  # Packer's default with http_directory
    bridged = _vm(inv, "packer:qemu.bridged")
    assert (bridged.nics[0].mode, bridged.facts["packer.net_bridge"]["value"]) == ("unknown", "${var.bridge}")
    assert bridged.listeners[0].auth == "password"
    desktop = _vm(inv, "packer:vmware-iso.desktop")
    assert (desktop.nics[0].mode, desktop.nics[0].model) == ("bridged", "e1000")
    doc = _scan(run_cli, path)
    assert {"VMS-VM-001", "VMS-VM-002", "VMS-VM-010"} <= _failing(doc, "vm:ubuntu-build")
    assert "VMS-VM-020" in _failing(doc, "vm:packer:vmware-iso.desktop")
    assert not _failing(doc, "vm:packer:qemu.bridged") & {"VMS-VM-001", "VMS-VM-002"}


def test_terraform_hcl_from_the_docs(run_cli):
    path = FIXTURES / "libvirt_domain.tf"
    inv, _ = collect([str(path)])
    assert not inv.errors
    assert {(n.name, n.mode, n.bridge) for n in inv.networks} == {("k8snet", "nat", None), ("lan", "bridged", "br0")}
    web = _vm(inv, "web")
    assert [(n.mode, n.network, n.bridge) for n in web.nics] == [
        ("nat", "k8snet", None),  # network_id = libvirt_network.kube.id, joined by the libvirt link pass
        ("bridged", None, "br0"),
        ("direct", None, None),
    ]
    assert web.nics[1].locator == "line 33, libvirt_domain.web.network_interface[1].bridge"
    assert [(lst.kind, lst.address, lst.port) for lst in web.listeners] == [
        ("vnc", "0.0.0.0", None),
        ("serial", "0.0.0.0", 4555),
    ]
    assert (web.shares[0].host_path, web.shares[0].writable) == ("/tmp", True)
    db = _vm(inv, "db")  # name = "db-${terraform.workspace}": the resource label stands in
    assert db.listeners[0].address == "default"  # listen_address = var.vnc_address: not stated
    doc = _scan(run_cli, path)
    assert {"VMS-VM-001", "VMS-VM-002", "VMS-VM-004", "VMS-VM-020", "VMS-VM-021", "VMS-VM-060"} <= _failing(
        doc, "vm:web"
    )
    assert "VMS-VM-062" not in _failing(doc, "vm:web")  # the provider's accessmode default is mapped
    assert "VMS-NET-003" in _failing(doc, "network:lan")


def test_terraform_show_json():
    inv, _ = collect([str(FIXTURES / "terraform-show.json")])
    assert not inv.errors
    (net,) = inv.networks
    assert (net.name, net.mode, net.dhcp) == ("backend", "isolated", False)
    (vm,) = inv.vms
    assert vm.nics[0].mode == "isolated"
    assert vm.nics[0].locator.startswith("planned_values.root_module.child_modules[0].resources[0]")
    assert vm.listeners[0].address == "127.0.0.1"


def test_vagrantfile_from_the_docs(run_cli):
    path = FIXTURES / "vagrant" / "Vagrantfile"
    inv, _ = read_paths([str(path)])
    assert not inv.errors
    assert sorted((vm.name, vm.platform) for vm in inv.vms) == [
        ("db", "libvirt"),
        ("node-#{i}", "libvirt"),
        ("web", "virtualbox"),
        ("win", "hyperv"),
    ]
    web = _vm(inv, "web")
    assert [n.mode for n in web.nics] == ["nat", "bridged"]
    assert [(f.host_address, f.host_ports) for f in web.forwards] == [
        ("127.0.0.1", [2222, 2222]),  # Vagrant's own ssh forward
        (None, [8080, 8080]),  # no host_ip: every host address
        ("127.0.0.1", [2200, 2200]),
    ]
    assert web.channels.clipboard == "bidirectional"
    assert [(s.host_path, s.guest_tag) for s in web.shares] == [("../data", "/vagrant_data"), (".", "/vagrant")]
    db = _vm(inv, "db")
    assert not db.shares  # synced_folder ".", "/vagrant", disabled: true
    assert [(lst.kind, lst.address) for lst in db.listeners] == [("vnc", "0.0.0.0")]
    win = _vm(inv, "win")
    assert (win.nics[0].network, win.nics[0].mode) == ("External Switch", "unknown")
    assert win.facts["vagrant.hyperv.vmname"]["value"] == "\"win-#{ENV['USER']}\""  # computed: kept as written
    assert win.channels.clipboard == "bidirectional"  # enhanced session mode
    doc = _scan(run_cli, path)
    assert {"VMS-VM-010", "VMS-VM-020", "VMS-VM-060"} <= _failing(doc, "vm:web")
    assert {"VMS-VM-001", "VMS-VM-002"} <= _failing(doc, "vm:db")
    assert "VMS-VM-070" in _failing(doc, "vm:win")


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        ("broken.tf", b'resource "libvirt_domain" "x" {\n  name = \n}\n', "line 2, column"),
        ("broken.pkr.hcl", b'source "qemu" "x" {\n  vnc_bind_address = [1, 2\n', "line 3, column 1: not valid HCL"),
        ("deep.tf", b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "not valid HCL"),
        ("broken.pkr.json", b'{"builders": [{"type": "qemu", }]}', "malformed JSON"),
        ("binary.tf", b"\x00\x01resource", "binary data"),
    ],
)
def test_bad_input_one_line(tmp_path: Path, name: str, body: bytes, expected: str):
    path = tmp_path / name
    path.write_bytes(body)
    inv, _ = read_paths([str(path)])
    (err,) = inv.errors
    assert expected in err.message and "\n" not in err.message and "Traceback" not in err.message


def test_nothing_in_a_file_is_executed(tmp_path: Path):
    canary = tmp_path / "canary"
    (tmp_path / "Vagrantfile").write_text(
        f'system("touch {canary}")\n`touch {canary}`\nVagrant.configure("2") do |config|\n'
        f'  config.vm.network "forwarded_port", guest: 22, host: File.write("{canary}", "x")\nend\n'
    )
    (tmp_path / "x.ps1").write_text(
        f"Configuration X {{\n  Import-DscResource -ModuleName HyperVDsc\n  VMSwitch S {{ Name = $(New-Item {canary}) ; Type = 'Private' }}\n}}\n"
    )
    inv, _ = read_paths([str(tmp_path)])
    assert not canary.exists()
    assert _vm(inv, "default").forwards[0].host_ports == [2222, 2222]  # the computed forward is not taken
    assert inv.networks[0].name.startswith("$(New-Item") and inv.networks[0].mode == "private"


def test_unterminated_dsc_block(tmp_path: Path):
    path = tmp_path / "open.ps1"
    path.write_text(
        "Configuration X {\n  Import-DscResource -ModuleName HyperVDsc\n  VMSwitch S {\n    Type = 'External'\n"
    )
    inv, _ = read_paths([str(path)])
    assert [e.message for e in inv.errors] == ["line 3: VMSwitch block has no closing brace; not read"]


def test_cli_inventory_exit_code(run_cli):
    proc = run_cli("inventory", FIXTURES / "terraform-show.json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["vms"][0]["name"] == "app"
