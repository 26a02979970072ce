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
EXIT_WOULD_CHANGE = 1  # --template --check: an item of the template fails or cannot be told
TEMPLATE_FORMATS = {"linux-kvm": ("sh", "ansible", "json"), "windows-hyperv": ("powershell", "json")}


def add_fix_formats(p: argparse.ArgumentParser) -> None:
    from vmsentry.report.fix import RENDERERS

    p.add_argument(
        "--format",
        choices=tuple(RENDERERS),
        default=None,
        help="sh (default; powershell for --template windows-hyperv), ansible (a playbook), powershell, "
        "patch (a diff of the files read), json (the plan)",
    )


def load_scan(path: str, every: bool = False):
    """(findings, inventory) of a ``vmsentry scan --format json`` report, parsed once (a fleet's report is
    large): the failing findings (``every``: all of them); anything else raises ScanUnreadable with the reason."""
    from vmsentry.collect.saved_inventory import MAX_BYTES
    from vmsentry.collect.source_file import BadInput, read_bytes
    from vmsentry.model import SCHEMA, Inventory
    from vmsentry.model.findings import Finding

    try:
        report = json.loads(read_bytes(path, MAX_BYTES))
        findings = [
            Finding(**{k: f[k] for k in Finding.__slots__ if k in f})
            for f in report["findings"]
            if every or f.get("status") == "fail"
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
        p.add_argument(
            "--template",
            choices=tuple(TEMPLATE_FORMATS),
            help="the host baseline: every host rule of the platform with a fix, as one script (no scan)",
        )
        p.add_argument(
            "--check",
            action="store_true",
            help="with --template: report which items the scanned host (PATHs, --from-scan; default --host "
            "for linux-kvm) fails or cannot be told, change nothing; exit 1 when something would change",
        )

    def findings_of(self, args: argparse.Namespace, every: bool = False):
        """(findings, inventory, inputs, exit code so far) of the inputs or the saved scan."""
        from vmsentry.analyse.engine import evaluate
        from vmsentry.analyse.rules import load_catalogue

        if args.from_scan:
            if args.paths or args.libvirt or args.host:
                raise FatalError("give PATHs (or --libvirt/--host) or --from-scan, not both")
            findings, inventory = load_scan(args.from_scan, every=every)
            return findings, inventory, [args.from_scan], 0
        inventory, skipped = collect_inputs(args, progress=False)
        findings = evaluate(inventory, load_catalogue())
        inputs = [*args.paths, *args.libvirt, *(["host"] if args.host else [])]
        return findings, inventory, inputs, EXIT_INPUT if inventory.errors else 0

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.fix import plan
        from vmsentry.analyse.rules import load_catalogue

        if args.template:
            return self.run_template(args)
        if args.check:
            raise FatalError("--check needs --template (a fix script has its own --check: sh fix.sh --check)")
        args.format = args.format or "sh"
        try:
            findings, inventory, inputs, code = self.findings_of(args)
        except ScanUnreadable as exc:
            print(f"vmsentry: {exc}", file=sys.stderr)
            return EXIT_INPUT
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

    def run_template(self, args: argparse.Namespace) -> int:
        """``--template T``: the baseline script; with ``--check``, what the scanned host fails of it."""
        from vmsentry.act.fix.baseline import check, template_plan

        allowed = TEMPLATE_FORMATS[args.template]
        fmt = args.format or allowed[0]
        if args.rule:
            raise FatalError("--rule does not go with --template (the template is every host rule)")
        result = template_plan(args.template)
        if not args.check:
            if args.paths or args.libvirt or args.host or args.from_scan:
                raise FatalError("--template writes the whole baseline without a scan: give inputs only with --check")
            if fmt not in allowed:
                raise FatalError(f"--template {args.template} is written as {', '.join(allowed)}, not {fmt}")
            emit(result, fmt, args.output, ".")
            return 0
        if args.format not in (None, "json"):
            raise FatalError("--template --check prints text (default) or json")
        if not (args.paths or args.libvirt or args.host or args.from_scan):
            if args.template != "linux-kvm":
                raise FatalError(f"--template {args.template} --check needs the host's export (PATH) or --from-scan")
            args.host = True
        try:
            findings, _, _, code = self.findings_of(args, every=True)
        except ScanUnreadable as exc:
            print(f"vmsentry: {exc}", file=sys.stderr)
            return EXIT_INPUT
        items = check(args.template, findings, result)
        text = json.dumps(items, indent=2) + "\n" if args.format == "json" else check_text(args.template, items)
        write(text, args.output)
        pending = any(i["in_template"] and i["state"] != "pass" for i in items)
        return code or (EXIT_WOULD_CHANGE if pending else 0)


LABELS = {"fail": "would change", "unknown": "cannot tell", "pass": "compliant"}


def check_text(template: str, items: list[dict]) -> str:
    """One line per template item, the ones that would change first; then the rules the template leaves."""
    mine = [i for i in items if i["in_template"]]
    pending = sum(i["state"] == "fail" for i in mine)
    unknown = sum(i["state"] == "unknown" for i in mine)
    lines = [
        f"vmsentry fix --template {template} --check: {pending} of {len(mine)} item(s) would change, "
        f"{unknown} cannot be told (unknown is never compliant)"
    ]
    for item in mine:
        where = f" [{', '.join(item['assets'])}]" if item["assets"] else ""
        lines.append(f"  {LABELS[item['state']]:<13} {item['rule_id']:<13} {item['title']}{where}")
    left = [i for i in items if not i["in_template"] and i["state"] != "pass"]
    if left:
        lines.append(f"not in the template, failing or not told ({len(left)}): the script does not change them")
        for item in left:
            state = "fails" if item["state"] == "fail" else LABELS[item["state"]]
            lines.append(f"  {state:<13} {item['rule_id']:<13} {item['reason']}")
    return "\n".join(printable(line) for line in lines) + "\n"
