"""Hyper-V fixes: PowerShell cmdlet parameters (the Hyper-V module's ``Set-VMNetworkAdapter``,
``Set-VMFirmware``, ``Set-VMSecurity``, ``Set-VM``, ``Disable-VMIntegrationService``, ``Set-VMHost``,
``Set-VMSwitch``), each change one parameter with the property the matching ``Get-`` cmdlet reads, so the
PowerShell renderer tests the current value before it sets it.

A change of kind ``hyperv_setting``: target = the VM (or host, switch), key = the parameter, after = its
value; ``detail`` = {"set": cmdlet, "get": cmdlet, "property": what Get- returns, "select": the NIC's name
or the integration service, "object": VM|VMHost|VMSwitch}. The facts are collect.hyperv's (the export of
scripts/collectors/hyperv-export.ps1).
"""

from __future__ import annotations

from vmsentry.act.fix.platforms import hook, resolve  # noqa: F401 (the planner's module contract)
from vmsentry.model import VM, Host, Network
from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Fix, Unfixable
from vmsentry.model.rule import Rule

PLATFORM = "hyperv"

# rule -> (object, get cmdlet, set cmdlet, parameter, value, property read back, restart, breaks)
_SETTINGS = {
    "VMS-HV-001": (
        "VM",
        "Get-VMNetworkAdapter",
        "Set-VMNetworkAdapter",
        "DhcpGuard",
        "On",
        "DhcpGuard",
        "none",
        "the VM can no longer act as a DHCP server on the switch",
    ),
    "VMS-HV-002": (
        "VM",
        "Get-VMNetworkAdapter",
        "Set-VMNetworkAdapter",
        "RouterGuard",
        "On",
        "RouterGuard",
        "none",
        "the VM can no longer send router advertisements or redirects (a VM that routes for others)",
    ),
    "VMS-HV-003": (
        "VM",
        "Get-VMNetworkAdapter",
        "Set-VMNetworkAdapter",
        "PortMirroring",
        "None",
        "PortMirroringMode",
        "none",
        "a monitoring VM stops receiving (or this VM stops sending) mirrored traffic",
    ),
    "VMS-HV-011": (
        "VM",
        "Get-VMSecurity",
        "Set-VMSecurity",
        "EncryptStateAndVmMigrationTraffic",
        "$true",
        "EncryptStateAndVmMigrationTraffic",
        "none",
        "needs a key protector (vTPM / shielded VM); migration to hosts without it fails",
    ),
    "VMS-HV-012": (
        "VM",
        "Get-VMSecurity",
        "Enable-VMTPM",
        None,
        None,
        "TpmEnabled",
        "vm",
        "needs a key protector (Set-VMKeyProtector -NewLocalKeyProtector) and a generation 2 VM",
    ),
    "VMS-HV-013": (
        "VM",
        "Get-VMFirmware",
        "Set-VMFirmware",
        "EnableSecureBoot",
        "On",
        "SecureBoot",
        "vm",
        "a guest whose boot loader is not signed for the chosen template (Linux: MicrosoftUEFICertificateAuthority) no longer boots",
    ),
    "VMS-HV-015": (
        "VM",
        "Get-VM",
        "Set-VM",
        "CheckpointType",
        "Production",
        "CheckpointType",
        "none",
        "checkpoints no longer hold the running memory state (restored VMs boot cold)",
    ),
    "VMS-HV-006": (
        "VMHost",
        "Get-VMHost",
        "Set-VMHost",
        "EnableEnhancedSessionMode",
        "$false",
        "EnableEnhancedSessionMode",
        "none",
        "VMConnect sessions lose clipboard, drive and device redirection",
    ),
    "VMS-HV-009": (
        "VMHost",
        "Get-VMHost",
        "Set-VMHost",
        "VirtualMachineMigrationAuthenticationType",
        "Kerberos",
        "VirtualMachineMigrationAuthenticationType",
        "none",
        "live migration needs Kerberos constrained delegation configured between the hosts",
    ),
    "VMS-HV-010": (
        "VMHost",
        "Get-VMHost",
        "Set-VMHost",
        "UseAnyNetworkForMigration",
        "$false",
        "UseAnyNetworkForMigration",
        "none",
        "live migration uses only the networks added with Add-VMMigrationNetwork (none added: migrations fail)",
    ),
    "VMS-VM-030": (
        "VM",
        "Get-VMNetworkAdapter",
        "Set-VMNetworkAdapter",
        "MacAddressSpoofing",
        "Off",
        "MacAddressSpoofing",
        "none",
        "a guest that sends from other MAC addresses (nested Hyper-V, NLB, containers with their own MACs) loses that traffic",
    ),
    "VMS-HV-007": (
        "VM",
        "Get-VMIntegrationService",
        "Disable-VMIntegrationService",
        None,
        None,
        "Enabled",
        "none",
        "Copy-VMFile from the host into the guest stops",
    ),
    "VMS-HV-016": (
        "VMSwitch",
        "Get-VMSwitch",
        "Set-VMSwitch",
        "AllowManagementOS",
        "$false",
        "AllowManagementOS",
        "none",
        "the host loses its vEthernet adapter on this switch (and its address there): do not run it over the connection you manage the host through",
    ),
}
_NIC_RULES = ("VMS-HV-001", "VMS-HV-002", "VMS-HV-003", "VMS-VM-030")

