"""``vmsentry fix``: collect -> analyse (the scan's rules) -> act/fix (plan the changes) -> report/fix (a script
or a patch)."""

from __future__ import annotations

import argparse
import json
import os
import sys

from vmsentry.commands.base import Command, FatalError, write
from vmsentry.commands.inputs import add_inputs, collect_inputs
from vmsentry.model.text import printable

# Formats and where their renderer lives: report/fix RENDERERS (a platform adds its own, e.g. powershell)
FORMATS = ("sh", "ansible", "patch", "json")
EXIT_INPUT = 2


def add_fix_formats(p: argparse.ArgumentParser) -> None:
    from vmsentry.report.fix import RENDERERS

    p.add_argument(
        "--format",
        choices=tuple(RENDERERS),
        default="sh",
        help="sh (default), ansible (a playbook), patch (a diff of the files read), json (the plan)",
    )


def load_scan(path: str):
    """(findings, inventory) of a ``vmsentry scan --format json`` report, parsed once (a fleet's report is
    large); anything else raises ScanUnreadable with the reason."""
    from vmsentry.collect.saved_inventory import MAX_BYTES
    from vmsentry.collect.source_file import BadInput, read_bytes
    from vmsentry.model import SCHEMA, Inventory
    from vmsentry.model.findings import Finding

    try:
        report = json.loads(read_bytes(path, MAX_BYTES))
        findings = [
            Finding(**{k: f[k] for k in Finding.__slots__ if k in f})
            for f in report["findings"]
            if f.get("status") == "fail"
        ]
        if report["inventory"].get("schema") != SCHEMA:
            raise ValueError(f"inventory schema is not {SCHEMA}")
        inventory = Inventory.from_dict(report["inventory"], origin=path)
    except (BadInput, OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ScanUnreadable(f"{printable(path)}: not a vmsentry scan JSON report ({printable(str(exc))})") from None
    except RecursionError:
        raise ScanUnreadable(f"{printable(path)}: not a vmsentry scan JSON report (nested too deep)") from None
    return findings, inventory


class ScanUnreadable(Exception):
    pass


def emit(plan, fmt: str, output: str | None, base: str) -> None:
    """The plan rendered; each generated secret printed once to stderr (never in the plan or the log)."""
    from vmsentry.report.fix import Secrets, render_as

    secrets = Secrets()
    text = render_as(fmt, plan, secrets, base)
    write(text, output)
    if secrets.made and output:
        os.chmod(output, 0o600)  # the script holds the secret
    for (what, where), value in secrets.made.items():
        print(f"vmsentry: generated {what} for {printable(where)}: {value}", file=sys.stderr)


def fix_of_paths(inventory, remediation: list[dict], args: argparse.Namespace) -> None:
    """``paths --fix-format``: the failing findings behind the smallest fix's changes, through the same planner."""
    from vmsentry.act.fix import plan
    from vmsentry.analyse.engine import evaluate
    from vmsentry.analyse.rules import load_catalogue

    wanted = {(r["rule_id"], r["asset"]) for r in remediation}
    rules = tuple(r for r in load_catalogue() if r.id in {rule for rule, _ in wanted})
    findings = [f for f in evaluate(inventory, rules) if (f.rule_id, f.asset) in wanted]
    result = plan(findings, inventory, rules=rules, inputs=list(args.paths))
    base = args.paths[0] if len(args.paths) == 1 and os.path.isdir(args.paths[0]) else "."
    emit(result, args.fix_format, args.output, base)


class FixCommand(Command):
    """Write an idempotent script (sh, an Ansible playbook) or a patch of the definition files read that fixes
    the failing findings it can; the others are listed with the reason. Exit 0: fixes written (or nothing to
    fix); 2: some input could not be read; 3: usage or fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument(
            "--from-scan", metavar="SCAN.json", help="the findings of a `vmsentry scan --format json` report"
        )
        p.add_argument("--rule", action="append", default=[], metavar="ID", help="only this rule (repeatable)")
        add_fix_formats(p)
        p.add_argument(
            "-o", "--output", metavar="FILE", help="write here (atomically; mode 0600 when it holds a secret)"
        )

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.fix import plan
        from vmsentry.analyse.engine import evaluate
        from vmsentry.analyse.rules import load_catalogue

        code = 0
        if args.from_scan:
            if args.paths or args.libvirt or args.host:
                raise FatalError("give PATHs (or --libvirt/--host) or --from-scan, not both")
            try:
                findings, inventory = load_scan(args.from_scan)
            except ScanUnreadable as exc:
                print(f"vmsentry: {exc}", file=sys.stderr)
                return EXIT_INPUT
            inputs = [args.from_scan]
        else:
            inventory, skipped = collect_inputs(args, progress=False)
            findings = evaluate(inventory, load_catalogue())
            inputs = [*args.paths, *args.libvirt, *(["host"] if args.host else [])]
            code = EXIT_INPUT if inventory.errors else 0
        known = {r.id for r in load_catalogue()}
        for rule in args.rule:
            if rule not in known:
                raise FatalError(f"--rule {printable(rule)}: no such rule")
        if args.rule:
            findings = [f for f in findings if f.rule_id in args.rule]
        result = plan(findings, inventory, inputs=inputs)
        base = args.paths[0] if len(args.paths) == 1 and os.path.isdir(args.paths[0]) else "."
        emit(result, args.format, args.output, base)
        return code
