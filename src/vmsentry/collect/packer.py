"""Packer templates: the build VM each Hyper-V, QEMU, VMware or VirtualBox builder makes.

Read from HCL2 (``*.pkr.hcl``: ``source "qemu" "name" { ... }``) and from JSON templates
(``{"builders": [{"type": "qemu", ...}]}``). Each builder becomes a VM on its platform, so the rules of
that platform apply before the VM exists. Nothing is evaluated: ``var.x``, ``{{user `x`}}`` and other
expressions are "unknown" (the fact keeps their text).

Settings and their documented defaults (developer.hashicorp.com/packer/integrations/hashicorp/...):

- ``qemu``: ``net_bridge`` set -> a ``bridged`` NIC on that bridge, else user-mode networking (``user``)
  with Packer's communicator forward ``hostfwd=tcp::PORT-:22`` on every host address, PORT from
  ``host_port_min``..``host_port_max`` (2222-4444) unless ``skip_nat_mapping``; ``net_device``
  (virtio-net) is the model; VNC on ``vnc_bind_address`` (127.0.0.1), ports ``vnc_port_min``..``max``
  (5900-6000), a password only with ``vnc_use_password``, none with ``disable_vnc``; ``qemuargs`` is a fact.
- ``vmware-iso``/``vmware-vmx``: ``network`` (``nat`` by default; ``bridged``, ``hostonly`` or a custom
  vmnet), ``network_adapter_type`` is the model; Packer's VNC on ``vnc_bind_address`` (127.0.0.1) with a
  password unless ``vnc_disable_password``, none with ``disable_vnc``; ``vmx_data`` keys become ``vmx.*``
  facts for the VMware rules.
- ``hyperv-iso``/``hyperv-vmcx``: ``switch_name`` (Packer picks an external switch that is up when it
  is not set: unknown), ``vlan_id``/``switch_vlan_id``, ``mac_address``, ``enable_mac_spoofing`` (false:
  spoof protection on), ``enable_virtualization_extensions``, ``enable_secure_boot``.
- ``virtualbox-iso``/``-ovf``/``-vm``: adapter 1 is NAT with the communicator forward on 127.0.0.1
  (``host_port_min``..``max``) unless ``skip_nat_mapping``; ``headless`` turns VRDP on at
  ``vrdp_bind_address`` (127.0.0.1) without authentication; ``vboxmanage`` commands are a fact.
- every builder: ``http_bind_address`` (0.0.0.0) of Packer's HTTP server when ``http_directory`` or
  ``http_content`` is set, as the fact ``packer.http_bind_address``.
"""

from __future__ import annotations

import os
from typing import Any

from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.hcl_reader import Computed, read_hcl
from vmsentry.collect.iac_node import Node, flag, number, text
from vmsentry.collect.source_file import BadInput, parse_json, read_text_file
from vmsentry.model import VM, Forward, InputError, Inventory, Listener, Nic, Source

PLATFORMS = {
    "qemu": "qemu",
    "vmware-iso": "vmware",
    "vmware-vmx": "vmware",
    "hyperv-iso": "hyperv",
    "hyperv-vmcx": "hyperv",
    "virtualbox-iso": "virtualbox",
    "virtualbox-ovf": "virtualbox",
    "virtualbox-vm": "virtualbox",
}
_VMWARE_NETWORK = {"nat": "nat", "bridged": "bridged", "hostonly": "host-only"}
_JSON_MARKS = tuple(f'"{builder}"'.encode() for builder in PLATFORMS)


def claims(path: str, head: bytes) -> bool:
    lower = os.path.basename(path).lower()
    if lower.endswith((".pkr.hcl", ".pkr.json")):
        return True
    if not lower.endswith(".json") or b'"builders"' not in head:
        return False
    return any(mark in head for mark in _JSON_MARKS)


