"""``vmsentry rules``: the rule catalogue, or the platform comparison table built from it."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, write
from vmsentry.model.rule import PLATFORMS
from vmsentry.report.rules import FORMATS


class RulesCommand(Command):
    """List the rule catalogue: id, severity, category, platforms and title of every rule vmsentry checks, or
    (--matrix) how each platform sets each control. Exit 0; 3: usage error or the output cannot be written."""

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
        p.add_argument("-o", "--output", metavar="FILE", help="write the list here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.analyse.rules import load_catalogue

        rules = [
            r for r in load_catalogue() if not args.platform or args.platform in r.platforms or "all" in r.platforms
        ]
        if args.matrix:
            from vmsentry.report.matrix import render
        else:
            from vmsentry.report.rules import render  # type: ignore[no-redef]
        write(render(args.format, rules), args.output)
        return 0
