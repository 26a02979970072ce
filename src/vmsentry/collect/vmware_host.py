"""VMware host-side networking: the files Workstation/Fusion keep on the host, and the ESXi export.

Workstation (Linux) / Fusion (macOS) / Workstation (Windows) files, each read into ``Network`` assets
named ``vmnetN`` (platform ``vmware``); ``vmware_link`` then resolves custom NICs and ties NAT port
forwards to the VMs they reach:

* ``netmap.conf`` (``/etc/vmware/netmap.conf``): ``networkN.name`` / ``networkN.device`` - the names the
  UI shows for each vmnet (the ``ethernetN.networkName`` a .vmx may carry);
* ``networking`` (``/etc/vmware/networking``, ``/Library/Preferences/VMware Fusion/networking``):
  ``answer VNET_N_NAT yes`` = NAT, ``answer VNET_N_HOSTONLY_SUBNET``/``_NETMASK`` = host-side subnet
  (host-only unless NAT), ``add_bridge_mapping IF N`` / ``answer VNET_N_INTERFACE IF`` = bridged,
  ``answer VNET_N_DHCP yes`` = VMware's DHCP server, ``answer VNET_N_VIRTUAL_ADAPTER yes`` = the host has
  an address on it;
* ``nat.conf`` (``/etc/vmware/vmnet8/nat/nat.conf``, ``.../VMware Fusion/vmnet8/nat.conf``, Windows
  ``C:\\ProgramData\\VMware\\vmnetnat.conf``): ``[incomingtcp]`` / ``[incomingudp]`` lines
  ``HOSTPORT = GUESTIP:GUESTPORT`` are host-to-guest port forwards on every host address (the shipped
  file warns "anyone can enter into your VM through these"); ``[host] ip`` is the NAT gateway;
* ``dhcpd.conf`` (``/etc/vmware/vmnetN/dhcpd/dhcpd.conf``, Windows ``vmnetdhcp.conf``): ISC dhcpd syntax;
  ``subnet``/``range`` and ``host NAME { hardware ethernet MAC; fixed-address IP; }`` pin guest IPs.

ESXi: the JSON document ``scripts/collectors/esxi-export.ps1`` writes (schema ``vmsentry.esxi-export/1``):
standard and distributed switches, port groups with their security policy (promiscuous mode, MAC address
changes, forged transmits; ``null`` = inherited), and each VM's NICs and advanced settings. Port groups
become ``Network`` assets with the *effective* policy in facts: a port group's own setting, else its
switch's, else the default - standard vSwitch: promiscuous Reject, MAC changes Accept, forged transmits
Accept; distributed port group: all Reject (VMware SCG 9.1 esx-9.network-standard-reject-*, VCSA-80-000268-270).
"""

from __future__ import annotations

import ipaddress
import os
import re

from vmsentry.collect.source_file import NOT_UTF8, BadInput, decode_text, looks_binary, parse_json, read_bytes
from vmsentry.model import InputError, Inventory, Network, Source

PLATFORM = "vmware"
EXPORT_SCHEMA = "vmsentry.esxi-export/1"

_VMNET_IN_PATH = re.compile(r"vmnet(\d+)", re.IGNORECASE)
_ANSWER = re.compile(r"answer\s+VNET_(\d+)_([A-Z0-9_]+)\s+(.*)$")
_BRIDGE_MAP = re.compile(r"add_bridge_mapping\s+(\S+)\s+(\d+)")
_NETMAP = re.compile(r'network(\d+)\.(name|device)\s*=\s*"?([^"]*)"?\s*$', re.IGNORECASE)
_NAT_FWD = re.compile(r"(\d+)\s*=\s*([0-9A-Fa-f.:]+?):(\d+)\s*$")
_DHCP_TOKENS = re.compile(r'"[^"]*"|[{};]|[^\s{};"]+')

STANDARD_DEFAULTS = {"AllowPromiscuous": False, "MacChanges": True, "ForgedTransmits": True}
DISTRIBUTED_DEFAULTS = {"AllowPromiscuous": False, "MacChanges": False, "ForgedTransmits": False}


