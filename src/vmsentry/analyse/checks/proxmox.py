"""Proxmox VE predicates: the pve-firewall at cluster, node and VM level, per-NIC firewall, VLAN and
anti-spoofing settings, and what ``qm.conf`` hands the guest (passthrough, raw args, shares, ivshmem,
guest agent, memory snapshots). They read the facts ``collect.proxmox`` and ``proxmox_link`` record."""

from __future__ import annotations

from vmsentry.analyse.addresses import ports_in
from vmsentry.analyse.checks import check, fail, not_applicable, passed, snapshot_memory, unknown
from vmsentry.model import VM, Host
from vmsentry.model.proxmox import CLUSTER_DEFAULTS, HOST_DEFAULTS, VM_DEFAULTS

_ADMIN_MACROS = {
    "SSH": 22,
    "RDP": 3389,
    "VNC": 5900,
    "Telnet": 23,
    "SMB": 445,
    "MySQL": 3306,
    "PostgreSQL": 5432,
    "WinRM": 5985,
    "Webmin": 10000,
}


def _bridged_nics(vm: VM):
    return [n for n in vm.nics if n.type == "bridge" and f"proxmox.{n.id}.firewall" in vm.facts]


_NO_BRIDGED_NIC = not_applicable("no bridged NIC")


def _vm_fw(vm: VM):
    """(options dict, file) of the VM's firewall file, or None when it was not read/linked."""
    fact = vm.facts.get("proxmox.vm_fw")
    return (fact["value"], fact["at"]) if fact else None


def _vm_option(vm: VM, key: str):
    """(value, locator, explicit) or None when VMID.fw was not read."""
    fw = _vm_fw(vm)
    if fw is None:
        return None
    opts, path = fw
    if key in opts["options"]:
        return opts["options"][key]["value"], opts["options"][key]["at"], True
    return VM_DEFAULTS.get(key), f"{path}: [OPTIONS] {key} absent (default {VM_DEFAULTS.get(key)})", False


def _needs_fw(vm: VM):
    if not _bridged_nics(vm) and "proxmox.fw_only" not in vm.facts:
        return _NO_BRIDGED_NIC
    if _vm_fw(vm) is None:
        link = vm.facts.get("proxmox.link", {}).get("value")
        return unknown(link or "VMID.fw was not read (add /etc/pve/firewall/VMID.fw to the inputs)", "VMID.fw")
    return None


def _vm_option_rule(vm: VM, key: str, bad, message: str | None = None):
    early = _needs_fw(vm)
    if early is not None:
        return early
    value, at, _ = _vm_option(vm, key)
    if bad(str(value)):
        return fail(key, value, locator=at, message=message)
    return passed(key, value, locator=at)


@check("pve_nic_firewall_off")
def pve_nic_firewall_off(vm: VM, ctx):
    nics = _bridged_nics(vm)
    if not nics:
        return _NO_BRIDGED_NIC
    out = []
    for n in nics:
        flag = vm.facts[f"proxmox.{n.id}.firewall"]
        if flag["value"] != "1":
            out.append(fail("firewall", f"{n.id} on {n.bridge}: firewall={flag['value']}", locator=flag["at"]))
    return out or passed("firewall", ", ".join(f"{n.id}=1" for n in nics))


@check("pve_vm_firewall_disabled")
def pve_vm_firewall_disabled(vm: VM, ctx):
    return _vm_option_rule(vm, "enable", lambda v: v != "1")


@check("pve_vm_macfilter_off")
def pve_vm_macfilter_off(vm: VM, ctx):
    return _vm_option_rule(vm, "macfilter", lambda v: v == "0")


@check("pve_vm_ipfilter_off")
def pve_vm_ipfilter_off(vm: VM, ctx):
    early = _needs_fw(vm)
    if early is not None:
        return early
    value, at, _ = _vm_option(vm, "ipfilter")
    if value == "1":
        return passed("ipfilter", value, locator=at)
    ipsets = {k.lower() for k in _vm_fw(vm)[0]["ipsets"]}
    nics = _bridged_nics(vm) or []
    missing = [n.id for n in nics if f"ipfilter-{n.id}" not in ipsets]
    if nics and not missing:
        return passed("ipset ipfilter-netN", ", ".join(sorted(ipsets)))
    if not nics and any(s.startswith("ipfilter-net") for s in ipsets):
        return passed("ipset ipfilter-netN", ", ".join(sorted(ipsets)))
    return fail("ipfilter", f"{value}; no [IPSET ipfilter-NIC] for {', '.join(missing) or 'any NIC'}", locator=at)


