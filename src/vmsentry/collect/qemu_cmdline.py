"""QEMU started by hand: a copy of ``/proc/PID/cmdline``, a start script, or a file of arguments.

``apply_args`` is the reusable part: it adds to a VM what a QEMU argument vector makes the host expose
(user-mode port forwards, consoles, monitors, sockets, shares, passthrough devices). The libvirt reader
calls it for ``<qemu:commandline>`` arguments, which libvirt passes to QEMU unchecked.

Option values use QEMU's ``key=value,key2=value2`` syntax (QemuOpts): ``,,`` is a literal comma, a bare
first item is the value of the option's implied key (``-netdev user`` is ``type=user``), and a later bare
``flag`` means ``flag=on`` and ``noflag`` means ``flag=off``. ``-netdev``/``-device``/``-object`` also
accept JSON, as libvirt writes them.

Addresses follow the inventory contract: an omitted or empty host means every host address (``null``);
``0.0.0.0`` and ``::`` stay as written. Secrets (VNC/SPICE passwords, ``-object secret,data=``) are never
copied anywhere.
"""
from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterator

from vmsentry.collect.source_file import decode_text, read_bytes
from vmsentry.model import Device, Forward, InputError, Inventory, Listener, Nic, Share, Source, VM

VNC_BASE_PORT = 5900
VNC_WEBSOCKET_BASE_PORT = 5700
DEFAULT_BRIDGE = "br0"  # qemu-bridge-helper's default --br

# QEMU options that take no argument (from ``qemu-system-x86_64 -help``); every other option takes one.
FLAG_OPTIONS = frozenset({
    "S", "s", "audio-help", "daemonize", "enable-kvm", "enable-sync-profile", "full-screen",
    "mem-prealloc", "no-acpi", "no-fd-bootchk", "no-hpet", "no-reboot", "no-shutdown", "no-user-config",
    "nodefaults", "nographic", "only-migratable", "portrait", "singlestep", "snapshot", "usb", "version",
    "win2k-hack", "xen-attach", "xen-domid-restrict", "preconfig", "h", "help", "curses", "alt-grab",
    "ctrl-grab", "no-quit", "sdl", "no-frame", "enable-fips", "semihosting", "perfmap", "jitdump",
    "nodefconfig", "no-kvm", "no-kvm-irqchip", "no-kvm-pit", "old-param",
})
# Options we read; they always consume the next argument, even one that starts with '-'.
_VALUE_OPTIONS = frozenset({
    "netdev", "net", "nic", "device", "vnc", "display", "spice", "monitor", "qmp", "qmp-pretty", "mon",
    "serial", "parallel", "gdb", "chardev", "incoming", "virtfs", "fsdev", "sandbox", "runas", "run-with",
    "chroot", "object", "machine", "M", "name", "uuid",
})
# Programs that run another command; a start script often puts one of these before QEMU.
_WRAPPERS = frozenset({"exec", "sudo", "doas", "nohup", "env", "nice", "ionice", "taskset", "numactl",
                       "chrt", "time", "command", "setsid", "stdbuf", "runuser", "setpriv"})
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_TRUE = frozenset({"on", "yes", "true", "y"})
_FALSE = frozenset({"off", "no", "false", "n"})
_CONFIDENTIAL_GUEST_OBJECTS = {"sev-guest": "sev", "sev-snp-guest": "sev-snp", "tdx-guest": "tdx"}
# chardev consumers by device driver: a console device makes its chardev a "serial" listener
_SERIAL_DEVICES = frozenset({"isa-serial", "pci-serial", "pci-serial-2x", "pci-serial-4x", "virtconsole",
                             "spapr-vty", "sclpconsole", "sclplmconsole", "usb-serial"})
# when several consumers share one chardev (mux=on), the most powerful one names the listener
_LISTENER_KIND_RANK = {"monitor": 3, "serial": 2, "usbredir": 1, "chardev": 0}


def is_qemu_binary(token: str) -> bool:
    base = os.path.basename(token)
    return base.startswith("qemu-system-") or base in ("qemu-kvm", "kvm")


# ------------------------------------------------------------------------------------------------
# File adapter
# ------------------------------------------------------------------------------------------------