def kind_of(path: str, head: bytes) -> str | None:
    base = os.path.basename(path).lower()
    if b"\x00" in head:
        return None
    if base.endswith(".json"):
        return "esxi" if EXPORT_SCHEMA.encode() in head else None
    if base == "netmap.conf":
        return "netmap"
    if base == "networking" and (b"answer VNET_" in head or head.startswith(b"VERSION=")):
        return "networking"
    if base in ("nat.conf", "vmnetnat.conf") and (b"[incomingtcp]" in head or b"[host]" in head):
        return "nat"
    if base == "vmnetdhcp.conf" or (base == "dhcpd.conf" and "vmnet" in path.lower()):
        return "dhcp"
    return None


def claims(path: str, head: bytes) -> bool:
    return kind_of(path, head) is not None


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    kind = kind_of(path, data[:4096])
    if kind == "esxi":
        return read_esxi_export(path, data)
    if looks_binary(data):
        raise BadInput("binary data, not a VMware host networking file")
    text, lossy = decode_text(data)
    inv = Inventory()
    if lossy:
        inv.errors.append(InputError(path, NOT_UTF8))
    reader = {"netmap": _read_netmap, "networking": _read_networking, "nat": _read_nat, "dhcp": _read_dhcp}[kind]
    reader(path, text, inv)
    if not (inv.networks or inv.errors):
        raise BadInput(f"no vmnet settings found in this {kind} file")
    return inv


def _net(inv: Inventory, name: str, path: str, cache: dict[str, Network]) -> Network:
    net = cache.get(name)
    if net is None:
        net = cache[name] = Network(name=name, platform=PLATFORM, source=Source(file=path))
        inv.networks.append(net)
    return net


