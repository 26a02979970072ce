"""libvirt domain XML (a file, or ``XMLDesc`` of a live domain): what the definition makes the host expose.

NICs and how they attach, port forwards (passt), every host-side listener (graphics, TCP/UDP chardevs,
socket NICs), shares, passthrough devices and the confinement/encryption settings. The real mode of a NIC
on a libvirt network, and addresses that fall back to qemu.conf, are resolved later by ``libvirt_link``
once every file has been read. Secrets (graphics ``passwd``) are recorded only as present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import partial

from lxml import etree

from vmsentry.collect.device_cap import MAX_DEVICES_PER_KIND, capped_message
from vmsentry.collect.source_file import BadInput, element_locator
from vmsentry.model import VM, Device, Forward, InputError, Listener, Nic, Share, Source

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
PLATFORM = "libvirt"


def read_domain(
    root: etree._Element, index: int = 0, source: Source | None = None, errors: list[InputError] | None = None
) -> VM:
    # one pass over the top-level children: on fleet-size scans each find() is a walk of its own
    top: dict[str, etree._Element] = {}
    seclabels = []
    for child in root:
        tag = child.tag
        if tag == "seclabel":
            seclabels.append(child)
        elif isinstance(tag, str) and tag not in top:
            top[tag] = child
    name_el = top.get("name")
    name = (name_el.text or "").strip() if name_el is not None else ""
    if not name:
        raise BadInput(f"{element_locator(root, index)}: domain has no <name>")
    uuid_el = top.get("uuid")
    vm = VM(
        name=name,
        platform=PLATFORM,
        uuid=((uuid_el.text or "").strip() or None) if uuid_el is not None else None,
        source=source or Source(),
    )
    errors = errors if errors is not None else []
    dom_type = root.get("type")
    if dom_type:
        vm.facts["libvirt.domain.type"] = {"value": dom_type, "at": element_locator(root, index)}
    agent = spice = None
    devices = top.get("devices")
    if devices is not None:
        nic_index = 0
        read: dict[object, int] = {}  # device elements read per tag, for the per-VM cap
        for el in devices:
            tag = el.tag
            seen = read.get(tag, 0)
            read[tag] = seen + 1
            if seen >= MAX_DEVICES_PER_KIND:
                if seen == MAX_DEVICES_PER_KIND and isinstance(tag, str):
                    errors.append(
                        InputError(
                            vm.source.file or vm.source.uri or "?", capped_message(element_locator(el, index), tag)
                        )
                    )
                continue
            if tag == "interface":
                _read_interface(vm, el, nic_index, index)
                nic_index += 1
                continue
            if tag == "channel" and _is_spice_agent(el):
                agent = el
            elif tag == "channel":
                _read_guest_agent(vm, el, index)
            elif tag == "graphics" and spice is None and el.get("type") == "spice":
                spice = el
            reader = _DEVICE_READERS.get(tag)
            if reader is not None:
                reader(vm, el, index)
    _read_seclabels(vm, seclabels, index)
    launch = top.get("launchSecurity")
    if launch is None:
        launch = top.get("launch-security")  # spelling of libvirt's 2018 development tree
    if launch is not None:
        _read_launch_security(vm, launch, index)
    if top.get("os") is not None:
        _read_secure_boot(vm, top["os"])
    _read_spice_agent(vm, agent, spice, index)
    cmd = top.get(f"{{{QEMU_NS}}}commandline")
    if cmd is not None:
        _read_qemu_commandline(vm, cmd, index, errors)
    return vm


def _read_redirdev(vm: VM, el: etree._Element, doc: int) -> None:
    vm.devices.append(
        Device("usb-redirection", f"{el.get('bus', 'usb')} via {el.get('type')}", element_locator(el, doc))
    )
    _read_chardev(vm, el, "usbredir", doc)


def _read_smartcard(vm: VM, el: etree._Element, doc: int) -> None:
    if el.get("mode") == "passthrough":
        _read_chardev(vm, el, "chardev", doc)


def _is_spice_agent(channel: etree._Element) -> bool:
    if channel.get("type") not in ("spicevmc", "qemu-vdagent"):
        return False
    target = channel.find("target")
    return target is not None and target.get("name") == "com.redhat.spice.0"


def _read_guest_agent(vm: VM, channel: etree._Element, doc: int) -> None:
    """The QEMU guest agent's channel: live XML says ``state='connected'`` when asking it cannot hang."""
    target = channel.find("target")
    if target is None or target.get("name") != "org.qemu.guest_agent.0":
        return
    vm.facts["libvirt.guest_agent.connected"] = {
        "value": target.get("state") == "connected",
        "at": element_locator(channel, doc),
    }


