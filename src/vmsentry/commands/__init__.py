"""The verbs of ``vmsentry``, one module each. As in pip's ``commands/__init__.py``, a verb's module is
imported only when that verb runs, so ``vmsentry --help`` and every verb start without importing the
others (and their stages)."""

from __future__ import annotations

from vmsentry.commands.base import Command, CommandInfo
from vmsentry.commands.base import create_command as _create

# verb -> (module, class, one-line summary for `vmsentry --help`), in the order --help lists them
COMMANDS: dict[str, CommandInfo] = {
    "scan": CommandInfo("vmsentry.commands.scan", "ScanCommand", "discover and audit VMs, networks and the host"),
    "inventory": CommandInfo(
        "vmsentry.commands.inventory", "InventoryCommand", "print the normalised inventory as JSON"
    ),
    "rules": CommandInfo("vmsentry.commands.rules", "RulesCommand", "list the rule catalogue"),
    "paths": CommandInfo(
        "vmsentry.commands.paths", "PathsCommand", "attack paths over the exposure graph, and the smallest fix"
    ),
    "cost": CommandInfo(
        "vmsentry.commands.cost",
        "CostCommand",
        "expected annual loss per isolation option (FAIR Monte Carlo over the attack paths), ranked against cost",
    ),
    "fix": CommandInfo(
        "vmsentry.commands.fix",
        "FixCommand",
        "write an idempotent fix (sh, Ansible, a patch) for the failing findings it can fix",
    ),
    "detect": CommandInfo(
        "vmsentry.commands.detect",
        "DetectCommand",
        "find ARP spoofing, floods, rogue DHCP/RA, scans, VM-to-host and VM-to-VM access in traffic",
    ),
    "baseline": CommandInfo(
        "vmsentry.commands.baseline",
        "BaselineCommand",
        "the behaviour baseline: learn each VM's normal traffic, evaluate it, show a model (detect/watch --model)",
    ),
    "policy": CommandInfo(
        "vmsentry.commands.policy",
        "PolicyCommand",
        "segmentation policy: compile to nftables/nwfilter, apply with rollback, check traffic",
    ),
    "watch": CommandInfo(
        "vmsentry.commands.watch",
        "WatchCommand",
        "watch the VM bridges live: detect, quarantine the attacking VM, keep evidence per incident",
    ),
    "quarantine": CommandInfo(
        "vmsentry.commands.quarantine",
        "QuarantineCommand",
        "cut a VM off its network (nft or libvirt), except the host's forensics port; --list the holds",
    ),
    "release": CommandInfo("vmsentry.commands.quarantine", "ReleaseCommand", "undo a quarantine exactly"),
    "incidents": CommandInfo(
        "vmsentry.commands.incidents",
        "IncidentsCommand",
        "the evidence bundles of `vmsentry watch`: list, show, verify against the manifest",
    ),
    "audit": CommandInfo(
        "vmsentry.commands.audit",
        "AuditCommand",
        "the tamper-evident audit log: verify, show, prune, export (written by --audit DIR)",
    ),
    "history": CommandInfo(
        "vmsentry.commands.history",
        "HistoryCommand",
        "the runs `scan --store` kept, and the failing findings by severity over time",
    ),
    "drift": CommandInfo(
        "vmsentry.commands.drift",
        "DriftCommand",
        "configuration changes that matter between two saved scans or inventories, or two stored runs",
    ),
    "report": CommandInfo(
        "vmsentry.commands.report",
        "ReportCommand",
        "reports a person reads: the scan report, or a compliance report per framework (HTML, PDF, JSON, Markdown)",
    ),
    "completion": CommandInfo("vmsentry.cli", "CompletionCommand", "print a bash, zsh or tcsh completion script"),
}


def create_command(name: str) -> Command:
    """The command object of verb ``name`` (a key of COMMANDS); imports its module."""
    return _create(COMMANDS, name)