def _read_netmap(path: str, text: str, inv: Inventory) -> None:
    names: dict[str, dict[str, tuple[str, int]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _NETMAP.match(s)
        if m is None:
            inv.errors.append(InputError(path, f"line {lineno}: not a networkN.name/device line; ignored"))
            continue
        names.setdefault(m.group(1), {})[m.group(2).lower()] = (m.group(3), lineno)
    cache: dict[str, Network] = {}
    for entry in names.values():
        device = entry.get("device")
        if not device:
            continue
        net = _net(inv, os.path.basename(device[0]).lower(), path, cache)
        net.locator = f"line {device[1]}"
        if "name" in entry:
            net.facts["vmware.netmap.name"] = {"value": entry["name"][0], "at": f"line {entry['name'][1]}"}


def _read_networking(path: str, text: str, inv: Inventory) -> None:
    cache: dict[str, Network] = {}
    answers: dict[str, dict[str, tuple[str, int]]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith("VERSION="):
            continue
        m = _ANSWER.match(s)
        if m is not None:
            answers.setdefault(m.group(1), {})[m.group(2)] = (m.group(3).strip(), lineno)
            continue
        m = _BRIDGE_MAP.match(s)
        if m is not None:
            answers.setdefault(m.group(2), {})["INTERFACE"] = (m.group(1), lineno)
            continue
        if s.startswith(("answer ", "add_", "remove_")):
            continue  # other settings (NAT6, ...) that do not change the mode
        inv.errors.append(InputError(path, f"line {lineno}: not an 'answer VNET_N_...' line; ignored"))
    for number, settings in sorted(answers.items(), key=lambda kv: int(kv[0])):
        net = _net(inv, f"vmnet{number}", path, cache)
        if _is_yes(settings, "NAT"):
            net.mode, why = "nat", settings["NAT"]
        elif "INTERFACE" in settings:
            net.mode, why = "bridged", settings["INTERFACE"]
            net.bridge = settings["INTERFACE"][0]
        elif "HOSTONLY_SUBNET" in settings:
            net.mode, why = "host-only", settings["HOSTONLY_SUBNET"]
        else:
            why = None
        net.locator = f"line {why[1]}" if why else None
        subnet, mask = settings.get("HOSTONLY_SUBNET"), settings.get("HOSTONLY_NETMASK")
        if subnet and mask:
            net.subnets.append(_cidr(subnet[0], mask[0]))
        net.dhcp = _is_yes(settings, "DHCP")
        for key, (value, lineno) in settings.items():
            net.facts[f"vmware.networking.VNET_{number}_{key}"] = {"value": value, "at": f"line {lineno}"}


def _is_yes(settings: dict[str, tuple[str, int]], key: str) -> bool:
    """An 'answer VNET_N_KEY yes' line; an absent key is no."""
    return settings.get(key, ("no",))[0].lower() == "yes"


def _cidr(subnet: str, mask: str) -> str:
    try:
        bits = sum(bin(int(o)).count("1") for o in mask.split("."))
        return f"{subnet}/{bits}"
    except ValueError:
        return subnet


def _vmnet_from_path(path: str, default: str) -> str:
    m = _VMNET_IN_PATH.findall(path.replace("vmnetnat", "").replace("vmnetdhcp", ""))
    return f"vmnet{m[-1]}" if m else default


def _read_nat(path: str, text: str, inv: Inventory) -> None:
    name = _vmnet_from_path(path, "vmnet8")  # Windows vmnetnat.conf serves the NAT network, vmnet8 by default
    net = Network(name=name, platform=PLATFORM, mode="nat", source=Source(file=path))
    section = None
    incoming: list[dict] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not s:
            continue
        if s.startswith("[") and s.endswith("]"):
            section = s[1:-1].strip().lower()
            continue
        if section == "host":
            key, _, value = s.partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "ip":
                net.host_address = value
            elif key == "device":
                net.name = os.path.basename(value).lower() or net.name
            net.facts[f"vmware.nat.host.{key}"] = {"value": value, "at": f"line {lineno}"}
        elif section in ("incomingtcp", "incomingudp"):
            m = _NAT_FWD.match(s)
            if m is None:
                inv.errors.append(
                    InputError(path, f"line {lineno}: [{section}] entry is not 'HOSTPORT = GUESTIP:GUESTPORT'; ignored")
                )
                continue
            proto = "tcp" if section == "incomingtcp" else "udp"
            fwd = {
                "protocol": proto,
                "host_port": int(m.group(1)),
                "guest_ip": m.group(2),
                "guest_port": int(m.group(3)),
                "at": f"line {lineno}, [{section}]",
                "file": path,
            }
            incoming.append(fwd)
            net.forwards.append(f"{proto} *:{fwd['host_port']} -> {fwd['guest_ip']}:{fwd['guest_port']}")
    net.facts["vmware.nat.incoming"] = {"value": incoming, "at": "[incomingtcp]/[incomingudp]"}
    inv.networks.append(net)


def _read_dhcp(path: str, text: str, inv: Inventory) -> None:
    """Tokenises ISC dhcpd syntax: enough for subnet/range/host/fixed-address/hardware ethernet."""
    tokens: list[tuple[str, int]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0]
        tokens.extend((t, lineno) for t in _DHCP_TOKENS.findall(body))
    subnets: list[tuple[str, str]] = []
    hosts: list[dict] = []
    own_hosts: list[dict] = []
    stack: list[tuple[str, str]] = []
    statement: list[tuple[str, int]] = []
    current_host: dict | None = None
    for tok, lineno in tokens:
        if tok == "{":
            words = [t for t, _ in statement]
            if words[:1] == ["subnet"] and len(words) >= 4:
                subnets.append((words[1], words[3]))
                stack.append(("subnet", words[1]))
            elif words[:1] == ["host"] and len(words) >= 2:
                current_host = {"name": words[1].strip('"'), "at": f"line {statement[0][1]}"}
                stack.append(("host", words[1]))
            else:
                stack.append(("other", ""))
            statement = []
        elif tok == "}":
            if not stack:
                inv.errors.append(InputError(path, f"line {lineno}: '}}' without a matching '{{'; ignored"))
                continue
            kind, _ = stack.pop()
            if kind == "host" and current_host is not None:
                if current_host.get("mac") and current_host.get("ip"):
                    hosts.append(current_host)
                if current_host["name"].lower().startswith("vmnet") and current_host.get("ip"):
                    own_hosts.append(current_host)
                current_host = None
            statement = []
        elif tok == ";":
            words = [t for t, _ in statement]
            if current_host is not None and words[:2] == ["hardware", "ethernet"] and len(words) > 2:
                current_host["mac"] = words[2].lower()
            elif current_host is not None and words[:1] == ["fixed-address"] and len(words) > 1:
                current_host["ip"] = words[1]
            statement = []
        else:
            statement.append((tok, lineno))
    if stack:
        inv.errors.append(InputError(path, f"{len(stack)} block(s) not closed at the end of the file"))
    # Linux/Fusion keep one file per vmnet (vmnetN/dhcpd/dhcpd.conf); Windows' vmnetdhcp.conf holds every
    # vmnet's subnet, each named by the host's own adapter entry (host VMnetN { fixed-address ...; }).
    own = {h["name"].lower(): h["ip"] for h in own_hosts}
    by_path = _vmnet_from_path(path, "")
    nets: list[tuple[Network, ipaddress.IPv4Network | None]] = []
    for subnet, mask in subnets or [("", "")]:
        cidr = _cidr(subnet, mask) if subnet else None
        try:
            block = ipaddress.ip_network(cidr, strict=False) if cidr else None
        except ValueError:
            block = None
        name = by_path
        if not name:
            name = next((n for n, ip in own.items() if block is not None and _in(ip, block)), "")
        if not name:
            name = "vmnet8" if len(subnets) <= 1 else f"dhcp-subnet-{subnet}"
        net = Network(name=name, platform=PLATFORM, source=Source(file=path), dhcp=bool(subnet))
        if cidr:
            net.subnets = [cidr]
        ip = own.get(name)
        if ip:
            net.host_address = ip
        net.facts["vmware.dhcp.hosts"] = {"value": [], "at": "host { hardware ethernet; fixed-address; } blocks"}
        nets.append((net, block))
    for h in hosts:
        if h["name"].lower().startswith("vmnet"):
            continue
        target = next((n for n, b in nets if b is not None and _in(h["ip"], b)), nets[0][0])
        target.facts["vmware.dhcp.hosts"]["value"].append(h)
    inv.networks.extend(n for n, _ in nets)


def _in(ip: str, block) -> bool:
    try:
        return ipaddress.ip_address(ip) in block
    except ValueError:
        return False


# ---------------------------------------------------------------- ESXi export (PowerCLI JSON)


def _policy(raw: dict | None) -> dict:
    raw = raw or {}
    return {k: raw.get(k) for k in ("AllowPromiscuous", "MacChanges", "ForgedTransmits")}


def read_esxi_export(path: str, data: bytes) -> Inventory:
    doc = parse_json(data, "ESXi export is not UTF-8 JSON")
    if not isinstance(doc, dict) or doc.get("schema") != EXPORT_SCHEMA:
        raise BadInput(f"not a {EXPORT_SCHEMA} document")
    inv = Inventory()
    switches: dict[tuple[str, str], dict] = {}
    for i, sw in enumerate(doc.get("switches") or []):
        if not isinstance(sw, dict) or not sw.get("name"):
            inv.errors.append(InputError(path, f"switches[{i}]: no name; ignored"))
            continue
        switches[(sw.get("host") or "", sw["name"])] = sw
    for i, pg in enumerate(doc.get("portgroups") or []):
        if not isinstance(pg, dict) or not pg.get("name"):
            inv.errors.append(InputError(path, f"portgroups[{i}]: no name; ignored"))
            continue
        inv.networks.append(_portgroup(pg, i, switches, path))
    # ESXi hosts are named on their VMs and port groups (vm.host, network.host) but not added as Host
    # entries: a lone Host would be taken as the host of every other VM in a mixed scan, and vmsentry's
    # host rules are for Linux hosts.
    from vmsentry.collect.vmware_vmx import build_vm

    for i, raw in enumerate(doc.get("vms") or []):
        if not isinstance(raw, dict) or not raw.get("name"):
            inv.errors.append(InputError(path, f"vms[{i}]: no name; ignored"))
            continue
        where = f"vms[{i}] {raw['name']}"
        entries: dict[str, tuple[str, str, str]] = {}
        for key, value in (raw.get("advanced") or {}).items():
            entries[str(key).lower()] = (str(value), f"{where} advanced", str(key))
        entries.setdefault("displayname", (raw["name"], where, "name"))
        if raw.get("uuid"):
            entries["uuid.bios"] = (str(raw["uuid"]), where, "uuid")
        entries["vc.uuid"] = entries.get("vc.uuid") or (str(raw.get("instance_uuid") or ""), where, "instance_uuid")
        for n, nic in enumerate(raw.get("nics") or []):
            if not isinstance(nic, dict):
                continue
            pre = f"ethernet{n}."
            loc = f"{where} nics[{n}]"
            entries[pre + "present"] = ("TRUE", loc, "present")
            if nic.get("network"):
                key = "dvs.portgroupid" if nic.get("distributed") else "networkname"
                entries[pre + key] = (str(nic["network"]), loc, "network")
            if nic.get("mac"):
                entries[pre + "addresstype"] = ("static", loc, "mac")
                entries[pre + "address"] = (str(nic["mac"]), loc, "mac")
            if nic.get("type"):
                entries[pre + "virtualdev"] = (str(nic["type"]), loc, "type")
            if nic.get("start_connected") is False:
                entries[pre + "startconnected"] = ("FALSE", loc, "start_connected")
        vm = build_vm(entries, path, errors=inv.errors)
        vm.source = Source(file=path)
        vm.host = raw.get("host") or None
        if raw.get("vmx_path"):
            vm.facts["esxi.vmx_path"] = {"value": raw["vmx_path"], "at": where}
        if raw.get("migrate_encryption"):
            vm.facts["vmx.migrate.encryptionMode"] = {"value": raw["migrate_encryption"], "at": where}
        if raw.get("ft_encryption"):
            vm.facts["vmx.ftcpt.ftEncryptionMode"] = {"value": raw["ft_encryption"], "at": where}
        inv.vms.append(vm)
    if not (inv.networks or inv.vms or inv.errors):
        raise BadInput("ESXi export holds no switches, port groups or VMs")
    return inv


def _portgroup(pg: dict, index: int, switches: dict, path: str) -> Network:
    host = pg.get("host") or ""
    distributed = bool(pg.get("distributed"))
    sw = switches.get((host, pg.get("vswitch") or "")) or switches.get(("", pg.get("vswitch") or "")) or {}
    own, parent = _policy(pg.get("policy")), _policy(sw.get("policy"))
    defaults = DISTRIBUTED_DEFAULTS if distributed else STANDARD_DEFAULTS
    where = f"portgroups[{index}] {pg['name']}"
    net = Network(
        name=pg["name"],
        platform=PLATFORM,
        mode="bridged",
        bridge=pg.get("vswitch"),
        source=Source(file=path),
        host=host or None,
        locator=where,
    )
    for key in ("AllowPromiscuous", "MacChanges", "ForgedTransmits"):
        if own[key] is not None:
            value, origin = own[key], "port group"
        elif parent[key] is not None:
            value, origin = parent[key], f"switch {sw.get('name')}"
        else:
            value, origin = (
                defaults[key],
                ("distributed port group default" if distributed else "standard vSwitch default"),
            )
        net.facts[f"esxi.security.{key}"] = {"value": bool(value), "at": f"{where} ({origin})"}
    if pg.get("vlan") is not None:
        net.facts["esxi.vlan"] = {"value": pg.get("vlan"), "at": where}
    net.facts["esxi.portgroup.distributed"] = {"value": distributed, "at": where}
    if sw.get("nics"):
        net.facts["esxi.switch.uplinks"] = {"value": list(sw["nics"]), "at": f"switch {sw.get('name')}"}
    return net