@check("pve_vm_policy_in_accept")
def pve_vm_policy_in_accept(vm: VM, ctx):
    return _vm_option_rule(vm, "policy_in", lambda v: v.upper() == "ACCEPT")


@check("pve_vm_radv_dhcp")
def pve_vm_radv_dhcp(vm: VM, ctx):
    early = _needs_fw(vm)
    if early is not None:
        return early
    out = []
    for key in ("radv", "dhcp"):
        value, at, _ = _vm_option(vm, key)
        if value == "1":
            out.append(
                fail(
                    key,
                    value,
                    locator=at,
                    message="the VM may send " + ("router advertisements" if key == "radv" else "DHCP server replies"),
                )
            )
    return out or passed("radv/dhcp", "0")


@check("pve_vm_inbound_admin_any_source")
def pve_vm_inbound_admin_any_source(vm: VM, ctx):
    early = _needs_fw(vm)
    if early is not None:
        return early
    fw, path = _vm_fw(vm)
    out = []
    for rule in fw["rules"]:
        if not rule["enabled"] or rule["direction"] != "IN":
            continue
        action = rule["action"]
        macro = action.split("(", 1)[0] if "(" in action else None
        verdict = action.split("(", 1)[1].rstrip(")") if macro else action.upper()
        if verdict != "ACCEPT" or rule["options"].get("source"):
            continue
        ports = []
        if macro in _ADMIN_MACROS:
            ports = [_ADMIN_MACROS[macro]]
        elif rule["options"].get("dport"):
            for part in rule["options"]["dport"].split(","):
                lo, _, hi = part.partition(":")
                if lo.isdigit():
                    ports += ports_in(int(lo), int(hi) if hi.isdigit() else int(lo))
        elif macro is None and not rule["options"].get("p"):
            ports = ["any"]
        if ports:
            out.append(
                fail(
                    "RULES",
                    f"IN {action} {' '.join(f'-{k} {v}' for k, v in rule['options'].items())}".strip(),
                    locator=f"{path}: {rule['at']}",
                )
            )
    return out or passed("RULES", "no inbound ACCEPT of an administration port from any source")


@check("pve_nic_trunks")
def pve_nic_trunks(vm: VM, ctx):
    if not _bridged_nics(vm):
        return _NO_BRIDGED_NIC
    trunks = [(n.id, vm.facts.get(f"proxmox.{n.id}.trunks")) for n in _bridged_nics(vm)]
    return [
        fail("trunks", f"{nic}: trunks={fact['value']}", locator=fact["at"]) for nic, fact in trunks if fact
    ] or passed("trunks", "none")


@check("pve_nic_untagged_vlan_aware")
def pve_nic_untagged_vlan_aware(vm: VM, ctx):
    nics = _bridged_nics(vm)
    if not nics:
        return _NO_BRIDGED_NIC
    out, seen = [], []
    for n in nics:
        net = ctx.networks.get(n.network) if n.network else None
        if net is None or net.platform != "proxmox":
            out.append(
                unknown(f"{n.id}: bridge {n.bridge} not read (add /etc/network/interfaces)", "tag", locator=n.locator)
            )
            continue
        aware = str(net.facts.get("interfaces.bridge-vlan-aware", {}).get("value", "no")).lower() in ("yes", "1", "on")
        if aware and f"proxmox.{n.id}.tag" not in vm.facts:
            out.append(fail("tag", f"{n.id} on VLAN-aware {n.bridge} without tag=", locator=n.locator))
        else:
            seen.append(
                f"{n.id}: tag={vm.facts.get(f'proxmox.{n.id}.tag', {}).get('value', 'none')} "
                f"({'VLAN-aware' if aware else 'not VLAN-aware'} {n.bridge})"
            )
    return out or passed("tag", "; ".join(seen))


@check("pve_args")
def pve_args(vm: VM, ctx):
    fact = vm.facts.get("proxmox.args")
    if not fact:
        return not_applicable("no args:")
    return fail("args", fact["value"][:200], locator=fact["at"])


