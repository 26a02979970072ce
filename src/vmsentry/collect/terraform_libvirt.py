"""The Terraform libvirt provider (dmacvicar/libvirt): ``libvirt_domain`` and ``libvirt_network``.

Read from the configuration (``*.tf``, HCL) before ``terraform apply``, and from ``terraform show -json``
(a plan's ``planned_values`` or a state's ``values``, child modules included), where Terraform has
already resolved what it could. The schema is the provider's 0.6-0.8 one (website/docs/r/domain.html.markdown
and network.markdown); every VM is a ``libvirt`` VM, so the libvirt rules and the libvirt link pass (a
NIC on a network read in the same run takes that network's mode) apply.

- ``network_interface``: ``network_name`` (or ``network_id = libvirt_network.X.id`` with X in the same
  file) -> a NIC on that network; ``bridge`` -> ``bridged``; ``macvtap``/``vepa``/``passthrough`` ->
  ``direct`` (macvtap on that host NIC); ``mac``, ``addresses``;
- ``graphics``: ``type`` (spice by default), ``listen_type`` (``none`` by default: no network listener;
  ``address``: ``listen_address``, 127.0.0.1 by default), ``autoport``; no password can be set;
- ``console`` ``type = "tcp"``: a chardev listener on ``source_host`` (127.0.0.1) / ``source_service``;
- ``filesystem``: a 9p share of ``source`` as ``target``, read-only unless ``readonly = false``,
  ``accessmode`` mapped unless set;
- ``xml { xslt = ... }``: the domain XML is rewritten by a stylesheet this file does not show (a fact);
- ``libvirt_network``: ``mode`` nat (default), none -> isolated, route -> routed, open, bridge ->
  bridged on ``bridge``; ``addresses``; ``dhcp { enabled }`` (on by default); ``dns``.
"""

from __future__ import annotations

import os
import re

from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.hcl_reader import read_hcl
from vmsentry.collect.iac_node import Node, flag, number, text
from vmsentry.collect.source_file import BadInput, parse_json, read_text_file
from vmsentry.model import VM, InputError, Inventory, Listener, Network, Nic, Share, Source

PLATFORM = "libvirt"
NETWORK_MODE = {"nat": "nat", "none": "isolated", "route": "routed", "open": "open", "bridge": "bridged"}
_NETWORK_REF = re.compile(r"^\$\{libvirt_network\.([\w-]+)(?:\[[^\]]*\])?\.id\}$")


def claims(path: str, head: bytes) -> bool:
    lower = os.path.basename(path).lower()
    if lower.endswith(".tf"):
        return True
    if not lower.endswith(".json"):
        return False
    return b'"format_version"' in head and b'"terraform_version"' in head


def read(path: str, data: bytes | None = None) -> Inventory:
    inv = Inventory()
    resources: list[tuple[str, str, Node]] = []
    if path.lower().endswith(".tf"):
        blocks, problems = read_hcl(path, data, "a Terraform configuration")
        inv.errors.extend(InputError(path, p) for p in problems)
        for b in blocks:
            if b.type == "resource" and len(b.labels) == 2 and b.labels[0] in ("libvirt_domain", "libvirt_network"):
                resources.append((b.labels[0], b.labels[1], Node.from_hcl(b, f"{b.labels[0]}.{b.labels[1]}")))
    else:
        doc = parse_json(read_text_file(path, data, "terraform show -json output"), "not UTF-8 text")
        if not isinstance(doc, dict):
            raise BadInput("not terraform show -json output (top level is not an object)")
        top = "planned_values" if isinstance(doc.get("planned_values"), dict) else "values"
        module = (doc.get(top) or {}).get("root_module") if isinstance(doc.get(top), dict) else None
        _json_resources(module, f"{top}.root_module", resources, inv, path)
    if not resources:
        inv.notes.append(f"{path}: no libvirt_domain or libvirt_network resource")
    networks: dict[str, Network] = {}
    for kind, label, node in resources:
        if kind == "libvirt_network":
            networks[label] = _network(node, label, path)
    for kind, label, node in resources:
        if kind == "libvirt_domain":
            inv.vms.append(_domain(node, label, path, networks, inv.errors))
    inv.networks.extend(networks.values())
    return inv


def _json_resources(module: object, at: str, out: list, inv: Inventory, path: str, depth: int = 0) -> None:
    if not isinstance(module, dict) or depth > 32:
        return
    for index, res in enumerate(module.get("resources") or []):
        if not isinstance(res, dict) or res.get("type") not in ("libvirt_domain", "libvirt_network"):
            continue
        values = res.get("values")
        if not isinstance(values, dict):
            inv.errors.append(InputError(path, f"{at}.resources[{index}]: no values object; skipped"))
            continue
        label = str(res.get("address") or res.get("name") or index)
        out.append((res["type"], label, Node.from_json(values, f"{at}.resources[{index}].values")))
    for index, child in enumerate(module.get("child_modules") or []):
        _json_resources(child, f"{at}.child_modules[{index}]", out, inv, path, depth + 1)


