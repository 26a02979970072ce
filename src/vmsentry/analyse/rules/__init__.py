"""The rule catalogue: metadata in YAML (``catalogue/*.yaml``) and, per rule, either ``check:`` (the name of
a Python predicate in ``vmsentry.analyse.checks``) or ``test:`` (a declarative comparison of one collected
setting, ``vmsentry.analyse.checks.declarative``; validated here, when the catalogue loads). Metadata fields
follow Prowler/VSAT: id, title, severity, category, platforms, asset type, rationale, remediation per
platform, references, and ``default`` - what an absent key means on each platform.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

from vmsentry.analyse.checks.declarative import InvalidTest, validate
from vmsentry.analyse.rules.fix_block import InvalidFix, validate_fix
from vmsentry.model.findings import SECURITY_SEVERITY, SEVERITIES, SEVERITY_RANK  # noqa: F401
from vmsentry.model.rule import ASSET_TYPES, CATEGORIES, CONTROLS, Rule
from vmsentry.model.yaml_lines import YamlError, safe_load

REQUIRED = (
    "id",
    "title",
    "severity",
    "category",
    "platforms",
    "asset",
    "rationale",
    "remediation",
    "references",
    "default",
)


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
    if ("check" in entry) == ("test" in entry):
        raise CatalogueError(f"{where}: rule {entry['id']} needs exactly one of check and test")
    test = None
    if "test" in entry:
        try:
            test = validate(entry["test"])
        except InvalidTest as exc:
            raise CatalogueError(f"{where}: rule {entry['id']}: {exc}") from None
    fix = {}
    if "fix" in entry:
        try:
            fix = validate_fix(entry["fix"], tuple(entry["platforms"]))
        except InvalidFix as exc:
            raise CatalogueError(f"{where}: rule {entry['id']}: {exc}") from None
    exposes = entry.get("exposes") or []
    if exposes:
        # graph/__init__ is lazy: reading the technique names does not load networkx into a scan
        from vmsentry.analyse.graph.techniques import TECHNIQUES

        if not isinstance(exposes, list) or any(t not in TECHNIQUES for t in exposes):
            raise CatalogueError(
                f"{where}: rule {entry['id']} exposes {exposes!r}: expected a list of graph "
                "techniques (analyse/graph/techniques.py)"
            )
    remediation = entry["remediation"]
    if isinstance(remediation, str):
        remediation = {"all": remediation}
    return Rule(
        id=entry["id"],
        title=entry["title"],
        severity=entry["severity"],
        category=entry["category"],
        platforms=tuple(entry["platforms"]),
        asset=entry["asset"],
        rationale=" ".join(entry["rationale"].split()),
        remediation={k: " ".join(str(v).split()) for k, v in remediation.items()},
        references=tuple(entry["references"]),
        default=" ".join(str(entry["default"]).split()),
        check=entry.get("check"),
        test=test,
        verified=str(entry.get("verified", "yes")),
        compliance=dict(entry.get("compliance") or {}),
        control=entry.get("control"),
        setting=_per_platform(entry.get("setting")),
        recommended=_per_platform(entry.get("recommended")),
        exposes=tuple(exposes),
        fix=fix,
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
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if not item.name.endswith(".yaml"):
            continue
        try:  # the one YAML loader: packaged files get the same alias and depth limits as user files
            entries = safe_load(item.read_text(encoding="utf-8")) or []
        except YamlError as exc:
            raise CatalogueError(f"{item.name}:{exc.line or ''} {exc.problem}") from None
        for entry in entries:
            rule = _rule_from(entry, item.name)
            if rule.id in seen:
                raise CatalogueError(f"{item.name}: duplicate rule id {rule.id}")
            seen.add(rule.id)
            rules.append(rule)
    return tuple(rules)
