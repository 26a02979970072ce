"""VirtualBox predicates: settings only VirtualBox has, read from ``vm.facts['vbox.*']`` and network facts
(filled by ``collect.virtualbox`` / ``collect.virtualbox_showvminfo``; defaults applied there, from
VirtualBox-settings.xsd and Settings.cpp). Also one rule shared with VMware: host-only NICs."""

from __future__ import annotations

from vmsentry.analyse.addresses import exposure
from vmsentry.analyse.checks import check, fail, fail_each_device, not_applicable, passed, unknown
from vmsentry.model import VM, Network


def _adapter_facts(vm: VM, suffix: str) -> list[tuple[str, dict]]:
    return [(k, v) for k, v in vm.facts.items() if k.startswith("vbox.Adapter") and k.endswith(suffix)]


@check("vbox_nat_localhost_reachable")
def vbox_nat_localhost_reachable(vm: VM, ctx):
    nat_nics = [n for n in vm.nics if n.mode == "user"]
    if not nat_nics:
        return not_applicable("no NIC on VirtualBox NAT")
    facts = _adapter_facts(vm, ".NAT.localhost-reachable")
    if not facts:
        return unknown(
            "NAT localhost-reachable is not in this input (showvminfo does not print it); read the .vbox file",
            "NAT/@localhost-reachable",
        )
    out = [
        fail(
            "NAT/@localhost-reachable",
            "true",
            locator=v["at"],
            message="the guest reaches services bound to the host's 127.0.0.1 through 10.0.2.2",
        )
        for k, v in facts
        if v["value"] is True
    ]
    return out or passed("NAT/@localhost-reachable", "false")


@check("vbox_promiscuous")
def vbox_promiscuous(vm: VM, ctx):
    if not vm.nics:
        return not_applicable("no enabled network adapter")
    facts = _adapter_facts(vm, ".promiscuousModePolicy")
    if not facts:
        return passed("Adapter/@promiscuousModePolicy", "Deny (default)")
    out = [
        fail("Adapter/@promiscuousModePolicy", v["value"], locator=v["at"])
        for k, v in facts
        if str(v["value"]) in ("AllowNetwork", "AllowAll")
    ]
    return out or passed("Adapter/@promiscuousModePolicy", "Deny")


@check("nic_host_only")
def nic_host_only(vm: VM, ctx):
    nics = [n for n in vm.nics if n.mode == "host-only" and n.connected]
    if not vm.nics:
        return not_applicable("no NICs")
    if not nics:
        return passed("interface", ", ".join(f"{n.id} {n.mode}" for n in vm.nics))
    return [fail("interface", f"{n.id} host-only via {n.network or n.bridge or '?'}", locator=n.locator) for n in nics]


@check("vbox_symlink_policy")
def vbox_symlink_policy(vm: VM, ctx):
    facts = [(k, v) for k, v in vm.facts.items() if k.startswith("vbox.SharedFolder.") and k.endswith(".symlinkPolicy")]
    if not facts:
        return not_applicable("no shared folders")
    out = [
        fail("SharedFolder/@symlinkPolicy", f"{k.split('.')[2]}: {v['value']}", locator=v["at"])
        for k, v in facts
        if v["value"] in ("any", "relative")
    ]
    return out or passed("SharedFolder/@symlinkPolicy", ", ".join(str(v["value"]) for _, v in facts))


@check("vbox_share_automount")
def vbox_share_automount(vm: VM, ctx):
    facts = [(k, v) for k, v in vm.facts.items() if k.startswith("vbox.SharedFolder.") and k.endswith(".autoMount")]
    if not facts:
        return not_applicable("no shared folders")
    writable = {s.guest_tag for s in vm.shares if s.writable}
    out = [
        fail("SharedFolder/@autoMount", f"{k.split('.')[2]} (writable)", locator=v["at"])
        for k, v in facts
        if v["value"] is True and k.split(".")[2] in writable
    ]
    return out or passed("SharedFolder/@autoMount", "no writable share mounted automatically")


@check("vbox_clipboard_file_transfers")
def vbox_clipboard_file_transfers(vm: VM, ctx):
    fact = vm.facts.get("vbox.Clipboard.fileTransfersEnabled")
    if fact is None:
        return unknown("Clipboard/@fileTransfersEnabled not in this input", "Clipboard/@fileTransfersEnabled")
    if fact["value"] and vm.channels.clipboard != "disabled":
        return fail("Clipboard/@fileTransfersEnabled", f"true (clipboard {vm.channels.clipboard})", locator=fact["at"])
    return passed("Clipboard/@fileTransfersEnabled", str(fact["value"]).lower(), locator=fact["at"])


@check("vbox_vrde_enabled")
def vbox_vrde_enabled(vm: VM, ctx):
    fact = vm.facts.get("vbox.VRDE.enabled")
    if fact is None:
        return passed("RemoteDisplay/@enabled", "no <RemoteDisplay> element")
    if not fact["value"]:
        return passed("RemoteDisplay/@enabled", "false", locator=fact["at"])
    auth = vm.facts.get("vbox.VRDE.authType", {}).get("value", "Null")
    return fail("RemoteDisplay/@enabled", f"true (authType {auth})", locator=fact["at"])


@check("vbox_teleporter")
def vbox_teleporter(vm: VM, ctx):
    fact = vm.facts.get("vbox.Teleporter.enabled")
    if not fact:
        return passed("Teleporter/@enabled", "false (default)")
    pw = vm.facts.get("vbox.Teleporter.password", {}).get("value")
    incoming = next((listener for listener in vm.listeners if listener.kind == "migration"), None)
    where = f"{incoming.address or '*'}:{incoming.port}" if incoming else "?"
    return fail("Teleporter/@enabled", f"true on {where}, password {'set' if pw else 'NOT set'}", locator=fact["at"])


@check("vbox_pci_passthrough")
def vbox_pci_passthrough(vm: VM, ctx):
    return fail_each_device(vm, "pci-passthrough", "HostPci/Devices/Device", passed("HostPci/Devices", "none"))


@check("vbox_generic_driver")
def vbox_generic_driver(vm: VM, ctx):
    if not vm.nics:
        return not_applicable("no NICs")
    nics = [n for n in vm.nics if n.type == "GenericInterface" or n.type == "generic"]
    if not nics:
        return passed("GenericInterface", "no NIC on a generic driver")
    return [fail("GenericInterface/@driver", n.detail or "?", locator=n.locator) for n in nics]


@check("vbox_natnetwork_forwards")
def vbox_natnetwork_forwards(net: Network, ctx):
    fact = net.facts.get("vbox.NATNetwork.forwards")
    if fact is None:
        return not_applicable("not a VirtualBox NAT network")
    rules = fact["value"]
    if not rules:
        return passed("PortForwarding4/Forwarding", "none")
    out = [
        fail(
            "Forwarding/@hostip",
            f"{r['name']}: {r['protocol']} {r['host_address'] or '*'}:{r['host_port']} -> "
            f"{r['guest_ip']}:{r['guest_port']}",
            locator=r["at"],
        )
        for r in rules
        if exposure(r["host_address"]) == "all"
    ]
    return out or passed("Forwarding/@hostip", "every rule bound to a specific host address")
