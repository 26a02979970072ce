"""Proxmox VE firewall files: ``/etc/pve/firewall/cluster.fw``, ``/etc/pve/nodes/NODE/host.fw``
(``/etc/pve/local/host.fw``) and ``/etc/pve/firewall/VMID.fw``.

Format (pve-firewall ``src/PVE/Firewall.pm`` parse_fw_config, pve-docs ``pve-firewall.adoc``): sections
``[OPTIONS]``, ``[RULES]``, ``[ALIASES]``, ``[IPSET name]``, ``[GROUP name]`` (any case; a comment may
follow the header), ``key: value`` options, rules ``IN|OUT|GROUP ...`` (a leading ``|`` disables a rule),
``#`` comments. Unknown lines are reported one by one; everything else is still read.

Defaults when an option is absent (pve-docs ``generated/pve-firewall-*-opts.adoc`` and pve-firewall
``Firewall.pm``):

- cluster ``enable`` 0 ("default = 0"), ``ebtables`` 1;
- VM ``enable`` 0, ``macfilter`` 1, ``ipfilter`` unset = off, ``dhcp`` 0, ``ndp`` 1, ``radv`` unset = off,
  ``policy_in`` DROP and ``policy_out`` ACCEPT (Firewall.pm: ``$options->{policy_in} || 'DROP'`` - the
  schema itself gives no default);
- host ``enable`` 1, ``nosmurfs`` on unless set to 0 (Firewall.pm ``!(defined nosmurfs && nosmurfs == 0)``),
  ``tcpflags`` 0, ``nf_conntrack_allow_invalid`` 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vmsentry.collect.device_cap import MAX_ADDRESSES_PER_FILE, MAX_RULES_PER_FILE, DeviceCap
from vmsentry.model import InputError
from vmsentry.model.proxmox import CLUSTER_DEFAULTS, HOST_DEFAULTS, VM_DEFAULTS

_SECTION = re.compile(r"^\[\s*([A-Za-z_]+)(?:\s+([A-Za-z0-9_:.\-]+))?\s*\]\s*(?:#.*)?$")
_OPTION = re.compile(r"^([a-z][a-z0-9_]*)\s*:\s*(.*?)\s*$")
_RULE = re.compile(r"^(\|)?\s*(IN|OUT|FORWARD|GROUP)\s+(\S+)(.*)$", re.IGNORECASE)


@dataclass(slots=True)
class FwRule:
    direction: str  # IN, OUT, FORWARD, GROUP
    action: str  # ACCEPT, DROP, REJECT, a macro MACRO(ACTION), or the group name
    options: dict[str, str]
    enabled: bool
    line: int
    text: str

    @property
    def macro(self) -> str | None:
        m = re.match(r"^([A-Za-z0-9_-]+)\((ACCEPT|DROP|REJECT)\)$", self.action)
        return m.group(1) if m else None

    @property
    def verdict(self) -> str:
        m = re.match(r"^[A-Za-z0-9_-]+\((ACCEPT|DROP|REJECT)\)$", self.action)
        return m.group(1) if m else self.action.upper()


@dataclass(slots=True)
class FwFile:
    kind: str  # cluster | host | vm
    options: dict[str, tuple[str, int]] = field(default_factory=dict)  # key -> (value, line)
    rules: list[FwRule] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    ipsets: dict[str, list[str]] = field(default_factory=dict)
    ipset_lines: dict[str, int] = field(default_factory=dict)
    groups: dict[str, list[FwRule]] = field(default_factory=dict)

    def option(self, key: str) -> str | None:
        got = self.options.get(key)
        return got[0] if got else None

    def effective(self, key: str) -> str | None:
        value = self.option(key)
        if value is not None:
            return value
        defaults = {"vm": VM_DEFAULTS, "cluster": CLUSTER_DEFAULTS, "host": HOST_DEFAULTS}[self.kind]
        return defaults.get(key)

    def fact_dict(self, path: str) -> dict[str, Any]:
        """A plain summary for inventory facts (JSON-serialisable)."""
        return {
            "options": {
                k: {"value": v, "at": f"{path}: line {line}, [OPTIONS] {k}"} for k, (v, line) in self.options.items()
            },
            "rules": [
                {
                    "direction": r.direction,
                    "action": r.action,
                    "options": r.options,
                    "enabled": r.enabled,
                    "at": f"line {r.line}",
                }
                for r in self.rules
            ],
            "ipsets": {k: list(v) for k, v in self.ipsets.items()},
            "aliases": dict(self.aliases),
            "groups": {
                k: [
                    {
                        "direction": r.direction,
                        "action": r.action,
                        "options": r.options,
                        "enabled": r.enabled,
                        "at": f"line {r.line}",
                    }
                    for r in v
                ]
                for k, v in self.groups.items()
            },
        }


def _rule_options(rest: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    tokens = rest.split()
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("-") and len(tok) > 1:
            value = tokens[i + 1] if i + 1 < len(tokens) and not tokens[i + 1].startswith("-") else ""
            opts[tok[1:]] = value
            i += 2 if value else 1
        else:  # old positional syntax (IFACE SOURCE DEST ...): keep it whole
            opts.setdefault("positional", "")
            opts["positional"] = (opts["positional"] + " " + tok).strip()
            i += 1
    return opts


def parse(path: str, text: str, kind: str) -> tuple[FwFile, list[InputError]]:
    fw = FwFile(kind)
    errors: list[InputError] = []
    rules = DeviceCap(path, errors, MAX_RULES_PER_FILE, "entries in one firewall file")
    addresses = DeviceCap(path, errors, MAX_ADDRESSES_PER_FILE, "entries in one firewall file")
    section, name = None, None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _SECTION.match(line)
        if m:
            section, name = m.group(1).upper(), m.group(2)
            if section in ("IPSET", "GROUP") and name and not rules.admit(f"[{section}]", f"line {number}"):
                section = "SKIP"  # the cap: a section past it is not read
            elif section == "IPSET" and name:
                fw.ipsets.setdefault(name, [])
                fw.ipset_lines[name] = number
            elif section == "GROUP" and name:
                fw.groups.setdefault(name, [])
            elif section in ("IPSET", "GROUP"):  # [group] without its name: its lines belong to nothing
                errors.append(InputError(path, f"line {number}: [{m.group(1)}] without a name; its lines are skipped"))
                section = "SKIP"
            elif section not in ("OPTIONS", "RULES", "ALIASES", "IPSET", "GROUP"):
                errors.append(InputError(path, f"line {number}: unknown section [{m.group(1)}]; its lines are skipped"))
                section = "SKIP"
            continue
        body = line.split("#", 1)[0].strip()
        if section is None:
            errors.append(InputError(path, f"line {number}: text before the first [SECTION]; skipped"))
            continue
        if section == "SKIP":
            continue
        if section == "OPTIONS":
            om = _OPTION.match(body)
            if om:
                fw.options[om.group(1)] = (om.group(2), number)
            else:
                errors.append(InputError(path, f"line {number}: not an option 'key: value' in [OPTIONS]; skipped"))
        elif section in ("RULES", "GROUP"):
            if not rules.admit("rule", f"line {number}"):
                continue
            rm = _RULE.match(body)
            if not rm:
                errors.append(InputError(path, f"line {number}: not a firewall rule (IN|OUT|GROUP ...); skipped"))
                continue
            rule = FwRule(
                rm.group(2).upper(), rm.group(3), _rule_options(rm.group(4)), rm.group(1) is None, number, body
            )
            (fw.rules if section == "RULES" else fw.groups[name]).append(rule)
        elif section == "ALIASES":
            parts = body.split()
            if len(parts) >= 2 and not addresses.admit("alias", f"line {number}"):
                continue
            if len(parts) >= 2:
                fw.aliases[parts[0]] = parts[1]
            else:
                errors.append(InputError(path, f"line {number}: alias needs 'NAME ADDRESS'; skipped"))
        elif section == "IPSET" and addresses.admit("IP set", f"line {number}"):
            fw.ipsets[name].append(body)
    return fw, errors
