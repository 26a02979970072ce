"""Hyper-V predicates that need logic: per-NIC port security (DHCP/router guard, mirroring, VLAN trunk,
ACLs), switch extensions, and VM integration, firmware and device settings. They read the facts
``collect.hyperv`` records under the cmdlets' own property names. One-setting rules (host enhanced session
and live migration, switch type and management-OS sharing, VM security, checkpoint type) are ``test:``
blocks in catalogue/hyperv.yaml (``checks.declarative``)."""

from __future__ import annotations

from vmsentry.analyse.checks import check, fail, not_applicable, passed, unknown
from vmsentry.model import VM, Network

SWITCHED = ("bridged", "host-only", "private", "internal")
_MS_EXTENSIONS = (
    "Microsoft Windows Filtering Platform",
    "Microsoft NDIS Capture",
    "Microsoft Azure VFP Switch Extension",
)


def _nics(vm: VM):
    return [n for n in vm.nics if n.mode in SWITCHED and n.connected]


def _nic_setting(vm: VM, key: str, bad: tuple[str, ...], what: str, absent_means: str | None = None):
    nics = _nics(vm)
    if not nics:
        return not_applicable("no NIC connected to a virtual switch")
    out, seen = [], []
    for n in nics:
        fact = vm.facts.get(f"hyperv.nic.{n.id}.{key}")
        value = fact["value"] if fact else absent_means
        if value is None:
            out.append(unknown(f"{n.id}: {key} not in the export", key, locator=n.locator))
        elif str(value) in bad:
            out.append(
                fail(
                    key,
                    f"{n.id} on {n.network}: {key}={value}",
                    locator=fact["at"] if fact else n.locator,
                    message=what,
                )
            )
        else:
            seen.append(f"{n.id}={value}")
    return out or passed(key, ", ".join(seen))


@check("hv_dhcp_guard_off")
def hv_dhcp_guard_off(vm: VM, ctx):
    return _nic_setting(vm, "DhcpGuard", ("Off",), "the guest can answer DHCP for its neighbours")


@check("hv_router_guard_off")
def hv_router_guard_off(vm: VM, ctx):
    return _nic_setting(vm, "RouterGuard", ("Off",), "the guest can send router advertisements and redirects")


@check("hv_port_mirroring")
def hv_port_mirroring(vm: VM, ctx):
    return _nic_setting(
        vm, "PortMirroringMode", ("Source", "Destination"), "switch traffic is copied to or from this port"
    )


@check("hv_vlan_trunk")
def hv_vlan_trunk(vm: VM, ctx):
    return _nic_setting(vm, "Vlan.OperationMode", ("Trunk",), "the guest sees and can send on every allowed VLAN")


@check("hv_no_port_acl")
def hv_no_port_acl(vm: VM, ctx):
    nics = [n for n in _nics(vm) if n.mode in ("bridged", "host-only")]
    if not nics:
        return not_applicable("no NIC on an External or Internal switch")
    out, seen = [], []
    for n in nics:
        acl, ext = vm.facts.get(f"hyperv.nic.{n.id}.Acls"), vm.facts.get(f"hyperv.nic.{n.id}.ExtendedAcls")
        if acl is None and ext is None:
            out.append(unknown(f"{n.id}: port ACLs not in the export", "Acls", locator=n.locator))
        elif not (acl or {}).get("value") and not (ext or {}).get("value"):
            out.append(fail("Acls", f"{n.id} on {n.network}: no port ACL or extended ACL", locator=n.locator))
        else:
            seen.append(
                f"{n.id}: {len(acl['value'] if acl else [])} ACL(s), {len(ext['value'] if ext else [])} extended"
            )
    return out or passed("Acls", "; ".join(seen))


@check("hv_guest_service_interface")
def hv_guest_service_interface(vm: VM, ctx):
    fact = vm.facts.get("hyperv.integration.Guest Service Interface")
    if fact is None:
        if "hyperv.integration.collected" in vm.facts:
            return passed("Guest Service Interface", "absent")
        return unknown("integration services not in the export", "Guest Service Interface")
    if fact["value"]:
        return fail("Guest Service Interface", "Enabled", locator=fact["at"])
    return passed("Guest Service Interface", "Disabled", locator=fact["at"])


@check("hv_secure_boot_off")
def hv_secure_boot_off(vm: VM, ctx):
    fact = vm.facts.get("hyperv.firmware.SecureBoot")
    if vm.facts.get("hyperv.vm.Generation", {}).get("value") == 1:
        return fail("Generation", 1, message="generation 1 VMs have no UEFI Secure Boot")
    if fact is None:
        return unknown("Get-VMFirmware SecureBoot not in the export", "SecureBoot")
    return (passed if fact["value"] == "On" else fail)("SecureBoot", fact["value"], locator=fact["at"])


def _pipe_risk(path: str) -> str:
    if "\\\\" in path and "\\\\.\\" not in path:
        return "a pipe on another computer: the console crosses the network"
    return "any local administrator process can attach to the guest's serial console"


@check("hv_com_pipe")
def hv_com_pipe(vm: VM, ctx):
    return [
        fail("ComPort.Path", d.detail, locator=d.locator, message=_pipe_risk(d.detail))
        for d in vm.devices
        if d.kind == "serial-pipe"
    ] or not_applicable("no COM port connected to a named pipe")


# ---------------------------------------------------------------- switches


@check("hv_switch_extensions")
def hv_switch_extensions(net: Network, ctx):
    fact = net.facts.get("hyperv.switch.Extensions")
    if fact is None:
        return not_applicable("no switch extensions in the export")
    risky = [
        e
        for e in fact["value"]
        if e.get("Enabled")
        and e.get("ExtensionType") in ("Capture", "Filter", "Forwarding")
        and e.get("Name") not in _MS_EXTENSIONS
    ]
    if risky:
        return [
            fail("Extensions", f"{e.get('Name')} ({e.get('ExtensionType')}, {e.get('Vendor')})", locator=fact["at"])
            for e in risky
        ]
    return passed(
        "Extensions", ", ".join(f"{e.get('Name')}={'on' if e.get('Enabled') else 'off'}" for e in fact["value"])
    )
