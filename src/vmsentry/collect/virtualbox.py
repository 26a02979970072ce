"""VirtualBox: ``.vbox`` machine files, the global ``VirtualBox.xml``, and ``VBoxManage showvminfo
--machinereadable`` output (read by ``virtualbox_showvminfo``).

Element and attribute names and their defaults come from VirtualBox's schema
``src/VBox/Main/xml/VirtualBox-settings.xsd`` and, where the two differ, from the code that reads the
file, ``src/VBox/Main/xml/Settings.cpp`` (VirtualBox/virtualbox, read through the code index). Where a
default depends on the settings version (``<VirtualBox version="1.19-linux">``) this module applies the
one for the file's version:

* ``Adapter@enabled`` default false (XSD ``TNetworkAdapter``); an adapter without an attachment element
  (other than ``DisabledModes``) is not attached (``NetworkAttachmentType_Null``);
* ``Adapter@cable`` default true from settings 1.16 (VirtualBox 5.1), false before (Settings.cpp
  ``NetworkAdapter::areDefaultSettings``);
* ``Adapter@promiscuousModePolicy`` default ``Deny`` (XSD);
* ``NAT@localhost-reachable``: true before settings 1.19 (VirtualBox 7.0), false from 1.19 on
  (Settings.cpp ``NAT::areLocalhostReachableDefaultSettings``, bugref 9896; the XSD's ``default="true"``
  is the pre-7.0 value);
* ``NAT/Forwarding@proto``: 1 = TCP, 0 = UDP (VirtualBox.xidl ``NATProtocol``); ``@hostip`` empty = every
  host address;
* ``RemoteDisplay@enabled``: true before settings 1.16, false from 1.16 on (Settings.cpp
  ``VRDESettings``: "default for old VMs, for new ones it's false"); ``@authType`` default ``Null`` = no
  authentication; ``VRDEProperties`` ``TCP/Ports`` default 3389, ``TCP/Address`` empty = every address;
* ``SharedFolder@writable`` default true, ``@autoMount`` default false, ``@symlinkPolicy`` default
  ``forbidden`` (XSD ``TSharedFolder``);
* ``Clipboard@mode`` default ``Disabled``, ``@fileTransfersEnabled`` default false (XSD ``TClipboard``);
  no ``DragAndDrop`` element = ``Disabled`` (Settings.cpp ``Hardware``: ``dndMode(DnDMode_Disabled)``);
* ``UART/Port@server`` default false; ``hostMode="TCP"`` with ``server="true"`` listens on ``@path``
  (a port number);
* ``Teleporter@enabled`` default false; an empty ``@address`` listens on every address.

Secrets (``Teleporter@password``, VRDE ``VNCPassword``) are recorded as present only.
"""

from __future__ import annotations

import os

from lxml import etree

from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.source_file import BadInput, parse_xml_documents, read_bytes
from vmsentry.model import VM, Device, Forward, InputError, Inventory, Listener, Network, Nic, Share, Snapshot, Source

PLATFORM = "virtualbox"
SECRET = "<set>"
NAMESPACES = ("http://www.virtualbox.org/", "http://www.innotek.de/VirtualBox-settings")

_ATTACHMENT_MODE = {
    "NAT": "user",  # per-VM NAT engine inside the VM process, like QEMU's slirp
    "NATNetwork": "nat",
    "BridgedInterface": "bridged",
    "HostInterface": "bridged",
    "InternalNetwork": "internal",
    "HostOnlyInterface": "host-only",
    "HostOnlyNetwork": "host-only",
    "GenericInterface": "unknown",
    "CloudNetwork": "unknown",
}
# VirtualBox's own values in lower case, the same in .vbox files and in VBoxManage output
# (virtualbox_showvminfo.py): clipboard and drag-and-drop modes, VRDE auth types
CLIPBOARD_MODES = {
    "disabled": "disabled",
    "hosttoguest": "host-to-guest",
    "guesttohost": "guest-to-host",
    "bidirectional": "bidirectional",
}
VRDE_AUTH = {"null": "none", "external": "password", "guest": "password"}


