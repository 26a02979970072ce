"""``vmsentry paths``: collect -> exposure graph -> attack paths and the smallest fix -> report."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, FatalError, add_report_output, default_format, reraise_as, write
from vmsentry.commands.inputs import add_inputs, collect_inputs

FORMATS = ("text", "json", "html")


class PathsCommand(Command):
    """Attack paths from a compromised VM (or the outside) to the host, other VMs and the LAN, ranked by score (0-10),
    with the smallest set of changes found that cuts them. Exit 0; 2: some input could not be read; 3: usage or
    fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument(
            "--from", dest="source", default="any-vm", metavar="SPEC", help="vm:NAME, any-vm (default), external or any"
        )
        p.add_argument(
            "--to", dest="target", default="host", metavar="SPEC", help="host (default), vm:NAME, any-vm, lan or any"
        )
        add_report_output(p, FORMATS)
        p.add_argument("--vuln-db", metavar="FILE", help="hypervisor vulnerability table (vulns.yaml format)")
        p.add_argument(
            "--what-if",
            action="append",
            default=[],
            metavar="CHANGE",
            help="re-run with this change applied: a change id printed by `vmsentry paths`, or a rule id (repeatable)",
        )
        p.add_argument("--limit", type=int, default=20, metavar="N", help="paths shown in text/html (default 20)")
        p.add_argument(
            "--fix-format",
            choices=("sh", "ansible", "patch", "json"),
            metavar="FORMAT",
            help="instead of the report, the smallest fix as `vmsentry fix` writes it: sh, ansible, patch or json",
        )

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.graph import SpecError, VulnDBError, analyse, load_vulns
        from vmsentry.analyse.graph.build import build_graph

        if args.limit < 1:
            raise FatalError("--limit must be at least 1")
        with reraise_as(FatalError, VulnDBError):
            vulns = load_vulns(args.vuln_db)
        inv, _ = collect_inputs(args, progress=False)
        graph = build_graph(inv, args.vuln_db, vulns=vulns)
        with reraise_as(FatalError, SpecError):
            result = analyse(inv, args.source, args.target, args.vuln_db, args.what_if, graph=graph)
        if args.fix_format:
            from vmsentry.commands.fix import fix_of_paths

            fix_of_paths(inv, result.remediation, args)
            return 2 if inv.errors else 0
        fmt = default_format(args)
        if fmt == "json":
            from vmsentry.report.paths import render_json

            text = render_json(result)
        elif fmt == "html":
            from vmsentry.report.paths_html import render_html

            text = render_html(result, limit=max(args.limit, 50))
        else:
            from vmsentry.report.paths import render_text

            text = render_text(result, limit=args.limit)
        write(text, args.output)
        return 2 if inv.errors else 0
