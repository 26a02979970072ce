"""Redaction of QEMU arguments: the one place that decides what of an argument vector may be shown.

Every reader that records raw QEMU arguments as evidence (libvirt ``<qemu:commandline>``, Proxmox ``args:``)
passes them through ``redacted`` first. Redaction follows QEMU's own syntax rather than a pattern over the
text, because each of these carries a secret and a pattern misses some:

* ``key=value`` option lists, where ``,,`` is an escaped comma inside a value
  (``-object secret,id=s0,data=PW,,STILL-PW``);
* the JSON form of ``-object``/``-blockdev``/``-device`` (``{"qom-type":"secret","data":"PW"}``);
* protocol filenames inside a value: rbd's ``rbd:pool/img:id=admin:key=PW``, and URLs with credentials
  (``https://user:PW@host/...``, ``iscsi://user%PW@host/...``).

A value is secret when its key names one (``model.text.is_secret_key``); a key that only names *which*
secret object to use (``password-secret=s0``, ``key-secret=s0``) is an id and stays. Inside a value,
``model.text.redact_credentials`` (the redactor every error excerpt passes too) hides URL passwords and
rbd's ``key=``.
"""

from __future__ import annotations

import json
from typing import Any

from vmsentry.collect.qemu_options import split_commas
from vmsentry.model.text import REDACTED, is_secret_key, redact_credentials


def _redact_options(arg: str) -> str:
    out = []
    for part in split_commas(arg, unescape=False):
        key, eq, value = part.partition("=")
        if eq and is_secret_key(key):
            out.append(f"{key}={REDACTED}")
        else:
            out.append(redact_credentials(part))
    return ",".join(out)


def _redact_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_key(str(k)) else _redact_json(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_json(v) for v in value]
    if isinstance(value, str):
        return redact_credentials(value)
    return value


def redact_arg(arg: str) -> str:
    """One argument with every secret value replaced by ``<redacted>``."""
    stripped = arg.lstrip()
    if stripped.startswith("{"):
        try:
            return json.dumps(_redact_json(json.loads(stripped)), separators=(",", ":"))
        except (ValueError, RecursionError):
            # not valid JSON (or quotes lost to a shell's word splitting): every secret-named member
            # is still hidden by the generic redactor
            return redact_credentials(arg)
    return _redact_options(arg)


def redacted(argv: list[str]) -> str:
    """The argument vector as one line for evidence, every secret value replaced (see the module text)."""
    return " ".join(redact_arg(arg) for arg in argv)