def _network(node: Node, label: str, path: str) -> Network:
    name = text(node.get("name")) or label
    mode_value = node.get("mode", "nat")
    mode = NETWORK_MODE.get(str(mode_value), "unknown") if text(mode_value) else "unknown"
    net = Network(name=name, platform=PLATFORM, mode=mode, source=Source(file=path), locator=node.at)
    net.bridge = text(node.get("bridge"))
    addresses = node.get("addresses")
    if isinstance(addresses, list):
        net.subnets = [a for a in addresses if isinstance(a, str)]
        net.ipv6 = any(":" in a for a in net.subnets)
    dhcp = node.sub("dhcp")
    enabled = flag(dhcp[0].get("enabled", True)) if dhcp else True
    net.dhcp = bool(enabled) and mode not in ("bridged",)
    for key in ("mode", "bridge", "addresses", "domain", "autostart"):
        node.fact(net.facts, f"terraform.libvirt_network.{key}", key)
    net.facts["terraform.resource"] = {"value": label, "at": node.at}
    return net


def _domain(node: Node, label: str, path: str, networks: dict[str, Network], errors: list[InputError]) -> VM:
    vm = VM(name=text(node.get("name")) or label, platform=PLATFORM, source=Source(file=path))
    vm.facts["terraform.resource"] = {"value": label, "at": node.at}
    node.fact(vm.facts, "terraform.libvirt_domain.name", "name")
    cap = DeviceCap(path, errors)
    at = lambda sub: sub.at
    for index, nic_node in enumerate(cap.take(node.sub("network_interface"), "network_interface", at)):
        vm.nics.append(_nic(nic_node, f"net{index}", networks))
    for graphics in cap.take(node.sub("graphics"), "graphics", at):
        _graphics(vm, graphics)
    for console in cap.take(node.sub("console"), "console", at):
        if console.get("type") == "tcp":
            port = number(console.get("source_service"))
            host = console.get("source_host", "127.0.0.1")
            vm.listeners.append(
                Listener("serial", "tcp", text(host) or "default", port, "none", console.where("type"), tls=False)
            )
    for fs in cap.take(node.sub("filesystem"), "filesystem", at):
        readonly = flag(fs.get("readonly", True))
        vm.shares.append(
            Share("9p", text(fs.get("source")), text(fs.get("target")), readonly is False, fs.where("source"))
        )
        # the provider writes accessmode='mapped' unless told otherwise (libvirt's own default is passthrough)
        mode = fs.get("accessmode", "mapped")
        vm.facts[f"libvirt.filesystem.{text(fs.get('target'))}.accessmode"] = {
            "value": text(mode) or "unknown",
            "at": fs.where("accessmode") if fs.has("accessmode") else f"{fs.at} (provider default)",
        }
    for xml in node.sub("xml"):
        xml.fact(vm.facts, "terraform.xml.xslt", "xslt")
    return vm


def _nic(node: Node, nic_id: str, networks: dict[str, Network]) -> Nic:
    nic = Nic(id=nic_id, mac=(text(node.get("mac")) or "").lower() or None, locator=node.at)
    addresses = node.get("addresses")
    if isinstance(addresses, list) and addresses and isinstance(addresses[0], str):
        nic.ip = addresses[0]
    network_id = node.get("network_id")
    ref = _NETWORK_REF.match(str(network_id)) if network_id is not None else None
    if node.has("network_name") or ref:
        nic.type = "network"
        nic.network = text(node.get("network_name"))
        if ref and ref.group(1) in networks:
            nic.network = networks[ref.group(1)].name
        nic.locator = node.where("network_name" if node.has("network_name") else "network_id")
    elif node.has("bridge"):
        nic.type, nic.mode, nic.bridge = "bridge", "bridged", text(node.get("bridge"))
        nic.locator = node.where("bridge")
    else:
        for key in ("macvtap", "vepa", "passthrough"):
            if node.has(key):
                nic.type, nic.mode, nic.detail = "direct", "direct", f"{text(node.get(key))} mode={key}"
                nic.locator = node.where(key)
                break
    return nic


def _graphics(vm: VM, node: Node) -> None:
    kind = text(node.get("type", "spice")) or "spice"
    if kind not in ("vnc", "spice"):
        return
    listen_type = node.get("listen_type", "none")
    if listen_type == "none":
        return  # libvirt <listen type='none'/>: reachable only through libvirt (virt-viewer), not a TCP port
    address = node.get("listen_address", "127.0.0.1") if listen_type == "address" else None
    where = node.where("listen_address" if node.has("listen_address") else "listen_type")
    # the provider sets no port (autoport) and no password: port allocated at start, no authentication
    vm.listeners.append(Listener(kind, "tcp", text(address) or "default", None, "none", where))
