"""Resolved policy -> libvirt nwfilter XML, one filter per VM (``vmsentry-<vm>``).

Each filter builds on libvirt's stock ``clean-traffic`` (MAC, IP and ARP anti-spoofing, no other layer-2
traffic: IPv6 is dropped, as for ports without IPv6 in the nftables back end), fed with the inventory's
address through the ``IP`` parameter (libvirt fills in ``MAC``), then adds stateful IPv4 rules:

* established/related traffic in both directions is accepted first;
* ``direction='out'`` (from the VM) rules: what the policy lets this VM open (to the host's addresses, to
  other VMs' addresses, beyond), then the defaults;
* ``direction='in'`` (to the VM) rules: which other VMs, roles and outside sources may open connections
  to it; the host's own addresses always may.

nwfilter has no time-of-day match: a role with ``hours`` cannot be expressed and is left out (fail
closed) with a warning. Jump hosts, zones and quarantine are expressed with the VMs' addresses, so a
filter lists the addresses it needs (nwfilter is per VM; its size does not matter the way one shared
nftables ruleset's does). Attach with::

    <interface ...><filterref filter='vmsentry-web'><parameter name='IP' value='192.168.122.10'/></filterref>
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from vmsentry.act.policy.problems import Problem
from vmsentry.act.policy.resolve import Resolved
from vmsentry.act.policy.schema import Service

NS_UUID = uuid.UUID("0b7a4c57-6d0e-4c1e-9f1e-766d73656e74")


@dataclass
class NwfilterSet:
    filters: dict[str, str] = field(default_factory=dict)  # filter name -> XML
    interfaces: dict[str, list[str]] = field(default_factory=dict)  # vm -> <filterref> snippets, one per NIC
    warnings: list[Problem] = field(default_factory=list)

    def text(self) -> str:
        out = []
        for name, xml in self.filters.items():
            # _clean: a VM name (and so a filter name) may hold "--" or characters an XML comment cannot carry
            out.append(f"<!-- ===== {_clean(name)}.xml  (virsh nwfilter-define {_clean(name)}.xml) ===== -->\n{xml}")
        out.append("<!-- ===== attach: in each VM's <interface> ===== -->")
        for vm, snippets in self.interfaces.items():
            for s in snippets:
                out.append(f"<!-- {_clean(vm)} -->\n{s}")
        return "\n".join(out) + "\n"


def filter_name(vm: str) -> str:
    return "vmsentry-" + re.sub(r"[^A-Za-z0-9_.-]", "_", vm)


class _Builder:
    def __init__(self, name: str, comment: str):
        self.name = name
        self.lines: list[str] = []
        self.prio = -200
        self.comment = comment

    def ref(self, filt: str) -> None:
        self.lines.append(f"  <filterref filter='{filt}'/>")

    def rule(self, action: str, direction: str, proto: str, attrs: dict[str, str], comment: str | None = None) -> None:
        a = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items())
        if comment:
            a += f" comment={quoteattr(_clean(comment))}"
        self.lines.append(
            f"  <rule action='{action}' direction='{direction}' priority='{self.prio}'>"
            f"<{proto}{' ' + a if a else ''}/></rule>"
        )
        self.prio = min(self.prio + 1, 1000)

    def xml(self) -> str:
        u = uuid.uuid5(NS_UUID, self.name)
        return (
            f"<filter name='{self.name}' chain='root'>\n  <uuid>{u}</uuid>\n"
            f"  <!-- {_clean(self.comment).rstrip('-')} -->\n" + "\n".join(self.lines) + "\n</filter>\n"
        )


def _clean(text: str) -> str:
    """Printable ASCII for an attribute (quoteattr escapes the rest) or an XML comment (no "--")."""
    return "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in text).replace("--", "_")[:200]


def _svc_rules(
    b: _Builder, action: str, direction: str, svc: Service | None, base: dict, comment: str, state: str | None = "NEW"
) -> None:
    attrs = dict(base)
    if state:
        attrs["state"] = state
    if svc is None or svc.proto == "any":
        b.rule(action, direction, "all", attrs, comment)
        return
    if svc.proto == "icmp":
        b.rule(action, direction, "icmp", attrs, comment)
        return
    if not svc.ports:
        b.rule(action, direction, svc.proto, attrs, comment)
        return
    for lo, hi in svc.ports:
        pa = dict(attrs)
        pa["dstportstart"] = str(lo)
        if hi != lo:
            pa["dstportend"] = str(hi)
        b.rule(action, direction, svc.proto, pa, comment)


def _addr_attrs(prefix: str, cidr: str) -> dict[str, str]:
    n = ipaddress.ip_network(cidr, strict=False)
    out = {f"{prefix}ipaddr": str(n.network_address)}
    if n.prefixlen != 32:
        out[f"{prefix}ipmask"] = str(n.prefixlen)
    return out


def compile_nwfilter(res: Resolved) -> NwfilterSet:
    out = NwfilterSet()
    pol = res.policy
    ev_zones: dict[str, set[str]] = {}
    for z, members in res.zones.items():
        for vm in members:
            ev_zones.setdefault(vm, set()).add(z)
    host = [h for h in res.host_addresses if ipaddress.ip_address(h).version == 4]
    all_vm_ips = sorted({a for e in res.endpoints for a in e.ip4}, key=ipaddress.ip_address)
    if res.has_ipv6:
        out.warnings.append(
            Problem(
                "warning",
                "nwfilter: clean-traffic drops IPv6; the IPv6 parts of this policy apply to the nftables target only",
                pol.file,
                None,
            )
        )
    vms = sorted({e.vm for e in res.endpoints})
    warned_roles: set[str] = set()

    def vm_in(sel, vm: str) -> bool:
        if sel.kind == "zone":
            return sel.name in ev_zones.get(vm, ())
        if sel.kind == "jump":
            return res.jumps.get(sel.name) == vm
        return sel.kind == "any-vm"

    def ips_of(sel) -> list[str]:
        if sel.kind == "external":
            return []
        return sorted({a for e in res.sel_endpoints(sel) for a in e.ip4}, key=ipaddress.ip_address)

    for vm in vms:
        eps = res.endpoints_of([vm])
        own = {a for e in eps for a in e.ip4}
        name = filter_name(vm)
        b = _Builder(
            name,
            f"vmsentry policy {pol.file or ''} for VM {vm}; zones: {', '.join(sorted(ev_zones.get(vm, ()))) or 'none'}",
        )
        if pol.defaults.anti_spoofing:
            b.ref("clean-traffic")
        if vm in res.quarantined:
            fx = pol.defaults.forensics
            for h in host:
                if fx is not None:
                    _svc_rules(b, "accept", "out", fx, {"dstipaddr": h}, "quarantine: forensics service", state=None)
                b.rule("accept", "in", "all", {"srcipaddr": h}, "quarantine: the host may connect")
                b.rule(
                    "accept", "out", "all", {"dstipaddr": h, "state": "ESTABLISHED"}, "quarantine: replies to the host"
                )
            b.rule("drop", "inout", "all", {}, "quarantine")
            out.filters[name] = b.xml()
            out.interfaces[vm] = [_snippet(name, e.ip4) for e in eps]
            continue
        b.rule("accept", "inout", "all", {"state": "ESTABLISHED,RELATED"}, "replies")
        # ---- out: what this VM may open
        for r in res.chain("vm_to_host")[:-1]:
            if vm_in(r.src, vm):
                for h in host:
                    _svc_rules(b, "accept", "out", r.service, {"dstipaddr": h}, r.why)
        for r in res.chain("vm_fwd")[:-2]:
            if not vm_in(r.src, vm):
                continue
            if r.dst.kind == "external":
                _svc_rules(b, "accept", "out", r.service, {}, r.why + " (any address; VM addresses are dropped below)")
                continue
            for ip in ips_of(r.dst):
                if ip not in own:
                    _svc_rules(b, "accept", "out", r.service, {"dstipaddr": ip}, r.why)
        d = pol.defaults
        if d.vm_to_host == "deny":
            for h in host:
                b.rule("drop", "out", "all", {"dstipaddr": h}, "defaults.vm_to_host: deny")
        if d.vm_to_vm == "deny":
            for ip in all_vm_ips:
                if ip not in own:
                    b.rule("drop", "out", "all", {"dstipaddr": ip}, "defaults.vm_to_vm: deny")
        b.rule(
            "accept" if d.vm_to_external == "allow" else "drop",
            "out",
            "all",
            {"state": "NEW"},
            f"defaults.vm_to_external: {d.vm_to_external}",
        )
        # ---- in: who may open connections to this VM
        for h in host:
            b.rule("accept", "in", "all", {"srcipaddr": h, "state": "NEW"}, "the host")
        for other in vms:
            if other == vm:
                continue
            for r in res.chain("vm_fwd")[:-2]:
                if vm_in(r.src, other) and r.dst.kind in ("zone", "jump", "any-vm") and vm_in(r.dst, vm):
                    for e in res.endpoints_of([other]):
                        for ip in e.ip4:
                            _svc_rules(b, "accept", "in", r.service, {"srcipaddr": ip}, r.why)
        if d.vm_to_vm == "allow":
            for ip in all_vm_ips:
                if ip not in own:
                    b.rule("accept", "in", "all", {"srcipaddr": ip, "state": "NEW"}, "defaults.vm_to_vm: allow")
        for r in res.chain("ext_to_vm")[:-1]:
            if not vm_in(r.dst, vm):
                continue
            if r.window is not None:
                if r.role not in warned_roles:
                    warned_roles.add(r.role)
                    out.warnings.append(
                        Problem(
                            "warning",
                            f"nwfilter cannot match time of day: {r.why} "
                            f"({r.window.text}) is left out, so this role is denied "
                            f"at all times on libvirt nwfilter",
                            pol.file,
                            r.line,
                        )
                    )
                continue
            if r.src.kind == "role":
                for cidr in res.role_sources[r.role or r.src.name]:
                    if ipaddress.ip_network(cidr).version == 4:
                        _svc_rules(b, "accept", "in", r.service, _addr_attrs("src", cidr), r.why)
            else:
                _svc_rules(b, "accept", "in", r.service, {}, r.why)
        b.rule(
            "accept" if d.external_to_vm == "allow" else "drop",
            "in",
            "all",
            {"state": "NEW"},
            f"defaults.external_to_vm: {d.external_to_vm}",
        )
        out.filters[name] = b.xml()
        out.interfaces[vm] = [_snippet(name, e.ip4) for e in eps]
    return out


def _snippet(name: str, ips: list[str]) -> str:
    params = "".join(f"<parameter name='IP' value='{ip}'/>" for ip in ips)
    return f"<filterref filter='{name}'>{params}</filterref>"