def _read_spice_agent(vm: VM, agent: etree._Element | None, graphics: etree._Element | None, doc: int) -> None:
    """Clipboard and file drag-and-drop between a SPICE client and the guest travel over the
    spice-vdagent channel; <graphics><clipboard copypaste='no'/> and <filetransfer enable='no'/>
    switch them off. Without the agent channel neither exists."""
    if agent is None:
        vm.channels.clipboard = "disabled"
        vm.channels.drag_and_drop = "disabled"
        return
    locator = element_locator(agent, doc)
    clipboard = graphics.find("clipboard") if graphics is not None else None
    filetransfer = graphics.find("filetransfer") if graphics is not None else None
    if agent.get("type") == "qemu-vdagent":
        clip = agent.find("source/clipboard")
        copypaste = clip.get("copypaste") if clip is not None else "no"
    else:
        copypaste = clipboard.get("copypaste", "yes") if clipboard is not None else "yes"
    vm.channels.clipboard = "bidirectional" if copypaste == "yes" else "disabled"
    ft = filetransfer.get("enable", "yes") if filetransfer is not None else "yes"
    vm.channels.drag_and_drop = "host-to-guest" if ft == "yes" and agent.get("type") == "spicevmc" else "disabled"
    vm.facts["libvirt.spice.agent_channel"] = {"value": agent.get("type"), "at": locator}


# libvirt interface type -> (mode before network resolution, how the host sees it)
_IFACE_MODE = {
    "network": "unknown",  # resolved from the network definition by libvirt_link
    "bridge": "bridged",
    "direct": "direct",
    "user": "user",
    "hostdev": "passthrough",
    "vdpa": "passthrough",
    "server": "internal",
    "client": "internal",
    "mcast": "internal",
    "udp": "internal",
    "null": "disconnected",
    "vhostuser": "bridged",  # a user-space switch (OVS-DPDK, ...) on a socket; passt backend: user
    "ethernet": "unknown",  # a tap the host configures itself; routed when libvirt sets its IP/route
    "vds": "bridged",
}


