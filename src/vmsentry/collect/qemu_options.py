"""QEMU's option syntax: which options take an argument, and option values.

Option values use QEMU's ``key=value,key2=value2`` syntax (QemuOpts): ``,,`` is a literal comma, a bare
first item is the value of the option's implied key (``-netdev user`` is ``type=user``), and a later bare
``flag`` means ``flag=on`` and ``noflag`` means ``flag=off``. ``-netdev``/``-device``/``-object`` also
accept JSON, as libvirt writes them.

Addresses follow the inventory contract: an omitted or empty host means every host address (``null``);
``0.0.0.0`` and ``::`` stay as written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# QEMU options that take no argument (from ``qemu-system-x86_64 -help``); every other option takes one.
FLAG_OPTIONS = frozenset(
    {
        "S",
        "s",
        "audio-help",
        "daemonize",
        "enable-kvm",
        "enable-sync-profile",
        "full-screen",
        "mem-prealloc",
        "no-acpi",
        "no-fd-bootchk",
        "no-hpet",
        "no-reboot",
        "no-shutdown",
        "no-user-config",
        "nodefaults",
        "nographic",
        "only-migratable",
        "portrait",
        "singlestep",
        "snapshot",
        "usb",
        "version",
        "win2k-hack",
        "xen-attach",
        "xen-domid-restrict",
        "preconfig",
        "h",
        "help",
        "curses",
        "alt-grab",
        "ctrl-grab",
        "no-quit",
        "sdl",
        "no-frame",
        "enable-fips",
        "semihosting",
        "perfmap",
        "jitdump",
        "nodefconfig",
        "no-kvm",
        "no-kvm-irqchip",
        "no-kvm-pit",
        "old-param",
    }
)
# Options we read; they always consume the next argument, even one that starts with '-'.
_VALUE_OPTIONS = frozenset(
    {
        "netdev",
        "net",
        "nic",
        "device",
        "vnc",
        "display",
        "spice",
        "monitor",
        "qmp",
        "qmp-pretty",
        "mon",
        "serial",
        "parallel",
        "gdb",
        "chardev",
        "incoming",
        "virtfs",
        "fsdev",
        "sandbox",
        "runas",
        "run-with",
        "chroot",
        "object",
        "machine",
        "M",
        "name",
        "uuid",
    }
)
# QEMU's spellings of a boolean option value
ON_VALUES = frozenset({"on", "yes", "true", "y"})
OFF_VALUES = frozenset({"off", "no", "false", "n"})


def is_qemu_binary(token: str) -> bool:
    base = os.path.basename(token)
    return base.startswith("qemu-system-") or base in ("qemu-kvm", "kvm")


def iter_options(argv: list[str]) -> Iterator[tuple[str, str | None, int]]:
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


class MalformedOption(Exception):
    """A value QEMU would reject; becomes one InputError at the option's locator."""


@dataclass
class QemuOpts:
    """A parsed QEMU option value: ordered (key, value) pairs; keys may repeat (``hostfwd``)."""

    pairs: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str, implied: str | None = None) -> QemuOpts:
        if text.lstrip().startswith("{"):
            return cls(_json_pairs(text))
        pairs: list[tuple[str, str]] = []
        for position, item in enumerate(split_commas(text)):
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
        if lowered in ON_VALUES:
            return True
        if lowered in OFF_VALUES:
            return False
        raise MalformedOption(f"{key}={value!r} is not on/off")

    def port(self, key: str) -> int | None:
        value = self.get(key)
        return None if value is None or value == "" else port_number(value, key)


def split_commas(text: str, unescape: bool = True) -> list[str]:
    """QEMU's option list ``a=1,b=x,,y`` -> ``["a=1", "b=x,y"]``: commas split, a doubled comma is a comma
    of the value (kept doubled with ``unescape=False``, so that the list can be joined back as it was)."""
    items, current, index = [], [], 0
    while index < len(text):
        char = text[index]
        if char == ",":
            if text.startswith(",,", index):
                current.append("," if unescape else ",,")
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
        raise MalformedOption(f"malformed JSON option value: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise MalformedOption("JSON option value is not an object")
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


def port_number(text: str, what: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise MalformedOption(f"{what}: {text!r} is not a port number")
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


def split_host_port(text: str, what: str) -> tuple[str | None, int]:
    """``HOST:PORT``, ``:PORT``, ``[V6]:PORT`` -> (normalised host, port)."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text.startswith(":", close + 1):
            raise MalformedOption(f"{what}: {text!r} is not [ADDRESS]:PORT")
        return normalise_host(text[: close + 1]), port_number(text[close + 2 :], what)
    host, sep, port = text.rpartition(":")
    if not sep:
        raise MalformedOption(f"{what}: {text!r} is not HOST:PORT")
    return normalise_host(host), port_number(port, what)