def read(path: str, data: bytes | None = None) -> Inventory:
    inv = Inventory()
    # a template builds a handful of images; the cap also bounds the name check below (quadratic)
    cap = DeviceCap(path, inv.errors, unit="entries in one template")
    if path.lower().endswith(".pkr.hcl"):
        blocks, problems = read_hcl(path, data, "a Packer HCL2 template")
        inv.errors.extend(InputError(path, p) for p in problems)
        sources = [
            (b.labels[0], Node.from_hcl(b, f"source.{'.'.join(b.labels)}"), ".".join(b.labels))
            for b in cap.take(
                (b for b in blocks if b.type == "source" and len(b.labels) == 2),
                "builder",
                lambda b: f"source.{'.'.join(b.labels)}",
            )
        ]
    else:
        doc = parse_json(read_text_file(path, data, "a Packer JSON template"), "not UTF-8 text")
        if not isinstance(doc, dict) or not isinstance(doc.get("builders"), list):
            raise BadInput('not a Packer template: no "builders" list')
        sources = []
        for index, builder in cap.take(enumerate(doc["builders"]), "builder", lambda e: f"builders[{e[0]}]"):
            if not isinstance(builder, dict) or not isinstance(builder.get("type"), str):
                inv.errors.append(InputError(path, f"builders[{index}]: a builder without a type; skipped"))
                continue
            node = Node.from_json(builder, f"builders[{index}]", templates=True)
            sources.append((builder["type"], node, str(builder.get("name") or builder["type"])))
    for builder, node, label in sources:
        platform = PLATFORMS.get(builder)
        if platform is None:
            inv.notes.append(f"{path}: Packer builder {label!r} ({builder}) makes no local VM vmsentry audits")
            continue
        inv.vms.append(_build_vm(path, builder, platform, node, label))
    # one template often builds the same vm_name with several builders: each VM needs its own asset id
    names = [vm.name for vm in inv.vms]
    for vm, (_, _, label) in zip(inv.vms, [s for s in sources if s[0] in PLATFORMS], strict=True):
        if names.count(vm.name) > 1:
            vm.name = f"{vm.name} ({label})"
    return inv


def _build_vm(path: str, builder: str, platform: str, node: Node, label: str) -> VM:
    name = text(node.get("vm_name")) or f"packer:{label}"
    vm = VM(name=name, platform=platform, source=Source(file=path))
    vm.facts["packer.builder"] = {"value": builder, "at": node.where("type") if node.has("type") else node.at}
    for key in ("vm_name", "http_bind_address", "http_directory", "communicator", "headless"):
        node.fact(vm.facts, f"packer.{key}", key)
    if node.has("http_directory") or node.has("http_content"):
        vm.facts.setdefault("packer.http_bind_address", {"value": "0.0.0.0", "at": f"{node.at} (Packer default)"})
    {"qemu": _qemu, "vmware": _vmware, "hyperv": _hyperv, "virtualbox": _virtualbox}[platform](vm, node)
    return vm


def _guest_port(node: Node) -> int | None:
    """The communicator's port in the guest (Packer defaults: ssh 22, WinRM 5985 or 5986 with TLS)."""
    comm = node.get("communicator", "ssh")
    if comm == "none":
        return None
    if comm == "winrm":
        return number(node.get("winrm_port")) or (5986 if flag(node.get("winrm_use_ssl")) else 5985)
    if comm == "ssh":
        return number(node.get("ssh_port")) or 22
    return None


def _communicator_forward(vm: VM, node: Node, address: str | None) -> None:
    guest = _guest_port(node)
    if guest is None or flag(node.get("skip_nat_mapping")):
        return
    first = number(node.get("host_port_min", node.get("ssh_host_port_min"))) or 2222
    last = number(node.get("host_port_max", node.get("ssh_host_port_max"))) or 4444
    vm.forwards.append(
        Forward(
            "tcp", [first, last], [guest, guest], host_address=address, nic="nic0", locator=f"{node.at} (communicator)"
        )
    )


def _vnc(vm: VM, node: Node, auth: str, kind: str = "vnc", prefix: str = "vnc") -> None:
    if flag(node.get("disable_vnc")):
        return
    address = node.get(f"{prefix}_bind_address", "127.0.0.1")
    first = number(node.get(f"{prefix}_port_min")) or 5900
    last = number(node.get(f"{prefix}_port_max")) or 6000
    where = (
        node.where(f"{prefix}_bind_address") if node.has(f"{prefix}_bind_address") else f"{node.at} (Packer default)"
    )
    vm.listeners.append(
        Listener(
            kind,
            "tcp",
            # an address the file does not state is unknown: "default" keeps it from reading as "every address"
            address=text(address) or "default",
            port=first if first == last else None,
            auth=auth,
            locator=where,
        )
    )


