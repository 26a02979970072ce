"""Hyper-V collector: the JSON export of scripts/collectors/hyperv-export.ps1 (string and numeric enum
forms), and a corpus PowerShell script that is not an export, reported in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsentry.collect import collect, hyperv, read_paths
from vmsentry.collect.source_file import BadInput

REPO = Path(__file__).resolve().parents[1]
FIX = Path(__file__).parent / "fixtures" / "hyperv"


def _vm(inv, name):
    (vm,) = [v for v in inv.vms if v.name == name]
    return vm


def test_lab_export_inventory():
    inv = hyperv.read(str(FIX / "hv-lab.hyperv.json"))
    assert not inv.errors
    (host,) = inv.hosts
    assert host.name == "HV-LAB1" and host.platform == "hyperv"
    assert host.facts["hyperv.host.VirtualMachineMigrationAuthenticationType"]["value"] == "CredSSP"
    switches = {n.name: n for n in inv.networks}
    assert {k: v.mode for k, v in switches.items()} == {
        "External LAN": "bridged",
        "Default Switch": "host-only",
        "Lab Private": "private",
    }
    assert switches["External LAN"].facts["hyperv.switch.AllowManagementOS"]["value"] is True
    web = _vm(inv, "web01")
    (nic,) = web.nics
    assert (nic.id, nic.mode, nic.network, nic.mac, nic.ip) == (
        "Network Adapter",
        "bridged",
        "External LAN",
        "00:15:5d:01:0a:01",
        "192.168.10.21",
    )
    assert nic.spoof_protection is False  # MacAddressSpoofing On
    assert web.facts["hyperv.nic.Network Adapter.DhcpGuard"] == {
        "value": "Off",
        "at": "vms[0].NetworkAdapters[0].DhcpGuard",
    }
    assert web.facts["hyperv.nic.Network Adapter.Vlan.OperationMode"]["value"] == "Trunk"
    assert web.channels.clipboard == "bidirectional"  # enhanced session mode on the host
    assert [(s.kind, s.guest_tag) for s in web.shares] == [("guest-service", "Copy-VMFile")]
    assert [d.kind for d in web.devices] == ["pci-passthrough", "serial-pipe"]
    assert web.snapshots[0].name == "before-patch" and web.snapshots[0].created == "2025-01-15T08:00:00+00:00"
    assert web.security.secure_boot is False and web.host == "HV-LAB1"
    build = _vm(inv, "build02")
    assert [(n.id, n.mode, n.connected) for n in build.nics] == [
        ("Network Adapter #1", "host-only", True),
        ("Network Adapter #2", "disconnected", False),
    ]
    assert build.shares == [] and build.security.secure_boot is False  # generation 1


def test_hardened_export():
    inv = hyperv.read(str(FIX / "hv-hardened.hyperv.json"))
    sql = _vm(inv, "sql01")
    assert sql.nics[0].spoof_protection is True and sql.channels.clipboard == "disabled"
    assert sql.security.secure_boot is True
    assert len(sql.facts["hyperv.nic.Network Adapter.ExtendedAcls"]["value"]) == 2


def test_numeric_enums_and_single_objects():
    """Windows PowerShell 5.1 ConvertTo-Json writes enums as numbers and one-element arrays as objects."""
    inv = hyperv.read(str(FIX / "hv-ps51-numeric.hyperv.json"))
    assert inv.networks[0].mode == "bridged"  # SwitchType 2 = External
    vm = _vm(inv, "legacy")
    facts = {k.rsplit(".", 1)[-1]: v["value"] for k, v in vm.facts.items() if k.startswith("hyperv.nic.")}
    assert facts["MacAddressSpoofing"] == "On" and facts["DhcpGuard"] == "Off" and facts["RouterGuard"] == "On"
    assert facts["PortMirroringMode"] == "Source" and facts["OperationMode"] == "Access"
    assert vm.nics[0].spoof_protection is False
    assert vm.snapshots[0].created == "2020-01-01T00:00:00+00:00"  # /Date(1577836800000)/
    assert inv.hosts[0].facts["hyperv.host.VirtualMachineMigrationAuthenticationType"]["value"] == "CredSSP"


def test_corpus_files_are_not_exports_one_line_each(corpus_dir: Path):
    """DSC configurations and Packer templates are read by their own adapters (tests/test_iac_collect.py);
    what is left in the folder, a script that runs packer, is still refused in one line."""
    folder = corpus_dir / "hyperv"
    files = sorted(folder.iterdir())
    assert len(files) == 9
    inv, skipped = read_paths([str(folder)])
    assert skipped == 0
    assert [Path(e.file).name for e in inv.errors] == ["packerwin__build_windows_2016_docker_hyperv.ps1"]
    err = inv.errors[0]
    assert "\n" not in err.message and err.message.startswith("not a Hyper-V export: a PowerShell script")


def test_bad_exports(tmp_path: Path):
    broken = tmp_path / "x.hyperv.json"
    broken.write_text('{"schema": "vmsentry.hyperv-export/1", "vms": [\n{"Name": "a",}\n]}')
    with pytest.raises(BadInput, match=r"^line 2, column \d+: malformed JSON"):
        hyperv.read(str(broken))
    odd = tmp_path / "odd.hyperv.json"
    odd.write_text(
        json.dumps(
            {
                "schema": "vmsentry.hyperv-export/1",
                "host": {"ComputerName": "H"},
                "switches": [{"SwitchType": 2}],
                "vms": [{"Name": "ok", "NetworkAdapters": [{"Name": "n", "SwitchName": "gone"}]}, {"Id": "no-name"}, 7],
            }
        )
    )
    inv = hyperv.read(str(odd))
    assert [e.message for e in inv.errors] == [
        "switches[0]: a switch without a Name; skipped",
        "vms[1]: a VM without a Name; skipped",
        "vms[2]: a VM without a Name; skipped",
    ]
    ok = _vm(inv, "ok")
    assert ok.nics[0].mode == "unknown" and ok.nics[0].spoof_protection is None  # switch not exported
    bom = tmp_path / "bom.hyperv.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (FIX / "hv-hardened.hyperv.json").read_bytes())  # Set-Content -Encoding UTF8
    assert hyperv.claims(str(bom), bom.read_bytes()[:4096]) and hyperv.read(str(bom)).vms


def test_collector_script_uses_the_cmdlets():
    script = (REPO / "scripts" / "collectors" / "hyperv-export.ps1").read_text()
    for cmdlet in (
        "Get-VM ",
        "Get-VMNetworkAdapter ",
        "Get-VMNetworkAdapterVlan",
        "Get-VMNetworkAdapterAcl",
        "Get-VMNetworkAdapterExtendedAcl",
        "Get-VMSwitch ",
        "Get-VMSwitchExtension",
        "Get-VMHost",
        "Get-VMIntegrationService",
        "Get-VMSnapshot",
        "Get-VMSecurity",
        "Get-VMFirmware",
        "vmsentry.hyperv-export/1",
        "MacAddressSpoofing",
        "AllowManagementOS",
        "EnableEnhancedSessionMode",
    ):
        assert cmdlet in script, cmdlet
    assert not any(word in script for word in ("Set-VM", "Remove-VM", "Enable-VM", "Disable-VM"))
    # scanning the scripts folder does not mistake the collector for an export
    inv, skipped = read_paths([str(REPO / "scripts" / "collectors")])
    assert not inv.vms


def test_scan_cli_exit_codes(run_cli):
    proc = run_cli("scan", FIX / "hv-hardened.hyperv.json", "--format", "json", "--fail-on", "high")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("scan", FIX / "hv-lab.hyperv.json", "--format", "json", "--fail-on", "medium")
    assert proc.returncode == 1
    inv, _ = collect([str(FIX)])
    assert {v.platform for v in inv.vms} == {"hyperv"} and len(inv.vms) == 4


def test_mangled_exports_never_crash():
    """Wrong types anywhere in an export become per-element errors or unknowns, never a traceback."""
    import copy
    import random

    from vmsentry.model import Source

    base = json.loads((FIX / "hv-lab.hyperv.json").read_text())
    values = [None, 1, -1, 2.5, "", "x", [], {}, [1], {"a": 1}, True, "On", "/Date(abc)/", "2020-13-45"]

    def mutate(obj, rnd):
        items = list(obj.items()) if isinstance(obj, dict) else list(enumerate(obj)) if isinstance(obj, list) else []
        for key, value in items:
            if rnd.random() < 0.15:
                obj[key] = rnd.choice(values)
            else:
                mutate(value, rnd)

    for seed in range(300):
        doc = copy.deepcopy(base)
        mutate(doc, random.Random(seed))
        hyperv.read_export(doc, Source(file="mangled.json"))