def _read_interface(vm: VM, el: etree._Element, nic_index: int, doc: int) -> None:
    itype = el.get("type") or "unknown"
    locator = element_locator(el, doc)
    # one pass over the children (a find() per element costs more on 10,000-VM scans)
    first: dict[str, etree._Element] = {}
    ips, forwards = [], []
    for child in el:
        tag = child.tag
        if tag == "ip":
            ips.append(child)
        elif tag == "portForward":
            forwards.append(child)
        elif isinstance(tag, str) and tag not in first:
            first[tag] = child
    get = first.get
    alias = get("alias")
    nic_id = alias.get("name") if alias is not None and alias.get("name") else f"net{nic_index}"
    mac = get("mac")
    mac_address = mac.get("address") if mac is not None else None
    nic = Nic(
        id=nic_id,
        mode=_IFACE_MODE.get(itype, "unknown"),
        mac=mac_address.lower() if mac_address else None,
        type=itype,
        locator=locator,
    )
    src = get("source")
    src_attr = src.attrib if src is not None else {}
    if itype == "network":
        nic.network = src_attr.get("network")
        nic.bridge = src_attr.get("bridge")  # live XML names the bridge too
        if src_attr.get("portgroup"):
            nic.detail = f"portgroup {src_attr['portgroup']}"
    elif itype == "bridge":
        nic.bridge = src_attr.get("bridge")
    elif itype == "direct":
        nic.detail = f"macvtap on {src_attr.get('dev')} mode {src_attr.get('mode', 'vepa')}"
    elif itype in ("hostdev", "vdpa"):
        addr = el.find("source/address")
        nic.detail = _pci_address(addr) if addr is not None else src_attr.get("dev")
    elif itype in ("server", "client", "mcast", "udp"):
        nic.detail = f"{itype} socket {src_attr.get('address', '')}:{src_attr.get('port', '')}"
        if itype == "server":
            vm.listeners.append(_socket_listener("tcp", src_attr, locator))
        elif itype == "udp":
            local = el.find("source/local")  # the host end the UDP tunnel receives on
            if local is not None:
                vm.listeners.append(_socket_listener("udp", local.attrib, locator))
    elif itype == "vhostuser":
        nic.detail = f"vhost-user socket {src_attr.get('path')}"
    elif itype == "ethernet" and (ips or get("route") is not None):
        nic.mode = "routed"  # libvirt gives the tap a host IP and a route to the guest
    backend = get("backend")
    if backend is not None and backend.get("type") == "passt":
        nic.mode = "user"
        nic.detail = "passt"
    target = get("target")
    if target is not None and target.get("dev"):
        nic.target = target.get("dev")
    model = get("model")
    if model is not None:
        nic.model = model.get("type")
    link = get("link")
    if link is not None and link.get("state") == "down":
        nic.connected = False
    port = get("port")
    if port is not None and port.get("isolated"):
        nic.port_isolated = port.get("isolated") == "yes"
    if el.get("trustGuestRxFilters"):
        vm.facts[f"libvirt.interface.{nic_id}.trustGuestRxFilters"] = {
            "value": el.get("trustGuestRxFilters"),
            "at": locator,
        }
    vport = get("virtualport")
    if vport is not None and vport.get("type"):
        nic.detail = (nic.detail + "; " if nic.detail else "") + f"virtualport {vport.get('type')}"
    flt = get("filterref")
    if flt is not None:
        nic.filter = flt.get("filter")
        nic.filter_params = {p.get("name"): p.get("value") for p in flt.iterfind("parameter") if p.get("name")}
    for ip in ips:
        if ip.get("family", "ipv4") == "ipv4" and ip.get("address") and nic.ip is None:
            nic.ip = ip.get("address")
    vm.nics.append(nic)
    for pf in forwards:
        vm.forwards.extend(_port_forwards(pf, nic_id, doc))


def _socket_listener(protocol: str, attrs: Mapping[str, str], locator: str) -> Listener:
    """A socket-backed NIC's host end that listens (``address``/``port`` attributes); no auth on it."""
    return Listener(
        "net-socket", protocol, _bind_address(attrs.get("address")), _int(attrs.get("port")), "none", locator
    )


def _port_forwards(pf: etree._Element, nic_id: str, doc: int) -> Iterable[Forward]:
    """passt <portForward>: each <range start end to> maps host ports start..end to guest ports
    to..to+(end-start); exclude='yes' ranges punch holes. An absent address means every host address."""
    proto = pf.get("proto", "tcp")
    address = pf.get("address")
    locator = element_locator(pf, doc)
    includes, excludes = [], []
    for rng in pf.iterfind("range"):
        start = _int(rng.get("start"))
        if start is None:
            continue
        end = _int(rng.get("end")) or start
        if rng.get("exclude") == "yes":
            excludes.append((start, end))
        else:
            includes.append((start, end, _int(rng.get("to"))))
    for start, end, to in includes:
        offset = (to - start) if to is not None else 0
        for lo, hi in _subtract((start, end), excludes):
            yield Forward(proto, [lo, hi], [lo + offset, hi + offset], address, nic_id, locator)


