"""The ``fix:`` block of a catalogue rule: how ``vmsentry fix`` (act/fix) fixes a failure, per platform, as
data. Validated here when the catalogue loads, so a typo fails the build, not a user's run::

    fix:
      linux:                                   # a platform of the rule (model.rule.PLATFORMS) or "all"
        summary: "VNC consoles listen on loopback only"          # what it changes
        breaks: "remote viewers must tunnel over SSH"             # what could break
        restart: service                       # none | service | vm (default none)
        service: libvirtd                      # the service restarted when a file changed
        changes:
          - {kind: config_key, target: /etc/libvirt/qemu.conf, key: vnc_listen, after: "127.0.0.1"}
          - {kind: sysctl, key: "{key}", after: 1}               # {key}: the finding's evidence key
          - {kind: xml_edit, op: set, key: listen, after: "127.0.0.1"}   # on the element the finding names
          - {kind: config_key, target: /etc/libvirt/qemu.conf, key: vnc_password, secret: vnc-password}
      libvirt:
        function: nic_spoof_filter             # a planner function (act/fix/<platform>.py) where logic is needed
        baseline: [net.ipv4.conf.all.rp_filter]   # {key} in a host baseline template (fix --template);
                                               # "{bridge}" in a key = every bridge present when it runs
      qemu:
        unfixable: "a bare QEMU command line: change the script that starts it"

Texts may name ``{key}``, ``{value}``, ``{file}``, ``{name}`` (the asset's name) and ``{locator}`` of the
finding. ``xml_edit`` ops: ``set`` (attribute ``key`` = ``after``), ``ensure`` (a child element ``key``
with ``attrs``), ``remove`` (the element). Their element is the finding's XPath unless ``element`` names one.
"""

from __future__ import annotations

from typing import Any

from vmsentry.model.fix import CHANGE_KINDS, RESTARTS
from vmsentry.model.rule import PLATFORMS

XML_OPS = ("set", "ensure", "remove")
_BLOCK_FIELDS = {"summary", "breaks", "restart", "service", "changes", "function", "unfixable", "baseline"}
_CHANGE_FIELDS = {"kind", "target", "key", "after", "secret", "op", "element", "attrs", "only_key"}


class InvalidFix(ValueError):
    """A ``fix:`` block that cannot be planned; the catalogue loader names the rule."""


def _validate_change(change: Any, where: str) -> None:
    if not isinstance(change, dict):
        raise InvalidFix(f"{where} must be a mapping")
    extra = set(change) - _CHANGE_FIELDS
    if extra:
        raise InvalidFix(f"{where} has unknown field(s) {', '.join(sorted(extra))}")
    if change.get("kind") not in CHANGE_KINDS:
        raise InvalidFix(f"{where}: kind {change.get('kind')!r} is not one of {', '.join(CHANGE_KINDS)}")
    if change["kind"] == "xml_edit":
        if change.get("op") not in XML_OPS:
            raise InvalidFix(f"{where}: xml_edit op must be one of {', '.join(XML_OPS)}")
        if change["op"] != "remove" and not change.get("key"):
            raise InvalidFix(f"{where}: xml_edit {change['op']} needs a key")
        if change["op"] == "set" and "after" not in change and not change.get("secret"):
            raise InvalidFix(f"{where}: xml_edit set needs after or secret")
        if "attrs" in change and not isinstance(change["attrs"], dict):
            raise InvalidFix(f"{where}: attrs must be a mapping")
        return
    if not change.get("key"):
        raise InvalidFix(f"{where}: key missing")
    if "after" not in change and not change.get("secret"):
        raise InvalidFix(f"{where}: needs after (the wanted value) or secret")
    if change["kind"] in ("config_key", "file_line") and not change.get("target"):
        raise InvalidFix(f"{where}: {change['kind']} needs a target file")


def validate_fix(block: Any, platforms: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The ``fix:`` block checked field by field; raises ``InvalidFix`` saying what is wrong."""
    if not isinstance(block, dict) or not block:
        raise InvalidFix("fix must be a mapping of platform to fix")
    for platform, spec in block.items():
        where = f"fix {platform}"
        if platform != "all" and (platform not in PLATFORMS or platform not in platforms):
            raise InvalidFix(f"{where}: not a platform of the rule ({', '.join(platforms)})")
        if not isinstance(spec, dict):
            raise InvalidFix(f"{where} must be a mapping")
        extra = set(spec) - _BLOCK_FIELDS
        if extra:
            raise InvalidFix(f"{where} has unknown field(s) {', '.join(sorted(extra))}")
        ways = [k for k in ("changes", "function", "unfixable") if k in spec]
        if len(ways) != 1:
            raise InvalidFix(f"{where} needs exactly one of changes, function and unfixable")
        if "unfixable" in spec:
            if not isinstance(spec["unfixable"], str) or not spec["unfixable"].strip():
                raise InvalidFix(f"{where}: unfixable must give the reason")
            continue
        if spec.get("restart", "none") not in RESTARTS:
            raise InvalidFix(f"{where}: restart must be one of {', '.join(RESTARTS)}")
        baseline = spec.get("baseline", [])
        if not isinstance(baseline, list) or not all(isinstance(k, str) and k for k in baseline):
            raise InvalidFix(f"{where}: baseline must list the keys a host baseline template sets")
        if "changes" in spec:
            for field in ("summary", "breaks"):
                if not isinstance(spec.get(field), str) or not spec[field].strip():
                    raise InvalidFix(f"{where} lacks {field}")
            if not isinstance(spec["changes"], list) or not spec["changes"]:
                raise InvalidFix(f"{where}: changes must be a non-empty list")
            for n, change in enumerate(spec["changes"]):
                _validate_change(change, f"{where} changes[{n}]")
        elif not isinstance(spec["function"], str):
            raise InvalidFix(f"{where}: function must name a planner function")
    return block