def claims(path: str, head: bytes) -> bool:
    base = os.path.basename(path)
    if base == "cmdline" or base.endswith((".cmdline", ".qemu", ".args")):
        return True
    stripped = head.lstrip()
    if stripped.startswith((b"<", b"{")):  # XML and JSON belong to other adapters
        return False
    if b"\x00" in head:
        return is_qemu_binary(head.split(b"\x00", 1)[0].decode("utf-8", "replace"))
    for line in head.decode("utf-8", "replace").splitlines():
        tokens = line.split()
        if tokens and not tokens[0].startswith("#") and _qemu_index(tokens) is not None:
            return True
    return False


def read(path: str, data: bytes | None = None) -> Inventory:
    if data is None:
        data = read_bytes(path)
    inv = Inventory()
    if b"\x00" in data:
        # /proc/PID/cmdline: one argument per NUL-terminated string
        argv = [arg.decode("utf-8", "replace") for arg in data.split(b"\x00")]
        if argv and argv[-1] == "":
            argv.pop()
        commands = [(argv, None)]
    else:
        text, lossy = decode_text(data)
        if lossy:
            inv.errors.append(InputError(path, "not valid UTF-8; undecodable bytes were replaced"))
        commands = list(_commands_in_text(path, text, inv.errors))
    if not commands:
        inv.errors.append(InputError(path, "no QEMU command line found"))
    fallback = os.path.splitext(os.path.basename(path))[0] or os.path.basename(path)
    for number, (argv, arg_lines) in enumerate(commands, 1):
        name = fallback if number == 1 else f"{fallback}-{number}"
        vm, errors = vm_from_argv(argv, name, Source(file=path), arg_lines=arg_lines)
        inv.vms.append(vm)
        inv.errors.extend(errors)
    return inv


def _qemu_index(tokens: list[str]) -> int | None:
    """Where the QEMU binary is in a shell command: first, or after wrappers/assignments such as
    ``sudo -u vm``, ``exec``, ``LC_ALL=C``."""
    if tokens[0].startswith("-"):  # a line of options (an .args file), not a command
        return None
    previous = ""
    for index, token in enumerate(tokens[:10]):
        if is_qemu_binary(token):
            return index
        # a wrapper, an assignment, a wrapper's option or that option's argument may come before QEMU;
        # anything else is another program ("sudo modprobe kvm" is not a QEMU command)
        if not (token in _WRAPPERS or _ASSIGNMENT.match(token) or token.startswith("-")
                or (previous.startswith("-") and "=" not in previous)):
            return None
        previous = token
    return None


def _commands_in_text(path: str, text: str,
                      errors: list[InputError]) -> Iterator[tuple[list[str], list[int]]]:
    """(argv, line of each argument) for each QEMU command of a script or argument file: one per
    logical line (``\\``-continued lines joined). A file without a QEMU binary but with options is one
    argument list (an ``.args`` file)."""
    lines: list[tuple[list[str], list[int]]] = []
    for parts in _logical_lines(text):
        try:
            tokens = shlex.split(" ".join(part for _, part in parts), comments=True)
        except ValueError as exc:
            errors.append(InputError(path, f"line {parts[0][0]}: cannot split into arguments: {exc}"))
            continue
        if tokens:
            lines.append((tokens, _token_lines(parts, len(tokens))))
    found = False
    for tokens, token_lines in lines:
        index = _qemu_index(tokens)
        if index is not None:
            found = True
            yield tokens[index:], token_lines[index:]
    if not found:
        argv = [token for tokens, _ in lines for token in tokens]
        if any(token.startswith("-") for token in argv):
            yield argv, [line for _, token_lines in lines for line in token_lines]


def _token_lines(parts: list[tuple[int, str]], count: int) -> list[int]:
    """The physical line of each of a logical line's ``count`` tokens, so that locators point at the
    line to edit; when a quoted argument spans lines, every token gets the first line."""
    lines: list[int] = []
    try:
        for number, part in parts:
            lines.extend([number] * len(shlex.split(part, comments=True)))
    except ValueError:
        pass
    return lines if len(lines) == count else [parts[0][0]] * count


def _logical_lines(text: str) -> Iterator[list[tuple[int, str]]]:
    """Physical lines (number, text without the continuing backslash) grouped into logical lines."""
    parts: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.rstrip("\r")
        trailing = len(stripped) - len(stripped.rstrip("\\"))
        if trailing % 2 == 1:  # an odd number of backslashes continues the line
            parts.append((number, stripped[:-1]))
            continue
        parts.append((number, stripped))
        yield parts
        parts = []
    if parts:
        yield parts


