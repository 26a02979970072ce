"""After every input is read: join each Proxmox VM (``VMID.conf``) with its ``VMID.fw``, the cluster's
``cluster.fw`` and the bridges of ``/etc/network/interfaces`` read in the same scan.

Files belong together when they share a scope (``proxmox.scope_of``: the ``/etc/pve`` folder, else the
file's folder); ``/etc/network/interfaces`` goes with the ``pve`` folder beside its ``network`` folder, or
with every VM when it is the only interfaces file read. When a scope holds two files for the same role
(two ``100.conf``, two ``cluster.fw``), nothing is guessed: the VM gets the fact ``proxmox.link`` saying so
and the dependent values stay unknown.

A NIC's firewall filters only when all three are on (pve-docs ``pve-firewall.adoc``; ``qm.conf`` ``net[n]``):
cluster.fw ``enable: 1`` (default 0), VMID.fw ``enable: 1`` (default 0) and ``netN ... firewall=1``
(default 0). ``spoof_protection`` is True only when that holds and the VM firewall blocks both MAC
spoofing (``macfilter``, default 1) and IP spoofing (``ipfilter: 1`` or an ``[IPSET ipfilter-netN]``).
"""

from __future__ import annotations

import os
from collections import defaultdict

from vmsentry.model import VM, Inventory, Network


def link(inv: Inventory) -> None:
    pve_vms = [vm for vm in inv.vms if vm.platform == "proxmox"]
    if not pve_vms and not any(h.platform == "proxmox" for h in inv.hosts):
        return
    clusters: dict[str, list] = defaultdict(list)
    for host in inv.hosts:
        if host.platform == "proxmox" and host.facts.get("proxmox.kind") == "cluster":
            clusters[host.facts["proxmox.scope"]].append(host)
    fw_only: dict[tuple[str, str], list[VM]] = defaultdict(list)
    confs: dict[tuple[str, str], list[VM]] = defaultdict(list)
    for vm in pve_vms:
        key = (_fact(vm, "proxmox.scope"), _fact(vm, "proxmox.vmid"))
        if "proxmox.fw_only" in vm.facts:
            fw_only[key].append(vm)
        elif key[1] is not None:
            confs[key].append(vm)
    bridges = _bridges(inv)
    merged: set[int] = set()
    for vm in pve_vms:
        if "proxmox.fw_only" in vm.facts:
            continue
        scope, vmid = _fact(vm, "proxmox.scope"), _fact(vm, "proxmox.vmid")
        notes = []
        vm_fw = None
        if vmid is not None:
            same_conf = confs[(scope, vmid)]
            candidates = fw_only.get((scope, vmid), [])
            if len(same_conf) > 1:
                notes.append(f"{len(same_conf)} configurations for VMID {vmid} in {scope}: VMID.fw not linked")
            elif len(candidates) == 1:
                vm_fw = candidates[0].facts["proxmox.vm_fw"]
                vm.facts["proxmox.vm_fw"] = vm_fw
                merged.add(id(candidates[0]))
            elif len(candidates) > 1:
                notes.append(f"{len(candidates)} firewall files for VMID {vmid} in {scope}: none linked")
        cluster_hosts = clusters.get(scope, [])
        cluster_enable = None
        if len(cluster_hosts) == 1:
            opt = cluster_hosts[0].facts["proxmox.cluster_fw"]["options"].get("enable")
            cluster_enable = opt["value"] if opt else "0"
            vm.facts["proxmox.cluster_fw.enable"] = {
                "value": cluster_enable,
                "at": opt["at"]
                if opt
                else f"{cluster_hosts[0].facts['source_file']}: [OPTIONS] enable absent (default 0)",
            }
        elif len(cluster_hosts) > 1:
            notes.append(f"{len(cluster_hosts)} cluster.fw files in {scope}: cluster firewall state not linked")
        if notes:
            vm.facts["proxmox.link"] = {"value": "; ".join(notes), "at": vm.source.file}
        _resolve_nics(vm, cluster_enable, vm_fw["value"] if vm_fw else None, bridges.get(scope) or bridges.get("*"))
    if merged:
        inv.vms = [vm for vm in inv.vms if id(vm) not in merged]


def _fact(vm: VM, key: str):
    got = vm.facts.get(key)
    return got["value"] if got else None


def _bridges(inv: Inventory) -> dict[str, dict[str, Network]]:
    """Bridges by the scope of the VMs they serve; '*' when only one interfaces file was read."""
    nets = [n for n in inv.networks if n.platform == "proxmox"]
    files = {n.source.file for n in nets}
    out: dict[str, dict[str, Network]] = defaultdict(dict)
    for net in nets:
        scope = net.facts.get("proxmox.scope", {}).get("value") or ""
        out[scope][net.name] = net
        out[os.path.join(os.path.dirname(scope), "pve")][net.name] = net
        if len(files) == 1:
            out["*"][net.name] = net
    return out


def _resolve_nics(vm: VM, cluster_enable: str | None, vm_fw: dict | None, bridges: dict[str, Network] | None) -> None:
    options = (vm_fw or {}).get("options", {})
    vm_enable = options["enable"]["value"] if "enable" in options else ("0" if vm_fw is not None else None)
    macfilter = options["macfilter"]["value"] if "macfilter" in options else "1"
    ipfilter = options["ipfilter"]["value"] if "ipfilter" in options else "0"
    ipsets = {name.lower() for name in (vm_fw or {}).get("ipsets", {})}
    for nic in vm.nics:
        if bridges and nic.bridge in bridges:
            net = bridges[nic.bridge]
            nic.mode = net.mode
            nic.network = net.name
        if nic.type != "bridge" and nic.mode == "user":
            continue
        flag = vm.facts.get(f"proxmox.{nic.id}.firewall")
        if flag is None:  # a NIC added by args:, outside Proxmox's firewall
            continue
        at = flag["at"]
        if flag["value"] != "1":
            effective, why = False, f"{nic.id} firewall={flag['value']}"
        elif cluster_enable == "0":
            effective, why = False, "cluster.fw enable 0"
        elif vm_enable == "0":
            effective, why = False, "VMID.fw enable 0" if "enable" in options else "VMID.fw without enable (default 0)"
        elif cluster_enable is not None and vm_enable is not None:
            effective, why = True, "cluster, VM and NIC firewall all on"
        else:
            missing = [
                name for name, value in (("cluster.fw", cluster_enable), ("VMID.fw", vm_enable)) if value is None
            ]
            effective, why = None, f"{' and '.join(missing)} not read"
        vm.facts[f"proxmox.{nic.id}.firewall_effective"] = {"value": effective, "why": why, "at": at}
        if effective is True:
            nic.filter = "pve-firewall"
            ip_ok = ipfilter == "1" or f"ipfilter-{nic.id}" in ipsets
            nic.spoof_protection = macfilter != "0" and ip_ok
        else:
            nic.spoof_protection = False if effective is False else None