def _qemu(vm: VM, node: Node) -> None:
    bridge = node.get("net_bridge")
    nic = Nic(id="nic0", model=text(node.get("net_device")) or "virtio-net", locator=node.at, type="packer")
    if bridge is not None:
        nic.bridge = text(bridge)
        nic.mode = "bridged" if nic.bridge else "unknown"
        nic.locator = node.where("net_bridge")
    else:
        nic.mode = "user"
        _communicator_forward(vm, node, None)  # hostfwd=tcp::PORT-:22: every host address
    vm.nics.append(nic)
    password = flag(node.get("vnc_use_password"))
    _vnc(
        vm,
        node,
        "password" if password else "none" if password is False or not node.has("vnc_use_password") else "unknown",
    )
    for key in ("net_bridge", "net_device", "vnc_bind_address", "vnc_use_password", "qemuargs", "disable_vnc"):
        node.fact(vm.facts, f"packer.{key}", key)


def _vmware(vm: VM, node: Node) -> None:
    network = node.get("network", "nat")
    mode = _VMWARE_NETWORK.get(str(network).lower(), "unknown") if not isinstance(network, Computed) else "unknown"
    nic = Nic(
        id="nic0", mode=mode, model=text(node.get("network_adapter_type")), locator=node.where("network"), type="packer"
    )
    if mode == "unknown" and text(network):
        nic.network = text(network)  # a custom vmnet (e.g. vmnet2): its mode is in the host's vmnet files
    vm.nics.append(nic)
    no_password = flag(node.get("vnc_disable_password"))
    _vnc(
        vm,
        node,
        "none"
        if no_password
        else "password"
        if no_password is False or not node.has("vnc_disable_password")
        else "unknown",
    )
    for key in ("network", "network_adapter_type", "vnc_bind_address", "vnc_disable_password", "disable_vnc"):
        node.fact(vm.facts, f"packer.{key}", key)
    vmx_data = node.get("vmx_data")
    if isinstance(vmx_data, dict):
        for key, value in vmx_data.items():
            vm.facts[f"vmx.{key.lower()}"] = {"value": str(value), "at": f"{node.where('vmx_data')}.{key}"}


def _hyperv(vm: VM, node: Node) -> None:
    switch = node.get("switch_name")
    nic = Nic(id="nic0", network=text(switch), locator=node.where("switch_name"), type="vmswitch")
    mac = text(node.get("mac_address"))
    if mac and len(mac) == 12:
        mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2))
    nic.mac = mac.lower() if mac else None
    spoofing = flag(node.get("enable_mac_spoofing", False))
    nic.spoof_protection = None if spoofing is None else not spoofing
    if spoofing is not None:
        nic.filter = f"MacAddressSpoofing={'On' if spoofing else 'Off'}"
    vm.nics.append(nic)
    secure = flag(node.get("enable_secure_boot"))
    if secure is not None:
        vm.security.secure_boot = secure
    for key in (
        "switch_name",
        "vlan_id",
        "switch_vlan_id",
        "enable_mac_spoofing",
        "enable_virtualization_extensions",
        "enable_secure_boot",
        "generation",
    ):
        node.fact(vm.facts, f"packer.{key}", key)
    vlan = node.get("vlan_id")
    if vlan is not None:
        vm.facts["hyperv.nic.nic0.Vlan.OperationMode"] = {"value": "Access", "at": node.where("vlan_id")}
        vm.facts["hyperv.nic.nic0.Vlan.AccessVlanId"] = {"value": _plain(vlan), "at": node.where("vlan_id")}


def _virtualbox(vm: VM, node: Node) -> None:
    vm.nics.append(Nic(id="nic0", mode="nat", locator=f"{node.at} (adapter 1: Packer's NAT)", type="nat"))
    _communicator_forward(vm, node, "127.0.0.1")
    if flag(node.get("headless")):
        _vnc(vm, node, "none", kind="vrde", prefix="vrdp")
    for key in ("vrdp_bind_address", "vboxmanage", "vboxmanage_post", "guest_additions_mode"):
        node.fact(vm.facts, f"packer.{key}", key)


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, Computed) else value
