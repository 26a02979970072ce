"""Fixes for a Linux/KVM host (findings of platform ``linux``): sysctls, persisted in
``/etc/sysctl.d/90-vmsentry.conf``, and keys of qemu.conf / libvirtd.conf. Everything here is data from the
catalogue (``fix:`` blocks and sysctl ``test:`` blocks); this module only says which file a change edits.
"""

from __future__ import annotations

from dataclasses import replace

from vmsentry.model.findings import Finding
from vmsentry.model.fix import Change, Unfixable

SYSCTL_FILE = "/etc/sysctl.d/90-vmsentry.conf"
FUNCTIONS: dict = {}  # no host fix needs logic beyond the data


def resolve(change: Change, finding: Finding) -> Change | Unfixable:
    if change.kind == "sysctl":
        return replace(change, target=SYSCTL_FILE, locator=change.key)
    if change.kind == "config_key":
        # the script edits the host's file; a patch edits the file the scan read (detail["file"])
        read = finding.evidence.get("file")
        locator = finding.evidence.get("locator") if finding.evidence.get("key") == change.key else None
        detail = {**change.detail, "file": read} if read and not str(read).startswith("/proc/") else change.detail
        before = change.before if finding.evidence.get("key") == change.key else None
        return replace(change, before=before, locator=locator, detail=detail)
    return change
