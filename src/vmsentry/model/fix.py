"""Remediation records (CONTRACTS.md "Remediation and cost"): what ``vmsentry fix`` plans before a renderer
(``report/fix``) writes it as shell, Ansible, PowerShell or a patch.

A ``Change`` is one setting set to one value on one object; a ``Fix`` is the changes that make one failing
finding pass, with what they change, what could break and whether the VM or a service must restart; an
``Unfixable`` is a failing finding no script can fix, with the reason; a ``FixPlan`` is all of them for one
input. Secrets (a console password) are never in these records: a change that needs one says
``secret=<what>`` with ``after=None`` and the renderer generates the value when it writes the script.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# What a change edits. Renderers dispatch on it; a platform module that needs a new kind adds it here.
CHANGE_KINDS = (
    "sysctl",  # key = the sysctl name; persisted in /etc/sysctl.d/90-vmsentry.conf and set at runtime
    "config_key",  # target = a key = value file (qemu.conf, libvirtd.conf); key, after = the value as written
    "file_line",  # target = a file; after = a line that must be present (key = a regexp naming the line)
    "xml_edit",  # target = a libvirt XML file or object (domain:NAME, network:NAME); locator = XPath of the element
    "vmx_key",  # target = a .vmx file; key = the .vmx key; after = its value
    "vbox_setting",  # target = a VirtualBox VM; key = the modifyvm option; after = its value
    "proxmox_key",  # target = a Proxmox VM id or firewall file; key, after = the qm set option or file line
    "esxi_setting",  # target = "portgroup:NAME"; key = the PowerCLI Set-SecurityPolicy parameter; after = its value
    "hyperv_setting",  # target = a Hyper-V VM; key = the cmdlet parameter; after = its value
    "command",  # after = a command to run (no idempotent form); check = how to tell it already ran
)
RESTARTS = ("none", "service", "vm")  # what must restart for the change to take effect


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # one of CHANGE_KINDS
    target: str  # the file or object changed (a path, "domain:web", "network:default", "sysctl")
    key: str  # the setting: a sysctl, a config key, an XPath attribute, a .vmx key, a modifyvm option
    before: Any  # the value the scan saw (None = absent)
    after: Any  # the value wanted (None = remove; None with ``secret`` = generated at render time)
    locator: str | None = None  # where in the target (line, XPath), as the finding's evidence said
    secret: str | None = None  # what secret the renderer generates for ``after`` (e.g. "vnc-password")
    detail: dict[str, Any] = field(default_factory=dict)  # kind-specific data (XML element, attributes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target,
            "key": self.key,
            "before": self.before,
            "after": self.after,
            "locator": self.locator,
        }
        if self.secret:
            out["secret"] = self.secret  # only the name: the value never reaches the plan
        if self.detail:
            out["detail"] = dict(self.detail)
        return out


@dataclass(frozen=True, slots=True)
class Fix:
    rule_id: str
    asset: str  # the finding's asset ("host:kvm-01", "vm:web", "network:default")
    platform: str  # the finding's platform ("linux", "libvirt", "vmware", ...)
    changes: tuple[Change, ...]
    summary: str  # what it changes, in a sentence
    breaks: str  # what could break (a guest that relied on a forward, a client without a password)
    restart: str = "none"  # one of RESTARTS
    service: str | None = None  # the service restarted when restart == "service" (libvirtd, virtqemud)
    check: str = ""  # how the script tells the fix is already in place (idempotence), in words
    title: str = ""  # the rule's title (host baseline templates comment every item with it)
    source: str = ""  # where the setting comes from (the rule's compliance ids and references), templates only

    def to_dict(self) -> dict[str, Any]:
        shown = ("rule_id", "asset", "platform", "summary", "breaks", "restart", "service", "check")
        out = {**{name: getattr(self, name) for name in shown}, "changes": [c.to_dict() for c in self.changes]}
        out.update({name: getattr(self, name) for name in ("title", "source") if getattr(self, name)})
        return out


@dataclass(frozen=True, slots=True)
class Unfixable:
    rule_id: str
    asset: str
    platform: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class FixPlan:
    fixes: list[Fix]
    unfixable: list[Unfixable]
    inputs: list[str]  # the paths (or scan file) the findings came from
    generated: str  # ISO 8601 UTC time the plan was made
    template: str | None = None  # a host baseline template (``fix --template``): linux-kvm, windows-hyperv

    def to_dict(self) -> dict[str, Any]:
        return {
            **({"template": self.template} if self.template else {}),
            "generated": self.generated,
            "inputs": list(self.inputs),
            "summary": {"fixes": len(self.fixes), "unfixable": len(self.unfixable)},
            "fixes": [f.to_dict() for f in self.fixes],
            "unfixable": [u.to_dict() for u in self.unfixable],
        }
