"""A rule's metadata as it crosses from the catalogue (``analyse/rules``) to every report: what it checks,
why, how to fix it per platform, and its sources. The vocabularies here (categories, asset types, matrix
controls) are the contract's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORIES = (
    "network-mode",
    "port-forward",
    "console-exposure",
    "listener",
    "shared-folder",
    "clipboard",
    "l2-spoofing",
    "management-plane",
    "confinement",
    "passthrough",
    "memory-encryption",
    "disk-encryption",
    "snapshot",
    "ipv6",
    "dns",
    "host-firewall",
    "host-kernel",
    "hardware-isolation",
    "hypervisor-vuln",
    "logging",
    "access-control",
)
ASSET_TYPES = ("vm", "network", "host")
# What a rule's ``platforms`` name (and ``--platform`` of scan and rules accepts): the VM platforms of the
# inventory, and "linux" for the rules about a KVM host itself.
PLATFORMS = ("libvirt", "qemu", "vmware", "virtualbox", "hyperv", "proxmox", "linux")

# Matrix metadata (``vmsentry rules --matrix``): which control a rule checks, how the platform sets it,
# and the recommended value. Optional; ``control`` must be one of these.
CONTROLS = (
    "clipboard",
    "drag-and-drop",
    "shared-folders",
    "console-network-exposure",
    "console-authentication",
    "anti-spoofing",
    "promiscuous-mode",
    "port-forwards",
    "user-mode-nat-host-access",
    "management-plane",
    "memory-encryption",
    "disk-encryption",
    "pci-passthrough",
    "usb-passthrough",
    "serial-over-network",
    "guest-integration-services",
    "snapshots",
    "vm-firewall",
    "network-isolation",
    "confinement",
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: str
    category: str
    platforms: tuple[str, ...]
    asset: str
    rationale: str
    remediation: dict[str, str]
    references: tuple[str, ...]
    default: str
    check: str | None  # the Python predicate's name, or None when ``test`` says it as data
    verified: str = "yes"  # "yes", or what could not be checked, said plainly
    compliance: dict[str, Any] = field(default_factory=dict)
    control: str | None = None  # one of CONTROLS (matrix row)
    setting: dict[str, str] = field(default_factory=dict)  # per platform: the key/option that sets it
    recommended: dict[str, str] = field(default_factory=dict)  # per platform: the recommended value
    # the declarative comparison (``test:`` in the catalogue, validated when it loads) instead of ``check``
    test: dict[str, Any] | None = None
    exposes: tuple[str, ...] = ()  # exposure-graph techniques a failing result opens (analyse/graph)
    # per platform: how ``vmsentry fix`` fixes a failure, as data (``fix:`` in the catalogue, validated when
    # it loads; analyse/rules/fix_block.py), where the ``test:`` block alone does not say it
    fix: dict[str, dict[str, Any]] = field(default_factory=dict)

    def remediation_for(self, platform: str) -> str:
        return (
            self.remediation.get(platform) or self.remediation.get("all") or next(iter(self.remediation.values()), "")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity,
            "category": self.category,
            "platforms": list(self.platforms),
            "asset": self.asset,
            "rationale": self.rationale,
            "remediation": dict(self.remediation),
            "references": list(self.references),
            "default": self.default,
            "verified": self.verified,
            "compliance": dict(self.compliance),
            "control": self.control,
            "setting": dict(self.setting),
            "recommended": dict(self.recommended),
        }