_UNFIXABLE = {
    "VMS-HV-004": "which VLAN the adapter should have in access mode is a network design decision (Set-VMNetworkAdapterVlan -Access -VlanId N)",
    "VMS-HV-005": "port ACLs need the addresses the VM may reach (Add-VMNetworkAdapterAcl / Add-VMNetworkAdapterExtendedAcl): not in the scan",
    "VMS-HV-008": "removing an assigned device takes hardware away from the guest: decide per device (Remove-VMAssignableDevice)",
    "VMS-HV-014": "a COM port's named pipe may be how the VM is administered: remove it by hand where unused (Set-VMComPort -Number N -Path '')",
    "VMS-HV-017": "an Internal switch gives the host an interface to the VMs: changing the switch type is a network design decision",
    "VMS-HV-018": "a switch extension is installed for a reason (monitoring, security): disable it by hand (Disable-VMSwitchExtension) once its owner agrees",
    "VMS-VM-020": "moving an adapter off the external switch changes how the guest is reached (a design decision)",
    "VMS-VM-070": "Hyper-V's clipboard redirection is the client's (VMConnect enhanced session, VMS-HV-006), not a VM setting",
    "VMS-VM-071": "Hyper-V's drive and file redirection is the client's (VMConnect enhanced session, VMS-HV-006), not a VM setting",
    "VMS-VM-091": "deleting a checkpoint discards the state it holds: decide which ones (Remove-VMCheckpoint)",
}


def _nic_name(finding: Finding) -> str | None:
    """The adapter a finding names: "Network Adapter on Ext: ..." or "Network Adapter bridged via Ext: ..."."""
    head = str(finding.evidence.get("value", "")).split(":", 1)[0]
    for joint in (" on ", " bridged via ", " host-only via "):
        if joint in head:
            return head.rsplit(joint, 1)[0]
    return None


def fix(finding: Finding, asset: VM | Network | Host | None, rule: Rule) -> Fix | Unfixable | None:
    """The fix of one failing Hyper-V finding, an Unfixable with the reason, or None (not this module's)."""
    rid = finding.rule_id
    if rid not in _SETTINGS or asset is None:
        return None
    obj, get, set_, parameter, value, prop, restart, breaks = _SETTINGS[rid]
    if rid == "VMS-HV-013" and str(finding.evidence.get("key")) == "Generation":
        return Unfixable(
            rid,
            finding.asset,
            PLATFORM,
            "a generation 1 VM has no UEFI: Secure Boot needs the VM rebuilt as generation 2",
        )
    # what the Get- cmdlet's property reads once fixed (the renderer compares with it before it sets)
    expect = {"VMS-HV-012": "$true", "VMS-HV-003": "None", "VMS-HV-007": "$false"}.get(rid, value)
    detail = {"object": obj, "get": get, "set": set_, "property": prop, "name": asset.name, "expect": expect}
    select = "Guest Service Interface" if rid == "VMS-HV-007" else _nic_name(finding) if rid in _NIC_RULES else None
    if select:
        detail["select"] = select
    change = Change(
        kind="hyperv_setting",
        target=f"{obj}:{asset.name}",
        key=parameter or set_,
        before=finding.evidence.get("value"),
        after=value,
        locator=finding.evidence.get("locator"),
        detail=detail,
    )
    what = f"{set_} -{parameter} {value}" if parameter else set_
    return Fix(
        rid,
        finding.asset,
        PLATFORM,
        (change,),
        f"{asset.name}: {what}",
        breaks,
        restart=restart,
        check=f"({get}).{prop} already has the wanted value",
    )


FUNCTIONS = hook(PLATFORM, fix, _UNFIXABLE)
