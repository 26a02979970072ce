"""The rule catalogue: metadata in YAML (``catalogue/*.yaml``), one small predicate per rule in
``vmsentry.analyse.checks``. Metadata fields follow Prowler/VSAT: id, title, severity, category,
platforms, asset type, rationale, remediation per platform, references, and ``default`` - what an
absent key means on each platform.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

SEVERITIES = ("critical", "high", "medium", "low", "info")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}           # 0 = worst
# GitHub code scanning ranks SARIF results by this number (>=9 critical, 7-8.9 high, 4-6.9 medium).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
CATEGORIES = (
    "network-mode", "port-forward", "console-exposure", "listener", "shared-folder", "clipboard",
    "l2-spoofing", "management-plane", "confinement", "passthrough", "memory-encryption",
    "disk-encryption", "snapshot", "ipv6", "dns", "host-firewall", "host-kernel",
    "hardware-isolation", "hypervisor-vuln", "logging", "access-control",
)
ASSET_TYPES = ("vm", "network", "host")
# Matrix metadata (``vmsentry rules --matrix``): which control a rule checks, how the platform sets it,
# and the recommended value. Optional; ``control`` must be one of these.
CONTROLS = (
    "clipboard", "drag-and-drop", "shared-folders", "console-network-exposure", "console-authentication",
    "anti-spoofing", "promiscuous-mode", "port-forwards", "user-mode-nat-host-access", "management-plane",
    "memory-encryption", "disk-encryption", "pci-passthrough", "usb-passthrough", "serial-over-network",
    "guest-integration-services", "snapshots", "vm-firewall", "network-isolation", "confinement",
)
REQUIRED = ("id", "title", "severity", "category", "platforms", "asset", "rationale", "remediation",
            "references", "default", "check")


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
    check: str
    verified: str = "yes"            # "yes", or what could not be checked, said plainly
    compliance: dict[str, Any] = field(default_factory=dict)
    control: str | None = None       # one of CONTROLS (matrix row)
    setting: dict[str, str] = field(default_factory=dict)       # per platform: the key/option that sets it
    recommended: dict[str, str] = field(default_factory=dict)   # per platform: the recommended value

    def remediation_for(self, platform: str) -> str:
        return self.remediation.get(platform) or self.remediation.get("all") or next(iter(self.remediation.values()), "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "severity": self.severity, "category": self.category,
            "platforms": list(self.platforms), "asset": self.asset, "rationale": self.rationale,
            "remediation": dict(self.remediation), "references": list(self.references),
            "default": self.default, "verified": self.verified, "compliance": dict(self.compliance),
            "control": self.control, "setting": dict(self.setting), "recommended": dict(self.recommended),
        }


class CatalogueError(Exception):
    pass


def _rule_from(entry: dict[str, Any], where: str) -> Rule:
    missing = [k for k in REQUIRED if k not in entry]
    if missing:
        raise CatalogueError(f"{where}: rule {entry.get('id', '?')} lacks {', '.join(missing)}")
    if entry["severity"] not in SEVERITIES:
        raise CatalogueError(f"{where}: rule {entry['id']} has severity {entry['severity']!r}")
    if entry["category"] not in CATEGORIES:
        raise CatalogueError(f"{where}: rule {entry['id']} has category {entry['category']!r}")
    if entry["asset"] not in ASSET_TYPES:
        raise CatalogueError(f"{where}: rule {entry['id']} has asset {entry['asset']!r}")
    if entry.get("control") is not None and entry["control"] not in CONTROLS:
        raise CatalogueError(f"{where}: rule {entry['id']} has control {entry['control']!r}")
    remediation = entry["remediation"]
    if isinstance(remediation, str):
        remediation = {"all": remediation}
    return Rule(
        id=entry["id"], title=entry["title"], severity=entry["severity"], category=entry["category"],
        platforms=tuple(entry["platforms"]), asset=entry["asset"], rationale=" ".join(entry["rationale"].split()),
        remediation={k: " ".join(str(v).split()) for k, v in remediation.items()},
        references=tuple(entry["references"]), default=" ".join(str(entry["default"]).split()),
        check=entry["check"], verified=str(entry.get("verified", "yes")),
        compliance=dict(entry.get("compliance") or {}),
        control=entry.get("control"), setting=_per_platform(entry.get("setting")),
        recommended=_per_platform(entry.get("recommended")),
    )


def _per_platform(value: Any) -> dict[str, str]:
    """``setting``/``recommended``: a text for every platform of the rule, or a mapping per platform."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): " ".join(str(v).split()) for k, v in value.items()}
    return {"all": " ".join(str(value).split())}


@lru_cache(maxsize=1)
def load_catalogue() -> tuple[Rule, ...]:
    """All rules, in file then document order. Duplicate ids are a packaging bug and raise."""
    rules: list[Rule] = []
    seen: set[str] = set()
    folder = resources.files("vmsentry.analyse.rules") / "catalogue"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        entries = yaml.load(item.read_text(encoding="utf-8"), Loader=loader) or []
        for entry in entries:
            rule = _rule_from(entry, item.name)
            if rule.id in seen:
                raise CatalogueError(f"{item.name}: duplicate rule id {rule.id}")
            seen.add(rule.id)
            rules.append(rule)
    return tuple(rules)
