"""Which VMware product wrote a ``.vmx``: ESXi, a hosted product (Workstation, Fusion, Player, GSX) or
unknown, from settings only one of them writes. The clipboard defaults and the ESXi-only rules follow it."""

from __future__ import annotations

import re

from vmsentry.collect.vmware_vmx_text import as_bool, locator

# Which VMware product wrote a .vmx, from evidence that only one of them writes (issue 11: Workstation and
# Fusion write ``migrate.hostLog``, ``sched.swap.derivedName``, ``vmotion.*`` and
# ``virtualHW.productCompatibility = "hosted"`` as well, and an ESXi VM created by Workstation keeps the
# latter, so none of those decides). ESXi only:
#   * ``vc.uuid``: the instance UUID vCenter gives the VMs it manages (vSphere API
#     ``VirtualMachineConfigInfo.instanceUuid``); vCenter manages only ESXi hosts;
#   * ``ethernetN.addressType = "vpx"``: a MAC assigned by vCenter (VPX) from 00:50:56:80-bf (libvirt
#     src/vmx/vmx.c, "addressType = vpx");
#   * ``ethernetN.dvs.*``: a vSphere Distributed Switch port (vCenter only; libvirt vmx.c ``dvs.switchId``);
#   * a path on ``/vmfs/volumes/``: VMFS datastores exist only on ESXi (libvirt docs/drvesx.rst, datastore
#     paths).
# Workstation/Fusion/Player only:
#   * ``ethernetN.connectionType`` ``nat``, ``hostonly``, ``custom`` or ``pvn``, or ``ethernetN.vnet``: the
#     vmnet virtual networks and LAN segments of the hosted products' Virtual Network Editor; an ESXi NIC is
#     on a port group (``networkName``) or a distributed port (VMware Workstation Pro documentation,
#     "Configuring Network Connections"; libvirt vmx.c: nat/hostonly "FIXME: Investigate if ESX supports this");
#   * ``usb.vbluetooth.startConnected``: "Share Bluetooth devices with the virtual machine", an option of the
#     hosted products' USB controller (VMware Workstation Pro documentation, "Configure USB Controller
#     Settings"); vSphere has no Bluetooth sharing;
#   * a shared folder present (``sharedFolderN.present = TRUE``): shared folders are a Workstation/Fusion
#     feature (VMware Workstation Pro documentation, "Using Shared Folders"); vSphere offers none;
#   * a file or shared path on a Windows drive (``C:\\...``) or in a macOS home (``/Users/...``): the VM
#     runs on a Windows or Mac desktop, which ESXi is not.
# Evidence of both kinds (a VM moved from one product to the other) or of neither: "unknown".
_HOST_PATH = re.compile(r"[A-Za-z]:[\\/]|/Users/")
_HOSTED_CONNECTIONS = frozenset(("nat", "hostonly", "custom", "pvn"))


def product_of(entries: dict) -> tuple[str, str]:
    """('esxi' | 'hosted' | 'unknown', the evidence: 'line N, key = value (why)' or why it is unknown)."""
    esxi = hosted = None
    for key, entry in entries.items():
        value = entry[0]
        if esxi is None:
            if key == "vc.uuid":
                esxi = (entry, "vCenter instance UUID: ESXi")
            elif key.startswith("ethernet") and (
                (key.endswith(".addresstype") and value.strip().lower() == "vpx") or ".dvs." in key
            ):
                esxi = (entry, "vCenter-assigned MAC or distributed switch: ESXi")
            elif "/vmfs/volumes/" in value:
                esxi = (entry, "a VMFS datastore path: ESXi")
        if hosted is None:
            if key.startswith("ethernet") and (
                (key.endswith(".connectiontype") and value.strip().lower() in _HOSTED_CONNECTIONS)
                or key.endswith(".vnet")
            ):
                hosted = (entry, "a vmnet network: Workstation/Fusion")
            elif key == "usb.vbluetooth.startconnected":
                hosted = (entry, "Bluetooth sharing: Workstation/Fusion")
            elif key.startswith("sharedfolder") and key.endswith(".present") and as_bool(value):
                hosted = (entry, "a shared folder: Workstation/Fusion")
            elif key.endswith(("filename", "hostpath")) and _HOST_PATH.match(value.strip()):
                hosted = (entry, "a Windows or macOS host path: Workstation/Fusion")
        if esxi is not None and hosted is not None:
            break
    if esxi is not None and hosted is not None:
        return "unknown", f"contradicting evidence: {_evidence(esxi)}; {_evidence(hosted)}"
    if esxi is not None:
        return "esxi", _evidence(esxi)
    if hosted is not None:
        return "hosted", _evidence(hosted)
    return "unknown", "no setting that only ESXi or only Workstation/Fusion writes"


def _evidence(found: tuple) -> str:
    entry, why = found
    where = locator(entry)
    return f"{where} = {entry[0][:80]!r} ({why})"
