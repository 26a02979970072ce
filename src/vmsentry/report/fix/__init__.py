"""Renderers of a ``FixPlan`` (model/fix.py): ``sh`` (idempotent POSIX shell), ``ansible`` (a playbook),
``patch`` (a unified diff of the definition files the scan read) and ``json`` (the plan itself).
``RENDERERS`` maps a format to ``render(plan, secrets, base)``; a platform adds its format with one line.

Secrets (a console password) are made here, when the script is written, by ``Secrets``: never in the plan,
its JSON or an audit entry. The command prints each once to stderr; the script holds it, so write it to a
file only you can read.
"""

from __future__ import annotations

import importlib
import json
import secrets as _random
import string
from typing import Any

from vmsentry.model.fix import FixPlan

RENDERERS = {
    "sh": "vmsentry.report.fix.sh",
    "ansible": "vmsentry.report.fix.ansible",
    "patch": "vmsentry.report.fix.patch",
    "powershell": "vmsentry.report.fix.powershell",
    "json": "vmsentry.report.fix",
}
# QEMU's VNC authentication (DES challenge) uses the first 8 characters of a password
SECRET_LENGTH = {"vnc-password": 8}
_ALPHABET = string.ascii_letters + string.digits


class Secrets:
    """One generated value per (what, where); ``made`` lists them for the one stderr line each."""

    def __init__(self) -> None:
        self.made: dict[tuple[str, str], str] = {}

    def value(self, what: str, where: str) -> str:
        key = (what, where)
        if key not in self.made:
            self.made[key] = "".join(_random.choice(_ALPHABET) for _ in range(SECRET_LENGTH.get(what, 20)))
        return self.made[key]


def conf_value(value: Any) -> str:
    """A value as qemu.conf / libvirtd.conf write it: text quoted, numbers bare, lists as ["a", "b"]."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(conf_value(str(v)) for v in value) + "]"
    return json.dumps(str(value))


def render(plan: FixPlan, secrets: Secrets | None = None, base: str = ".") -> str:
    """The JSON form: the plan itself (secrets are named, never valued)."""
    return json.dumps(plan.to_dict(), indent=2, default=str) + "\n"


def render_as(fmt: str, plan: FixPlan, secrets: Secrets, base: str = ".") -> str:
    return importlib.import_module(RENDERERS[fmt]).render(plan, secrets, base)
