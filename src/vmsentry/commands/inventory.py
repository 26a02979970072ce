"""``vmsentry inventory``: the collected inventory as JSON (the contract's schema)."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, write
from vmsentry.commands.inputs import add_inputs, collect_inputs


class InventoryCommand(Command):
    """Collect VMs, networks and the host and print the normalised inventory as JSON (the input `scan`, `paths`,
    `detect --inventory` and `policy --inventory` read back). Exit 0; 2: some input could not be read; 3: usage or
    fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        import json

        inv, _ = collect_inputs(args, progress=False)
        write(json.dumps(inv.to_dict(), indent=2, sort_keys=False) + "\n", args.output)
        return 2 if inv.errors else 0
