"""Rule predicates. Each is a small function registered under the name a catalogue entry's ``check``
field gives; it looks at one asset of the normalised inventory (never at a platform file) and returns
one ``Outcome`` or a list of them (one per offending element, so each gets its own evidence).

Results follow VSAT: fail / pass / unknown / not_applicable / error. Unknown is never reported as pass:
when the fact a rule needs was not collected, the predicate says ``unknown`` and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import KW_ONLY, dataclass
from functools import partial
from importlib import import_module
from typing import Any

from vmsentry.model.findings import STATUSES  # noqa: F401

_MODULES = (
    "vmsentry.analyse.checks.vm_network",
    "vmsentry.analyse.checks.vm_exposure",
    "vmsentry.analyse.checks.vm_isolation",
    "vmsentry.analyse.checks.networks",
    "vmsentry.analyse.checks.host_qemu_conf",
    "vmsentry.analyse.checks.host_libvirtd_conf",
    "vmsentry.analyse.checks.host_kernel",
    "vmsentry.analyse.checks.host_firewall",
    "vmsentry.analyse.checks.host_services",
    "vmsentry.analyse.checks.host_hardware",
    "vmsentry.analyse.checks.hyperv",
    "vmsentry.analyse.checks.proxmox",
    "vmsentry.analyse.checks.vmware",
    "vmsentry.analyse.checks.virtualbox",
)

CHECKS: dict[str, Callable[..., Any]] = {}


@dataclass(slots=True)
class Outcome:
    status: str
    key: str | None = None
    value: Any = None
    _: KW_ONLY
    file: str | None = None
    locator: str | None = None
    message: str | None = None  # why: shown for unknown/not_applicable, and beside a failure's evidence

    def evidence(self) -> dict[str, Any]:
        ev = {"file": self.file, "locator": self.locator, "key": self.key, "value": self.value}
        if self.message:
            ev["message"] = self.message
        return ev


# fail(key, value, *, file=, locator=, message=): a failure, with its evidence
fail = partial(Outcome, "fail")


_SHARED: dict[tuple[str, str | None, Any, str | None], Outcome] = {}


def _shared(status: str, key: str | None, value: Any, message: str | None) -> Outcome:
    """One Outcome for every asset that gets the same answer with no place of its own ("absent: the
    default applies", "no VNC listener"): the engine never changes an outcome, and a fleet scan makes
    hundreds of thousands of these."""
    found = _SHARED.get((status, key, value, message))
    if found is None:
        found = Outcome(status, key, value, message=message)
        if len(_SHARED) < 8192:  # per-VM values ("vnc 127.0.0.1:5901") must not pile up
            _SHARED[(status, key, value, message)] = found
    return found


def passed(
    key: str | None = None,
    value: Any = None,
    *,
    file: str | None = None,
    locator: str | None = None,
    message: str | None = None,
) -> Outcome:
    if file is None and locator is None and message is None and type(value) is str:
        return _shared("pass", key, value, None)
    return Outcome("pass", key, value, file=file, locator=locator, message=message)


def unknown(message: str, key: str | None = None, *, file: str | None = None, locator: str | None = None) -> Outcome:
    if file is None and locator is None:
        return _shared("unknown", key, None, message)
    return Outcome("unknown", key, file=file, locator=locator, message=message)


def not_applicable(message: str) -> Outcome:
    return _shared("not_applicable", None, None, message)


def fail_each_device(vm, kind: str, key: str, when_none: Outcome) -> Outcome | list[Outcome]:
    """One failure per device of ``kind`` (each with its own locator), or ``when_none``."""
    found = [fail(key, d.detail, locator=d.locator) for d in vm.devices if d.kind == kind]
    return found or when_none


def snapshot_memory(vm, prefix: str, suffix: str, key: str, none: str, clean: str) -> Outcome | list[Outcome]:
    """One failure per snapshot that saved the guest's RAM (facts ``<prefix><snapshot name><suffix>``)."""
    if not vm.snapshots:
        return not_applicable(none)
    found = [
        fail(key, f"{k[len(prefix) : -len(suffix)]}: {v['value']}", locator=v["at"])
        for k, v in vm.facts.items()
        if k.startswith(prefix) and k.endswith(suffix)
    ]
    return found or passed(key, clean)


def check(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in CHECKS:
            raise RuntimeError(f"check {name} registered twice")
        CHECKS[name] = fn
        return fn

    return register


def load_checks() -> dict[str, Callable[..., Any]]:
    for mod in _MODULES:
        import_module(mod)
    return CHECKS


def as_outcomes(result: Outcome | Iterable[Outcome] | None) -> list[Outcome]:
    if result is None:
        return []
    if isinstance(result, Outcome):
        return [result]
    return list(result)
