"""`vmsentry rules --matrix`: the platform comparison table is generated from the catalogue, says
"no rule yet" for an empty cell, escapes HTML, and the Rule loader validates the matrix metadata."""

from __future__ import annotations

import json

import pytest

from vmsentry.analyse.rules import CONTROLS, CatalogueError, _rule_from, load_catalogue
from vmsentry.report import matrix

BASE = {
    "id": "VMS-T-1",
    "title": "t",
    "severity": "low",
    "category": "clipboard",
    "platforms": ["hyperv"],
    "asset": "vm",
    "rationale": "r",
    "remediation": {"hyperv": "x"},
    "references": ["ref"],
    "default": "Hyper-V: off.",
    "check": "c",
}


def test_loader_reads_and_validates_matrix_fields():
    rule = _rule_from(
        {**BASE, "control": "clipboard", "setting": {"hyperv": "Get-VMHost X"}, "recommended": "$false"}, "t.yaml"
    )
    assert rule.control == "clipboard" and rule.setting == {"hyperv": "Get-VMHost X"}
    assert rule.recommended == {"all": "$false"}
    assert rule.to_dict()["control"] == "clipboard"
    with pytest.raises(CatalogueError, match="control 'copy-paste'"):
        _rule_from({**BASE, "control": "copy-paste"}, "t.yaml")
    assert _rule_from(BASE, "t.yaml").control is None  # optional


def test_catalogue_controls_are_known():
    rules = load_catalogue()
    assert all(r.control in CONTROLS for r in rules if r.control)
    controls = {r.control for r in rules if r.control}
    assert {"clipboard", "anti-spoofing", "vm-firewall", "management-plane", "port-forwards"} <= controls


def test_matrix_json_from_catalogue():
    data = matrix.build(load_catalogue())
    assert [c["title"] for c in data["columns"]] == ["KVM/libvirt", "VMware", "Hyper-V", "VirtualBox", "Proxmox VE"]
    assert [r["control"] for r in data["rows"]] == list(CONTROLS)
    row = {r["control"]: r["cells"] for r in data["rows"]}
    anti = {e["rule_id"] for e in row["anti-spoofing"]["proxmox"]}
    assert {"VMS-PVE-012", "VMS-PVE-013", "VMS-VM-030"} <= anti
    kvm = [e for e in row["anti-spoofing"]["kvm"] if e["rule_id"] == "VMS-VM-030"][0]
    assert kvm["setting"] == "<filterref filter='clean-traffic'>"
    assert "Proxmox" not in kvm["default"]  # each column gets its own default text
    hv = [e for e in row["anti-spoofing"]["hyperv"] if e["rule_id"] == "VMS-VM-030"][0]
    assert hv["default"].startswith("MacAddressSpoofing Off") and hv["recommended"] == "MacAddressSpoofing Off"
    pve_fw = [e for e in row["vm-firewall"]["proxmox"] if e["rule_id"] == "VMS-PVE-001"][0]
    assert pve_fw == {
        "rule_id": "VMS-PVE-001",
        "severity": "high",
        "title": pve_fw["title"],
        "setting": "cluster.fw [OPTIONS] enable",
        "default": "enable 0 (cluster firewall off).",
        "recommended": "1",
    }


def test_empty_cell_says_no_rule_yet():
    only = [r for r in load_catalogue() if r.id == "VMS-HV-006"]
    md = matrix.render_md(only)
    clip = [line for line in md.splitlines() if line.startswith("| clipboard |")][0]
    assert clip.count("no rule yet") == 4 and "VMS-HV-006" in clip
    assert all(
        line.count("no rule yet") == 5
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith(("| clipboard", "| control"))
    )


def test_html_is_escaped():
    rule = _rule_from(
        {
            **BASE,
            "control": "clipboard",
            "setting": {"hyperv": "<script>alert(1)</script>"},
            "recommended": {"hyperv": "a & b"},
        },
        "t.yaml",
    )
    out = matrix.render_html([rule])
    assert "<script>alert" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out and "a &amp; b" in out
    assert out.startswith("<!DOCTYPE html>") and out.count("no rule yet") == len(CONTROLS) * 5 - 1


def test_cli_matrix_formats(run_cli):
    md = run_cli("rules", "--matrix")
    assert md.returncode == 0 and md.stdout.startswith("# Platform comparison")
    assert "| anti-spoofing |" in md.stdout and "VMS-PVE-013" in md.stdout
    assert run_cli("rules", "--matrix", "--format", "md").stdout == md.stdout
    js = run_cli("rules", "--matrix", "--format", "json")
    assert json.loads(js.stdout)["matrix"]["rows"][0]["control"] == "clipboard"
    html = run_cli("rules", "--matrix", "--format", "html")
    assert html.returncode == 0 and "<table>" in html.stdout
    only = json.loads(run_cli("rules", "--matrix", "--platform", "proxmox", "--format", "json").stdout)
    cells = {r["control"]: r["cells"] for r in only["matrix"]["rows"]}
    # only rules that cover Proxmox: no Hyper-V-only rule, though a shared rule fills both columns
    assert [e["rule_id"] for e in cells["anti-spoofing"]["hyperv"]] == ["VMS-VM-030"]
    assert cells["anti-spoofing"]["proxmox"] and cells["guest-integration-services"]["hyperv"] == []
    listing = run_cli("rules", "--format", "html")
    assert listing.returncode == 0 and "VMS-HV-001" in listing.stdout


def test_default_text_per_platform():
    rule = _rule_from(
        {
            **BASE,
            "platforms": ["libvirt", "hyperv", "vmware", "proxmox"],
            "default": "No filter = open. Hyper-V: Off. ESXi: Reject. Workstation/Fusion: none.",
        },
        "t.yaml",
    )
    assert matrix.default_for(rule, "libvirt") == "No filter = open."
    assert matrix.default_for(rule, "hyperv") == "Off."
    assert matrix.default_for(rule, "vmware") == "ESXi: Reject. Workstation/Fusion: none."
    assert matrix.default_for(rule, "proxmox") == "not stated in the rule"  # never borrows libvirt's text
    assert matrix.default_for(_rule_from(BASE, "t.yaml"), "hyperv") == "off."
