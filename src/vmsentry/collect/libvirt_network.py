"""libvirt network and nwfilter XML (files, or ``XMLDesc`` of live objects)."""

from __future__ import annotations

import ipaddress

from lxml import etree

from vmsentry.collect.device_cap import MAX_RULES_PER_FILE, DeviceCap
from vmsentry.collect.libvirt_domain import PLATFORM
from vmsentry.collect.source_file import BadInput, element_locator
from vmsentry.model import InputError, Network, NwFilter, Source

# <forward mode=...> -> NIC mode of guests on the network; no <forward> at all means isolated
_NETWORK_MODE = {
    None: "isolated",
    "nat": "nat",
    "route": "routed",
    "open": "open",
    "bridge": "bridged",
    "private": "direct",
    "vepa": "direct",
    "passthrough": "direct",
    "hostdev": "passthrough",
}


def read_network(
    root: etree._Element, index: int = 0, source: Source | None = None, errors: list[InputError] | None = None
) -> Network:
    name = (root.findtext("name") or "").strip()
    locator = element_locator(root, index)
    if not name:
        raise BadInput(f"{locator}: network has no <name>")
    net = Network(name=name, platform=PLATFORM, source=source or Source(), locator=locator)
    # a network holds thousands of DHCP reservations at most, a few addresses and forwarders
    where = net.source.file or net.source.uri or "?"
    hosts = DeviceCap(where, errors, MAX_RULES_PER_FILE, "entries in one network")
    cap = DeviceCap(where, errors, unit="entries in one network")
    forward = root.find("forward")
    fmode = None if forward is None else forward.get("mode", "nat")
    net.mode = _NETWORK_MODE.get(fmode, "unknown")
    if fmode is not None:
        net.facts["libvirt.forward.mode"] = {"value": fmode, "at": element_locator(forward, index)}
    bridge = root.find("bridge")
    if bridge is not None:
        net.bridge = bridge.get("name")
        if bridge.get("stp"):
            net.facts["libvirt.bridge.stp"] = {"value": bridge.get("stp"), "at": element_locator(bridge, index)}
    if forward is not None:
        devs = [forward.get("dev")] if forward.get("dev") else []
        devs += [i.get("dev") for i in forward.iterfind("interface") if i.get("dev")]
        devs += [p.get("dev") for p in forward.iterfind("pf") if p.get("dev")]
        net.forwards = list(dict.fromkeys(devs))
        if fmode == "bridge" and net.bridge is None and net.forwards:
            net.mode = "direct"  # macvtap on the listed devices, no host bridge
    if root.find("virtualport") is not None:
        net.facts["libvirt.virtualport.type"] = {"value": root.find("virtualport").get("type"), "at": locator}
    mac = root.find("mac")
    if mac is not None and mac.get("address"):
        net.host_mac = mac.get("address").lower()
    port = root.find("port")
    if port is not None and port.get("isolated"):
        net.port_isolated = port.get("isolated") == "yes"
    net.ipv6 = root.get("ipv6") == "yes"
    for ip in cap.take(root.iterfind("ip"), "<ip>", lambda el: element_locator(el, index)):
        _read_network_ip(net, ip, index, hosts)
    dns = root.find("dns")
    dns_enabled = dns is None or dns.get("enable", "yes") != "no"
    if dns is not None:
        if dns.get("forwardPlainNames"):
            net.facts["libvirt.dns.forwardPlainNames"] = {
                "value": dns.get("forwardPlainNames"),
                "at": element_locator(dns, index),
            }
        forwarders = cap.take(dns.iterfind("forwarder"), "<forwarder>", lambda el: element_locator(el, index))
        fwd = [f.get("addr") for f in forwarders if f.get("addr")]
        if fwd:
            net.facts["libvirt.dns.forwarders"] = {"value": fwd, "at": element_locator(dns, index)}
    if net.host_address and dns_enabled and net.mode in ("nat", "routed", "isolated", "open"):
        net.dns_servers = [net.host_address]
    if net.dhcp and net.host_address:
        net.dhcp_servers = [net.host_address]
    v6 = [a for a in (ip.get("address") for ip in root.iterfind("ip")) if a and ":" in a]
    if v6 and net.mode in ("nat", "routed", "isolated", "open"):  # libvirt's dnsmasq sends the RAs on the bridge
        net.ipv6_routers = [{"mac": net.host_mac, "ip": v6[0]}]
    return net


def _read_network_ip(net: Network, ip: etree._Element, doc: int, hosts: DeviceCap) -> None:
    address = ip.get("address")
    if not address:
        return
    family = ip.get("family") or ("ipv6" if ":" in address else "ipv4")
    prefix = ip.get("prefix")
    netmask = ip.get("netmask")
    try:
        if netmask:
            iface = ipaddress.ip_interface(f"{address}/{netmask}")
        else:
            iface = ipaddress.ip_interface(f"{address}/{prefix or (64 if family == 'ipv6' else 24)}")
    except ValueError:
        raise BadInput(f"{element_locator(ip, doc)}: invalid address {address!r}/{prefix or netmask}") from None
    net.subnets.append(str(iface.network))
    if family == "ipv6":
        net.ipv6 = True
    if family == "ipv4" and net.host_address is None:
        net.host_address = str(iface.ip)
    dhcp = ip.find("dhcp")
    if dhcp is not None and (dhcp.find("range") is not None or dhcp.find("host") is not None):
        net.dhcp = True
        static = {
            h.get("mac").lower(): h.get("ip")
            for h in hosts.take(dhcp.iterfind("host"), "DHCP <host>", lambda el: element_locator(el, doc))
            if h.get("mac") and h.get("ip")
        }
        if static:
            net.facts.setdefault("libvirt.dhcp.hosts", {"value": {}, "at": element_locator(dhcp, doc)})["value"].update(
                static
            )


def read_nwfilter(root: etree._Element, source: Source | None = None) -> NwFilter:
    name = root.get("name")
    if not name:
        raise BadInput(f"line {root.sourceline}: nwfilter has no name attribute")
    return NwFilter(
        name, [ref.get("filter") for ref in root.iterfind("filterref") if ref.get("filter")], source or Source()
    )
