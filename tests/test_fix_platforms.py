"""Fixes for VMware, VirtualBox, Proxmox and Hyper-V, applied for real: the .vmx / .vbox / Proxmox patches
are applied with patch(1) to copies of the shared corpus and the fixtures, the copies re-scanned (the fixed
findings are gone, none is new), and the fix regenerated from the patched files changes nothing. The
PowerShell is parsed with the tree-sitter PowerShell grammar and each cmdlet line checked against the
cmdlets' documented parameters."""

from __future__ import annotations

import os
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


def test_powershell_parses_and_uses_only_documented_parameters():
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    parser = Parser(Language(tree_sitter_powershell.language()))
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
    tree = parser.parse(script.encode())
    assert not tree.root_node.has_error, script
    seen = set()
    for command in _commands(tree.root_node):
        name = command.child_by_field_name("command_name").text.decode()
        assert name in DOCUMENTED, name
        seen.add(name)
        words = (
            [c.text.decode() for c in command.named_children[1].named_children if c.type != "command_argument_sep"]
            if command.named_child_count > 1
            else []
        )
        for n, word in enumerate(words):
            if word.startswith("-") and not word.startswith("-Confirm:"):
                assert word in DOCUMENTED[name] | COMMON, f"{name} {word}"
                if word in ENUMS:
                    assert words[n + 1].strip("'") in ENUMS[word], f"{name} {word} {words[n + 1]}"
    assert {"Set-VMNetworkAdapter", "Set-VMFirmware", "New-AdvancedSetting", "Set-SecurityPolicy"} <= seen


def test_powershell_is_idempotent_and_quotes_hostile_names():
    plan, _ = plan_for(FIXTURES / "hyperv")
    script = powershell.render(plan)
    # every set is guarded by a comparison with the value read just before
    assert script.count("if (") >= len([c for f in plan.fixes for c in f.changes if c.kind == "hyperv_setting"])
    assert powershell.quote("a'b\nc; Remove-Item") == "'a''b\\nc; Remove-Item'"
