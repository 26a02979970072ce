"""What the rules on libvirt's daemon settings files share (host_qemu_conf.py for ``qemu.conf``,
host_libvirtd_conf.py for ``libvirtd.conf`` / ``virtproxyd.conf``): reading one file's collected facts and
reporting a setting with its line. The facts hold only keys present in the file; an absent key means
libvirt's built-in default (src/qemu/qemu.conf.in, src/remote/libvirtd.conf.in), which each predicate
applies explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmsentry.analyse.addresses import is_loopback
from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.context import ScanContext
from vmsentry.model import Host

_DEFAULT_FILE = {"qemu_conf": "/etc/libvirt/qemu.conf", "libvirtd_conf": "/etc/libvirt/libvirtd.conf"}


@dataclass
class Conf:
    file: str
    values: dict[str, Any]
    lines: dict[str, Any]

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, default)
        return value.strip().strip('"') if isinstance(value, str) else value

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"line {line}" if line is not None else f"{key} (not set: built-in default)"

    def fail(self, key: str, default: Any, message: str) -> Outcome:
        return fail(key, self._shown(key, default), file=self.file, locator=self.where(key), message=message)

    def ok(self, key: str, default: Any, message: str | None = None) -> Outcome:
        return passed(key, self._shown(key, default), file=self.file, locator=self.where(key), message=message)

    def judge(self, bad: bool, key: str, default: Any, message: str) -> Outcome:
        """One setting with one way to be wrong: a failure saying ``message``, else a pass."""
        return self.fail(key, default, message) if bad else self.ok(key, default)

    def _shown(self, key: str, default: Any) -> Any:
        if key in self.values:
            value = self.values[key]
            if ("password" in key or "secret" in key) and value not in ("", None):
                return "<set>"  # never echo a secret, even if a collector kept it
            return value
        return f"{default} (default)" if default is not None else "(unset, default)"


def _libvirt_absent(host: Host) -> bool:
    """Positive evidence that libvirt is not installed/running on the host."""
    versions, lv = host.versions, host.facts.get("libvirt")
    return (
        versions is not None
        and not versions.libvirt
        and isinstance(lv, dict)
        and lv.get("daemon_running") is False
        and not lv.get("processes")
    )


def conf_of(host: Host, name: str) -> Conf | Outcome:
    raw = host.facts.get(name)
    label = "qemu.conf" if name == "qemu_conf" else "libvirtd.conf/virtproxyd.conf"
    if not isinstance(raw, dict):
        if _libvirt_absent(host):
            return not_applicable(f"libvirt is not installed or running on this host ({label} not present)")
        errors = [
            e
            for e in host.facts.get("collection_errors") or []
            if isinstance(e, str) and label.split("/")[0].split(".")[0] in e
        ]
        extra = f" (collector said: {errors[0]})" if errors else ""
        return unknown(f"{label} not collected for this host{extra}", name)
    values = raw.get("values")
    if not isinstance(values, dict):
        return unknown(f"{label} was found but its values were not parsed", name, file=raw.get("file"))
    return Conf(raw.get("file") or _DEFAULT_FILE[name], values, raw.get("lines") or {})


def with_conf(name: str):
    """Makes ``fn(host, ctx, conf)`` a predicate that first reads the ``name`` settings file; when it was not
    collected (or libvirt is absent) that outcome is the rule's."""

    def wrap(fn):
        def predicate(host: Host, ctx: ScanContext):
            conf = conf_of(host, name)
            return conf if isinstance(conf, Outcome) else fn(host, ctx, conf)

        predicate.__name__ = predicate.__qualname__ = fn.__name__
        predicate.__doc__ = fn.__doc__
        return predicate

    return wrap


def conf_check(check_name: str, conf_name: str):
    """``@check(check_name)`` and ``@with_conf(conf_name)`` in one: a rule about one libvirt settings file."""

    def register(fn):
        return check(check_name)(with_conf(conf_name)(fn))

    return register


def as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v).strip().strip('"') for v in value]
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [p.strip().strip('"') for p in inner.split(",") if p.strip()] if inner else []
    return [text.strip('"')]


def listens_publicly(addr: Any) -> bool:
    """A listen address that is not loopback ('0', '' and '0.0.0.0' are every address)."""
    text = "" if addr is None else str(addr).strip().strip('"')
    if text in ("", "0"):
        return True
    return not is_loopback(text)
