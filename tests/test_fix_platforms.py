"""Fixes for VMware, VirtualBox, Proxmox and Hyper-V, applied for real: the .vmx / .vbox / Proxmox patches
are applied with patch(1) to copies of the shared corpus and the fixtures, the copies re-scanned (the fixed
findings are gone, none is new), and the fix regenerated from the patched files changes nothing. The
PowerShell is parsed with the tree-sitter PowerShell grammar and each cmdlet line checked against the
cmdlets' documented parameters."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from vmsentry.act.fix import plan
from vmsentry.analyse.engine import evaluate
from vmsentry.collect import read_paths
from vmsentry.model.fix import FixPlan, Unfixable
from vmsentry.report.fix import Secrets, patch_formats, powershell, render_as

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VMSENTRY_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
FIXTURES = ROOT / "tests" / "fixtures"
PLATFORMS = ("vmware", "virtualbox", "proxmox", "hyperv")


def plan_for(folder: Path) -> tuple[FixPlan, list]:
    """The real planner (act/fix.plan) on the failing findings of a scan of ``folder``."""
    inv, _ = read_paths([str(folder)])
    failing = [f for f in evaluate(inv) if f.status == "fail"]
    mine = [f for f in failing if f.platform in PLATFORMS]
    return plan(mine, inv, inputs=[str(folder)]), failing


def unified_patch(plan: FixPlan, root: Path) -> str:
    """The real ``--format patch`` renderer; "" when no file changes (its header lines are for people)."""
    text = render_as("patch", plan, Secrets(), base=str(root))
    return text[text.index("--- a/") :] if "--- a/" in text else ""


def failing_keys(folder: Path) -> set[tuple[str, str]]:
    inv, _ = read_paths([str(folder)])
    return {(f.rule_id, f.asset) for f in evaluate(inv) if f.status == "fail"}


CASES = [
    ("vmware-vmx", CORPUS / "vmware-vmx"),
    ("virtualbox", CORPUS / "virtualbox"),
    ("proxmox", CORPUS / "proxmox"),
    ("vmware-fixtures", FIXTURES / "vmware"),
    ("virtualbox-fixtures", FIXTURES / "virtualbox"),
    ("proxmox-fixtures", FIXTURES / "proxmox"),
]


@pytest.mark.parametrize(("name", "source"), CASES, ids=[c[0] for c in CASES])
def test_patch_applied_to_a_copy_fixes_and_is_idempotent(tmp_path, name, source):
    work = tmp_path / name
    shutil.copytree(source, work)
    for broken in work.rglob("broken*"):
        broken.unlink()
    plan, failing = plan_for(work)
    file_fixes = [f for f in plan.fixes if any(patch_formats.editor_for(c)[0] for c in f.changes)]
    assert file_fixes, f"{name}: no file fix planned"
    diff = unified_patch(plan, work)
    assert diff
    raw = diff.encode("utf-8", "surrogateescape")  # a .vmx in another encoding (cp949.vmx) stays byte-exact
    subprocess.run(["patch", "-p1", "--forward", "-s", "-d", str(work)], input=raw, check=True)
    before = {(f.rule_id, f.asset) for f in failing}
    after = failing_keys(work)
    fixed = {(f.rule_id, f.asset) for f in file_fixes if all(patch_formats.editor_for(c)[0] for c in f.changes)}
    assert not fixed & after, f"{name}: still failing after the patch: {sorted(fixed & after)}"
    assert after <= before, f"{name}: new findings after the patch: {sorted(after - before)}"
    again, _ = plan_for(work)
    assert unified_patch(again, work) == "", f"{name}: a second run changes something"
    # the same patch applied again is refused as already applied (patch changes nothing)
    second = subprocess.run(["patch", "-p1", "--forward", "--dry-run", "-d", str(work)], input=raw, capture_output=True)
    assert b"previously applied" in second.stdout


def test_every_fix_says_what_it_changes_breaks_and_restarts():
    for folder in (
        CORPUS / "vmware-vmx",
        CORPUS / "virtualbox",
        CORPUS / "proxmox",
        FIXTURES / "hyperv",
        FIXTURES / "vmware",
    ):
        plan, _ = plan_for(folder)
        for fix in plan.fixes:
            assert fix.summary and fix.breaks and fix.restart in ("none", "service", "vm"), fix
        for item in plan.unfixable:
            assert isinstance(item, Unfixable) and len(item.reason) > 20, item


# The parameters each generated cmdlet may use, from the cmdlets' reference pages:
# Hyper-V module: https://learn.microsoft.com/powershell/module/hyper-v/<cmdlet> (e.g. set-vmnetworkadapter:
# -VMName, -Name, -MacAddressSpoofing/-DhcpGuard/-RouterGuard <OnOffState>, -PortMirroring
# <VMNetworkAdapterPortMirroringMode>); VMware PowerCLI: https://developer.broadcom.com/powercli/latest/
# vmware.vimautomation.core/commands/<cmdlet>. -ErrorAction/-Confirm are PowerShell common parameters.
COMMON = {"-ErrorAction", "-Confirm"}
DOCUMENTED = {
    "Get-VMNetworkAdapter": {"-VMName", "-Name"},
    "Set-VMNetworkAdapter": {"-VMName", "-Name", "-MacAddressSpoofing", "-DhcpGuard", "-RouterGuard", "-PortMirroring"},
    "Get-VMIntegrationService": {"-VMName", "-Name"},
    "Disable-VMIntegrationService": {"-VMName", "-Name"},
    "Get-VMFirmware": {"-VMName"},
    "Set-VMFirmware": {"-VMName", "-EnableSecureBoot"},
    "Get-VMSecurity": {"-VMName"},
    "Set-VMSecurity": {"-VMName", "-EncryptStateAndVmMigrationTraffic"},
    "Enable-VMTPM": {"-VMName"},
    "Get-VM": {"-Name"},
    "Set-VM": {"-Name", "-CheckpointType"},
    "Get-VMHost": set(),
    "Set-VMHost": {
        "-EnableEnhancedSessionMode",
        "-VirtualMachineMigrationAuthenticationType",
        "-UseAnyNetworkForMigration",
    },
    "Get-VMSwitch": {"-Name"},
    "Set-VMSwitch": {"-Name", "-AllowManagementOS"},
    "Get-AdvancedSetting": {"-Entity", "-Name"},
    "New-AdvancedSetting": {"-Entity", "-Name", "-Value"},
    "Set-AdvancedSetting": {"-Value"},
    "Remove-AdvancedSetting": set(),
    "Get-VirtualPortGroup": {"-Name"},
    "Get-SecurityPolicy": set(),
    "Set-SecurityPolicy": {"-ForgedTransmits", "-MacChanges", "-AllowPromiscuous"},
    "Write-Output": set(),
    "Out-Null": set(),
}
# documented values of the enum parameters (OnOffState, VMNetworkAdapterPortMirroringMode, CheckpointType)
ENUMS = {
    "-MacAddressSpoofing": {"On", "Off"},
    "-DhcpGuard": {"On", "Off"},
    "-RouterGuard": {"On", "Off"},
    "-EnableSecureBoot": {"On", "Off"},
    "-PortMirroring": {"None", "Source", "Destination"},
    "-CheckpointType": {"Disabled", "Production", "ProductionOnly", "Standard"},
}


def _commands(node):
    if node.type == "command":
        yield node
    for child in node.children:
        yield from _commands(child)


# The object forms a template's loops use (same references): Set-VMNetworkAdapter -VMNetworkAdapter,
# Disable-VMIntegrationService -VMIntegrationService, Set-VMFirmware -VMFirmware, Set-VM -VM, Set-VMSwitch
# -VMSwitch, Get-VMSwitch -SwitchType <VMSwitchType: Internal|External|Private>; Where-Object with a script block.
TEMPLATE_PARAMETERS = {
    "Set-VMNetworkAdapter": {"-VMNetworkAdapter"},
    "Disable-VMIntegrationService": {"-VMIntegrationService"},
    "Set-VMFirmware": {"-VMFirmware"},
    "Set-VM": {"-VM"},
    "Set-VMSwitch": {"-VMSwitch"},
    "Get-VMSwitch": {"-SwitchType"},
    "Where-Object": set(),
}


def check_powershell(script: str, extra: dict | None = None) -> set[str]:
    """The script parses (tree-sitter PowerShell) and every cmdlet uses only documented parameters and enum
    values; returns the cmdlets seen."""
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    documented = {k: set(v) for k, v in DOCUMENTED.items()}
    for name, parameters in (extra or {}).items():
        documented.setdefault(name, set()).update(parameters)
    enums = {**ENUMS, "-SwitchType": {"Internal", "External", "Private"}}
    tree = Parser(Language(tree_sitter_powershell.language())).parse(script.encode())
    assert not tree.root_node.has_error, script
    seen = set()
    for command in _commands(tree.root_node):
        name = command.child_by_field_name("command_name").text.decode()
        assert name in documented, name
        seen.add(name)
        words = (
            [c.text.decode() for c in command.named_children[1].named_children if c.type != "command_argument_sep"]
            if command.named_child_count > 1
            else []
        )
        for n, word in enumerate(words):
            if word.startswith("-") and not word.startswith("-Confirm:"):
                assert word in documented[name] | COMMON, f"{name} {word}"
                if word in enums:
                    assert words[n + 1].strip("'") in enums[word], f"{name} {word} {words[n + 1]}"
    return seen


def test_powershell_parses_and_uses_only_documented_parameters():
    fixes, unfixable = [], []
    for folder in (FIXTURES / "hyperv", FIXTURES / "vmware"):
        plan, _ = plan_for(folder)
        fixes += plan.fixes
        unfixable += plan.unfixable
    script = powershell.render(FixPlan(fixes, unfixable, ["fixtures"], "2026-01-01T00:00:00Z"))
    for needed in (
        "-MacAddressSpoofing 'Off'",
        "-DhcpGuard 'On'",
        "-RouterGuard 'On'",
        "-EnableSecureBoot 'On'",
        "New-AdvancedSetting",
        "Set-SecurityPolicy -ForgedTransmits $false",
    ):
        assert needed in script, needed
    seen = check_powershell(script)
    assert {"Set-VMNetworkAdapter", "Set-VMFirmware", "New-AdvancedSetting", "Set-SecurityPolicy"} <= seen


def test_powershell_is_idempotent_and_quotes_hostile_names():
    plan, _ = plan_for(FIXTURES / "hyperv")
    script = powershell.render(plan)
    # every set is guarded by a comparison with the value read just before
    assert script.count("if (") >= len([c for f in plan.fixes for c in f.changes if c.kind == "hyperv_setting"])
    assert powershell.quote("a'b\nc; Remove-Item") == "'a''b\\nc; Remove-Item'"


# VBoxManage modifyvm options and setextradata keys the sh/ansible renderers may write, from the VirtualBox 7
# user manual, https://www.virtualbox.org/manual/ch08.html#vboxmanage-modifyvm ("N" = the NIC's slot, 1-8)
# and https://www.virtualbox.org/manual/ch04.html#sharedfolders (SharedFoldersEnableSymlinksCreate).
MODIFYVM = {
    "--vrde": {"on", "off"},
    "--vrde-multi-con": {"on", "off"},
    "--nat-localhostreachableN": {"on", "off"},
    "--nic-promiscN": {"deny", "allow-vms", "allow-all"},
    "--clipboard-mode": {"disabled", "hosttoguest", "guesttohost", "bidirectional"},
    "--clipboard-file-transfers": {"enabled", "disabled"},
    "--drag-and-drop": {"disabled", "hosttoguest", "guesttohost", "bidirectional"},
    "--teleporter": {"on", "off"},
}
EXTRADATA = re.compile(r"VBoxInternal2/SharedFoldersEnableSymlinksCreate/\S+")
# qm set options (https://pve.proxmox.com/pve-docs/qm.1.html): netN, vga, and what --delete may name;
# firewall [OPTIONS] keys and values (https://pve.proxmox.com/pve-docs/pve-firewall.8.html).
QM_SET = {"netN": None, "vga": {"std", "cirrus", "vmware", "qxl", "serial0", "none", "virtio"}}
QM_DELETE = {"usbN", "ivshmem"}
QM_NET_SUBOPTIONS = {"firewall": {"0", "1"}}
PVE_OPTIONS = {
    "enable": {"0", "1"},
    "policy_in": {"ACCEPT", "REJECT", "DROP"},
    "tcpflags": {"0", "1"},
    "nosmurfs": {"0", "1"},
    "nf_conntrack_allow_invalid": {"0", "1"},
    "macfilter": {"0", "1"},
    "dhcp": {"0", "1"},
    "radv": {"0", "1"},
}


def _numbered(option: str) -> str:
    return re.sub(r"\d+$", "N", option)


def vendor_script(folders) -> str:
    fixes, unfixable = [], []
    for folder in folders:
        plan, _ = plan_for(folder)
        fixes += plan.fixes
        unfixable += plan.unfixable
    return render_as("sh", FixPlan(fixes, unfixable, ["corpus"], "2026-01-01T00:00:00Z"), Secrets())


def test_sh_for_virtualbox_and_proxmox_uses_documented_options(tmp_path):
    script = vendor_script([CORPUS / "virtualbox", CORPUS / "proxmox", FIXTURES / "virtualbox", FIXTURES / "proxmox"])
    path = tmp_path / "fix.sh"
    path.write_text(script)
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0
    seen = set()
    for line in script.splitlines():
        words = shlex.split(line) if line.startswith("vms_") else []
        if not words or words[0] not in (
            "vms_vbox",
            "vms_vbox_extra",
            "vms_qm",
            "vms_qm_delete",
            "vms_qm_sub",
            "vms_pve_option",
        ):
            continue
        seen.add(words[0])
        if words[0] == "vms_vbox":
            _, _vm, option, value, shown = words
            assert value in MODIFYVM[_numbered(option)], line
            assert shown == "" or re.fullmatch(r'[a-z]+\d*="[a-z-]+"', shown), line
        elif words[0] == "vms_vbox_extra":
            assert EXTRADATA.fullmatch(words[2]) and words[3] == "0", line
        elif words[0] == "vms_qm":
            _, vmid, key, value = words
            allowed = QM_SET[_numbered(key) if key not in QM_SET else key]
            assert vmid.isdigit() and (allowed is None or value.split(",")[0] in allowed), line
        elif words[0] == "vms_qm_delete":
            assert _numbered(words[2]) in QM_DELETE, line
        elif words[0] == "vms_qm_sub":
            _, vmid, key, name, value = words
            assert _numbered(key) == "netN" and value in QM_NET_SUBOPTIONS[name], line
        else:
            _, target, key, value = words
            assert target.startswith("$ROOT/etc/pve/") and target.endswith(".fw"), line
            assert value in PVE_OPTIONS[key], line
    assert seen >= {"vms_vbox", "vms_vbox_extra", "vms_qm", "vms_qm_delete", "vms_qm_sub", "vms_pve_option"}, seen
    # every VirtualBox option the renderer guards has its --machinereadable name
    assert "vms_vbox " in script and 'vrde="off"' in script and "nicpromisc" in script


def test_proxmox_firewall_sh_applied_to_a_copy_then_rescanned(tmp_path):
    """The firewall-file steps of the shell script run for real (ROOT = a copy of a node's /etc/pve; qm and
    VBoxManage absent, so their steps are skipped), the copy re-scanned: the firewall findings are gone,
    none is new, a second run changes nothing."""
    work = tmp_path / "node"
    shutil.copytree(FIXTURES / "proxmox", work)
    plan, failing = plan_for(work)
    fw = {(f.rule_id, f.asset) for f in plan.fixes if all(c.detail.get("scope") == "fw" for c in f.changes)}
    assert fw
    script = tmp_path / "fix.sh"
    roots = sorted(
        {
            str(c.detail["file"]).split("/etc/pve/", 1)[0]
            for f in plan.fixes
            for c in f.changes
            if c.detail.get("scope") == "fw"
        }
    )
    outputs = []
    for root in roots:
        part = FixPlan(
            [
                f
                for f in plan.fixes
                if all(str(c.detail.get("file", "")).startswith(root + "/etc/pve/") for c in f.changes)
            ],
            [],
            ["t"],
            "t",
        )
        script.write_text(render_as("sh", part, Secrets()))
        env = {**os.environ, "ROOT": root, "QM": "false", "VBOXMANAGE": "false"}
        outputs.append(subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True).stdout)
        again = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, check=True).stdout
        assert "vmsentry fix: nothing to change" in again, again
    assert any("[OPTIONS]" in out for out in outputs)
    after = failing_keys(work)
    assert not fw & after, sorted(fw & after)
    assert after <= {(f.rule_id, f.asset) for f in failing}


def test_ansible_for_virtualbox_and_proxmox_runs_the_same_checked_steps():
    import yaml

    fixes = []
    for folder in (CORPUS / "virtualbox", FIXTURES / "proxmox"):
        fixes += plan_for(folder)[0].fixes
    play = yaml.safe_load(render_as("ansible", FixPlan(fixes, [], ["t"], "t"), Secrets()).split("---\n", 1)[1])[0]
    shells = [t for t in play["tasks"] if "ansible.builtin.shell" in t]
    assert shells and all(t["check_mode"] is False and "VMS_CHECK" in t["environment"] for t in shells)
    text = "\n".join(t["ansible.builtin.shell"] for t in shells)
    assert "\nvms_vbox " in text and "\nvms_pve_option " in text and "\nvms_qm_sub " in text


def test_windows_hyperv_template_parses_and_uses_documented_parameters():
    from vmsentry.act.fix.baseline import template_plan

    script = powershell.render(template_plan("windows-hyperv"))
    assert "param([switch]$Check)" in script and "exit 1" in script
    for needed in (
        "Set-VMNetworkAdapter -VMNetworkAdapter $item -DhcpGuard 'On'",
        "Set-VMHost -EnableEnhancedSessionMode $false",
    ):
        assert needed in script, needed
    check_powershell(script, extra=TEMPLATE_PARAMETERS)
