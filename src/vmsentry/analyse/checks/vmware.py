"""VMware predicates: .vmx settings the STIG/SCG name (read from ``vm.facts['vmx.<key>']``, filled by
``collect.vmware_vmx``) and ESXi port-group security policy (``network.facts['esxi.*']``, filled by
``collect.vmware_host``). Absent keys follow the DISA vSphere 8 STIG check text: most say "If the setting
does not exist, this is not a finding"; ``RemoteDisplay.maxConnections`` must exist."""
from __future__ import annotations

from vmsentry.analyse.checks import check, fail, not_applicable, passed, unknown
from vmsentry.model import VM, Network

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _norm(value) -> str:
    return str(value).strip().lower()


def _product(vm: VM) -> str:
    fact = vm.facts.get("vmx.product")
    return fact.get("value", "unknown") if fact is not None else "unknown"


_ACCEPTED: dict[tuple[str, tuple[str, ...] | None], tuple[str, ...]] = {}


def _accepted(want: str, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """The normalised values that satisfy ``want``: booleans by truth, else ``allowed`` or ``want``. Each
    rule asks with the same constants for every VM, so the answer is kept."""
    good = _ACCEPTED.get((want, allowed))
    if good is None:
        lower = want.lower()
        if lower in ("true", "false"):
            good = _TRUE if lower == "true" else _FALSE
        else:
            good = allowed or (lower,)
        good = _ACCEPTED[(want, allowed)] = good
    return good


def _setting(vm: VM, key: str, want: str, *, absent_ok: bool = True, hosted: str | None = None,
             allowed: tuple[str, ...] | None = None):
    """STIG-style check of one .vmx key. ``want`` is the required value (compared case-insensitively,
    booleans by truth); ``hosted``: a not-applicable message for Workstation/Fusion VMs."""
    if hosted and _product(vm) == "hosted":
        return not_applicable(hosted)
    fact = vm.facts.get("vmx." + key)
    if fact is None:
        if absent_ok:
            return passed(key, "absent (not a finding per the STIG: the secure default applies)")
        return fail(key, "absent", message=f"{key} must be set to {want}; absent means the insecure default")
    value = fact["value"]
    if _norm(value) in _accepted(want, allowed):
        return passed(key, value, locator=fact["at"])
    return fail(key, value, locator=fact["at"])


_HOSTED_CLIP = ("Workstation/Fusion VM: the vSphere STIG does not apply; VMS-VM-070/071 judge the effective "
                "clipboard and drag-and-drop (enabled by default on hosted products)")


@check("vmx_copy_disable")
def vmx_copy_disable(vm: VM, ctx):
    return _setting(vm, "isolation.tools.copy.disable", "true", hosted=_HOSTED_CLIP)


@check("vmx_paste_disable")
def vmx_paste_disable(vm: VM, ctx):
    return _setting(vm, "isolation.tools.paste.disable", "true", hosted=_HOSTED_CLIP)


@check("vmx_dnd_disable")
def vmx_dnd_disable(vm: VM, ctx):
    return _setting(vm, "isolation.tools.dnd.disable", "true", hosted=_HOSTED_CLIP)


@check("vmx_gui_options")
def vmx_gui_options(vm: VM, ctx):
    return _setting(vm, "isolation.tools.setGUIOptions.enable", "false")


@check("vmx_disk_shrink")
def vmx_disk_shrink(vm: VM, ctx):
    return _setting(vm, "isolation.tools.diskShrink.disable", "true")


@check("vmx_disk_wiper")
def vmx_disk_wiper(vm: VM, ctx):
    return _setting(vm, "isolation.tools.diskWiper.disable", "true")


@check("vmx_max_connections")
def vmx_max_connections(vm: VM, ctx):
    return _setting(vm, "RemoteDisplay.maxConnections", "1", absent_ok=False,
                    hosted="Workstation/Fusion VM: remote console sessions are an ESXi/vCenter feature")


@check("vmx_setinfo_size")
def vmx_setinfo_size(vm: VM, ctx):
    return _setting(vm, "tools.setInfo.sizeLimit", "1048576")


@check("vmx_device_connectable")
def vmx_device_connectable(vm: VM, ctx):
    return _setting(vm, "isolation.device.connectable.disable", "true")


@check("vmx_host_info")
def vmx_host_info(vm: VM, ctx):
    return _setting(vm, "tools.guestlib.enableHostInfo", "false")


@check("vmx_pshare_salt")
def vmx_pshare_salt(vm: VM, ctx):
    fact = vm.facts.get("vmx.sched.mem.pshare.salt")
    if fact is None:
        return passed("sched.mem.pshare.salt", "absent (vc.uuid salts pages per VM)")
    return fail("sched.mem.pshare.salt", fact["value"], locator=fact["at"])


@check("vmx_dvfilter")
def vmx_dvfilter(vm: VM, ctx):
    hits = [(k, v) for k, v in vm.facts.items() if k.startswith("vmx.ethernet") and ".filter" in k.lower()
            and k.lower().endswith(".name")]
    if not hits:
        return passed("ethernet*.filter*.name", "absent")
    return [fail(k[4:], v["value"], locator=v["at"],
                 message="a dvFilter is bound to this NIC: a finding unless a documented security appliance uses it")
            for k, v in hits]


@check("vmx_autolock")
def vmx_autolock(vm: VM, ctx):
    return _setting(vm, "tools.guest.desktop.autolock", "true")


@check("vmx_3d")
def vmx_3d(vm: VM, ctx):
    return _setting(vm, "mks.enable3d", "false")


@check("vmx_vmotion_encryption")
def vmx_vmotion_encryption(vm: VM, ctx):
    if _product(vm) == "hosted":
        return not_applicable("Workstation/Fusion VM: no vMotion")
    fact = vm.facts.get("vmx.migrate.encryptionMode")
    if fact is None:
        return passed("migrate.encryptionMode", "absent (vSphere default opportunistic)")
    if _norm(fact["value"]) == "disabled":
        return fail("migrate.encryptionMode", fact["value"], locator=fact["at"])
    return passed("migrate.encryptionMode", fact["value"], locator=fact["at"])


@check("vmx_ft_encryption")
def vmx_ft_encryption(vm: VM, ctx):
    if _product(vm) == "hosted":
        return not_applicable("Workstation/Fusion VM: no Fault Tolerance")
    fact = vm.facts.get("vmx.ftcpt.ftEncryptionMode")
    if fact is None:
        return passed("ftcpt.ftEncryptionMode", "absent (vSphere default ftEncryptionOpportunistic)")
    if _norm(fact["value"]) in ("ftencryptionopportunistic", "ftencryptionrequired"):
        return passed("ftcpt.ftEncryptionMode", fact["value"], locator=fact["at"])
    return fail("ftcpt.ftEncryptionMode", fact["value"], locator=fact["at"])


@check("vmx_log_rotate")
def vmx_log_rotate(vm: VM, ctx):
    return _setting(vm, "log.rotateSize", "2048000")


@check("vmx_log_keep")
def vmx_log_keep(vm: VM, ctx):
    return _setting(vm, "log.keepOld", "10")


@check("vmx_logging")
def vmx_logging(vm: VM, ctx):
    return _setting(vm, "logging", "true")


@check("vmx_nonpersistent_disk")
def vmx_nonpersistent_disk(vm: VM, ctx):
    hits = [(k, v) for k, v in vm.facts.items() if k.startswith("vmx.") and k.lower().endswith(".mode")
            and _norm(v["value"]) == "independent-nonpersistent"]
    if not hits:
        return passed("scsiX:Y.mode", "no independent-nonpersistent disk")
    return [fail(k[4:], v["value"], locator=v["at"]) for k, v in hits]


def _devices(vm: VM, kinds: tuple[str, ...], what: str, only=None):
    devs = [d for d in vm.devices if d.kind in kinds and (only is None or only(d))]
    if not devs:
        return passed("device", f"no {what}")
    return [fail("device", f"{d.kind} {d.detail}", locator=d.locator) for d in devs]


@check("vmx_floppy")
def vmx_floppy(vm: VM, ctx):
    return _devices(vm, ("floppy",), "connected floppy drive", only=lambda d: d.detail.endswith(" connected") and not d.detail.endswith(" not connected"))


@check("vmx_cdrom_connected")
def vmx_cdrom_connected(vm: VM, ctx):
    hits = [(k, v) for k, v in vm.facts.items() if k.endswith(".cdrom") and v["value"] == "connected"]
    if not hits:
        return passed("cdrom", "no CD/DVD drive connected at power on")
    return [fail(k[4:-6] + ".startConnected", v["value"], locator=v["at"]) for k, v in hits]


@check("vmx_parallel")
def vmx_parallel(vm: VM, ctx):
    return _devices(vm, ("parallel-port",), "parallel port")


@check("vmx_serial")
def vmx_serial(vm: VM, ctx):
    return _devices(vm, ("serial-port",), "serial port")


@check("vmx_usb")
def vmx_usb(vm: VM, ctx):
    return _devices(vm, ("usb-controller", "usb-passthrough"), "USB controller or device")


@check("vmx_directpath")
def vmx_directpath(vm: VM, ctx):
    return _devices(vm, ("pci-passthrough",), "DirectPath I/O (PCI passthrough) device")


@check("vmx_hgfs_server")
def vmx_hgfs_server(vm: VM, ctx):
    """VMCH-70-000007 asks for TRUE. Workstation/Fusion run the HGFS server for shared folders unless
    disabled, so an absent key there is a finding; ESXi has no shared folders, so absent is not."""
    fact = vm.facts.get("vmx.isolation.tools.hgfsServerSet.disable")
    if fact is not None:
        ok = _norm(fact["value"]) in _TRUE
        return (passed if ok else fail)("isolation.tools.hgfsServerSet.disable", fact["value"], locator=fact["at"])
    product = _product(vm)
    if product == "esxi":
        return passed("isolation.tools.hgfsServerSet.disable", "absent (ESXi offers no shared folders)")
    if product == "unknown":
        return unknown("absent; whether the HGFS server runs depends on the product (ESXi or Workstation/Fusion), "
                       "which this file does not say", "isolation.tools.hgfsServerSet.disable")
    return fail("isolation.tools.hgfsServerSet.disable", "absent (Workstation/Fusion: HGFS server on)")


@check("vmx_vnc_enabled")
def vmx_vnc_enabled(vm: VM, ctx):
    fact = vm.facts.get("vmx.RemoteDisplay.vnc.enabled")
    if fact is None or _norm(fact["value"]) not in _TRUE:
        return passed("RemoteDisplay.vnc.enabled", fact["value"] if fact else "absent (FALSE)")
    port = vm.facts.get("vmx.RemoteDisplay.vnc.port", {}).get("value", "5900")
    return fail("RemoteDisplay.vnc.enabled", f"{fact['value']} (port {port})", locator=fact["at"])


# ---------------------------------------------------------------- ESXi port groups (network assets)

def _pg(net: Network, key: str, bad: bool, what: str):
    fact = net.facts.get(f"esxi.security.{key}")
    if fact is None:
        return not_applicable("not an ESXi port group from the PowerCLI export")
    if fact["value"] is bad:
        return fail(key, "Accept", locator=fact["at"], message=f"{what} accepted on port group {net.name}")
    return passed(key, "Reject", locator=fact["at"])


@check("esxi_forged_transmits")
def esxi_forged_transmits(net: Network, ctx):
    return _pg(net, "ForgedTransmits", True, "forged transmits")


@check("esxi_mac_changes")
def esxi_mac_changes(net: Network, ctx):
    return _pg(net, "MacChanges", True, "MAC address changes")


@check("esxi_promiscuous")
def esxi_promiscuous(net: Network, ctx):
    return _pg(net, "AllowPromiscuous", True, "promiscuous mode")


@check("esxi_vgt_vlan")
def esxi_vgt_vlan(net: Network, ctx):
    fact = net.facts.get("esxi.vlan")
    if fact is None:
        return not_applicable("no VLAN information (not from the ESXi export)")
    if str(fact["value"]).strip() == "4095":
        return fail("VlanId", 4095, locator=fact["at"], message="Virtual Guest Tagging: guests see and tag every VLAN")
    return passed("VlanId", fact["value"], locator=fact["at"])


@check("vmnet_nat_forwards")
def vmnet_nat_forwards(net: Network, ctx):
    fact = net.facts.get("vmware.nat.incoming")
    if fact is None:
        return not_applicable("no VMware NAT configuration (nat.conf) read for this network")
    if not fact["value"]:
        return passed("[incomingtcp]/[incomingudp]", "no port forwards")
    return [fail(f"[incoming{f['protocol']}]", f"{f['protocol']} *:{f['host_port']} -> {f['guest_ip']}:{f['guest_port']}",
                 file=f.get("file"), locator=f["at"]) for f in fact["value"]]


@check("vmnet_host_adapter")
def vmnet_host_adapter(net: Network, ctx):
    """Workstation/Fusion: ``answer VNET_N_VIRTUAL_ADAPTER yes`` gives the host an interface (and an address)
    on vmnetN, so every host service listening on all addresses is reachable from guests on it."""
    number = net.name[5:] if net.name.startswith("vmnet") else None
    fact = net.facts.get(f"vmware.networking.VNET_{number}_VIRTUAL_ADAPTER") if number else None
    if fact is None:
        return not_applicable("no host networking file read for this vmnet")
    if str(fact["value"]).strip().lower() != "yes":
        return passed(f"VNET_{number}_VIRTUAL_ADAPTER", fact["value"], locator=fact["at"])
    return fail(f"VNET_{number}_VIRTUAL_ADAPTER", f"yes ({net.mode} network {net.name}"
                + (f", subnet {net.subnets[0]}" if net.subnets else "") + ")", locator=fact["at"])
