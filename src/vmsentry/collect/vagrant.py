"""Vagrantfiles: the machines, networks, forwarded ports and synced folders they declare.

A Vagrantfile is Ruby and is never executed. It is read statically, line by line: ``config.vm.define``
and ``config.vm.provider`` blocks (``do |x| ... end``, nesting counted by Ruby's block keywords), and in
them ``X.vm.network``, ``X.vm.synced_folder``, ``PROVIDER.setting = value`` and ``PROVIDER.customize
[...]``. Only literals are taken ("text", 'text', :symbol, numbers, true/false/nil, [arrays]); a
``#{}`` interpolation, a variable or a method call is "unknown" (the fact keeps its text). A machine
defined in a loop is read once, with its name as written. There is no Ruby parser for Python that is
kept up (tree-sitter would parse it, but nothing here evaluates Ruby), so this is a bounded reader.

Mapping (developer.hashicorp.com/vagrant/docs/networking, .../synced-folders, .../providers/virtualbox,
.../providers/hyperv; vagrant-libvirt's documentation for libvirt):

- ``"forwarded_port", guest:, host:, host_ip:, protocol:`` -> a forward; without ``host_ip`` it is bound
  to every host address ("If not specified, it will be bound to every IP");
- ``"private_network"``: VirtualBox host-only, libvirt a network in ``libvirt__forward_mode`` (nat by
  default); ``"public_network"``: VirtualBox bridged, libvirt macvtap on ``dev`` (``type: "bridge"``:
  bridged), Hyper-V the switch named by ``bridge`` (its type is not in the file: unknown);
- the first NIC is VirtualBox's NAT (with Vagrant's ssh forward on 127.0.0.1:2222), vagrant-libvirt's
  management network (``vagrant-libvirt``, NAT) or, on Hyper-V, a switch chosen at ``vagrant up``;
- the project folder is shared at /vagrant unless ``synced_folder ".", "/vagrant", disabled: true``
  (VirtualBox: vboxsf, Hyper-V: SMB, libvirt: NFS or rsync, chosen at ``vagrant up``);
- VirtualBox ``customize ["modifyvm", :id, "--clipboard-mode"|"--clipboard"|"--draganddrop", X]``,
  ``"--vrde", "on"``, ``"--nicN", "bridged"``; Hyper-V ``enable_enhanced_session_mode`` (clipboard and
  drives over RDP), ``vlan_id``, ``enable_virtualization_extensions``, ``vm_integration_services``;
  libvirt ``graphics_type``/``graphics_ip`` (vnc on 127.0.0.1), ``graphics_passwd``.
"""

from __future__ import annotations

import os
import re
from typing import Any

from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND, DeviceCap
from vmsentry.collect.hcl_reader import Computed
from vmsentry.collect.iac_node import read_script
from vmsentry.model import VM, Forward, InputError, Inventory, Listener, Nic, Share, Source

PROVIDERS = {"virtualbox": "virtualbox", "libvirt": "libvirt", "hyperv": "hyperv"}
_DEFINE = re.compile(r"^\s*(\w+)\.vm\.define\s+(.+?)\s*(?:,[^|]*)?\bdo\s*\|\s*(\w+)\s*\|\s*$")
_PROVIDER = re.compile(r"^\s*(\w+)\.vm\.provider\s+[:\"']?(\w+)[\"']?\s*(?:,[^|]*)?\bdo\s*\|\s*(\w+)\s*(?:,\s*\w+)?\|")
_OPENS = re.compile(r"^\s*(?:if|unless|while|until|case|begin|def|class|module|for)\b|\bdo\s*(?:\|[^|]*\|)?\s*$")
_ENDS = re.compile(r"^\s*end\b")
_CALL = re.compile(r"^\s*(\w+)\.(vm\.network|vm\.synced_folder|customize|[a-z_]\w*\s*=)\s*\(?(.*?)\)?\s*$")
_MAX_LINES = 200_000


def claims(path: str, head: bytes) -> bool:
    name = os.path.basename(path)
    return name == "Vagrantfile" or name.endswith(".Vagrantfile") or name.lower() == "vagrantfile"


