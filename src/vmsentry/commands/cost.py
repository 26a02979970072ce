"""``vmsentry cost``: collect -> exposure graph -> FAIR Monte Carlo per isolation option -> ranking."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, FatalError, add_report_output, default_format, reraise_as, write
from vmsentry.commands.inputs import add_inputs, collect_inputs

FORMATS = ("text", "json", "html")
DEFAULT_SEED = 15  # any fixed number: the same inputs give the same figures


def seed_value(text: str) -> int:
    """An argparse type for --seed: a whole number from 0 to 2**63 - 1."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number from 0 to 2**63 - 1")
    return value


class CostCommand(Command):
    """Expected annual loss per isolation option (NAT, VLAN, micro-segmentation, physical separation, and
    those of --options FILE): how much of the attack-path graph each cuts, the loss it avoids and what it
    costs, as ranges from a FAIR Monte Carlo with a fixed seed, ranked by loss avoided per unit of cost.
    Without --options the figures are illustrative defaults (docs/cost.md). Exit 0; 2: some input could
    not be read; 3: usage or fatal error (an options file that cannot be used)."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument("--options", metavar="FILE", help="options file (YAML): ranges, costs, options (docs/cost.md)")
        p.add_argument(
            "--seed",
            type=seed_value,
            default=DEFAULT_SEED,
            metavar="N",
            help=f"random seed of the Monte Carlo (default {DEFAULT_SEED}: the same inputs give the same figures)",
        )
        p.add_argument(
            "--from", dest="source", default="any-vm", metavar="SPEC", help="attack sources as for paths (any-vm)"
        )
        p.add_argument("--to", dest="target", default="any", metavar="SPEC", help="targets as for paths (any)")
        p.add_argument("--vuln-db", metavar="FILE", help="hypervisor vulnerability table (vulns.yaml format)")
        add_report_output(p, FORMATS)

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.cost import analyse_cost
        from vmsentry.analyse.cost_options import OptionsError, default_model, load_options
        from vmsentry.analyse.graph import SpecError, VulnDBError, load_vulns
        from vmsentry.analyse.graph.build import build_graph

        # every file the run depends on is checked before the inventory is read
        with reraise_as(FatalError, OptionsError):
            model = load_options(args.options) if args.options else default_model()
        with reraise_as(FatalError, VulnDBError):
            vulns = load_vulns(args.vuln_db)
        inv, _ = collect_inputs(args, progress=False)
        graph = build_graph(inv, args.vuln_db, vulns=vulns)
        with reraise_as(FatalError, SpecError):
            result = analyse_cost(graph, model, args.seed, args.source, args.target)
        fmt = default_format(args)
        if fmt == "json":
            from vmsentry.report.cost import render_json

            text = render_json(result)
        elif fmt == "html":
            from vmsentry.report.cost_html import render_html

            text = render_html(result)
        else:
            from vmsentry.report.cost import render_text

            text = render_text(result)
        write(text, args.output)
        return 2 if inv.errors else 0
