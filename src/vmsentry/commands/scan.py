"""``vmsentry scan``: collect -> analyse (rules, waivers, baseline) -> report."""

from __future__ import annotations

import argparse
import sys
import time

from vmsentry.commands.audit import add_audit_option, close_command_audit, open_command_audit
from vmsentry.commands.base import Command, FatalError, add_report_output, default_format, reraise_as, use_color, write
from vmsentry.commands.inputs import add_inputs, collect_inputs
from vmsentry.model.rule import PLATFORMS

FORMATS = ("text", "json", "sarif", "junit", "html")
FAIL_ON = ("critical", "high", "medium", "low", "info", "none")


class ScanCommand(Command):
    """Discover and audit. Exit 0: no failing finding at or above --fail-on; 1: some; 2: some input could not be read
    (wins over 1); 3: usage or fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        add_report_output(p, FORMATS)
        p.add_argument(
            "--fail-on",
            choices=FAIL_ON,
            default="high",
            help="lowest severity of a failing finding that makes the exit code 1 (default high)",
        )
        p.add_argument("--baseline", metavar="FILE", help="previous `scan --format json`: report only new and fixed")
        add_scan_options(p)
        p.add_argument(
            "--store",
            metavar="DIR|URL",
            help="keep this run (time, inputs, inventory, findings) in the scan history: SQLite under DIR, or "
            "PostgreSQL at a postgresql:// URL (see `vmsentry history`, `vmsentry drift`)",
        )
        add_audit_option(p, "one entry per run (counts by status and severity, inventory digest, inputs)")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report import exit_code, render

        store = None
        if args.store:  # opened before the scan: an unusable store is a fatal error, as a bad --baseline
            from vmsentry.report.store import StoreError, open_store

            with reraise_as(FatalError, StoreError):
                store = open_store(args.store)
        audit = open_command_audit(args)
        result = scan(args)
        fmt = default_format(args)
        code = exit_code(result)
        if store is not None:  # kept before the report is written: a report names only a run that exists
            with store, reraise_as(FatalError, StoreError):
                store.save(result, scan_inputs(args), code)
        write(render(fmt, result, color=(fmt == "text" and args.output is None and use_color())), args.output)
        if args.audit:
            from vmsentry.report.audit.records import scan_record

            audit.append("scan", scan_record(result, scan_inputs(args), code))
            close_command_audit(audit)
        return code


def scan_inputs(args: argparse.Namespace) -> dict:
    """What a run read, as the store and the audit log record it."""
    return {
        "paths": list(args.paths),
        "libvirt": list(args.libvirt),
        "host": bool(args.host),
        "platform": args.platform,
    }


def add_scan_options(p: argparse.ArgumentParser) -> None:
    """The options of how a scan runs, shared with ``vmsentry report``: waivers, platforms, progress bar."""
    p.add_argument("--waivers", metavar="FILE", help="YAML waiver file (rule, asset, owner, reason, expires)")
    p.add_argument(
        "--platform",
        action="append",
        default=[],
        choices=PLATFORMS,
        metavar="P",
        help=f"only rules for this platform (repeatable): {', '.join(PLATFORMS)}",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def scan(args: argparse.Namespace):
    """collect -> analyse (rules, waivers, baseline): the ``ScanResult`` of ``add_inputs``' arguments and scan's
    options (``vmsentry report`` runs the same scan)."""
    from datetime import date

    from vmsentry import __version__
    from vmsentry.analyse.engine import evaluate
    from vmsentry.analyse.rules import load_catalogue
    from vmsentry.model.history import iso_utc, new_run_id, utc_now
    from vmsentry.report import ScanResult

    started = time.perf_counter()
    started_at = utc_now()
    notes: list[str] = []
    waivers = None
    if args.waivers:
        from vmsentry.analyse.waivers import WaiverError, load_waivers

        with reraise_as(FatalError, WaiverError):
            waivers = load_waivers(args.waivers)
    previous = None
    if args.baseline:
        from vmsentry.analyse.baseline import BaselineError, load_baseline

        with reraise_as(FatalError, BaselineError):
            previous = load_baseline(args.baseline)
    inv, skipped = collect_inputs(args, progress=not args.no_progress)
    notes += inv.notes
    rules = load_catalogue()
    if args.platform:
        rules = tuple(r for r in rules if "all" in r.platforms or set(r.platforms) & set(args.platform))
    not_applicable: dict[str, int] = {}
    findings = evaluate(inv, rules, not_applicable_counts=not_applicable)  # each report sorts for itself
    if waivers is not None:
        from vmsentry.analyse.waivers import apply_waivers

        notes += apply_waivers(findings, waivers, date.today())
    baseline = None
    if previous is not None:
        from vmsentry.analyse.baseline import compare

        baseline = compare(findings, previous)
        baseline["file"] = args.baseline
    for note in notes:
        print(f"vmsentry: {note}", file=sys.stderr)
    return ScanResult(
        findings=findings,
        inventory=inv,
        rules=rules,
        skipped_files=skipped,
        seconds=time.perf_counter() - started,
        tool_version=__version__,
        fail_on=args.fail_on,
        baseline=baseline,
        notes=notes,
        not_applicable=sum(not_applicable.values()),
        timestamp=iso_utc(started_at),
        run_id=new_run_id(started_at),
    )