def read(path: str, data: bytes | None = None) -> Inventory:
    text, inv = read_script(path, data, "a Vagrantfile")
    lines = _code_lines(text)
    if len(lines) > _MAX_LINES:
        inv.errors.append(InputError(path, f"more than {_MAX_LINES} lines; the rest not read"))
        lines = lines[:_MAX_LINES]
    machines: dict[str, dict] = {}
    shared: dict = {"networks": [], "folders": [], "providers": {}}
    stack: list[tuple[str, Any]] = []  # ("define", machine dict) | ("provider", (name, var, settings)) | ("other",)
    defines = DeviceCap(path, inv.errors, unit="machines in one Vagrantfile")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        machine = next((m for kind, m in reversed(stack) if kind == "define"), shared)
        define = _DEFINE.match(line)
        provider = _PROVIDER.match(line)
        if define:
            name = _value(define.group(2))
            name = str(name) if not isinstance(name, Computed) else name.text.strip("\"'")
            entry = machines.get(name)
            if entry is None:
                entry = {"networks": [], "folders": [], "providers": {}, "line": number}
                if defines.admit("config.vm.define", f"line {number}"):
                    machines[name] = entry  # past the cap the block is still followed, into a machine not kept
            stack.append(("define", entry))
            continue
        if provider:
            settings = machine["providers"].setdefault(provider.group(2), {"line": number, "set": {}, "customize": []})
            stack.append(("provider", (provider.group(3), settings)))
            continue
        if _ENDS.match(line):
            if stack:
                stack.pop()
            continue
        call = _CALL.match(line)
        if call:
            _statement(call, number, machine, stack)
        if _OPENS.search(line):
            stack.append(("other", None))
    if not machines:
        machines["default"] = {"networks": [], "folders": [], "providers": {}, "line": 1}
    for name, machine in machines.items():
        for provider in sorted(set(machine["providers"]) | set(shared["providers"])) or ["virtualbox"]:
            if provider in PROVIDERS:
                inv.vms.append(_vm(path, name, provider, machine, shared, inv.errors))
    return inv


def _code_lines(text: str) -> list[str]:
    """The lines with comments blanked (``#`` outside strings, ``=begin``..``=end``), line count kept."""
    out, in_doc = [], False
    for line in text.split("\n"):
        if in_doc:
            in_doc = not line.startswith("=end")
            out.append("")
            continue
        if line.startswith("=begin"):
            in_doc = True
            out.append("")
            continue
        quote, cut = None, len(line)
        for i, ch in enumerate(line):
            if quote:
                if ch == quote and line[i - 1] != "\\":
                    quote = None
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                cut = i
                break
        out.append(line[:cut].rstrip())
    return out


def _statement(call: re.Match, number: int, machine: dict, stack: list) -> None:
    var, what, rest = call.group(1), call.group(2), call.group(3)
    provider = next((p for kind, p in reversed(stack) if kind == "provider"), None)
    # each list keeps one past the cap, for _vm's error to name (it cuts shared + machine at the cap)
    if what == "vm.network":
        if len(machine["networks"]) <= MAX_DEVICES_PER_KIND:
            machine["networks"].append((_args(rest), number))
    elif what == "vm.synced_folder":
        if len(machine["folders"]) <= MAX_DEVICES_PER_KIND:
            machine["folders"].append((_args(rest), number))
    elif provider and var == provider[0]:
        if what == "customize":
            value = _value(rest)
            if isinstance(value, list) and len(provider[1]["customize"]) <= MAX_DEVICES_PER_KIND:
                provider[1]["customize"].append((value, number))
        else:
            provider[1]["set"][what.rstrip(" =")] = (_value(rest), number)


def _args(text: str) -> tuple[list, dict]:
    """A call's arguments: literals in order, and ``key: value`` / ``:key => value`` options."""
    positional, named = [], {}
    for item in _split(text):
        match = re.match(r"^(?::(\w+)\s*=>|(\w+):(?!:)|[\"'](\w+)[\"']\s*=>)\s*(.+)$", item, re.DOTALL)
        if match:
            named[match.group(1) or match.group(2) or match.group(3)] = _value(match.group(4))
        else:
            positional.append(_value(item))
    return positional, named


def _split(text: str) -> list[str]:
    items, depth, begin, quote = [], 0, 0, None
    for i, ch in enumerate(text):
        if quote:
            quote = None if ch == quote and text[i - 1] != "\\" else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[begin:i].strip())
            begin = i + 1
    items.append(text[begin:].strip())
    return [i for i in items if i]


def _value(text: str) -> Any:
    text = text.strip()
    if re.fullmatch(r'"[^"\\#]*"', text) or re.fullmatch(r"'[^'\\]*'", text):
        return text[1:-1]
    if re.fullmatch(r":\w+", text):
        return text[1:]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text == "nil":
        return None
    if text.startswith("[") and text.endswith("]"):
        return [_value(item) for item in _split(text[1:-1])]
    return Computed(text)


# ----------------------------------------------------------------------------------------- inventory