@check("pve_shares")
def pve_shares(vm: VM, ctx):
    shares = [s for s in vm.shares if s.kind in ("virtiofs", "spice-folder")]
    if not shares:
        return not_applicable("no virtiofs share or SPICE folder sharing")
    return [
        fail(
            s.guest_tag or s.kind,
            f"{s.kind} {s.host_path or 'SPICE client folder'} ({'rw' if s.writable else 'ro'})",
            locator=s.locator,
        )
        for s in shares
    ]


@check("pve_memory_encryption")
def pve_memory_encryption(vm: VM, ctx):
    if "proxmox.fw_only" in vm.facts:
        return not_applicable("only the firewall file was read")
    if vm.security.memory_encryption:
        return passed("amd-sev/intel-tdx", vm.security.memory_encryption)
    return fail("amd-sev", "absent", message="needs a host with AMD SEV or Intel TDX; info only")


@check("pve_snapshot_vmstate")
def pve_snapshot_vmstate(vm: VM, ctx):
    return snapshot_memory(
        vm, "proxmox.snapshot.", ".vmstate", "vmstate", "no snapshots", f"{len(vm.snapshots)} snapshot(s) without RAM"
    )


@check("pve_spice_console")
def pve_spice_console(vm: VM, ctx):
    fact = vm.facts.get("proxmox.spice")
    if "proxmox.fw_only" in vm.facts:
        return not_applicable("only the firewall file was read")
    return (
        fail("vga", fact["value"], locator=fact["at"])
        if fact
        else passed("vga", vm.facts.get("proxmox.vga", {}).get("value", "std"))
    )


@check("pve_guest_agent")
def pve_guest_agent(vm: VM, ctx):
    if "proxmox.fw_only" in vm.facts:
        return not_applicable("only the firewall file was read")
    fact = vm.facts.get("proxmox.agent")
    if fact is None:
        return passed("agent", "absent (default 0)")
    enabled = fact["value"].split(",")[0].strip()
    enabled = enabled.split("=", 1)[1] if enabled.startswith("enabled=") else enabled
    return (fail if enabled in ("1", "on", "true") else passed)("agent", fact["value"], locator=fact["at"])


# ---------------------------------------------------------------- cluster and node firewall


def _host_option(host: Host, kind: str, key: str):
    fw = host.facts.get(f"proxmox.{kind}_fw")
    if host.facts.get("proxmox.kind") != kind or fw is None:
        return None
    if key in fw["options"]:
        return fw["options"][key]["value"], fw["options"][key]["at"]
    defaults = CLUSTER_DEFAULTS if kind == "cluster" else HOST_DEFAULTS
    return defaults.get(key), f"{host.facts.get('source_file')}: [OPTIONS] {key} absent (default {defaults.get(key)})"


def _host_rule(host: Host, kind: str, key: str, bad):
    got = _host_option(host, kind, key)
    if got is None:
        return not_applicable(f"not a {kind}.fw")
    value, at = got
    return (fail if bad(str(value)) else passed)(key, value, locator=at)


@check("pve_cluster_fw_disabled")
def pve_cluster_fw_disabled(host: Host, ctx):
    return _host_rule(host, "cluster", "enable", lambda v: v in ("0", ""))


@check("pve_cluster_policy_in_accept")
def pve_cluster_policy_in_accept(host: Host, ctx):
    return _host_rule(host, "cluster", "policy_in", lambda v: v.upper() == "ACCEPT")


@check("pve_host_fw_disabled")
def pve_host_fw_disabled(host: Host, ctx):
    return _host_rule(host, "host", "enable", lambda v: v == "0")


@check("pve_host_tcpflags_off")
def pve_host_tcpflags_off(host: Host, ctx):
    return _host_rule(host, "host", "tcpflags", lambda v: v != "1")


@check("pve_host_nosmurfs_off")
def pve_host_nosmurfs_off(host: Host, ctx):
    return _host_rule(host, "host", "nosmurfs", lambda v: v == "0")


@check("pve_host_conntrack_invalid")
def pve_host_conntrack_invalid(host: Host, ctx):
    return _host_rule(host, "host", "nf_conntrack_allow_invalid", lambda v: v == "1")
