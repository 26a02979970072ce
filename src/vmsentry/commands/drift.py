"""``vmsentry drift OLD NEW``: the configuration changes that matter between two readings, with both values
and where each was read. OLD and NEW are saved scans (``scan --format json``), saved inventories, or any
input ``scan`` reads (a folder of definitions); with ``--store``, two run ids of the scan history (a unique
prefix, ``latest``, ``latest~1`` ...). What counts is ``analyse/drift.py``'s ``inventory_changes``: a NIC's
network, mode, bridge or filter, a NIC added or removed, a host listener added or moved, a share or port
forward added, a VM or network added or removed, a network's mode; a VM merely started or stopped is not
drift and is not listed."""

from __future__ import annotations

import argparse
import json
import sys

from vmsentry.commands.base import Command, FatalError, write
from vmsentry.commands.history import STORE_HELP, StoreUnreadable, open_for_reading
from vmsentry.model.text import printable

EXIT_CHANGES, EXIT_UNREADABLE = 1, 2


class DriftCommand(Command):
    """Configuration changes that matter between two saved scans or inventories (or two runs of `--store`),
    with both values and where each was read. Exit 0: no change; 1: changes; 2: OLD or NEW cannot be read;
    3: usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "old", metavar="OLD", help="the earlier scan JSON, inventory JSON or folder (a run id with --store)"
        )
        p.add_argument("new", metavar="NEW", help="the later one")
        p.add_argument("--store", metavar="DIR|URL", help="OLD and NEW are runs of this scan store: " + STORE_HELP)
        p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
        p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.drift import drift_severity, inventory_changes, is_drift

        try:
            (old_name, old), (new_name, new) = _read_both(args)
        except Unreadable as exc:
            for line in exc.args[0]:
                print(f"vmsentry: {printable(line)}", file=sys.stderr)
            return EXIT_UNREADABLE
        changes = [c for c in inventory_changes(old, new) if is_drift(c)]
        rows = [{**c.to_dict(), "severity": drift_severity(c)} for c in changes]
        if args.format == "json":
            document = {"old": old_name, "new": new_name, "changes": rows}
            text = json.dumps(document, indent=1, default=str) + "\n"
        else:
            text = render_text(old_name, new_name, changes, [r["severity"] for r in rows])
        write(text, args.output, FatalError)
        return EXIT_CHANGES if changes else 0


class Unreadable(Exception):
    """OLD or NEW cannot be read: args[0] is the list of lines to print."""


def _read_both(args: argparse.Namespace):
    if args.store:
        from vmsentry.report.store import StoreError

        try:
            with open_for_reading(args.store) as store:
                out = []
                for spec in (args.old, args.new):
                    run, inventory = store.run_inventory(store.resolve(spec))
                    out.append(({"run_id": run.run_id, "timestamp": run.timestamp, "store": store.name}, inventory))
                return out
        except (StoreUnreadable, StoreError) as exc:
            raise Unreadable([str(exc)]) from None
    from vmsentry.collect import collect

    out, problems = [], []
    for path in (args.old, args.new):
        inventory, _ = collect([path])
        problems += [f"{e.file}: {e.message}" for e in inventory.errors]
        out.append(({"path": path}, inventory))
    if problems:
        raise Unreadable(problems)
    return out


def _name(side: dict) -> str:
    if "run_id" in side:
        return f"run {side['run_id']} ({side['timestamp']})"
    return side["path"]


def render_text(old: dict, new: dict, changes: list, severities: list[str]) -> str:
    from vmsentry.analyse.drift import describe

    head = f"{printable(_name(old))} -> {printable(_name(new))}: "
    if not changes:
        return head + "no configuration change that matters\n"
    lines = [head + f"{len(changes)} change" + ("" if len(changes) == 1 else "s"), ""]
    tag_width = len("[MEDIUM]")
    for change, severity in zip(changes, severities):
        lines.append(f"  {f'[{severity.upper()}]'.ljust(tag_width)} {printable(describe(change, where=False))}")
        indent = " " * (2 + tag_width + 1)
        if change.where_before:
            lines.append(f"{indent}before: read at {printable(change.where_before)}")
        if change.where and change.where != change.where_before:  # a removal has only the old place
            lines.append(f"{indent}after:  read at {printable(change.where)}")
    return "\n".join(lines) + "\n"
