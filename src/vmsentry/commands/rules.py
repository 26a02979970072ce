"""``vmsentry rules``: the rule catalogue, or the platform comparison table built from it."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, FatalError, write
from vmsentry.model.rule import PLATFORMS
from vmsentry.report.rules import FORMATS


class RulesCommand(Command):
    """List the rule catalogue: id, severity, category, platforms and title of every rule vmsentry checks, or
    (--matrix) how each platform sets each control, or (--explain ID) one rule in full: what it checks, why,
    the remediation, sources, what `vmsentry fix` changes and the compliance requirements that cite it.
    Exit 0; 3: usage error (an unknown rule id) or the output cannot be written."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--platform", choices=PLATFORMS, metavar="P", help=f"only rules for this platform: {', '.join(PLATFORMS)}"
        )
        p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
        p.add_argument(
            "--matrix",
            action="store_true",
            help="platform comparison table: each control on KVM/libvirt, VMware, Hyper-V, VirtualBox "
            "and Proxmox (--format md|html|json; text = md)",
        )
        p.add_argument(
            "--explain",
            action="extend",
            nargs="+",
            metavar="ID",
            help="one rule in full (repeatable, or several ids): checks, why, remediation, sources, fix, "
            "compliance mappings (--format text|json|md)",
        )
        p.add_argument("-o", "--output", metavar="FILE", help="write the list here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.rules import load_catalogue

        if args.explain:
            return self.explain(args, load_catalogue())
        rules = [
            r for r in load_catalogue() if not args.platform or args.platform in r.platforms or "all" in r.platforms
        ]
        if args.matrix:
            from vmsentry.report.matrix import render
        else:
            from vmsentry.report.rules import render  # type: ignore[no-redef]
        write(render(args.format, rules), args.output)
        return 0

    def explain(self, args: argparse.Namespace, catalogue: tuple) -> int:
        from vmsentry.analyse.rules.explain import explain
        from vmsentry.model.text import printable
        from vmsentry.report.rules import EXPLAIN_FORMATS, render_explain

        if args.matrix or args.platform:
            raise FatalError("--explain shows the rules named, without --matrix or --platform")
        if args.format not in EXPLAIN_FORMATS:
            raise FatalError(f"--explain writes {', '.join(EXPLAIN_FORMATS)}, not {args.format}")
        by_id = {r.id.upper(): r for r in catalogue}
        wanted = list(dict.fromkeys(i.strip().upper() for i in args.explain))
        unknown = [i for i in wanted if i not in by_id]
        if unknown:
            raise FatalError(f"--explain {printable(unknown[0])}: no such rule (vmsentry rules lists them)")
        write(render_explain(args.format, [explain(by_id[i]) for i in wanted]), args.output)
        return 0
