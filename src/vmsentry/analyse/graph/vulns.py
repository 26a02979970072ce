"""The hypervisor vulnerability table (``vulns.yaml``, or a newer feed in the same format) and the
matching of an entry against a VM and its host: is the component's version in an affected range, and
does the VM's configuration make the flaw reachable?"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from vmsentry.model import VM, Host
from vmsentry.model.files import BadInput, read_text
from vmsentry.model.yaml_lines import YamlError, safe_load

COMPONENTS = ("qemu", "libvirt", "linux-kernel", "vmware-workstation", "vmware-fusion", "esxi", "hyperv", "virtualbox")
VECTORS = ("guest", "network")
IMPACTS = ("escape", "info-leak", "dos")
DEFAULT_DB = os.path.join(os.path.dirname(__file__), "vulns.yaml")
# The shipped table is about 20 KB; a feed in the same format 800 times larger still fits
MAX_BYTES = 16 * 1024 * 1024

# which VM platforms run on which component
_PLATFORM_COMPONENTS = {
    "libvirt": ("qemu", "libvirt", "linux-kernel"),
    "qemu": ("qemu", "linux-kernel"),
    "proxmox": ("qemu", "linux-kernel"),
    "vmware": ("vmware-workstation", "vmware-fusion", "esxi"),
    "esxi": ("esxi",),
    "hyperv": ("hyperv",),
    "virtualbox": ("virtualbox",),
}


class VulnDBError(Exception):
    pass


@dataclass(slots=True)
class Vuln:
    id: str
    component: str
    affected: list[dict[str, Any]]
    fixed: str
    reachable_when: str
    vector: str
    impact: str
    summary: str
    advisories: list[str]
    verified: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def load_vulns(path: str | None = None) -> list[Vuln]:
    path = path or DEFAULT_DB
    try:
        data = safe_load(read_text(path, MAX_BYTES))
    except BadInput as exc:
        raise VulnDBError(f"{path}: {exc}") from None
    except YamlError as exc:
        where = f" line {exc.line}:" if exc.line else ""
        raise VulnDBError(f"{path}:{where} not valid YAML: {exc.problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("vulns"), list):
        raise VulnDBError(f"{path}: expected a mapping with a 'vulns' list")
    out = []
    for i, item in enumerate(data["vulns"]):
        where = f"{path}: vulns[{i}]"
        if not isinstance(item, dict):
            raise VulnDBError(f"{where}: expected a mapping")
        for key in ("id", "component", "reachable_when", "summary"):
            if not isinstance(item.get(key), str) or not item.get(key):
                raise VulnDBError(f"{where}: '{key}' missing or not a string")
        if item["component"] not in COMPONENTS:
            raise VulnDBError(f"{where} ({item['id']}): unknown component {item['component']!r}")
        affected = item.get("affected") or []
        if not isinstance(affected, list) or not all(isinstance(a, dict) for a in affected):
            raise VulnDBError(f"{where} ({item['id']}): 'affected' must be a list of ranges")
        for a in affected:
            if a.get("component", item["component"]) not in COMPONENTS:
                raise VulnDBError(f"{where} ({item['id']}): unknown component {a.get('component')!r}")
        if not predicate_known(item["reachable_when"]):
            raise VulnDBError(f"{where} ({item['id']}): unknown reachable_when {item['reachable_when']!r}")
        vector = item.get("vector", "guest")
        impact = item.get("impact", "escape")
        if vector not in VECTORS or impact not in IMPACTS:
            raise VulnDBError(f"{where} ({item['id']}): vector must be one of {VECTORS}, impact one of {IMPACTS}")
        advisories = item.get("advisories") or []
        if not advisories:
            raise VulnDBError(f"{where} ({item['id']}): every entry must cite an advisory")
        known = {
            "id",
            "component",
            "affected",
            "fixed",
            "reachable_when",
            "vector",
            "impact",
            "summary",
            "advisories",
            "verified",
        }
        out.append(
            Vuln(
                item["id"],
                item["component"],
                affected,
                str(item.get("fixed", "")),
                item["reachable_when"],
                vector,
                impact,
                item["summary"],
                [str(a) for a in advisories],
                str(item.get("verified", "")),
                {k: v for k, v in item.items() if k not in known},
            )
        )
    return out


def parse_version(text: Any) -> tuple[int, ...] | None:
    if text is None:
        return None
    nums = re.findall(r"\d+", str(text).split("-")[0].split("+")[0])
    return tuple(int(n) for n in nums[:4]) if nums else None


def _cmp(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = max(len(a), len(b))
    a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
    return (a > b) - (a < b)


def version_status(vuln: Vuln, component: str, version: str | None) -> str:
    """'affected', 'not-affected', 'unknown' (no version, or ranges only described in words),
    or 'n/a' (the entry says nothing about this component)."""
    ranges = [a for a in vuln.affected if a.get("component", vuln.component) == component]
    if not ranges:
        return "n/a"
    v = parse_version(version)
    if v is None:
        return "unknown"
    undecidable = False
    for r in ranges:
        if "introduced" not in r and "fixed" not in r and "last_affected" not in r:
            undecidable = True
            continue
        lo = parse_version(r.get("introduced", "0")) or (0,)
        if _cmp(v, lo) < 0:
            continue
        if "fixed" in r and _cmp(v, parse_version(r["fixed"]) or (0,)) >= 0:
            continue
        if "last_affected" in r and _cmp(v, parse_version(r["last_affected"]) or (0,)) > 0:
            continue
        return "affected"
    return "unknown" if undecidable else "not-affected"


# --- reachability predicates on the model: True, False or None (cannot tell from what was collected) ---


def _facts_mention(vm: VM, token: str) -> bool:
    token = token.lower()
    return any(token in k.lower() or token in str(v.get("value", "")).lower() for k, v in vm.facts.items())


def _usb(vm: VM, host: Host | None) -> bool | None:
    if any(d.kind.startswith("usb") for d in vm.devices) or any(
        listener.kind == "usbredir" for listener in vm.listeners
    ):
        return True
    for k, v in vm.facts.items():
        if "controller.usb" in k.lower() or k.lower().endswith("usb.present") or "usb.model" in k.lower():
            return str(v.get("value")).lower() not in ("none", "false", "0")
    # libvirt and VMware add a USB controller unless told not to; a model without it cannot tell
    return None


def _fdc(vm: VM, host: Host | None) -> bool | None:
    if _facts_mention(vm, "floppy") or _facts_mention(vm, "isa-fdc"):
        return True
    machine = next((str(v.get("value")) for k, v in vm.facts.items() if k.endswith("machine")), None)
    if machine:
        return "q35" not in machine and "virt" not in machine
    return None if vm.platform in ("libvirt", "qemu", "proxmox") else False


PREDICATES: dict[str, Callable[[VM, Host | None], bool | None]] = {
    "any_vm": lambda vm, host: True,
    "kvm_guest": lambda vm, host: vm.platform in ("libvirt", "qemu", "proxmox"),
    "user_mode_nic": lambda vm, host: any(n.mode == "user" for n in vm.nics),
    "usb_controller": _usb,
    "fdc_present": _fdc,
    "vga_device": lambda vm, host: (
        True if any(listener.kind in ("vnc", "spice") for listener in vm.listeners) else None
    ),
    "vhost_net": lambda vm, host: any(
        (n.model or "").startswith("virtio") and n.mode not in ("user", "disconnected") for n in vm.nics
    ),
    # devices that must be named in the definition: absent from the model means absent
    "vhost_user_gpu": lambda vm, host: _facts_mention(vm, "vhost-user-gpu"),
    "sdhci_device": lambda vm, host: _facts_mention(vm, "sdhci"),
    "nested_virt": lambda vm, host: None if host is None or host.kvm is None else bool(host.kvm.nested),
    "drag_and_drop_enabled": lambda vm, host: (
        None if vm.channels.drag_and_drop == "unknown" else vm.channels.drag_and_drop != "disabled"
    ),
    "clipboard_enabled": lambda vm, host: (
        None if vm.channels.clipboard == "unknown" else vm.channels.clipboard != "disabled"
    ),
    "bluetooth_shared": lambda vm, host: (
        True
        if _facts_mention(vm, "bluetooth.present") and not _facts_mention(vm, 'bluetooth.present": false')
        else (None if vm.platform == "vmware" else False)
    ),
    "vmware_dhcp_network": lambda vm, host: (
        vm.platform == "vmware" and any(n.mode in ("nat", "host-only") for n in vm.nics)
    ),
    "hyperv_vmswitch_nic": lambda vm, host: vm.platform == "hyperv" and any(n.mode != "disconnected" for n in vm.nics),
    "vrde_listener": lambda vm, host: any(listener.kind in ("vrde", "rdp") for listener in vm.listeners),
    "slp_listening": lambda vm, host: (
        None if host is None or host.listeners is None else any(s.port == 427 for s in host.listeners)
    ),
}


def predicate_known(name: str) -> bool:
    base, _, _arg = name.partition(":")
    return name in PREDICATES or base in ("nic_model", "video_model")


@lru_cache(maxsize=256)
def reachability(name: str) -> Callable[[VM, Host | None], bool | None]:
    """The test a ``reachable_when`` name stands for, built once per name (the graph asks it for every VM
    and every candidate flaw: 50,000 times on a 10,000-VM fleet)."""
    base, _, arg = name.partition(":")
    if base == "nic_model":
        return lambda vm, host: any(
            (n.model or "") == arg or (arg == "virtio" and (n.model or "").startswith("virtio")) for n in vm.nics
        )
    if base == "video_model":

        def video_model(vm: VM, host: Host | None) -> bool | None:
            video = {k: v for k, v in vm.facts.items() if "video" in k.lower()}
            if not video:
                return None
            return any(arg in str(v.get("value", "")).lower() or arg in k.lower() for k, v in video.items())

        return video_model
    return PREDICATES[name]


def reachable(name: str, vm: VM, host: Host | None) -> bool | None:
    return reachability(name)(vm, host)


def components_for(vm: VM, host: Host | None) -> tuple[str, ...]:
    comps = _PLATFORM_COMPONENTS.get(vm.platform, ())
    if vm.platform == "vmware" and host is not None:
        comps = ("esxi",) if host.platform == "esxi" else ("vmware-workstation", "vmware-fusion")
    return comps


def component_version(component: str, vm: VM, host: Host | None) -> str | None:
    for key in (f"{component}.version", f"platform.{component}.version"):
        if key in vm.facts:
            return str(vm.facts[key].get("value"))
    versions = host.versions if host is not None else None
    if versions is not None:
        v = getattr(versions, component, None) or (versions.kernel if component == "linux-kernel" else None)
        if v:
            return str(v)
        if component in ("vmware-workstation", "vmware-fusion", "esxi") and versions.vmware:
            return str(versions.vmware)
    return None