def vm_from_argv(argv: list[str], fallback_name: str, source: Source, locator: str = "",
                 arg_lines: list[int] | None = None) -> tuple[VM, list[InputError]]:
    """A VM for one QEMU command line; its name comes from ``-name`` (else ``fallback_name``).
    ``locator`` and ``arg_lines`` are as for ``apply_args``."""
    vm = VM(name=fallback_name, platform="qemu", source=source)
    name, uuid = _identity(argv)
    vm.name = name or fallback_name
    vm.uuid = uuid
    errors = apply_args(vm, argv, locator, arg_lines)
    return vm, errors


def _identity(argv: list[str]) -> tuple[str | None, str | None]:
    name = uuid = None
    for option, value, _ in _iter_options(argv):
        if option == "name" and value is not None and name is None:
            name = _Opts.parse(value, implied="guest").get("guest") or None
        elif option == "uuid" and value and uuid is None:
            uuid = value
    return name, uuid


# ------------------------------------------------------------------------------------------------
# Argument vector
# ------------------------------------------------------------------------------------------------

_SECRET_VALUE = re.compile(r"((?:^|,)(?:password|passwd|data|secret)=)[^,]*")


def redacted(argv: list[str]) -> str:
    """The argument vector as one line for evidence, with password=/data= values replaced: an
    old-style ``-vnc ...,password=X`` or ``-object secret,data=X`` must never reach a report."""
    return " ".join(_SECRET_VALUE.sub(r"\1<redacted>", arg) for arg in argv)


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
    for option, value, index in _iter_options(argv):
        reader.handle(option, value, index)
    reader.finish()
    return reader.errors


def _iter_options(argv: list[str]) -> Iterator[tuple[str, str | None, int]]:
    """(option without dashes, its argument or None, argv index). Positional arguments are skipped."""
    index = 1 if argv and is_qemu_binary(argv[0]) else 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("-") or token in ("-", "--"):
            index += 1
            continue
        option = token[2:] if token.startswith("--") else token[1:]
        if option in FLAG_OPTIONS:
            yield option, None, index
            index += 1
            continue
        has_next = index + 1 < len(argv)
        if option in _VALUE_OPTIONS or (has_next and not argv[index + 1].startswith("-")):
            yield option, argv[index + 1] if has_next else None, index
            index += 2
        else:  # an option we do not know, without an argument
            index += 1


class _Malformed(Exception):
    """A value QEMU would reject; becomes one InputError at the option's locator."""