def claims(path: str, head: bytes) -> bool:
    lower = path.lower()
    if lower.endswith((".vbox", ".vbox-prev")) or os.path.basename(lower) in ("virtualbox.xml", "virtualbox.xml-prev"):
        return True
    return b"<VirtualBox" in head and (b"virtualbox.org" in head or b"innotek.de" in head)


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    roots = parse_xml_documents(data)
    root = roots[0]
    ns, local = _split(root.tag)
    if local != "VirtualBox":
        raise BadInput(f"root element <{local}> is not <VirtualBox>: not a VirtualBox settings file")
    reader = _Reader(path, ns, root.get("version") or "")
    machine = root.find(reader.q("Machine"))
    glob = root.find(reader.q("Global"))
    if machine is None and glob is None:
        raise BadInput("<VirtualBox> holds neither <Machine> nor <Global>")
    if machine is not None:
        reader.machine(machine)
    if glob is not None:
        reader.global_settings(glob)
    return reader.inv


def _split(tag: str) -> tuple[str | None, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes", "on")


def _int(value: str | None) -> int | None:
    try:
        return int(str(value).strip(), 0)
    except (TypeError, ValueError):
        return None


def settings_version(version: str) -> tuple[int, int]:
    """'1.19-linux' -> (1, 19); unreadable -> (1, 0)."""
    head = version.split("-", 1)[0]
    try:
        major, minor = head.split(".", 1)
        return int(major), int(minor)
    except ValueError:
        return (1, 0)


def _loc(el: etree._Element, predicate: str = "") -> str:
    """'line N, /VirtualBox/Machine/Hardware/Network/Adapter[@slot='0']' (names without namespace)."""
    names = []
    node = el
    while node is not None:
        tag = node.tag
        names.append(tag[tag.rfind("}") + 1 :])
        node = node.getparent()
    names.reverse()
    return f"line {el.sourceline}, /{'/'.join(names)}{predicate}"


_TAGS: dict[str | None, dict[str, str]] = {}


class _Reader:
    def __init__(self, path: str, ns: str | None, version: str) -> None:
        self.path = path
        self.ns = ns
        self.version = version
        self.sv = settings_version(version)
        self.inv = Inventory()
        self._q = _TAGS.setdefault(ns, {})
        self._paths: dict = {}
        self.cap = DeviceCap(path, self.inv.errors)  # one <Machine> per settings file: the per-VM cap

    def q(self, name: str) -> str:
        try:
            return self._q[name]
        except KeyError:
            tag = self._q[name] = f"{{{self.ns}}}{name}" if self.ns else name
            return tag

    def loc(self, el: etree._Element, predicate: str = "") -> str:
        """As _loc, with the parent's path computed once per parent element."""
        parent = el.getparent()
        if parent is None:
            return _loc(el, predicate)
        base = self._paths.get(parent)
        if base is None:
            base = self._paths[parent] = _loc(parent).partition(", ")[2]
        tag = el.tag
        return f"line {el.sourceline}, {base}/{tag[tag.rfind('}') + 1 :]}{predicate}"

    def qp(self, path: str) -> str:
        try:
            return self._q["/" + path]
        except KeyError:
            full = self._q["/" + path] = "/".join(self.q(p) for p in path.split("/"))
            return full

    def local(self, el: etree._Element) -> str:
        tag = el.tag
        return tag.rpartition("}")[2] if isinstance(tag, str) else ""

    # ------------------------------------------------------------ machine
    def machine(self, m: etree._Element) -> None:
        name = m.get("name") or os.path.splitext(os.path.basename(self.path))[0]
        uuid = (m.get("uuid") or "").strip("{}").lower() or None
        vm = VM(name=name, platform=PLATFORM, uuid=uuid, source=Source(file=self.path))
        vm.facts["vbox.settings.version"] = {"value": self.version, "at": "line 1, /VirtualBox/@version"}
        hw = m.find(self.q("Hardware"))
        if hw is None:
            self.inv.errors.append(
                InputError(self.path, f"{self.loc(m)}: <Machine> has no <Hardware>; only its name read")
            )
            self.inv.vms.append(vm)
            return
        self.network(vm, hw)
        self.vrde(vm, hw)
        self.uart(vm, hw)
        self.shares(vm, hw)
        self.channels(vm, hw)
        self.devices(vm, hw)
        self.teleporter(vm, m)
        self.snapshots(vm, m)
        self.disks(vm, m)
        self.inv.vms.append(vm)

    def network(self, vm: VM, hw: etree._Element) -> None:
        net = hw.find(self.q("Network"))
        if net is None:
            return
        new_defaults = self.sv >= (1, 16)
        for ad in self.cap.take(net.iterchildren(self.q("Adapter")), "Adapter", self.loc):
            enabled = ad.get("enabled")
            if enabled is None or enabled.strip().lower() not in ("true", "1", "yes", "on"):
                continue  # XSD default false: most of the eight slots
            slot = _int(ad.get("slot"))
            if slot is None:
                self.inv.errors.append(InputError(self.path, f"{self.loc(ad)}: <Adapter> without a slot; ignored"))
                continue
            nic_id = f"nic{slot + 1}"
            attach = None
            for child in ad:
                tag = child.tag
                if type(tag) is str and tag[tag.rfind("}") + 1 :] in _ATTACHMENT_MODE:
                    attach = child
                    break
            locator = self.loc(ad, f"[@slot='{slot}']")
            mac = ad.get("MACAddress")
            if mac and len(mac) == 12:
                mac = ":".join(mac[i : i + 2] for i in range(0, 12, 2)).lower()
            nic = Nic(
                id=nic_id,
                mac=mac or None,
                model=ad.get("type") or ("Am79C973" if new_defaults else "Am79C970A"),
                locator=locator,
                connected=_bool(ad.get("cable"), new_defaults),
            )
            if attach is None:
                nic.mode, nic.type = "disconnected", "null"
            else:
                kind = self.local(attach)
                nic.type = kind
                nic.mode = _ATTACHMENT_MODE[kind]
                nic.locator = f"line {attach.sourceline}, {locator.partition(', ')[2]}/{kind}"
                name = attach.get("name")
                if kind in ("BridgedInterface", "HostInterface"):
                    nic.bridge = name
                elif kind == "NAT":
                    nic.detail = "VirtualBox NAT engine (per VM)"
                    self.nat(vm, nic, attach, slot)
                elif kind == "GenericInterface":
                    nic.detail = f"generic driver {attach.get('driver')}"
                    props = {
                        p.get("name"): p.get("value")
                        for p in self.cap.take(attach.iterchildren(self.q("Property")), "Property", self.loc)
                    }
                    if props:
                        vm.facts[f"vbox.Adapter{slot}.GenericInterface.properties"] = {
                            "value": props,
                            "at": nic.locator,
                        }
                else:
                    nic.network = name
            policy = ad.get("promiscuousModePolicy")
            vm.facts[f"vbox.Adapter{slot}.promiscuousModePolicy"] = {
                "value": policy or "Deny",
                "at": locator if policy else f"{locator} (absent: XSD default Deny)",
            }
            vm.nics.append(nic)

    def nat(self, vm: VM, nic: Nic, nat: etree._Element, slot: int) -> None:
        raw = nat.get("localhost-reachable")
        default = self.sv < (1, 19)
        where = self.loc(nat)
        vm.facts[f"vbox.Adapter{slot}.NAT.localhost-reachable"] = {
            "value": _bool(raw, default),
            "at": where
            if raw is not None
            else f"{where} (absent: default {str(default).lower()} for settings version {self.version or '?'})",
        }
        if nat.get("hostip"):
            vm.facts[f"vbox.Adapter{slot}.NAT.hostip"] = {"value": nat.get("hostip"), "at": where}
        dns = nat.find(self.q("DNS"))
        if dns is not None and _bool(dns.get("use-host-resolver"), False):
            vm.facts[f"vbox.Adapter{slot}.NAT.DNS.use-host-resolver"] = {"value": True, "at": self.loc(dns)}
        for fw in self.cap.take(nat.iterchildren(self.q("Forwarding")), "Forwarding", self.loc):
            host_port, guest_port = _int(fw.get("hostport")), _int(fw.get("guestport"))
            if host_port is None or guest_port is None:
                self.inv.errors.append(
                    InputError(self.path, f"{self.loc(fw)}: port forward without hostport/guestport; ignored")
                )
                continue
            proto = "udp" if fw.get("proto") == "0" else "tcp"
            hostip = (fw.get("hostip") or "").strip() or None
            vm.forwards.append(
                Forward(
                    proto,
                    [host_port, host_port],
                    [guest_port, guest_port],
                    hostip,
                    nic.id,
                    f"{self.loc(fw)} ({fw.get('name') or 'unnamed'})",
                )
            )

    def vrde(self, vm: VM, hw: etree._Element) -> None:
        rd = hw.find(self.q("RemoteDisplay"))
        if rd is None:
            return
        enabled_raw = rd.get("enabled")
        enabled = _bool(enabled_raw, self.sv < (1, 16))
        auth = rd.get("authType") or "Null"
        where = self.loc(rd)
        vm.facts["vbox.VRDE.enabled"] = {
            "value": enabled,
            "at": where
            if enabled_raw is not None
            else f"{where} (absent: default {str(self.sv < (1, 16)).lower()} for settings "
            f"version {self.version or '?'})",
        }
        vm.facts["vbox.VRDE.authType"] = {
            "value": auth,
            "at": where if rd.get("authType") else f"{where} (absent: XSD default Null)",
        }
        multi = rd.get("allowMultiConnection")
        vm.facts["vbox.VRDE.allowMultiConnection"] = {"value": _bool(multi, False), "at": where}
        props = {}
        if rd.get("port"):
            props["TCP/Ports"] = rd.get("port")
        if rd.get("netAddress"):
            props["TCP/Address"] = rd.get("netAddress")
        pe = rd.find(self.q("VRDEProperties"))
        if pe is not None:
            for p in self.cap.take(pe.iterchildren(self.q("Property")), "Property", self.loc):
                if p.get("name"):
                    props[p.get("name")] = p.get("value") or ""
        for secret in [k for k in props if "password" in k.lower()]:
            vm.facts[f"vbox.VRDE.{secret}"] = {"value": SECRET, "at": where}
            del props[secret]
        vm.facts["vbox.VRDE.properties"] = {"value": props, "at": where}
        if not enabled:
            return
        ports = props.get("TCP/Ports") or "3389"
        first = _int(ports.replace("-", ",").split(",")[0])
        address = (props.get("TCP/Address") or "").strip() or None
        vm.listeners.append(Listener("vrde", "tcp", address, first, VRDE_AUTH.get(auth.lower(), "unknown"), where))

    def uart(self, vm: VM, hw: etree._Element) -> None:
        uart = hw.find(self.q("UART"))
        if uart is None:
            uart = hw.find(self.q("Uart"))
        if uart is None:
            return
        for port in self.cap.take(uart.iterchildren(self.q("Port")), "UART Port", self.loc):
            if not _bool(port.get("enabled"), False):
                continue
            mode = port.get("hostMode") or "Disconnected"
            where = self.loc(port)
            path = port.get("path") or ""
            vm.devices.append(
                Device("serial-port", f"COM{(_int(port.get('slot')) or 0) + 1} {mode} {path}".rstrip(), where)
            )
            if mode == "TCP" and _bool(port.get("server"), False):
                host, sep, port_s = path.rpartition(":")
                address = host.strip("[]") if sep and host else None
                vm.listeners.append(Listener("serial", "tcp", address, _int(port_s if sep else path), "none", where))

    def shares(self, vm: VM, hw: etree._Element) -> None:
        sf = hw.find(self.q("SharedFolders"))
        if sf is None:
            return
        for f in self.cap.take(sf.iterchildren(self.q("SharedFolder")), "SharedFolder", self.loc):
            where = self.loc(f)
            name = f.get("name")
            vm.shares.append(Share("vboxsf", f.get("hostPath"), name, _bool(f.get("writable"), True), where))
            vm.facts[f"vbox.SharedFolder.{name}.autoMount"] = {"value": _bool(f.get("autoMount"), False), "at": where}
            vm.facts[f"vbox.SharedFolder.{name}.symlinkPolicy"] = {
                "value": f.get("symlinkPolicy") or "forbidden",
                "at": where,
            }

    def channels(self, vm: VM, hw: etree._Element) -> None:
        clip = hw.find(self.q("Clipboard"))
        mode = (clip.get("mode") if clip is not None else None) or "Disabled"
        vm.channels.clipboard = CLIPBOARD_MODES.get(mode.lower(), "unknown")
        where = self.loc(clip) if clip is not None else "no <Clipboard> (default Disabled)"
        vm.facts["vbox.Clipboard.mode"] = {"value": mode, "at": where}
        ft = clip.get("fileTransfersEnabled") if clip is not None else None
        vm.facts["vbox.Clipboard.fileTransfersEnabled"] = {"value": _bool(ft, False), "at": where}
        dnd = hw.find(self.q("DragAndDrop"))
        dmode = (dnd.get("mode") if dnd is not None else None) or "Disabled"
        vm.channels.drag_and_drop = CLIPBOARD_MODES.get(dmode.lower(), "unknown")
        vm.facts["vbox.DragAndDrop.mode"] = {
            "value": dmode,
            "at": self.loc(dnd) if dnd is not None else "no <DragAndDrop> (default Disabled)",
        }

    def devices(self, vm: VM, hw: etree._Element) -> None:
        for dev in self.cap.take(hw.iterfind(self.qp("HostPci/Devices/Device")), "HostPci Device", self.loc):
            host, guest = _int(dev.get("host")), _int(dev.get("guest"))
            detail = f"host {_pci(host)} -> guest {_pci(guest)} {dev.get('name') or ''}".rstrip()
            vm.devices.append(Device("pci-passthrough", detail, self.loc(dev)))
        usb = hw.find(self.q("USB"))
        if usb is not None:
            for ctrl in self.cap.take(usb.iterfind(self.qp("Controllers/Controller")), "USB Controller", self.loc):
                vm.devices.append(
                    Device("usb-controller", f"{ctrl.get('type')} {ctrl.get('name') or ''}".rstrip(), self.loc(ctrl))
                )
            filters = usb.iterfind(self.qp("DeviceFilters/DeviceFilter"))
        else:
            legacy = hw.find(self.q("USBController"))
            filters = legacy.iterchildren(self.q("DeviceFilter")) if legacy is not None else ()
        for flt in self.cap.take(filters, "DeviceFilter", self.loc):
            if _bool(flt.get("active"), False):
                what = " ".join(f"{k}={flt.get(k)}" for k in ("vendorId", "productId", "product") if flt.get(k))
                vm.devices.append(Device("usb-passthrough", f"filter {flt.get('name')} {what}".rstrip(), self.loc(flt)))

    def teleporter(self, vm: VM, m: etree._Element) -> None:
        tp = m.find(self.q("Teleporter"))
        if tp is None or not _bool(tp.get("enabled"), False):
            return
        where = self.loc(tp)
        has_password = bool(tp.get("password"))
        vm.facts["vbox.Teleporter.enabled"] = {"value": True, "at": where}
        vm.facts["vbox.Teleporter.password"] = {"value": SECRET if has_password else "", "at": where}
        address = (tp.get("address") or "").strip() or None
        vm.listeners.append(
            Listener("migration", "tcp", address, _int(tp.get("port")), "password" if has_password else "none", where)
        )

    def snapshots(self, vm: VM, m: etree._Element) -> None:
        for snap in self.cap.take(m.iter(self.q("Snapshot")), "Snapshot", self.loc):
            vm.snapshots.append(Snapshot(snap.get("name") or "?", snap.get("timeStamp")))
            if snap.get("stateFile"):
                vm.facts[f"vbox.snapshot.{snap.get('name')}.stateFile"] = {
                    "value": "saved memory state",
                    "at": self.loc(snap),
                }

    def disks(self, vm: VM, m: etree._Element) -> None:
        disks = list(m.iterfind(self.qp("MediaRegistry/HardDisks/HardDisk")))
        if not disks:
            return
        plain = [
            d for d in disks if not any(p.get("name") == "CRYPT/KeyStore" for p in d.iterchildren(self.q("Property")))
        ]
        vm.security.disk_encryption = not plain
        if plain:
            vm.facts["vbox.disk.unencrypted"] = {"value": plain[0].get("location"), "at": self.loc(plain[0])}

    # ------------------------------------------------------------ VirtualBox.xml
    def global_settings(self, g: etree._Element) -> None:
        nets: dict[str, Network] = {}

        def network(name: str, mode: str, el: etree._Element) -> Network:
            net = nets.get(name)
            if net is None:
                net = nets[name] = Network(
                    name=name, platform=PLATFORM, mode=mode, source=Source(file=self.path), locator=self.loc(el)
                )
                self.inv.networks.append(net)
            return net

        for item in g.iterfind(self.qp("ExtraData/ExtraDataItem")):
            key = item.get("name") or ""
            if key.startswith("HostOnly/") and key.count("/") == 2:
                _, ifname, what = key.split("/")
                net = network(ifname, "host-only", item)
                if what == "IPAddress":
                    net.host_address = item.get("value")
                elif what == "IPNetMask" and net.host_address:
                    net.subnets = [_cidr(net.host_address, item.get("value") or "")]
        for hon in g.iterfind(self.qp("NetserviceRegistry/HostOnlyNetworks/HostOnlyNetwork")):
            net = network(hon.get("name") or "?", "host-only", hon)
            net.facts["vbox.HostOnlyNetwork.range"] = {
                "value": f"{hon.get('ipLower')}-{hon.get('ipUpper')}",
                "at": self.loc(hon),
            }
        for nn in g.iterfind(self.qp("NetserviceRegistry/NATNetworks/NATNetwork")):
            net = network(nn.get("networkName") or "?", "nat", nn)
            if nn.get("network"):
                net.subnets = [nn.get("network")]
            net.dhcp = _bool(nn.get("needDhcp"), False)
            net.ipv6 = _bool(nn.get("ipv6"), False)
            net.facts["vbox.NATNetwork.enabled"] = {"value": _bool(nn.get("enabled"), False), "at": self.loc(nn)}
            rules = []
            per_network = DeviceCap(self.path, self.inv.errors, unit="rules in one NAT network")
            for fam in ("PortForwarding4", "PortForwarding6"):
                for fw in per_network.take(nn.iterfind(self.qp(f"{fam}/Forwarding")), "Forwarding", self.loc):
                    proto = "udp" if fw.get("proto") == "0" else "tcp"
                    hostip = (fw.get("hostip") or "").strip() or None
                    rule = {
                        "name": fw.get("name"),
                        "protocol": proto,
                        "host_address": hostip,
                        "host_port": _int(fw.get("hostport")),
                        "guest_ip": fw.get("guestip"),
                        "guest_port": _int(fw.get("guestport")),
                        "at": self.loc(fw),
                    }
                    rules.append(rule)
                    net.forwards.append(
                        f"{proto} {hostip or '*'}:{rule['host_port']} -> {rule['guest_ip']}:{rule['guest_port']}"
                    )
            net.facts["vbox.NATNetwork.forwards"] = {"value": rules, "at": self.loc(nn)}
        for dh in g.iterfind(self.qp("NetserviceRegistry/DHCPServers/DHCPServer")):
            name = dh.get("networkName") or "?"
            if name.startswith("HostInterfaceNetworking-"):
                net = network(name[len("HostInterfaceNetworking-") :], "host-only", dh)
            else:
                net = network(name, "nat", dh)
            net.dhcp = _bool(dh.get("enabled"), False)
            if dh.get("IPAddress"):
                net.dhcp_servers = [dh.get("IPAddress")]
                if not net.subnets and dh.get("networkMask"):
                    net.subnets = [_cidr(dh.get("IPAddress"), dh.get("networkMask"))]
            net.facts["vbox.DHCPServer.range"] = {
                "value": f"{dh.get('lowerIP')}-{dh.get('upperIP')}",
                "at": self.loc(dh),
            }


def _pci(addr: int | None) -> str:
    """VirtualBox packs PCI addresses as bus<<8 | device<<3 | function."""
    if addr is None:
        return "?"
    return f"{addr >> 8:02x}:{(addr >> 3) & 0x1F:02x}.{addr & 7}"


def _cidr(address: str, mask: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_network(f"{address}/{mask}", strict=False))
    except ValueError:
        return address
