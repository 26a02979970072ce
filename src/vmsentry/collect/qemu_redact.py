"""Redaction of QEMU arguments: the one place that decides what of an argument vector may be shown.

Every reader that records raw QEMU arguments as evidence (libvirt ``<qemu:commandline>``, Proxmox ``args:``)
passes them through ``redacted`` first.
"""

from __future__ import annotations

import re

_SECRET_VALUE = re.compile(r"((?:^|,)(?:password|passwd|data|secret)=)[^,]*")


def redacted(argv: list[str]) -> str:
    """The argument vector as one line for evidence, with password=/data= values replaced: an
    old-style ``-vnc ...,password=X`` or ``-object secret,data=X`` must never reach a report."""
    return " ".join(_SECRET_VALUE.sub(r"\1<redacted>", arg) for arg in argv)
