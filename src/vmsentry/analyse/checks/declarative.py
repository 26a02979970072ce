"""Checks as data: a catalogue rule that only compares one collected setting with a wanted value carries a
``test:`` block instead of naming a Python predicate (``check:``). A rule has exactly one of the two. This
module validates a ``test:`` block when the catalogue loads and turns it into a predicate that returns the
same ``Outcome`` the hand-written one did (status, key, value, locator, message), so reports do not change.

The block, in the spirit of kube-bench's ``test_items`` with ``compare: {op, value}``::

    test:
      fact: vmx.isolation.tools.copy.disable   # the asset fact read: {"value": ..., "at": locator}
      key: isolation.tools.copy.disable        # the evidence key shown
      op: truthy                               # how the value is judged (OPS below)
      value: ...                               # what it is compared with (not for truthy/falsy/unset)
      absent: {status: pass, value: "absent (the secure default applies)"}
      not_applicable_when:                     # optional, checked first, in order
        - {fact: vmx.product, op: eq, value: hosted, message: "Workstation/Fusion VM: ..."}
      pass: {value: Reject}                    # optional: shown instead of the fact's value
      fail: {value: Accept, message: "forged transmits accepted on port group {name}"}

Operators (the value compared is the fact's ``value``):
  - ``eq`` / ``ne``: a YAML boolean compares by identity (``value is true``: a JSON ``true``, not the text);
    a text compares with the value as text, stripped and case-insensitively (``.vmx`` keys and PowerShell
    enumerations are case-insensitive); a number compares with ``==``.
  - ``in`` / ``not_in``: ``eq`` against each item of a list.
  - ``gte`` / ``lte``: numbers; a value that is not a number fails.
  - ``truthy`` / ``falsy``: the boolean spellings of the platforms' files: ``true/1/yes/on`` and
    ``false/0/no/off`` (and JSON booleans); a value in neither set fails both. In a precondition an
    absent fact is falsy.
  - ``unset``: the setting must not be there at all; any value fails.

``absent`` says what a missing fact means: ``pass`` or ``fail`` with the ``value`` shown (and for a fail an
optional ``message``), ``unknown`` or ``not_applicable`` with the ``message`` shown. Outcomes of an absent
fact carry no locator. A precondition is judged on the fact's value (``None`` when absent); when it holds
the rule is not applicable and its ``message`` is shown. Messages may name ``{name}`` (the asset's name) and,
in a precondition, ``{value}`` (the fact's value, ``unknown`` when absent or empty).

A second shape judges the VM's devices of some kinds (one failure per device, with its own locator)::

    test:
      devices: [pci-passthrough]               # device kinds (vm.devices[].kind)
      key: hostpci
      shown: "{detail}"                        # the failure's value: "{detail}" or "{kind} {detail}"
      absent: {status: not_applicable, message: "no hostpci device"}   # no such device

A third shape judges one kernel setting of a Linux host (``Host.sysctls``), compared as an integer; the
outcome names the sysctl and its ``/proc/sys`` path, as the hand-written host predicates do::

    test:
      sysctl: net.ipv4.conf.all.send_redirects
      op: eq                                   # eq ne in not_in gte lte, on the integer value
      value: 0
      pass: {message: "..."}                   # optional messages beside the value shown
      fail: {message: "..."}

Sysctls not collected for the host: unknown, with what the collector said; this one sysctl absent: unknown.

What needs more than one fact compared with a constant (loops over NICs or devices, derived values,
context from other assets) stays a Python predicate in the platform's module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vmsentry.analyse.checks import Outcome, fail, not_applicable, passed, unknown

TRUE_WORDS = frozenset(("true", "1", "yes", "on"))
FALSE_WORDS = frozenset(("false", "0", "no", "off"))
OPS = ("eq", "ne", "in", "not_in", "gte", "lte", "truthy", "falsy", "unset")
_NEEDS_VALUE = ("eq", "ne", "in", "not_in", "gte", "lte")
ABSENT_STATUSES = ("pass", "fail", "unknown", "not_applicable")
_TEST_FIELDS = {"fact", "key", "op", "value", "absent", "not_applicable_when", "pass", "fail"}
_DEVICE_FIELDS = {"devices", "key", "shown", "absent"}
_SYSCTL_FIELDS = {"sysctl", "op", "value", "pass", "fail"}
_SYSCTL_OPS = ("eq", "ne", "in", "not_in", "gte", "lte")
_DEVICE_SHOWN = ("{detail}", "{kind} {detail}")


class InvalidTest(ValueError):
    """A ``test:`` block that cannot be evaluated; the catalogue loader names the rule."""


def _text(value: Any) -> str:
    return str(value).strip().lower()


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(expected, bool):
        return value is expected
    if isinstance(expected, str):
        return value is not None and _text(value) == expected.lower()
    return value == expected


def _number(value: Any) -> float | None:
    try:
        return float(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return None


def _holds(op: str, value: Any, expected: Any) -> bool:
    """Whether ``value`` satisfies ``op`` (for a rule: passes; for a precondition: makes it not applicable)."""
    if op == "eq":
        return _equal(value, expected)
    if op == "ne":
        return not _equal(value, expected)
    if op == "in":
        return any(_equal(value, e) for e in expected)
    if op == "not_in":
        return not any(_equal(value, e) for e in expected)
    if op in ("gte", "lte"):
        number = _number(value)
        return number is not None and (number >= expected if op == "gte" else number <= expected)
    if op == "truthy":
        return value is True or (value is not None and value is not False and _text(value) in TRUE_WORDS)
    if op == "falsy":
        return value is None or value is False or (value is not True and _text(value) in FALSE_WORDS)
    return False  # unset: a value that is there never passes


# ------------------------------------------------------------------------------------------ validation


def _check_compare(block: dict[str, Any], where: str) -> None:
    op = block.get("op")
    if op not in OPS:
        raise InvalidTest(f"{where}: op {op!r} is not one of {', '.join(OPS)}")
    if op in _NEEDS_VALUE and "value" not in block:
        raise InvalidTest(f"{where}: op {op} needs a value")
    if op in ("in", "not_in") and not isinstance(block["value"], list):
        raise InvalidTest(f"{where}: op {op} needs a list value")
    if op in ("gte", "lte") and (isinstance(block["value"], bool) or not isinstance(block["value"], (int, float))):
        raise InvalidTest(f"{where}: op {op} needs a number value")
    if not isinstance(block.get("fact"), str) or not block["fact"]:
        raise InvalidTest(f"{where}: fact missing")


def _check_absent(absent: Any) -> None:
    if not isinstance(absent, dict) or absent.get("status") not in ABSENT_STATUSES:
        raise InvalidTest(f"test absent needs a status, one of {', '.join(ABSENT_STATUSES)}")
    extra = set(absent) - {"status", "value", "message"}
    if extra:
        raise InvalidTest(f"test absent has unknown field(s) {', '.join(sorted(extra))}")
    needed = "value" if absent["status"] in ("pass", "fail") else "message"
    if needed not in absent:
        raise InvalidTest(f"test absent {absent['status']} needs a {needed}")


def _validate_devices(test: dict[str, Any]) -> dict[str, Any]:
    extra = set(test) - _DEVICE_FIELDS
    if extra:
        raise InvalidTest(f"a devices test has unknown field(s) {', '.join(sorted(extra))}")
    for field in ("key", "shown", "absent"):
        if field not in test:
            raise InvalidTest(f"test lacks {field}")
    devices = test["devices"]
    if not isinstance(devices, list) or not devices or not all(isinstance(d, str) for d in devices):
        raise InvalidTest("test devices must be a list of device kinds")
    if test["shown"] not in _DEVICE_SHOWN:
        raise InvalidTest(f"test shown must be one of {', '.join(_DEVICE_SHOWN)}")
    _check_absent(test["absent"])
    return test


def _validate_sysctl(test: dict[str, Any]) -> dict[str, Any]:
    extra = set(test) - _SYSCTL_FIELDS
    if extra:
        raise InvalidTest(f"a sysctl test has unknown field(s) {', '.join(sorted(extra))}")
    if not isinstance(test["sysctl"], str) or not test["sysctl"]:
        raise InvalidTest("test sysctl must name a kernel setting")
    if test.get("op") not in _SYSCTL_OPS:
        raise InvalidTest(f"a sysctl test's op must be one of {', '.join(_SYSCTL_OPS)}")
    _check_compare({**test, "fact": test["sysctl"]}, "test")
    for status in ("pass", "fail"):
        shown = test.get(status)
        if shown is not None and (not isinstance(shown, dict) or set(shown) - {"message"}):
            raise InvalidTest(f"a sysctl test's {status} may give only a message")
    return test


def validate(test: Any) -> dict[str, Any]:
    """The ``test:`` block checked field by field; raises ``InvalidTest`` saying what is wrong."""
    if not isinstance(test, dict):
        raise InvalidTest("test must be a mapping")
    if "devices" in test:
        return _validate_devices(test)
    if "sysctl" in test:
        return _validate_sysctl(test)
    unknown_fields = set(test) - _TEST_FIELDS
    if unknown_fields:
        raise InvalidTest(f"test has unknown field(s) {', '.join(sorted(unknown_fields))}")
    for field in ("fact", "key", "op", "absent"):
        if field not in test:
            raise InvalidTest(f"test lacks {field}")
    _check_compare(test, "test")
    _check_absent(test["absent"])
    for status in ("pass", "fail"):
        shown = test.get(status)
        if shown is not None and (not isinstance(shown, dict) or set(shown) - {"value", "message"}):
            raise InvalidTest(f"test {status} may give only value and message")
    preconditions = test.get("not_applicable_when") or []
    if not isinstance(preconditions, list):
        raise InvalidTest("test not_applicable_when must be a list")
    for n, pre in enumerate(preconditions):
        if not isinstance(pre, dict) or set(pre) - {"fact", "op", "value", "message"}:
            raise InvalidTest(f"test not_applicable_when[{n}] may give only fact, op, value and message")
        _check_compare(pre, f"test not_applicable_when[{n}]")
        if pre["op"] == "unset":
            raise InvalidTest(f"test not_applicable_when[{n}]: op unset means nothing in a precondition")
        if not pre.get("message"):
            raise InvalidTest(f"test not_applicable_when[{n}] lacks message")
    return test


# ------------------------------------------------------------------------------------------ evaluation


def _shown(template: Any, asset: Any, **extra: Any) -> Any:
    return template.format(name=asset.name, **extra) if isinstance(template, str) and "{" in template else template


def _when_absent(absent: dict[str, Any], key: str, asset: Any) -> Outcome:
    status = absent["status"]
    if status == "pass":
        return passed(key, absent["value"])
    if status == "fail":
        return fail(key, absent["value"], message=_shown(absent.get("message"), asset))
    if status == "unknown":
        return unknown(_shown(absent["message"], asset), key)
    return not_applicable(_shown(absent["message"], asset))


def _device_predicate(test: dict[str, Any]) -> Callable[[Any, Any], Outcome | list[Outcome]]:
    kinds, key, shown, absent = frozenset(test["devices"]), test["key"], test["shown"], test["absent"]

    def evaluate(vm: Any, ctx: Any) -> Outcome | list[Outcome]:
        found = [
            fail(key, shown.format(kind=d.kind, detail=d.detail), locator=d.locator)
            for d in vm.devices
            if d.kind in kinds
        ]
        return found or _when_absent(absent, key, vm)

    return evaluate


def _sysctl_predicate(test: dict[str, Any]) -> Callable[[Any, Any], Outcome]:
    from vmsentry.analyse.checks.host_facts import missing
    from vmsentry.model import sysctl_path

    name, op, expected = test["sysctl"], test["op"], test.get("value")
    on_pass, on_fail = (test.get("pass") or {}).get("message"), (test.get("fail") or {}).get("message")
    where = sysctl_path(name)

    def evaluate(host: Any, ctx: Any) -> Outcome:
        if host.sysctls is None:
            return missing("sysctl values", host)
        number = host.sysctl_int(name)
        if number is None:
            return unknown(f"{name} not collected", name)
        shown = host.sysctls[name]
        if _holds(op, number, expected):
            return passed(name, shown, file=where, locator=name, message=on_pass)
        return fail(name, shown, file=where, locator=name, message=on_fail)

    return evaluate


def predicate(test: dict[str, Any]) -> Callable[[Any, Any], Outcome | list[Outcome]]:
    """The predicate a validated ``test:`` block stands for: ``predicate(asset, ctx) -> Outcome(s)``."""
    if "devices" in test:
        return _device_predicate(test)
    if "sysctl" in test:
        return _sysctl_predicate(test)
    fact_key, key, op, expected = test["fact"], test["key"], test["op"], test.get("value")
    preconditions = [(p["fact"], p["op"], p.get("value"), p["message"]) for p in test.get("not_applicable_when") or ()]
    absent = test["absent"]
    on_pass, on_fail = test.get("pass") or {}, test.get("fail") or {}

    def evaluate(asset: Any, ctx: Any) -> Outcome:
        facts = asset.facts
        for pre_fact, pre_op, pre_value, message in preconditions:
            got = facts.get(pre_fact)
            value = got["value"] if got is not None else None
            if _holds(pre_op, value, pre_value):
                return not_applicable(_shown(message, asset, value=value or "unknown"))
        fact = facts.get(fact_key)
        if fact is None:
            return _when_absent(absent, key, asset)
        value = fact["value"]
        if _holds(op, value, expected):
            return passed(
                key, on_pass.get("value", value), locator=fact["at"], message=_shown(on_pass.get("message"), asset)
            )
        return fail(key, on_fail.get("value", value), locator=fact["at"], message=_shown(on_fail.get("message"), asset))

    return evaluate
