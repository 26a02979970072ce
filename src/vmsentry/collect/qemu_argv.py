"""What a QEMU argument vector makes the host expose.

``apply_args`` adds to a VM the user-mode port forwards, consoles, monitors, sockets, shares, passthrough
devices and security settings of QEMU options. The QEMU command-line reader calls it for a whole command
line; the libvirt reader for ``<qemu:commandline>`` arguments, which libvirt passes to QEMU unchecked; the
Proxmox reader for ``args:``. Secrets (VNC/SPICE passwords, ``-object secret,data=``) are never copied
anywhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmsentry.collect.device_cap import DeviceCap
from vmsentry.collect.qemu_chardev import Chardev, chardev_from_opts, chardev_from_spec
from vmsentry.collect.qemu_options import (
    OFF_VALUES,
    ON_VALUES,
    MalformedOption,
    QemuOpts,
    is_qemu_binary,
    iter_options,
    normalise_host,
    port_number,
    split_host_port,
)
from vmsentry.model import VM, Device, Forward, InputError, Listener, Nic, Share

VNC_BASE_PORT = 5900
VNC_WEBSOCKET_BASE_PORT = 5700
DEFAULT_BRIDGE = "br0"  # qemu-bridge-helper's default --br
_CONFIDENTIAL_GUEST_OBJECTS = {"sev-guest": "sev", "sev-snp-guest": "sev-snp", "tdx-guest": "tdx"}
# chardev consumers by device driver: a console device makes its chardev a "serial" listener
_SERIAL_DEVICES = frozenset(
    {
        "isa-serial",
        "pci-serial",
        "pci-serial-2x",
        "pci-serial-4x",
        "virtconsole",
        "spapr-vty",
        "sclpconsole",
        "sclplmconsole",
        "usb-serial",
    }
)
# when several consumers share one chardev (mux=on), the most powerful one names the listener
_LISTENER_KIND_RANK = {"monitor": 3, "serial": 2, "usbredir": 1, "chardev": 0}


def apply_args(vm: VM, argv: list[str], locator: str = "", arg_lines: list[int] | None = None) -> list[InputError]:
    """Add to ``vm`` the NICs, forwards, listeners, shares, devices, security settings and facts that
    ``argv`` exposes. ``argv[0]`` is skipped when it is a QEMU binary (a whole command line); otherwise
    all of ``argv`` is options (libvirt's ``<qemu:commandline>``).

    Each element's locator is ``argv[INDEX] -OPTION``, after ``locator`` when given
    (``/domain/commandline, argv[3] -netdev``) and after the option's line when ``arg_lines`` (the line
    of each argument) is given (``line 41, /domain/commandline, argv[3] -netdev``).

    Returns the malformed option values found (file = the VM's source file, else its URI); everything
    else is still read."""
    reader = _ArgvReader(vm, locator, arg_lines, whole_command=bool(argv) and is_qemu_binary(argv[0]))
    for option, value, index in iter_options(argv):
        reader.handle(option, value, index)
    reader.finish()
    return reader.errors


def _model(driver: str | None) -> str | None:
    if driver and driver.startswith("virtio-net"):
        return "virtio"
    return driver or None


@dataclass
class _Frontend:
    """A guest NIC device (``-device virtio-net-pci,netdev=`` or ``-net nic``) to join to its backend."""

    netdev: str | None
    model: str | None
    mac: str | None


class _ArgvReader:
    def __init__(self, vm: VM, prefix: str, arg_lines: list[int] | None, whole_command: bool):
        self.vm = vm
        self.prefix = prefix
        self.arg_lines = arg_lines
        self.whole_command = whole_command
        self.origin = vm.source.file or vm.source.uri or f"vm:{vm.name}"
        self.errors: list[InputError] = []
        self.cap = DeviceCap(self.origin, self.errors)  # per option: -netdev, -device, -chardev ...
        self.nics: dict[str, Nic] = {}
        self.frontends: list[_Frontend] = []
        self.legacy_backends: list[Nic] = []  # -net user/tap/...: joined to -net nic by order
        self.legacy_frontends: list[_Frontend] = []
        self.legacy_names: dict[str, int] = {}
        self.nic_options = 0
        self.network_options_seen = False  # any -net/-nic/-netdev/-nodefaults disables QEMU's default NIC
        self.chardevs: dict[str, Chardev] = {}
        self.chardev_kinds: dict[str, str] = {}
        self.fsdevs: dict[str, tuple[QemuOpts, str]] = {}
        self.fsdev_tags: dict[str, str] = {}
        self.virtiofs: list[tuple[str | None, str]] = []
        self.usb_redirections: list[tuple[str | None, str]] = []
        self.confidential_objects: dict[str, str] = {}
        self.confidential_support: str | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def locator(self, index: int, option: str) -> str:
        line = f"line {self.arg_lines[index]}" if self.arg_lines and index < len(self.arg_lines) else ""
        return ", ".join(part for part in (line, self.prefix, f"argv[{index}]") if part) + (
            f" -{option}" if option else ""
        )

    def error(self, locator: str, message: str) -> None:
        self.errors.append(InputError(self.origin, f"{locator}: {message}"))

    def listen(
        self,
        kind: str,
        transport: str,
        address: str | None,
        port: int | None,
        locator: str,
        auth: str = "none",
        tls: bool = False,
    ) -> None:
        """A host socket the VM's QEMU opens (auth "none": QEMU's sockets have none unless said)."""
        self.vm.listeners.append(
            Listener(kind=kind, transport=transport, address=address, port=port, auth=auth, locator=locator, tls=tls)
        )

    def fact(self, key: str, value: Any, locator: str) -> None:
        self.vm.facts[key] = {"value": value, "at": locator}

    def use_chardev(self, chardev_id: str | None, kind: str) -> None:
        if not chardev_id:
            return
        current = self.chardev_kinds.get(chardev_id)
        if current is None or _LISTENER_KIND_RANK[kind] > _LISTENER_KIND_RANK[current]:
            self.chardev_kinds[chardev_id] = kind

    # -- dispatch --------------------------------------------------------------------------------
    def handle(self, option: str, value: str | None, index: int) -> None:
        locator = self.locator(index, option)
        if option == "nodefaults":
            self.network_options_seen = True
            return
        if option == "s":  # shorthand for -gdb tcp::1234
            self._opt_gdb("tcp::1234", locator)
            return
        handler = getattr(self, "_opt_" + option.replace("-", "_"), None)
        if handler is None:  # an option that exposes nothing to the host
            return
        if not self.cap.admit(f"-{option}", locator):
            return  # the per-VM cap
        if value is None:
            self.error(locator, "missing argument")
            return
        try:
            handler(value, locator)
        except MalformedOption as exc:
            self.error(locator, str(exc))

    # -- networking ------------------------------------------------------------------------------
    def network_option(self, value: str) -> tuple[QemuOpts, str]:
        """A -netdev/-nic/-net value and its type; any of them disables QEMU's default NIC."""
        self.network_options_seen = True
        opts = QemuOpts.parse(value, implied="type")
        return opts, opts.get("type") or ""

    def _opt_netdev(self, value: str, locator: str) -> None:
        opts, netdev_type = self.network_option(value)
        netdev_id = opts.get("id")
        if not netdev_id:
            raise MalformedOption("netdev has no id=")
        self.nics[netdev_id] = self.backend(netdev_type, netdev_id, opts, locator)

    def _opt_nic(self, value: str, locator: str) -> None:
        opts, nic_type = self.network_option(value)
        if nic_type == "none":
            return
        nic_id = opts.get("id") or f"nic{self.nic_options}"
        self.nic_options += 1
        nic = self.backend(nic_type, nic_id, opts, locator)
        nic.model = _model(opts.get("model"))
        nic.mac = opts.get("mac")
        self.nics[nic_id] = nic

    def _opt_net(self, value: str, locator: str) -> None:
        opts, net_type = self.network_option(value)
        if net_type == "none":
            return
        if net_type == "nic":
            self.legacy_frontends.append(_Frontend(opts.get("netdev"), _model(opts.get("model")), opts.get("macaddr")))
            return
        # QEMU names legacy backends TYPE.N (user.0, tap.0) unless given id= or name=
        nic_id = opts.get("id") or opts.get("name")
        if not nic_id:
            count = self.legacy_names.get(net_type, 0)
            self.legacy_names[net_type] = count + 1
            nic_id = f"{net_type}.{count}"
        nic = self.backend(net_type, nic_id, opts, locator)
        self.nics[nic_id] = nic
        self.legacy_backends.append(nic)

    def backend(self, net_type: str, nic_id: str, opts: QemuOpts, locator: str) -> Nic:
        """The NIC for one network backend, with what it opens on the host."""
        nic = Nic(id=nic_id, type=net_type or None, locator=locator)
        if net_type in ("user", "passt"):
            nic.mode = "user"
            self.user_network(nic_id, opts, locator)
        elif net_type == "tap":
            helper = opts.get("helper")
            if helper:
                # the bridge helper attaches the tap to a bridge (its --br, default br0)
                match = re.search(r"--br=(\S+)", helper)
                nic.mode, nic.bridge = "bridged", match.group(1) if match else DEFAULT_BRIDGE
                nic.detail = f"helper={helper}"
            else:
                # where the tap ends up depends on the host script (default /etc/qemu-ifup) or fd owner
                nic.mode = "unknown"
                if "fd" in opts or "fds" in opts:
                    nic.detail = "fd passed by the parent process"
                else:
                    nic.detail = f"script={opts.get('script', '/etc/qemu-ifup')}"
            nic.target = opts.get("ifname")
        elif net_type == "bridge":
            nic.mode, nic.bridge = "bridged", opts.get("br") or DEFAULT_BRIDGE
        elif net_type == "socket":
            nic.mode = "internal"
            self.socket_network(opts, locator)
        elif net_type == "stream":
            nic.mode = "internal"
            if opts.flag("server"):
                self.socket_address_listener(opts, "addr", "tcp", locator)
        elif net_type == "dgram":
            nic.mode = "internal"
            self.socket_address_listener(opts, "local", "udp", locator)
        elif net_type == "vhost-user":
            chardev_id = opts.get("chardev")
            nic.mode, nic.detail = "unknown", f"chardev={chardev_id}"
            self.use_chardev(chardev_id, "chardev")
        elif net_type == "l2tpv3":
            nic.mode = "unknown"
            nic.detail = f"l2tpv3 {opts.get('src', '')} -> {opts.get('dst', '')}"
            source_port = opts.port("srcport")
            if opts.flag("udp") and source_port:
                self.listen("net-socket", "udp", normalise_host(opts.get("src")), source_port, locator)
        elif net_type == "vde":
            nic.mode, nic.detail = "unknown", f"sock={opts.get('sock', '')}"
        elif net_type == "vhost-vdpa":
            nic.mode, nic.detail = "passthrough", f"vhostdev={opts.get('vhostdev', '')}"
        elif net_type == "af-xdp":
            nic.mode, nic.target = "direct", opts.get("ifname")
        elif net_type == "hubport":
            nic.mode = "internal"
        else:
            nic.mode = "unknown"
        return nic

    def user_network(self, nic_id: str, opts: QemuOpts, locator: str) -> None:
        for rule in self.cap.take(opts.get_all("hostfwd"), "hostfwd", lambda _: locator):
            try:
                self.vm.forwards.append(_hostfwd(rule, nic_id, locator))
            except MalformedOption as exc:
                self.error(locator, str(exc))
        if "restrict" in opts:
            try:
                self.fact(f"qemu.netdev.{nic_id}.restrict", "on" if opts.flag("restrict") else "off", locator)
            except MalformedOption as exc:
                self.error(locator, str(exc))
        guest_forwards = opts.get_all("guestfwd")
        if guest_forwards:
            self.fact(f"qemu.netdev.{nic_id}.guestfwd", guest_forwards, locator)
        smb = opts.get("smb")
        if smb:
            # QEMU's generated smb.conf shares the directory read-write to the guest at 10.0.2.4
            self.vm.shares.append(Share(kind="smb", host_path=smb, writable=True, locator=locator))
        tftp = opts.get("tftp")
        if tftp:
            self.vm.shares.append(Share(kind="tftp", host_path=tftp, writable=False, locator=locator))

    def socket_network(self, opts: QemuOpts, locator: str) -> None:
        for key, transport in (("listen", "tcp"), ("mcast", "udp"), ("localaddr", "udp")):
            # mcast binds the group port: anyone on the segment can send frames into it;
            # localaddr is the bound end of a udp= tunnel
            value = opts.get(key)
            if value is not None and (key != "localaddr" or "udp" in opts):
                self.listen("net-socket", transport, *split_host_port(value, key), locator)

    def socket_address_listener(self, opts: QemuOpts, prefix: str, transport: str, locator: str) -> None:
        address_type = opts.get(f"{prefix}.type")
        if address_type == "inet":
            self.listen(
                "net-socket",
                transport,
                normalise_host(opts.get(f"{prefix}.host")),
                opts.port(f"{prefix}.port"),
                locator,
            )
        elif address_type == "unix":
            self.listen("net-socket", "unix", opts.get(f"{prefix}.path"), None, locator)

    # -- consoles, monitors, character devices ---------------------------------------------------
    def _opt_vnc(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="vnc")
        display = opts.get("vnc") or ""
        if display == "none" or opts.flag("reverse"):
            return  # no server socket (reverse connects out to a listening viewer)
        sasl = opts.flag("sasl")
        # tls-creds= today; tls / x509=DIR / x509verify=DIR before QEMU 2.x
        tls = "tls-creds" in opts or any(
            key in opts and (opts.get(key) or "").lower() not in OFF_VALUES for key in ("tls", "x509", "x509verify")
        )
        # password=on, a bare "password", or an old password=SECRET: the value itself is never kept
        password = "password-secret" in opts or ("password" in opts and opts.get("password") not in OFF_VALUES)
        auth = "sasl" if sasl else "password" if password else "tls" if tls else "none"
        if display.startswith("unix:"):
            self.listen("vnc", "unix", display[5:], None, locator, auth, tls)
            return
        host, sep, number = display.rpartition(":")
        if not sep or not number.isdigit():
            raise MalformedOption(f"VNC display {display!r} is not [HOST]:DISPLAY, unix:PATH or none")
        port = VNC_BASE_PORT + int(number)
        if port > 65535:
            raise MalformedOption(f"VNC display {number} is beyond the last port")
        address = normalise_host(host)
        self.listen("vnc", "tcp", address, port, locator, auth, tls)
        websocket = opts.get("websocket")
        if websocket is None or websocket.lower() in OFF_VALUES:
            return
        if websocket.lower() in ON_VALUES:
            ws_address, ws_port = address, VNC_WEBSOCKET_BASE_PORT + int(number)
        elif websocket.isdigit():
            ws_address, ws_port = address, port_number(websocket, "websocket")
        else:
            ws_address, ws_port = split_host_port(websocket, "websocket")
        self.listen("websocket", "tcp", ws_address, ws_port, locator, auth, tls)

    def _opt_display(self, value: str, locator: str) -> None:
        if value.startswith("vnc="):
            self._opt_vnc(value[4:], locator)

    def _opt_spice(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value)
        if opts.flag("sasl"):
            auth = "sasl"
        elif opts.get("password") or opts.get("password-secret"):
            auth = "ticket"
        elif opts.flag("disable-ticketing"):
            auth = "none"
        else:
            auth = "unknown"  # no password yet: a management tool may set one later over the monitor
        address = opts.get("addr")
        if opts.flag("unix"):
            self.listen("spice", "unix", address, None, locator, auth)
            return
        for key, tls in (("port", False), ("tls-port", True)):
            port = opts.port(key)
            if port:
                self.listen("spice", "tcp", normalise_host(address), port, locator, auth, tls)

    def legacy_chardev(self, spec: str, kind: str, locator: str) -> None:
        if spec == "none":
            return
        chardev, existing, with_monitor = chardev_from_spec(spec, locator)
        if with_monitor:
            kind = "monitor"  # mon: multiplexes the HMP monitor onto this device
        if existing is not None:
            self.use_chardev(existing, kind)
        elif chardev is not None:
            listener = chardev.listener(kind)
            if listener is not None:
                self.vm.listeners.append(listener)

    def _opt_monitor(self, value: str, locator: str) -> None:
        self.legacy_chardev(value, "monitor", locator)

    _opt_qmp = _opt_monitor
    _opt_qmp_pretty = _opt_monitor

    def _opt_gdb(self, value: str, locator: str) -> None:
        # the gdb stub reads and writes all guest memory and registers: as powerful as the monitor.
        # QEMU always makes a tcp: gdb device a server.
        if value.startswith("tcp:"):
            value += ",server=on"
        self.legacy_chardev(value, "monitor", locator)

    def _opt_serial(self, value: str, locator: str) -> None:
        self.legacy_chardev(value, "serial", locator)

    def _opt_parallel(self, value: str, locator: str) -> None:
        self.legacy_chardev(value, "chardev", locator)

    def _opt_mon(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="chardev")
        self.use_chardev(opts.get("chardev"), "monitor")

    def _opt_chardev(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="backend")
        chardev_id = opts.get("id")
        if not chardev_id:
            raise MalformedOption("chardev has no id=")
        self.chardevs[chardev_id] = chardev_from_opts(opts, locator)

    def _opt_incoming(self, value: str, locator: str) -> None:
        scheme, sep, rest = value.partition(":")
        if scheme in ("tcp", "rdma") and sep:
            address, _, _ = rest.partition(",")
            self.listen("migration", "tcp", *split_host_port(address, "incoming"), locator)
        elif scheme == "unix" and sep:
            self.listen("migration", "unix", rest.split(",", 1)[0], None, locator)

    # -- devices ---------------------------------------------------------------------------------
    def _opt_device(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="driver")
        driver = opts.get("driver") or ""
        if "netdev" in opts:
            self.frontends.append(_Frontend(opts.get("netdev"), _model(driver), opts.get("mac")))
        if driver.startswith("vfio-pci"):
            self.vm.devices.append(
                Device(kind="pci-passthrough", detail=opts.get("host") or opts.get("sysfsdev") or "", locator=locator)
            )
        elif driver.startswith("vfio-"):
            self.vm.devices.append(
                Device(
                    kind="vfio-passthrough", detail=opts.get("sysfsdev") or opts.get("host") or driver, locator=locator
                )
            )
        elif driver == "usb-host":
            identity = ",".join(
                f"{key}={opts.get(key)}"
                for key in ("hostbus", "hostaddr", "hostport", "hostdevice", "vendorid", "productid")
                if opts.get(key)
            )
            self.vm.devices.append(Device(kind="usb-passthrough", detail=identity, locator=locator))
        elif driver == "usb-redir":
            self.usb_redirections.append((opts.get("chardev"), locator))
            self.use_chardev(opts.get("chardev"), "usbredir")
        elif driver.startswith("ivshmem"):
            # memory shared with the host and other VMs: a channel that bypasses every network control
            detail = opts.get("memdev") or opts.get("chardev") or driver
            self.vm.devices.append(Device(kind="shared-memory", detail=detail, locator=locator))
            self.use_chardev(opts.get("chardev"), "chardev")
        elif driver.startswith("vhost-user-fs"):
            self.virtiofs.append((opts.get("tag"), locator))
            self.use_chardev(opts.get("chardev"), "chardev")
        elif "fsdev" in opts:
            self.fsdev_tags[opts.get("fsdev") or ""] = opts.get("mount_tag") or ""
        elif "chardev" in opts:
            self.use_chardev(opts.get("chardev"), "serial" if driver in _SERIAL_DEVICES else "chardev")

    # -- shares ----------------------------------------------------------------------------------
    def _opt_virtfs(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="fsdriver")
        self.add_9p_share(opts, opts.get("mount_tag"), locator)

    def _opt_fsdev(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="fsdriver")
        fsdev_id = opts.get("id")
        if not fsdev_id:
            raise MalformedOption("fsdev has no id=")
        self.fsdevs[fsdev_id] = (opts, locator)

    def add_9p_share(self, opts: QemuOpts, tag: str | None, locator: str) -> None:
        driver = opts.get("fsdriver")
        if driver == "synth":
            return  # QEMU's test backend, no host files
        host_path = opts.get("path") if driver == "local" else None
        self.vm.shares.append(
            Share(
                kind="9p",
                host_path=host_path,
                guest_tag=tag or None,
                writable=not opts.flag("readonly"),
                locator=locator,
            )
        )
        model = opts.get("security_model")
        if model:
            self.fact(f"qemu.fsdev.{opts.get('id') or tag}.security_model", model, locator)

    # -- security ------------------------------------------------------------------------------
    def _opt_sandbox(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="enable")
        self.fact("qemu.sandbox", "on" if opts.flag("enable") else "off", locator)
        for key, setting in opts.pairs:
            if key != "enable":
                self.fact(f"qemu.sandbox.{key}", setting, locator)

    def _opt_runas(self, value: str, locator: str) -> None:
        self.fact("qemu.runas", value, locator)

    def _opt_run_with(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value)
        if opts.get("user"):
            self.fact("qemu.runas", opts.get("user"), locator)
        if opts.get("chroot"):
            self.fact("qemu.chroot", opts.get("chroot"), locator)

    def _opt_chroot(self, value: str, locator: str) -> None:
        self.fact("qemu.chroot", value, locator)

    def _opt_object(self, value: str, locator: str) -> None:
        # only the object's type and id are read: a secret object's data= is never looked at
        opts = QemuOpts.parse(value, implied="qom-type")
        kind = _CONFIDENTIAL_GUEST_OBJECTS.get(opts.get("qom-type") or "")
        if kind and opts.get("id"):
            self.confidential_objects[opts.get("id") or ""] = kind

    def _opt_machine(self, value: str, locator: str) -> None:
        opts = QemuOpts.parse(value, implied="type")
        support = opts.get("confidential-guest-support") or opts.get("memory-encryption")
        if support:
            self.confidential_support = support

    _opt_M = _opt_machine

    # -- joining it all up ---------------------------------------------------------------------
    def finish(self) -> None:
        for frontend in self.frontends:
            self.attach(frontend)
        for position, frontend in enumerate(self.legacy_frontends):
            if frontend.netdev:
                self.attach(frontend)
            elif position < len(self.legacy_backends):
                self.fill(self.legacy_backends[position], frontend)
        if self.whole_command and not self.network_options_seen:
            # QEMU adds "-net nic -net user" when no network option and no -nodefaults is given
            self.vm.nics.append(
                Nic(
                    id="user.0",
                    mode="user",
                    type="user",
                    locator=self.locator(0, "") + " (no network option: QEMU's default user-mode network)",
                )
            )
        self.vm.nics.extend(self.nics.values())
        for fsdev_id, (opts, locator) in self.fsdevs.items():
            try:  # read here, after every option (not in handle()): a bad value is this option's error too
                self.add_9p_share(opts, self.fsdev_tags.get(fsdev_id), locator)
            except MalformedOption as exc:
                self.error(locator, str(exc))
        for tag, locator in self.virtiofs:
            self.vm.shares.append(Share(kind="virtiofs", host_path=None, guest_tag=tag, writable=True, locator=locator))
        for chardev_id, locator in self.usb_redirections:
            chardev = self.chardevs.get(chardev_id or "")
            detail = f"chardev={chardev_id}" + (f" ({chardev.detail})" if chardev and chardev.detail else "")
            self.vm.devices.append(Device(kind="usb-redirection", detail=detail, locator=locator))
        for chardev_id, chardev in self.chardevs.items():
            listener = chardev.listener(self.chardev_kinds.get(chardev_id, "chardev"))
            if listener is not None:
                self.vm.listeners.append(listener)
        if self.confidential_support and self.confidential_support in self.confidential_objects:
            self.vm.security.memory_encryption = self.confidential_objects[self.confidential_support]

    def attach(self, frontend: _Frontend) -> None:
        nic = self.nics.get(frontend.netdev or "") or next((n for n in self.vm.nics if n.id == frontend.netdev), None)
        if nic is not None:
            self.fill(nic, frontend)

    @staticmethod
    def fill(nic: Nic, frontend: _Frontend) -> None:
        nic.model = frontend.model or nic.model
        nic.mac = frontend.mac or nic.mac


def _hostfwd(rule: str, nic_id: str, locator: str) -> Forward:
    """``[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport`` (QEMU requires both colons before
    hostport; an empty protocol is tcp, an empty hostaddr every host address)."""
    host_side, dash, guest_side = rule.partition("-")
    protocol, colon, host_address = host_side.partition(":")
    if not dash or not colon:
        raise MalformedOption(f"hostfwd {rule!r} is not [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise MalformedOption(f"hostfwd {rule!r}: protocol must be tcp or udp")
    host, host_port = split_host_port(host_address, f"hostfwd {rule!r} host side")
    _, guest_port = split_host_port(guest_side, f"hostfwd {rule!r} guest side")
    return Forward(
        protocol=protocol,
        host_ports=[host_port, host_port],
        guest_ports=[guest_port, guest_port],
        host_address=host,
        nic=nic_id,
        locator=locator,
    )