def _vm(path: str, name: str, provider: str, machine: dict, shared: dict, errors: list[InputError]) -> VM:
    vm = VM(name=name, platform=PROVIDERS[provider], source=Source(file=path))
    at = f"line {machine['line']}"
    vm.facts["vagrant.provider"] = {
        "value": provider,
        "at": at if provider in machine["providers"] or provider in shared["providers"] else "Vagrant's default",
    }
    settings = {
        **shared["providers"].get(provider, {}).get("set", {}),
        **machine["providers"].get(provider, {}).get("set", {}),
    }
    customize = shared["providers"].get(provider, {}).get("customize", []) + machine["providers"].get(provider, {}).get(
        "customize", []
    )
    for key, (value, line) in settings.items():
        vm.facts[f"vagrant.{provider}.{key}"] = {
            "value": str(value) if isinstance(value, Computed) else value,
            "at": f"line {line}",
        }
    _first_nic(vm, provider, settings)
    cap = DeviceCap(path, errors)
    at = lambda entry: f"line {entry[1]}"
    for (positional, named), line in cap.take(shared["networks"] + machine["networks"], "config.vm.network", at):
        _network(vm, provider, positional, named, line)
    _folders(vm, provider, list(cap.take(shared["folders"] + machine["folders"], "config.vm.synced_folder", at)))
    if provider == "virtualbox":
        _vbox_customize(vm, list(cap.take(customize, "customize", at)))
    elif provider == "hyperv":
        _hyperv(vm, settings)
    elif provider == "libvirt":
        _libvirt_graphics(vm, settings)
    return vm


def _first_nic(vm: VM, provider: str, settings: dict) -> None:
    if provider == "virtualbox":
        vm.nics.append(Nic(id="nic1", mode="nat", locator="Vagrant's default (adapter 1: NAT)", type="nat"))
        vm.forwards.append(Forward("tcp", [2222, 2222], [22, 22], "127.0.0.1", "nic1", "Vagrant's default ssh forward"))
    elif provider == "libvirt":
        if settings.get("mgmt_attach", (True, 0))[0] is False:
            return
        name = settings.get("management_network_name", ("vagrant-libvirt", 0))[0]
        mode = settings.get("management_network_mode", ("nat", 0))[0]
        vm.nics.append(
            Nic(
                id="nic1",
                mode=_LIBVIRT_MODE.get(str(mode), "unknown"),
                network=str(name),
                locator="vagrant-libvirt management network",
                type="network",
            )
        )
    elif provider == "hyperv":
        vm.nics.append(Nic(id="nic1", locator="Hyper-V switch chosen at vagrant up", type="vmswitch"))


_LIBVIRT_MODE = {"nat": "nat", "none": "isolated", "route": "routed", "open": "open", "veryisolated": "isolated"}


def _network(vm: VM, provider: str, positional: list, named: dict, line: int) -> None:
    kind = positional[0] if positional else None
    at = f"line {line}"
    if kind == "forwarded_port":
        guest, host = named.get("guest"), named.get("host")
        if isinstance(guest, int) and isinstance(host, int):
            address = named.get("host_ip")
            vm.forwards.append(
                Forward(
                    str(named.get("protocol") or "tcp"),
                    [host, host],
                    [guest, guest],
                    address if isinstance(address, str) else None,
                    None,
                    at,
                )
            )
        return
    nic = Nic(id=f"nic{len(vm.nics) + 1}", locator=at, ip=named.get("ip") if isinstance(named.get("ip"), str) else None)
    if kind == "private_network":
        if provider == "virtualbox":
            nic.mode, nic.type = "host-only", "hostonly"
        elif provider == "libvirt":
            nic.type = "network"
            nic.mode = _LIBVIRT_MODE.get(str(named.get("libvirt__forward_mode", "nat")), "unknown")
            nic.network = (
                named.get("libvirt__network_name") if isinstance(named.get("libvirt__network_name"), str) else None
            )
        else:
            return  # Hyper-V ignores private_network (docs: providers/hyperv/limitations)
    elif kind == "public_network":
        bridge = named.get("bridge") if isinstance(named.get("bridge"), str) else None
        if provider == "virtualbox":
            nic.mode, nic.type, nic.bridge = "bridged", "bridged", bridge
        elif provider == "libvirt":
            dev = named.get("dev") if isinstance(named.get("dev"), str) else None
            if named.get("type") == "bridge":
                nic.mode, nic.type, nic.bridge = "bridged", "bridge", dev
            else:
                nic.mode, nic.type, nic.detail = (
                    "direct",
                    "direct",
                    f"{dev or 'eth0'} mode={named.get('mode', 'bridge')}",
                )
        else:  # Hyper-V: bridge names the switch of the VM's one adapter (asked for at vagrant up otherwise)
            vm.nics[0].network, vm.nics[0].locator = bridge, at
            return
    else:
        return
    vm.nics.append(nic)


