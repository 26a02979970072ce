"""Checking a saved inventory (``vmsentry.inventory/1``) before anything uses it.

A saved inventory is input like any other: it may have been written by hand, by a newer vmsentry, or by
someone who wants a traceback. ``check_inventory`` compares the document with the schema and names the
first field that does not fit by its JSON path::

    vms[3].nics[0].mac: expected a string or null, got 5

The schema is the records themselves: each field's type annotation in ``inventory.py`` and ``host.py``
(the contract's "Inventory JSON" and the project's extensions), so a field added there is checked
without a second list to keep in step. What annotations cannot say (a mode from ``NIC_MODES``, a port
range of two ports) is in ``_VALUES`` below. Unknown fields are still ignored (a newer file loads);
a field the record cannot do without (a VM's ``name``) must be there.
"""

from __future__ import annotations

import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from typing import Any, get_args, get_origin, get_type_hints

from vmsentry.model.host import _GROUPS, Host
from vmsentry.model.inventory import AUTH_KINDS, NIC_MODES, VM, Forward, InputError, Listener, Network, Nic, NwFilter

TOP_LISTS = {"hosts": Host, "networks": Network, "vms": VM, "nwfilters": NwFilter, "errors": InputError}


class SchemaError(ValueError):
    """``path``: where in the document (``vms[3].nics[0].mac``); ``str(exc)`` is ``path: problem``."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


def _one_of(allowed: tuple[str, ...]) -> typing.Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if value in allowed else f"expected one of {', '.join(allowed)}, got {_shown(value)}"

    return check


def _port(value: Any) -> str | None:
    return None if value is None or 0 <= value <= 65535 else f"expected a port 0-65535, got {_shown(value)}"


def _port_range(value: Any) -> str | None:
    if len(value) != 2 or not all(0 <= p <= 65535 for p in value) or value[0] > value[1]:
        return f"expected a port range [first, last] within 0-65535, got {_shown(value)}"
    return None


# value rules beyond the type, checked once the type is right
_VALUES: dict[tuple[type, str], typing.Callable[[Any], str | None]] = {
    (Nic, "mode"): _one_of(NIC_MODES),
    (Network, "mode"): _one_of(NIC_MODES),
    (Listener, "auth"): _one_of(AUTH_KINDS),
    (Listener, "transport"): _one_of(("tcp", "udp", "unix")),
    (Listener, "port"): _port,
    (Forward, "host_ports"): _port_range,
    (Forward, "guest_ports"): _port_range,
}


def check_inventory(doc: Any) -> None:
    """Raise ``SchemaError`` naming the first field of ``doc`` that does not follow the schema."""
    if not isinstance(doc, dict):
        raise SchemaError("(top level)", f"expected an object, got {_shown(doc)}")
    for key, cls in TOP_LISTS.items():
        items = doc.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise SchemaError(key, f"expected a list, got {_shown(items)}")
        for index, item in enumerate(items):
            if cls is Host:
                _check_host(item, f"{key}[{index}]")
            else:
                _check_record(cls, item, f"{key}[{index}]")


def _check_host(data: Any, path: str) -> None:
    """A host is read from ``name``, ``platform`` and ``facts``; the typed groups inside ``facts``
    (``facts.listening``, ``facts.firewall`` ...) have the types of the Host fields they load into."""
    _check_record(Host, data, path, only=("name", "platform", "facts"))
    hints = _hints(Host)
    facts = data.get("facts") or {}
    for key, (attr, _) in _GROUPS.items():
        if facts.get(key) is not None:
            _check(hints[attr], facts[key], f"{path}.facts.{key}", as_read=True)


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _check_record(cls: type, data: Any, path: str, only: tuple[str, ...] | None = None, as_read: bool = False) -> None:
    if not isinstance(data, dict):
        raise SchemaError(path, f"expected an object, got {_shown(data)}")
    for name, tp, required, rule in _plan(cls, only):
        if name not in data:
            if required:
                raise SchemaError(f"{path}.{name}", "missing")
            continue
        value = data[name]
        if value is None and tp in _OPTIONAL_SCALARS:  # the commonest case, without building a path
            continue
        if type(value) is _OPTIONAL_SCALARS.get(tp) and not rule:
            continue
        _check(tp, value, f"{path}.{name}", as_read)
        problem = rule(value) if rule and value is not None else None
        if problem:
            raise SchemaError(f"{path}.{name}", problem)


# ``X | None`` annotations of a scalar -> the type a value must have exactly (fast path above)
_OPTIONAL_SCALARS: dict[Any, type] = {str | None: str, bool | None: bool, int | None: int}


@cache
def _plan(cls: type, only: tuple[str, ...] | None) -> tuple[tuple[str, Any, bool, Any], ...]:
    """(field, annotation, required, value rule) for each field a saved record may carry."""
    hints = _hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is MISSING and f.default_factory is MISSING, _VALUES.get((cls, f.name)))
        for f in fields(cls)
        if not f.name.startswith("_") and not (only and f.name not in only)
    )


def _check(tp: Any, value: Any, path: str, as_read: bool = False) -> None:
    """``as_read``: a host group's text fields keep values as the host reported them (``nested``: "Y"
    from sysfs, false in a hand-written file); the readers of those fields compare them as text."""
    if tp is Any:
        return
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        if value is None and len(options) < len(get_args(tp)):
            return
        if len(options) == 1:
            try:
                _check(options[0], value, path, as_read)
            except SchemaError as exc:
                if exc.path != path:
                    raise
                raise SchemaError(path, f"expected {_describe(tp)}, got {_shown(value)}") from None
            return
        if not any(_fits(option, value, as_read) for option in options):
            raise SchemaError(path, f"expected {_describe(tp)}, got {_shown(value)}")
        return
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(path, f"expected {_describe(tp)}, got {_shown(value)}")
        (item_type,) = get_args(tp) or (Any,)
        for index, item in enumerate(value):
            _check(item_type, item, f"{path}[{index}]", as_read)
        return
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(path, f"expected {_describe(tp)}, got {_shown(value)}")
        _, item_type = get_args(tp) or (str, Any)
        for key, item in value.items():
            _check(item_type, item, f"{path}.{key}", as_read)
        return
    if is_dataclass(tp):
        _check_record(tp, value, path, as_read=as_read)
        return
    if not _fits(tp, value, as_read):
        raise SchemaError(path, f"expected {_describe(tp)}, got {_shown(value)}")


def _fits(tp: Any, value: Any, as_read: bool = False) -> bool:
    """A scalar type (JSON's booleans are not numbers here)."""
    if as_read and tp is str:
        return isinstance(value, (str, int, float))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    origin = get_origin(tp) or tp
    return isinstance(value, origin) if isinstance(origin, type) else True


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        words = [_describe(a) for a in args if a is not type(None)]
        return " or ".join(words + (["null"] if type(None) in args else []))
    if origin is list:
        return "a list"
    if origin is dict or is_dataclass(tp):
        return "an object"
    return _NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _shown(value: Any) -> str:
    """A value as JSON would write it, short (never a Python repr)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return '"' + "".join(c if c.isprintable() else "?" for c in text) + '"'
    if isinstance(value, list):
        if len(value) <= 4 and all(isinstance(v, (int, float, str, bool)) or v is None for v in value):
            return "[" + ", ".join(_shown(v) for v in value) + "]"
        return "a list"
    return "an object"
