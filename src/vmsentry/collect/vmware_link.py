"""After every file of a scan is read: join VMware VMs to the host networking read in the same scan.

* vmnet networks described by several host files (``networking``, ``netmap.conf``, ``nat.conf``,
  ``dhcpd.conf``) are merged into one ``vmnetN`` network;
* a Workstation/Fusion NIC on ``vmnetN`` (``custom``, or the default bridged/NAT/host-only vmnet) takes
  the mode the host's ``networking`` file gives that vmnet;
* a NAT port forward in ``nat.conf`` reaches the VM whose NIC has the guest IP, found through the DHCP
  server's ``host { hardware ethernet MAC; fixed-address IP; }`` entries; it becomes a ``Forward`` of that
  VM (every host address, as VMware's NAT service listens on all of them);
* an ESXi VM's NIC on a port group from the ESXi export gets ``spoof_protection`` from the port group's
  effective MAC-changes / forged-transmits policy; a VM in both a .vmx and the export is kept once (the
  .vmx copy, which has every key), with the export's host name;
* Workstation/Fusion virtual switches have no MAC/IP anti-spoofing setting, so their NICs get
  ``spoof_protection = False``.
"""

from __future__ import annotations

from vmsentry.model import Forward, Inventory, Network

PLATFORM = "vmware"


def link(inv: Inventory) -> None:
    vms = [vm for vm in inv.vms if vm.platform == PLATFORM]
    nets = [n for n in inv.networks if n.platform == PLATFORM]
    if not vms and not nets:
        return
    vmnets = _merge_vmnets(inv, nets)
    portgroups = {
        (n.host, n.name): n for n in inv.networks if n.platform == PLATFORM and "esxi.security.MacChanges" in n.facts
    }
    pg_by_name = {}
    for n in portgroups.values():
        pg_by_name.setdefault(n.name, n)
    _dedupe_vms(inv)
    vms = [vm for vm in inv.vms if vm.platform == PLATFORM]
    for vm in vms:
        product = vm.facts.get("vmx.product", {}).get("value")
        for nic in vm.nics:
            key = (nic.network or "").lower()
            net = vmnets.get(key)
            if net is not None and net.mode != "unknown" and product != "esxi":
                if nic.mode != net.mode:
                    nic.detail = f"{key} is {net.mode} per {net.source.file}" + (
                        f" (was {nic.mode})" if nic.mode else ""
                    )
                nic.mode = net.mode
                nic.network = key
            if product == "esxi" or (nic.network and (vm.host, nic.network) in portgroups):
                pg = portgroups.get((vm.host, nic.network)) or pg_by_name.get(nic.network or "")
                if pg is not None:
                    mac = pg.facts["esxi.security.MacChanges"]["value"]
                    forged = pg.facts["esxi.security.ForgedTransmits"]["value"]
                    nic.spoof_protection = not (mac or forged)
                    nic.detail = (nic.detail + "; " if nic.detail else "") + (
                        f"port group {pg.name}: MAC changes {'Accept' if mac else 'Reject'}, forged transmits "
                        f"{'Accept' if forged else 'Reject'}"
                    )
            elif product == "hosted":
                nic.spoof_protection = False
    _attach_nat_forwards(vms, vmnets)


def _merge_vmnets(inv: Inventory, nets: list[Network]) -> dict[str, Network]:
    """One network per vmnetN. The ``networking`` file's mode wins; nat.conf alone says NAT."""
    groups: dict[str, list[Network]] = {}
    for net in nets:
        if "esxi.security.MacChanges" in net.facts or not net.name.lower().startswith("vmnet"):
            continue
        groups.setdefault(net.name.lower(), []).append(net)
    drop: set[int] = set()
    merged: dict[str, Network] = {}
    for name, group in groups.items():
        # the networking file's network is the base: its facts' line numbers are in base.source.file
        group.sort(key=lambda n: not any(k.startswith("vmware.networking.") for k in n.facts))
        base = group[0]
        modes = [n.mode for n in group if any(k.startswith("vmware.networking.") for k in n.facts)]
        modes = [m for m in modes if m != "unknown"] or [n.mode for n in group if n.mode != "unknown"]
        base.mode = modes[0] if modes else "unknown"
        for net in group[1:]:
            base.subnets = base.subnets or net.subnets
            base.host_address = base.host_address or net.host_address
            base.dhcp = base.dhcp or net.dhcp
            base.bridge = base.bridge or net.bridge
            base.forwards.extend(net.forwards)
            other_file = net.source.file if net.source.file != base.source.file else None
            for k, v in net.facts.items():
                if other_file:
                    v = {"value": v["value"], "at": f"{other_file}: {v['at']}"}
                if k in ("vmware.dhcp.hosts", "vmware.nat.incoming") and k in base.facts:
                    base.facts[k] = {"value": base.facts[k]["value"] + v["value"], "at": v["at"]}
                else:
                    base.facts.setdefault(k, v)
            drop.add(id(net))
        base.name = name
        merged[name] = base
    if drop:
        inv.networks = [n for n in inv.networks if id(n) not in drop]
    return merged


def _dedupe_vms(inv: Inventory) -> None:
    seen: dict[str, object] = {}
    keep = []
    for vm in inv.vms:
        if vm.platform != PLATFORM or not vm.uuid:
            keep.append(vm)
            continue
        other = seen.get(vm.uuid)
        if other is None:
            seen[vm.uuid] = vm
            keep.append(vm)
            continue
        from_export = "esxi.vmx_path" in vm.facts or "esxi.vmx_path" in other.facts
        if not from_export:
            keep.append(vm)  # two .vmx files with one BIOS UUID (a copied VM): keep both
            continue
        vmx, export = (other, vm) if "esxi.vmx_path" in vm.facts else (vm, other)
        vmx.host = vmx.host or export.host
        for k, v in export.facts.items():
            vmx.facts.setdefault(k, v)
        if export is other:
            keep[keep.index(other)] = vmx
            seen[vm.uuid] = vmx
    inv.vms = keep


def _attach_nat_forwards(vms, vmnets: dict[str, Network]) -> None:
    for name, net in vmnets.items():
        incoming = net.facts.get("vmware.nat.incoming", {}).get("value") or []
        if not incoming:
            continue
        ip_to_mac = {h["ip"]: h["mac"] for h in net.facts.get("vmware.dhcp.hosts", {}).get("value") or []}
        mac_to_vm = {}
        for vm in vms:
            for nic in vm.nics:
                if nic.mac and (nic.network or "").lower() == name:
                    mac_to_vm[nic.mac] = (vm, nic)
                if nic.ip:
                    mac_to_vm.setdefault(f"ip:{nic.ip}", (vm, nic))
        for fwd in incoming:
            hit = mac_to_vm.get(ip_to_mac.get(fwd["guest_ip"], "")) or mac_to_vm.get(f"ip:{fwd['guest_ip']}")
            if hit is None:
                continue
            vm, nic = hit
            vm.forwards.append(
                Forward(
                    fwd["protocol"],
                    [fwd["host_port"]] * 2,
                    [fwd["guest_port"]] * 2,
                    None,
                    nic.id,
                    f"{fwd.get('file') or net.source.file}: {fwd['at']}",
                )
            )
            nic.ip = nic.ip or fwd["guest_ip"]