@dataclass
class _Opts:
    """A parsed QEMU option value: ordered (key, value) pairs; keys may repeat (``hostfwd``)."""
    pairs: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, implied: str | None = None) -> "_Opts":
        if text.lstrip().startswith("{"):
            return cls(_json_pairs(text))
        pairs: list[tuple[str, str]] = []
        for position, item in enumerate(_split_commas(text)):
            key, sep, value = item.partition("=")
            if sep:
                pairs.append((key, value))
            elif position == 0 and implied:
                pairs.append((implied, item))
            elif item.startswith("no") and len(item) > 2:
                pairs.append((item[2:], "off"))
            elif item:
                pairs.append((item, "on"))
        return cls(pairs)

    def get(self, key: str, default: str | None = None) -> str | None:
        # QEMU keeps the last value of a repeated single-valued key
        for name, value in reversed(self.pairs):
            if name == key:
                return value
        return default

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.pairs if name == key]

    def __contains__(self, key: str) -> bool:
        return any(name == key for name, _ in self.pairs)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.get(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise _Malformed(f"{key}={value!r} is not on/off")

    def port(self, key: str) -> int | None:
        value = self.get(key)
        return None if value is None or value == "" else _port(value, key)


def _split_commas(text: str) -> list[str]:
    items, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == ",":
            if text.startswith(",,", index):
                current.append(",")
                index += 2
                continue
            items.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    items.append("".join(current))
    return items


def _json_pairs(text: str) -> list[tuple[str, str]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"malformed JSON option value: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise _Malformed("JSON option value is not an object")
    pairs: list[tuple[str, str]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"str"}:  # QAPI's String wrapper: hostfwd, guestfwd
                flatten(prefix, value["str"])
            else:
                for key, item in value.items():
                    flatten(f"{prefix}.{key}" if prefix else key, item)
        elif isinstance(value, list):
            for item in value:
                flatten(prefix, item)
        elif isinstance(value, bool):
            pairs.append((prefix, "on" if value else "off"))
        elif value is not None:
            pairs.append((prefix, str(value)))

    flatten("", data)
    return pairs


def _port(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise _Malformed(f"{what}: {text!r} is not a port number")
    return int(text)


def normalise_host(host: str | None) -> str | None:
    """The contract's address: None for every address, brackets off IPv6, ``localhost`` as loopback."""
    if host is None:
        return None
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "":
        return None
    if host == "localhost":
        return "127.0.0.1"
    if host == "0":
        return "0.0.0.0"
    return host


def _split_host_port(text: str, what: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT``, ``[V6]:PORT`` -> (normalised host, port)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text.startswith(":", close + 1):
            raise _Malformed(f"{what}: {text!r} is not [ADDRESS]:PORT")
        return normalise_host(text[:close + 1]), _port(text[close + 2:], what)
    host, sep, port = text.rpartition(":")
    if not sep:
        raise _Malformed(f"{what}: {text!r} is not HOST:PORT")
    return normalise_host(host), _port(port, what)


def _model(driver: str | None) -> str | None:
    if driver and driver.startswith("virtio-net"):
        return "virtio"
    return driver or None


@dataclass
class _Chardev:
    """A character device backend, from ``-chardev`` or a legacy ``tcp:...`` spec."""
    backend: str
    locator: str
    transport: str | None = None      # tcp | udp | unix when it is a socket
    address: str | None = None
    port: int | None = None
    server: bool = False
    tls: bool = False
    detail: str = ""

    def listener(self, kind: str) -> Listener | None:
        if self.transport is None or not self.server:
            return None
        return Listener(kind=kind, transport=self.transport, address=self.address, port=self.port,
                        auth="tls" if self.tls else "none", locator=self.locator, tls=self.tls)


def _chardev_from_opts(opts: _Opts, locator: str) -> _Chardev:
    backend = opts.get("backend", "") or ""
    chardev = _Chardev(backend=backend, locator=locator, tls="tls-creds" in opts)
    if backend == "socket":
        if opts.get("path") or opts.get("abstract"):
            chardev.transport, chardev.address = "unix", opts.get("path") or "@" + (opts.get("abstract") or "")
        elif opts.get("port") is not None:
            chardev.transport = "tcp"
            chardev.address = normalise_host(opts.get("host"))
            chardev.port = opts.port("port")
        chardev.server = opts.flag("server")
        chardev.detail = "socket"
    elif backend == "udp":
        local_port = opts.port("localport")
        if local_port:
            chardev.transport, chardev.port, chardev.server = "udp", local_port, True
            chardev.address = normalise_host(opts.get("localaddr"))
        chardev.detail = "udp"
    else:
        chardev.detail = backend
    return chardev


def _chardev_from_spec(spec: str, locator: str) -> tuple[_Chardev | None, str | None, bool]:
    """A legacy device spec (``-monitor``, ``-serial``, ``-gdb``...): (chardev, id of an existing
    ``chardev:ID``, multiplexed with the monitor (``mon:``))."""
    with_monitor = spec.startswith("mon:")
    if with_monitor:
        spec = spec[4:]
    if spec.startswith("chardev:"):
        return None, spec[8:], with_monitor
    scheme, sep, rest = spec.partition(":")
    if not sep:
        return _Chardev(backend=spec.split(",", 1)[0], locator=locator, detail=spec), None, with_monitor
    if scheme in ("tcp", "telnet", "tn3270", "websocket"):
        address, _, options = rest.partition(",")
        host, port = _split_host_port(address, scheme)
        opts = _Opts.parse(options)
        chardev = _Chardev(backend="socket", locator=locator, transport="tcp", address=host, port=port,
                           server=opts.flag("server"), tls="tls-creds" in opts, detail=scheme)
        return chardev, None, with_monitor
    if scheme == "unix":
        path, _, options = rest.partition(",")
        opts = _Opts.parse(options)
        return (_Chardev(backend="socket", locator=locator, transport="unix", address=path,
                         server=opts.flag("server"), tls="tls-creds" in opts, detail="unix"), None, with_monitor)
    if scheme == "udp":
        # udp:[remote_host]:remote_port[@[src_ip]:src_port] - the local side is bound when given
        _, at, local = rest.partition("@")
        chardev = _Chardev(backend="udp", locator=locator, detail="udp")
        if at:
            host, port = _split_host_port(local, "udp local address")
            if port:
                chardev.transport, chardev.address, chardev.port, chardev.server = "udp", host, port, True
        return chardev, None, with_monitor
    return _Chardev(backend=scheme, locator=locator, detail=scheme), None, with_monitor


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
        self.nics: dict[str, Nic] = {}
        self.frontends: list[_Frontend] = []
        self.legacy_backends: list[Nic] = []       # -net user/tap/...: joined to -net nic by order
        self.legacy_frontends: list[_Frontend] = []
        self.legacy_names: dict[str, int] = {}
        self.nic_options = 0
        self.network_options_seen = False          # any -net/-nic/-netdev/-nodefaults disables QEMU's default NIC
        self.chardevs: dict[str, _Chardev] = {}
        self.chardev_kinds: dict[str, str] = {}
        self.fsdevs: dict[str, tuple[_Opts, str]] = {}
        self.fsdev_tags: dict[str, str] = {}
        self.virtiofs: list[tuple[str | None, str]] = []
        self.usb_redirections: list[tuple[str | None, str]] = []
        self.confidential_objects: dict[str, str] = {}
        self.confidential_support: str | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def locator(self, index: int, option: str) -> str:
        line = f"line {self.arg_lines[index]}" if self.arg_lines and index < len(self.arg_lines) else ""
        return ", ".join(part for part in (line, self.prefix, f"argv[{index}]") if part) + \
            (f" -{option}" if option else "")

    def error(self, locator: str, message: str) -> None:
        self.errors.append(InputError(self.origin, f"{locator}: {message}"))

    def listen(self, kind: str, transport: str, address: str | None, port: int | None, locator: str,
               auth: str = "none", tls: bool = False) -> None:
        """A host socket the VM's QEMU opens (auth "none": QEMU's sockets have none unless said)."""
        self.vm.listeners.append(Listener(kind=kind, transport=transport, address=address, port=port, auth=auth,
                                          locator=locator, tls=tls))

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
        if value is None:
            self.error(locator, "missing argument")
            return
        try:
            handler(value, locator)
        except _Malformed as exc:
            self.error(locator, str(exc))

    # -- networking ------------------------------------------------------------------------------
    def _opt_netdev(self, value: str, locator: str) -> None:
        self.network_options_seen = True
        opts = _Opts.parse(value, implied="type")
        netdev_id = opts.get("id")
        if not netdev_id:
            raise _Malformed("netdev has no id=")
        self.nics[netdev_id] = self.backend(opts.get("type") or "", netdev_id, opts, locator)

    def _opt_nic(self, value: str, locator: str) -> None:
        self.network_options_seen = True
        opts = _Opts.parse(value, implied="type")
        nic_type = opts.get("type") or ""
        if nic_type == "none":
            return
        nic_id = opts.get("id") or f"nic{self.nic_options}"
        self.nic_options += 1
        nic = self.backend(nic_type, nic_id, opts, locator)
        nic.model = _model(opts.get("model"))
        nic.mac = opts.get("mac")
        self.nics[nic_id] = nic

    def _opt_net(self, value: str, locator: str) -> None:
        self.network_options_seen = True
        opts = _Opts.parse(value, implied="type")
        net_type = opts.get("type") or ""
        if net_type == "none":
            return
        if net_type == "nic":
            self.legacy_frontends.append(_Frontend(opts.get("netdev"), _model(opts.get("model")),
                                                   opts.get("macaddr")))
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

    def backend(self, net_type: str, nic_id: str, opts: _Opts, locator: str) -> Nic:
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

    def user_network(self, nic_id: str, opts: _Opts, locator: str) -> None:
        for rule in opts.get_all("hostfwd"):
            try:
                self.vm.forwards.append(_hostfwd(rule, nic_id, locator))
            except _Malformed as exc:
                self.error(locator, str(exc))
        if "restrict" in opts:
            try:
                self.fact(f"qemu.netdev.{nic_id}.restrict", "on" if opts.flag("restrict") else "off", locator)
            except _Malformed as exc:
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

    def socket_network(self, opts: _Opts, locator: str) -> None:
        for key, transport in (("listen", "tcp"), ("mcast", "udp"), ("localaddr", "udp")):
            # mcast binds the group port: anyone on the segment can send frames into it;
            # localaddr is the bound end of a udp= tunnel
            value = opts.get(key)
            if value is not None and (key != "localaddr" or "udp" in opts):
                self.listen("net-socket", transport, *_split_host_port(value, key), locator)

    def socket_address_listener(self, opts: _Opts, prefix: str, transport: str, locator: str) -> None:
        address_type = opts.get(f"{prefix}.type")
        if address_type == "inet":
            self.listen("net-socket", transport, normalise_host(opts.get(f"{prefix}.host")),
                        opts.port(f"{prefix}.port"), locator)
        elif address_type == "unix":
            self.listen("net-socket", "unix", opts.get(f"{prefix}.path"), None, locator)

    # -- consoles, monitors, character devices ---------------------------------------------------
    def _opt_vnc(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="vnc")
        display = opts.get("vnc") or ""
        if display == "none" or opts.flag("reverse"):
            return  # no server socket (reverse connects out to a listening viewer)
        sasl = opts.flag("sasl")
        # tls-creds= today; tls / x509=DIR / x509verify=DIR before QEMU 2.x
        tls = "tls-creds" in opts or any(key in opts and (opts.get(key) or "").lower() not in _FALSE
                                         for key in ("tls", "x509", "x509verify"))
        # password=on, a bare "password", or an old password=SECRET: the value itself is never kept
        password = "password-secret" in opts or ("password" in opts and opts.get("password") not in _FALSE)
        auth = "sasl" if sasl else "password" if password else "tls" if tls else "none"
        if display.startswith("unix:"):
            self.listen("vnc", "unix", display[5:], None, locator, auth, tls)
            return
        host, sep, number = display.rpartition(":")
        if not sep or not number.isdigit():
            raise _Malformed(f"VNC display {display!r} is not [HOST]:DISPLAY, unix:PATH or none")
        port = VNC_BASE_PORT + int(number)
        if port > 65535:
            raise _Malformed(f"VNC display {number} is beyond the last port")
        address = normalise_host(host)
        self.listen("vnc", "tcp", address, port, locator, auth, tls)
        websocket = opts.get("websocket")
        if websocket is None or websocket.lower() in _FALSE:
            return
        if websocket.lower() in _TRUE:
            ws_address, ws_port = address, VNC_WEBSOCKET_BASE_PORT + int(number)
        elif websocket.isdigit():
            ws_address, ws_port = address, _port(websocket, "websocket")
        else:
            ws_address, ws_port = _split_host_port(websocket, "websocket")
        self.listen("websocket", "tcp", ws_address, ws_port, locator, auth, tls)

    def _opt_display(self, value: str, locator: str) -> None:
        if value.startswith("vnc="):
            self._opt_vnc(value[4:], locator)

    def _opt_spice(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value)
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
        chardev, existing, with_monitor = _chardev_from_spec(spec, locator)
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
        opts = _Opts.parse(value, implied="chardev")
        self.use_chardev(opts.get("chardev"), "monitor")

    def _opt_chardev(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="backend")
        chardev_id = opts.get("id")
        if not chardev_id:
            raise _Malformed("chardev has no id=")
        self.chardevs[chardev_id] = _chardev_from_opts(opts, locator)

    def _opt_incoming(self, value: str, locator: str) -> None:
        scheme, sep, rest = value.partition(":")
        if scheme in ("tcp", "rdma") and sep:
            address, _, _ = rest.partition(",")
            self.listen("migration", "tcp", *_split_host_port(address, "incoming"), locator)
        elif scheme == "unix" and sep:
            self.listen("migration", "unix", rest.split(",", 1)[0], None, locator)

    # -- devices ---------------------------------------------------------------------------------
    def _opt_device(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="driver")
        driver = opts.get("driver") or ""
        if "netdev" in opts:
            self.frontends.append(_Frontend(opts.get("netdev"), _model(driver), opts.get("mac")))
        if driver.startswith("vfio-pci"):
            self.vm.devices.append(Device(kind="pci-passthrough",
                                          detail=opts.get("host") or opts.get("sysfsdev") or "", locator=locator))
        elif driver.startswith("vfio-"):
            self.vm.devices.append(Device(kind="vfio-passthrough",
                                          detail=opts.get("sysfsdev") or opts.get("host") or driver, locator=locator))
        elif driver == "usb-host":
            identity = ",".join(f"{key}={opts.get(key)}" for key in
                                ("hostbus", "hostaddr", "hostport", "hostdevice", "vendorid", "productid")
                                if opts.get(key))
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
        opts = _Opts.parse(value, implied="fsdriver")
        self.add_9p_share(opts, opts.get("mount_tag"), locator)

    def _opt_fsdev(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="fsdriver")
        fsdev_id = opts.get("id")
        if not fsdev_id:
            raise _Malformed("fsdev has no id=")
        self.fsdevs[fsdev_id] = (opts, locator)

    def add_9p_share(self, opts: _Opts, tag: str | None, locator: str) -> None:
        driver = opts.get("fsdriver")
        if driver == "synth":
            return  # QEMU's test backend, no host files
        host_path = opts.get("path") if driver == "local" else None
        self.vm.shares.append(Share(kind="9p", host_path=host_path, guest_tag=tag or None,
                                    writable=not opts.flag("readonly"), locator=locator))
        model = opts.get("security_model")
        if model:
            self.fact(f"qemu.fsdev.{opts.get('id') or tag}.security_model", model, locator)

    # -- security ------------------------------------------------------------------------------
    def _opt_sandbox(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="enable")
        self.fact("qemu.sandbox", "on" if opts.flag("enable") else "off", locator)
        for key, setting in opts.pairs:
            if key != "enable":
                self.fact(f"qemu.sandbox.{key}", setting, locator)

    def _opt_runas(self, value: str, locator: str) -> None:
        self.fact("qemu.runas", value, locator)

    def _opt_run_with(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value)
        if opts.get("user"):
            self.fact("qemu.runas", opts.get("user"), locator)
        if opts.get("chroot"):
            self.fact("qemu.chroot", opts.get("chroot"), locator)

    def _opt_chroot(self, value: str, locator: str) -> None:
        self.fact("qemu.chroot", value, locator)

    def _opt_object(self, value: str, locator: str) -> None:
        # only the object's type and id are read: a secret object's data= is never looked at
        opts = _Opts.parse(value, implied="qom-type")
        kind = _CONFIDENTIAL_GUEST_OBJECTS.get(opts.get("qom-type") or "")
        if kind and opts.get("id"):
            self.confidential_objects[opts.get("id") or ""] = kind

    def _opt_machine(self, value: str, locator: str) -> None:
        opts = _Opts.parse(value, implied="type")
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
            self.vm.nics.append(Nic(id="user.0", mode="user", type="user",
                                    locator=self.locator(0, "") + " (no network option: QEMU's default "
                                                                  "user-mode network)"))
        self.vm.nics.extend(self.nics.values())
        for fsdev_id, (opts, locator) in self.fsdevs.items():
            self.add_9p_share(opts, self.fsdev_tags.get(fsdev_id), locator)
        for tag, locator in self.virtiofs:
            self.vm.shares.append(Share(kind="virtiofs", host_path=None, guest_tag=tag, writable=True,
                                        locator=locator))
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
        nic = self.nics.get(frontend.netdev or "") or next(
            (n for n in self.vm.nics if n.id == frontend.netdev), None)
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
        raise _Malformed(f"hostfwd {rule!r} is not [tcp|udp]:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT")
    protocol = protocol or "tcp"
    if protocol not in ("tcp", "udp"):
        raise _Malformed(f"hostfwd {rule!r}: protocol must be tcp or udp")
    host, host_port = _split_host_port(host_address, f"hostfwd {rule!r} host side")
    _, guest_port = _split_host_port(guest_side, f"hostfwd {rule!r} guest side")
    return Forward(protocol=protocol, host_ports=[host_port, host_port], guest_ports=[guest_port, guest_port],
                   host_address=host, nic=nic_id, locator=locator)
