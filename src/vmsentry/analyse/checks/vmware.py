"""VMware predicates that need logic: .vmx settings judged across several keys or devices (read from
``vm.facts['vmx.<key>']``, filled by ``collect.vmware_vmx``), and VMware NAT/host-adapter networks. The
one-key STIG/SCG settings and the ESXi port-group security policy (``network.facts['esxi.*']``, filled by
``collect.vmware_host``) are ``test:`` blocks in catalogue/vmware.yaml (``checks.declarative``). Absent keys
follow the DISA vSphere 8 STIG check text: most say "If the setting does not exist, this is not a finding";
``RemoteDisplay.maxConnections`` must exist."""

from __future__ import annotations

from vmsentry.analyse.checks import check, fail, not_applicable, passed, unknown
from vmsentry.model import VM, Network

_TRUE = ("true", "1", "yes", "on")


def _norm(value) -> str:
    return str(value).strip().lower()


def _product(vm: VM) -> str:
    fact = vm.facts.get("vmx.product")
    return fact.get("value", "unknown") if fact is not None else "unknown"


@check("vmx_dvfilter")
def vmx_dvfilter(vm: VM, ctx):
    hits = [
        (k, v)
        for k, v in vm.facts.items()
        if k.startswith("vmx.ethernet") and ".filter" in k.lower() and k.lower().endswith(".name")
    ]
    if not hits:
        return passed("ethernet*.filter*.name", "absent")
    return [
        fail(
            k[4:],
            v["value"],
            locator=v["at"],
            message="a dvFilter is bound to this NIC: a finding unless a documented security appliance uses it",
        )
        for k, v in hits
    ]


@check("vmx_nonpersistent_disk")
def vmx_nonpersistent_disk(vm: VM, ctx):
    hits = [
        (k, v)
        for k, v in vm.facts.items()
        if k.startswith("vmx.") and k.lower().endswith(".mode") and _norm(v["value"]) == "independent-nonpersistent"
    ]
    if not hits:
        return passed("scsiX:Y.mode", "no independent-nonpersistent disk")
    return [fail(k[4:], v["value"], locator=v["at"]) for k, v in hits]


@check("vmx_floppy")
def vmx_floppy(vm: VM, ctx):
    drives = [
        d
        for d in vm.devices
        if d.kind == "floppy" and d.detail.endswith(" connected") and not d.detail.endswith(" not connected")
    ]
    if not drives:
        return passed("device", "no connected floppy drive")
    return [fail("device", f"{d.kind} {d.detail}", locator=d.locator) for d in drives]


@check("vmx_cdrom_connected")
def vmx_cdrom_connected(vm: VM, ctx):
    hits = [(k, v) for k, v in vm.facts.items() if k.endswith(".cdrom") and v["value"] == "connected"]
    if not hits:
        return passed("cdrom", "no CD/DVD drive connected at power on")
    return [fail(k[4:-6] + ".startConnected", v["value"], locator=v["at"]) for k, v in hits]


@check("vmx_hgfs_server")
def vmx_hgfs_server(vm: VM, ctx):
    """VMCH-70-000007 asks for isolation.tools.hgfsServerSet.disable TRUE. ``isolation.tools.hgfs.disable =
    TRUE`` switches HGFS off as a whole (libvirt src/vmx/vmx.c reads no shared folder then), so it closes the
    server too. Otherwise: shared folders in effect mean the server runs, whatever the product; without
    them Workstation/Fusion run it unless disabled (a finding), and ESXi offers no shared folders."""
    whole = vm.facts.get("vmx.isolation.tools.hgfs.disable")
    if whole is not None and _norm(whole["value"]) in _TRUE:
        return passed("isolation.tools.hgfs.disable", whole["value"], locator=whole["at"])
    fact = vm.facts.get("vmx.isolation.tools.hgfsServerSet.disable")
    if fact is not None:
        ok = _norm(fact["value"]) in _TRUE
        return (passed if ok else fail)("isolation.tools.hgfsServerSet.disable", fact["value"], locator=fact["at"])
    shares = [s for s in vm.shares if s.kind == "hgfs"]
    if shares:
        return fail(
            "isolation.tools.hgfsServerSet.disable",
            f"absent, and {len(shares)} shared folder(s) in effect ({shares[0].host_path})",
            locator=shares[0].locator,
        )
    product = _product(vm)
    if product == "esxi":
        return passed("isolation.tools.hgfsServerSet.disable", "absent (ESXi offers no shared folders)")
    if product == "unknown":
        return unknown(
            "absent; whether the HGFS server runs depends on the product (ESXi or Workstation/Fusion), "
            "which this file does not say",
            "isolation.tools.hgfsServerSet.disable",
        )
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


@check("vmnet_nat_forwards")
def vmnet_nat_forwards(net: Network, ctx):
    fact = net.facts.get("vmware.nat.incoming")
    if fact is None:
        return not_applicable("no VMware NAT configuration (nat.conf) read for this network")
    if not fact["value"]:
        return passed("[incomingtcp]/[incomingudp]", "no port forwards")
    return [
        fail(
            f"[incoming{f['protocol']}]",
            f"{f['protocol']} *:{f['host_port']} -> {f['guest_ip']}:{f['guest_port']}",
            file=f.get("file"),
            locator=f["at"],
        )
        for f in fact["value"]
    ]


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
    return fail(
        f"VNET_{number}_VIRTUAL_ADAPTER",
        f"yes ({net.mode} network {net.name}" + (f", subnet {net.subnets[0]}" if net.subnets else "") + ")",
        locator=fact["at"],
    )