def _subtract(span: tuple[int, int], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    pieces = [span]
    for hlo, hhi in holes:
        nxt = []
        for lo, hi in pieces:
            if hhi < lo or hlo > hi:
                nxt.append((lo, hi))
                continue
            if lo < hlo:
                nxt.append((lo, hlo - 1))
            if hhi < hi:
                nxt.append((hhi + 1, hi))
        pieces = nxt
    return pieces


def _read_graphics(vm: VM, el: etree._Element, doc: int) -> None:
    gtype = el.get("type")
    if gtype not in ("vnc", "spice", "rdp"):
        return  # sdl, egl-headless, dbus, desktop: no network listener
    locator = element_locator(el, doc)
    # passwdValidTo is written only beside a password (or SPICE ticket); live XML read without
    # VIR_DOMAIN_XML_SECURE drops passwd itself but keeps passwdValidTo (libvirt formatdomain, "Graphical
    # framebuffers"; oVirt's vdsm sets tickets this way)
    has_password = el.get("passwd") is not None or el.get("passwdValidTo") is not None
    if has_password:
        vm.facts[f"libvirt.graphics.{gtype}.passwd"] = {"value": "<set>", "at": locator}
    auth = ("ticket" if gtype == "spice" else "password") if has_password else "unknown"
    address, transport = _graphics_address(el)
    if address is None and transport is None:
        return  # <listen type='none'/>: no socket at all
    # autoport='yes' in a stored definition has port='-1'; a running domain's live XML shows the port
    # actually allocated, so a positive port is always the truth.
    port = _port(el.get("port"))
    if transport == "unix":
        vm.listeners.append(Listener(gtype, "unix", address, None, auth, locator))
    elif gtype == "spice":
        default_mode = el.get("defaultMode", "any")
        if default_mode != "secure":
            vm.listeners.append(Listener("spice", "tcp", address, port, auth, locator, tls=False))
        if el.get("tlsPort") is not None or default_mode == "secure":
            vm.listeners.append(Listener("spice", "tcp", address, _port(el.get("tlsPort")), auth, locator, tls=True))
    else:
        vm.listeners.append(Listener(gtype, "tcp", address, port, auth, locator))
    ws = el.get("websocket")
    if gtype == "vnc" and ws is not None:
        vm.listeners.append(Listener("websocket", "tcp", address, _port(ws), auth, locator))


def _graphics_address(el: etree._Element) -> tuple[str | None, str | None]:
    """(address, transport). Address values follow the contract: 'default' falls back to qemu.conf,
    'network:NAME' to the network's address, None = every host address."""
    if el.get("socket"):
        return el.get("socket"), "unix"
    listens = el.findall("listen")
    for listen in listens:
        ltype = listen.get("type", "address")
        if ltype == "none":
            return None, None
        if ltype == "socket":
            return listen.get("socket") or "auto", "unix"
        if ltype == "network":
            # a running domain's XML names the address libvirt took from the network: that one is in use;
            # the contract's network:NAME is for a definition that does not say it yet
            if listen.get("address"):
                return _bind_address(listen.get("address")), "tcp"
            return f"network:{listen.get('network')}", "tcp"
        if ltype == "address" and listen.get("address") is not None:
            return _bind_address(listen.get("address"), default="default"), "tcp"
    if el.get("listen") is not None:
        return _bind_address(el.get("listen"), default="default"), "tcp"
    return "default", "tcp"


# element -> listener kind for character devices that may open host sockets
_CHARDEV_KIND = {"serial": "serial", "console": "serial", "parallel": "chardev", "channel": "chardev"}


def _read_chardev(vm: VM, el: etree._Element, kind: str, doc: int) -> None:
    ctype = el.get("type")
    if ctype not in ("tcp", "udp", "unix"):
        return
    for src in el.iterfind("source"):
        if src.get("mode", "connect" if ctype == "udp" else "connect") != "bind":
            continue
        locator = element_locator(el, doc)
        if ctype == "unix":
            vm.listeners.append(Listener(kind, "unix", src.get("path"), None, "none", locator))
            continue
        protocol = el.find("protocol")
        tls = src.get("tls")
        auth = "tls" if tls == "yes" else ("none" if tls == "no" else "unknown")
        listener = Listener(
            kind,
            ctype,
            _bind_address(src.get("host")),
            _int(src.get("service")),
            auth,
            locator,
            tls=None if tls is None else tls == "yes",
        )
        if protocol is not None and protocol.get("type") == "telnet":
            listener.auth = "none"  # telnet framing: never encrypted (tls='yes' cannot combine with it)
        vm.listeners.append(listener)


def _read_filesystem(vm: VM, el: etree._Element, doc: int) -> None:
    fstype = el.get("type", "mount")
    if fstype != "mount":
        return
    driver = el.find("driver")
    kind = "virtiofs" if driver is not None and driver.get("type") == "virtiofs" else "9p"
    src = el.find("source")
    target = el.find("target")
    host_path = src.get("dir") if src is not None else None
    if host_path is None and src is not None and src.get("socket"):
        host_path = None  # an externally started virtiofsd: the shared path is not in the XML
    share = Share(
        kind,
        host_path,
        target.get("dir") if target is not None else None,
        writable=el.find("readonly") is None,
        locator=element_locator(el, doc),
    )
    vm.shares.append(share)
    accessmode = el.get("accessmode")
    if accessmode:
        vm.facts[f"libvirt.filesystem.{share.guest_tag}.accessmode"] = {"value": accessmode, "at": share.locator}


def _pci_address(addr: etree._Element) -> str:
    def part(name: str, width: int) -> str:
        raw = addr.get(name, "0")
        try:
            return f"{int(raw, 0):0{width}x}"
        except ValueError:
            return raw

    return f"{part('domain', 4)}:{part('bus', 2)}:{part('slot', 2)}.{part('function', 1)}"


def _read_hostdev(vm: VM, el: etree._Element, doc: int) -> None:
    if el.get("mode", "subsystem") != "subsystem":
        return
    htype = el.get("type")
    locator = element_locator(el, doc)
    if htype == "pci":
        addr = el.find("source/address")
        vm.devices.append(Device("pci-passthrough", _pci_address(addr) if addr is not None else "", locator))
    elif htype == "usb":
        vendor, product = el.find("source/vendor"), el.find("source/product")
        detail = f"{vendor.get('id')}:{product.get('id')}" if vendor is not None and product is not None else "usb"
        vm.devices.append(Device("usb-passthrough", detail, locator))
    elif htype == "mdev":
        addr = el.find("source/address")
        vm.devices.append(Device("mediated-device", addr.get("uuid", "") if addr is not None else "", locator))
    elif htype in ("scsi", "scsi_host"):
        vm.devices.append(Device("scsi-passthrough", htype, locator))


def _read_disk(vm: VM, el: etree._Element, doc: int) -> None:
    if el.get("device", "disk") not in ("disk", "lun"):
        return
    encrypted = el.find("encryption") is not None or el.find("source/encryption") is not None
    if encrypted:
        vm.security.disk_encryption = vm.security.disk_encryption is not False
    elif vm.security.disk_encryption is None or vm.security.disk_encryption is True:
        vm.security.disk_encryption = False
        vm.facts.setdefault("libvirt.disk.unencrypted", {"value": _disk_name(el), "at": element_locator(el, doc)})
    if el.get("type") == "block":
        src = el.find("source")
        dev = src.get("dev") if src is not None else None
        if dev and _WHOLE_DISK.match(dev):
            vm.devices.append(Device("host-disk", f"{dev} ({el.get('device', 'disk')})", element_locator(el, doc)))
    if el.get("type") == "network":
        src = el.find("source")
        if src is not None:
            vm.facts.setdefault(
                "libvirt.disk.network",
                {"value": f"{src.get('protocol')}:{src.get('name')}", "at": element_locator(el, doc)},
            )


def _disk_name(el: etree._Element) -> str:
    src = el.find("source")
    if src is None:
        return "(no source)"
    return src.get("file") or src.get("dev") or src.get("name") or src.get("volume") or "(source)"


def _read_seclabels(vm: VM, seclabels: list[etree._Element], doc: int) -> None:
    for seclabel in seclabels:
        locator = element_locator(seclabel, doc)
        stype, model = seclabel.get("type"), seclabel.get("model")
        prefix = f"libvirt.seclabel.{model or 'default'}"
        vm.facts[f"{prefix}.type"] = {"value": stype or "dynamic", "at": locator}
        if seclabel.get("relabel"):
            vm.facts[f"{prefix}.relabel"] = {"value": seclabel.get("relabel"), "at": locator}
        label = seclabel.findtext("label")
        if label:
            vm.facts[f"{prefix}.label"] = {"value": label.strip(), "at": locator}
        if stype == "none" and model in (None, "selinux", "apparmor"):
            vm.security.confinement = "none"
        elif model in ("selinux", "apparmor") and vm.security.confinement != "none":
            vm.security.confinement = model


def _read_launch_security(vm: VM, launch: etree._Element, doc: int) -> None:
    ltype = launch.get("type")
    vm.security.memory_encryption = {"sev": "sev", "sev-snp": "sev-snp", "tdx": "tdx", "s390-pv": "s390-pv"}.get(
        ltype, ltype
    )
    vm.facts["libvirt.launchSecurity.type"] = {"value": ltype, "at": element_locator(launch, doc)}


def _read_secure_boot(vm: VM, os_el: etree._Element) -> None:
    loader = os_el.find("loader")
    secure = (loader is not None and loader.get("secure") == "yes") or any(
        f.get("name") == "secure-boot" and f.get("enabled") == "yes" for f in os_el.iterfind("firmware/feature")
    )
    vm.security.secure_boot = bool(secure)


def _read_qemu_commandline(vm: VM, cmd: etree._Element, doc: int, errors: list[InputError]) -> None:
    from vmsentry.collect.qemu_argv import apply_args
    from vmsentry.collect.qemu_redact import redacted

    arg_elements = list(cmd.iterfind(f"{{{QEMU_NS}}}arg"))
    args = [arg.get("value", "") for arg in arg_elements]
    locator = element_locator(cmd, doc)
    vm.facts["libvirt.qemu_commandline"] = {"value": redacted(args), "at": locator}
    if args:
        errors.extend(apply_args(vm, args, locator.split(", ", 1)[-1], arg_lines=[a.sourceline for a in arg_elements]))


def _read_shmem(vm: VM, el: etree._Element, doc: int) -> None:
    """<shmem name='N'> (ivshmem): a POSIX shared-memory object on the host (/dev/shm/N) mapped into the
    guest as a PCI BAR; every host process and every other guest that opens N reads and writes the same
    memory (QEMU docs/specs/ivshmem-spec.rst; libvirt formatdomain "Shared memory device"). Looking Glass
    uses it to hand the guest's frame buffer to a host client."""
    model = el.find("model")
    size = el.find("size")
    server = el.find("server")
    detail = f"{el.get('name', '?')} ({model.get('type') if model is not None else 'ivshmem'}"
    if size is not None and (size.text or "").strip():
        detail += f", {(size.text or '').strip()[:20]} {size.get('unit', 'M')}"
    if server is not None:
        detail += f", server socket {server.get('path', '/var/lib/libvirt/shmem/<name>-sock')}"
    vm.devices.append(Device("shared-memory", detail + ")", element_locator(el, doc)))


def _read_input(vm: VM, el: etree._Element, doc: int) -> None:
    """<input type='evdev'><source dev=.../> (libvirt 7.4) and <input type='passthrough'><source evdev=.../>
    hand a host input device (/dev/input/...) to the guest: while grabbed, what the user types on the host
    keyboard goes to the guest (libvirt formatdomain "Input devices"; QEMU input-linux / virtio-input-host)."""
    itype = el.get("type")
    if itype not in ("evdev", "passthrough"):
        return
    src = el.find("source")
    if src is None:
        return
    dev = src.get("dev") if itype == "evdev" else src.get("evdev")
    detail = f"{dev or '?'} ({itype}" + (f", grab={src.get('grab')}" if src.get("grab") else "") + ")"
    vm.devices.append(Device("host-input", detail, element_locator(el, doc)))


# A host block device that is a whole disk, not a partition or a logical volume: sdX, vdX, hdX, xvdX, nvmeXnY,
# mmcblkN, or a /dev/disk/by-* name without a -partN suffix (udev's names for partitions).
_WHOLE_DISK = re.compile(
    r"/dev/(?:(?:sd|vd|hd|xvd)[a-z]+|nvme\d+n\d+|mmcblk\d+|disk/by-(?:id|path|diskseq)/(?!.*-part\d+$)[^/]+)\Z"
)


# <devices> child -> reader (interfaces are counted apart: their index names the NIC)
_DEVICE_READERS = {
    "graphics": _read_graphics,
    "filesystem": _read_filesystem,
    "hostdev": _read_hostdev,
    "redirdev": _read_redirdev,
    "smartcard": _read_smartcard,
    "disk": _read_disk,
    "shmem": _read_shmem,
    "input": _read_input,
    **{
        tag: partial(lambda kind, vm, el, doc: _read_chardev(vm, el, kind, doc), kind)
        for tag, kind in _CHARDEV_KIND.items()
    },
}


# ---------------------------------------------------------------- helpers


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _port(value: str | None) -> int | None:
    """A TCP port, or None for 'allocated at start' (-1, 0, absent)."""
    port = _int(value)
    return port if port is not None and port > 0 else None


def _bind_address(value: str | None, default: str | None = None) -> str | None:
    """Normalise a listen address: '' means the fallback; '0' is libvirt's shorthand for 0.0.0.0."""
    if value is None or value == "":
        return default
    if value == "0":
        return "0.0.0.0"
    return value
