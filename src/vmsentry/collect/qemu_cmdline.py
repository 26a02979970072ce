"""QEMU started by hand: a copy of ``/proc/PID/cmdline``, a start script, or a file of arguments.

This module finds the QEMU command lines in such a file; ``qemu_argv.apply_args`` reads what each one
makes the host expose, ``qemu_options`` the option syntax.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator

from vmsentry.collect.qemu_argv import apply_args
from vmsentry.collect.qemu_options import QemuOpts, is_qemu_binary, iter_options
from vmsentry.collect.source_file import NOT_UTF8, decode_text, read_bytes
from vmsentry.model import VM, InputError, Inventory, Source

# Programs that run another command; a start script often puts one of these before QEMU.
_WRAPPERS = frozenset(
    {
        "exec",
        "sudo",
        "doas",
        "nohup",
        "env",
        "nice",
        "ionice",
        "taskset",
        "numactl",
        "chrt",
        "time",
        "command",
        "setsid",
        "stdbuf",
        "runuser",
        "setpriv",
    }
)
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


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
            inv.errors.append(InputError(path, NOT_UTF8))
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
        if not (
            token in _WRAPPERS
            or _ASSIGNMENT.match(token)
            or token.startswith("-")
            or (previous.startswith("-") and "=" not in previous)
        ):
            return None
        previous = token
    return None


def _commands_in_text(path: str, text: str, errors: list[InputError]) -> Iterator[tuple[list[str], list[int]]]:
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


def vm_from_argv(
    argv: list[str], fallback_name: str, source: Source, locator: str = "", arg_lines: list[int] | None = None
) -> tuple[VM, list[InputError]]:
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
    for option, value, _ in iter_options(argv):
        if option == "name" and value is not None and name is None:
            name = QemuOpts.parse(value, implied="guest").get("guest") or None
        elif option == "uuid" and value and uuid is None:
            uuid = value
    return name, uuid
