"""``vmsentry history``: the runs `scan --store` kept, and how the failing findings went over time.

Where the store is: ``--store DIR|URL``, else ``$VMSENTRY_STORE``, else ``/var/lib/vmsentry/history``.
"""

from __future__ import annotations

import argparse
import json
import os

from vmsentry.commands.base import Command, FatalError, reraise_as, write
from vmsentry.model.findings import SEVERITIES
from vmsentry.model.text import printable

DEFAULT_STORE = "/var/lib/vmsentry/history"
STORE_HELP = "the scan store: a folder (SQLite) or a postgresql:// URL (default $VMSENTRY_STORE, else " + (
    f"{DEFAULT_STORE})"
)
EXIT_UNREADABLE = 2
_SHORT = {"critical": "CRIT", "medium": "MED"}  # column headings


class StoreUnreadable(Exception):
    """The store named cannot be read (exit 2, one line)."""


def add_store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="DIR|URL", help=STORE_HELP)


def store_target(args: argparse.Namespace) -> str:
    return args.store or os.environ.get("VMSENTRY_STORE") or DEFAULT_STORE


def open_for_reading(target: str):
    """The store, or StoreUnreadable naming it (a folder holding no store is not created)."""
    from vmsentry.report.store import StoreError, open_store

    with reraise_as(StoreUnreadable, StoreError):
        return open_store(target, create=False)


class HistoryCommand(Command):
    """The runs `scan --store` kept, oldest first, with the failing findings by severity per run (one asset's
    with --asset) and the change from the run before. Exit 0; 2: the store cannot be read; 3: usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_store_option(p)
        p.add_argument(
            "--asset", metavar="A", help="count only this asset's findings (vm:web, host:hv1, or a bare name)"
        )
        p.add_argument("--last", type=_positive, metavar="N", help="only the N most recent runs")
        p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
        p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.store import StoreError

        target = store_target(args)
        try:
            with open_for_reading(target) as store:
                runs = store.runs(asset=args.asset, last=args.last)
                name = store.name
        except (StoreUnreadable, StoreError) as exc:
            print(f"vmsentry: {printable(str(exc))}", file=__import__("sys").stderr)
            return EXIT_UNREADABLE
        if args.format == "json":
            document = {"store": name, "asset": args.asset, "runs": [r.to_dict() for r in runs]}
            text = json.dumps(document, indent=1) + "\n"
        else:
            text = render_text(name, runs, args.asset)
        write(text, args.output, FatalError)
        return 0


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def render_text(store: str, runs: list, asset: str | None) -> str:
    head = f"scan history in {printable(store)}: {len(runs)} run" + ("" if len(runs) == 1 else "s")
    if asset:
        head += f", failing findings of {printable(asset)}"
    if not runs:
        return head + "\n"
    columns = [
        "RUN",
        "TIME",
        "VMS",
        *(_SHORT.get(s, s.upper()) for s in SEVERITIES),
        "FAILING",
        "CHANGE",
        "EXIT",
        "INPUTS",
    ]
    rows = []
    previous = None
    for run in runs:
        change = "" if previous is None else f"{run.failing - previous.failing:+d}"
        rows.append(
            [
                run.run_id,
                run.timestamp,
                str(run.vms),
                *(str(run.failing_by_severity.get(s, 0)) for s in SEVERITIES),
                str(run.failing),
                change,
                str(run.exit_code),
                _inputs(run.inputs),
            ]
        )
        previous = run
    widths = [max(len(columns[i]), *(len(r[i]) for r in rows)) for i in range(len(columns) - 1)]
    lines = [head, ""]
    for row in [columns, *rows]:
        cells = [cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + [row[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _inputs(inputs: dict) -> str:
    parts = [printable(p) for p in inputs.get("paths") or []]
    parts += [f"--libvirt {printable(u)}" for u in inputs.get("libvirt") or []]
    if inputs.get("host"):
        parts.append("--host")
    return " ".join(parts)