def _folders(vm: VM, provider: str, folders: list) -> None:
    default_kind = {"virtualbox": "vboxsf", "hyperv": "smb", "libvirt": "vagrant-default"}[provider]
    project_shared = True
    for (positional, named), line in folders:
        if len(positional) < 2:
            continue
        host, guest = positional[0], positional[1]
        if host == "." and guest == "/vagrant":
            project_shared = False
        if named.get("disabled") is True or named.get("type") == "rsync":
            continue  # rsync copies once at vagrant up: nothing stays shared
        kind = named.get("type") if isinstance(named.get("type"), str) else default_kind
        kind = "vboxsf" if kind == "virtualbox" else kind
        readonly = "ro" in str(named.get("mount_options", "")) or named.get("nfs_export") is False
        vm.shares.append(Share(kind, _plain(host), _plain(guest), not readonly, f"line {line}"))
    if project_shared:
        vm.shares.append(
            Share(default_kind, ".", "/vagrant", True, "Vagrant's default: the project folder at /vagrant")
        )


def _plain(value: Any) -> str | None:
    return value.text if isinstance(value, Computed) else None if value is None else str(value)


_VBOX_CHANNEL = {
    "disabled": "disabled",
    "hosttoguest": "host-to-guest",
    "guesttohost": "guest-to-host",
    "bidirectional": "bidirectional",
}


def _vbox_customize(vm: VM, customize: list) -> None:
    for args, line in customize:
        words = [str(a) for a in args]
        for i, word in enumerate(words[:-1]):
            value = words[i + 1].lower()
            if word in ("--clipboard", "--clipboard-mode"):
                vm.channels.clipboard = _VBOX_CHANNEL.get(value, "unknown")
            elif word in ("--draganddrop", "--drag-and-drop"):
                vm.channels.drag_and_drop = _VBOX_CHANNEL.get(value, "unknown")
            elif word == "--vrde" and value == "on":
                vm.facts["vbox.VRDE.enabled"] = {"value": "true", "at": f"line {line}"}
                vm.listeners.append(Listener("vrde", "tcp", None, 3389, "none", f"line {line}"))
            elif re.fullmatch(r"--nic\d", word):
                nic_id = f"nic{word[5:]}"
                mode = {
                    "bridged": "bridged",
                    "hostonly": "host-only",
                    "nat": "nat",
                    "intnet": "internal",
                    "natnetwork": "nat",
                    "none": "disconnected",
                }
                for nic in vm.nics:
                    if nic.id == nic_id:
                        nic.mode, nic.locator = mode.get(value, "unknown"), f"line {line}"
                        break
                else:
                    vm.nics.append(Nic(id=nic_id, mode=mode.get(value, "unknown"), locator=f"line {line}", type=value))


def _hyperv(vm: VM, settings: dict) -> None:
    enhanced, line = settings.get("enable_enhanced_session_mode", (None, 0))
    if isinstance(enhanced, bool):
        channel = "bidirectional" if enhanced else "disabled"
        vm.channels.clipboard = vm.channels.drag_and_drop = channel
        vm.facts["hyperv.host.EnableEnhancedSessionMode"] = {"value": enhanced, "at": f"line {line}"}
    vlan, line = settings.get("vlan_id", (None, 0))
    if vlan is not None and vm.nics:
        vm.facts[f"hyperv.nic.{vm.nics[0].id}.Vlan.OperationMode"] = {"value": "Access", "at": f"line {line}"}
        vm.facts[f"hyperv.nic.{vm.nics[0].id}.Vlan.AccessVlanId"] = {"value": _plain(vlan), "at": f"line {line}"}
    services, line = settings.get("vm_integration_services", (None, 0))
    if isinstance(services, Computed) and re.search(r"guest_service_interface:\s*true", services.text):
        vm.facts["hyperv.integration.Guest Service Interface"] = {"value": True, "at": f"line {line}"}
        vm.facts["hyperv.integration.collected"] = {"value": True, "at": f"line {line}"}
        vm.shares.append(Share("guest-service", None, "Copy-VMFile", True, f"line {line}"))


def _libvirt_graphics(vm: VM, settings: dict) -> None:
    kind, line = settings.get("graphics_type", ("vnc", 0))
    if kind not in ("vnc", "spice"):
        return
    address, at = settings.get("graphics_ip", ("127.0.0.1", line))
    password = settings.get("graphics_passwd", (None, 0))[0]
    port = settings.get("graphics_port", (None, 0))[0]
    vm.listeners.append(
        Listener(
            str(kind),
            "tcp",
            address if isinstance(address, str) else "default",
            port if isinstance(port, int) and port > 0 else None,
            "password" if password else "none",
            f"line {at}" if at else "vagrant-libvirt default (graphics_ip 127.0.0.1)",
        )
    )
