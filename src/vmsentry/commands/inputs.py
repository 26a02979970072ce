"""The inputs of the verbs that read VMs and networks (scan, inventory, paths): definition files and
folders, live libvirt connections and this host, collected into one inventory."""

from __future__ import annotations

import argparse
import os
import sys
import time

from vmsentry.commands.base import FatalError
from vmsentry.model.text import printable


def add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths", nargs="*", metavar="PATH", help="VM/network definition file or folder, or a saved inventory JSON"
    )
    p.add_argument(
        "--libvirt",
        action="append",
        default=[],
        metavar="URI",
        help="read a live libvirt connection (test:///default, qemu:///system, qemu+ssh://...)",
    )
    p.add_argument(
        "--host",
        action="store_true",
        help="collect this Linux host's facts (sysctls, bridges, sockets, firewall, IOMMU, ...)",
    )


def collect_inputs(args: argparse.Namespace, progress: bool):
    """(inventory, skipped files) from ``add_inputs``' arguments; each collection error printed on stderr."""
    from vmsentry.collect import collect

    if not (args.paths or args.libvirt or args.host):
        raise FatalError("nothing to read: give a PATH, --libvirt URI or --host")
    bar = None
    if progress and sys.stderr.isatty():
        from vmsentry.collect import iter_files

        bar = ProgressBar(sum(1 for _ in iter_files(args.paths)))  # a second walk: ~30 ms per 10,000 files
    inv, skipped = collect(args.paths, args.libvirt, args.host, progress=bar.update if bar else None)
    if bar:
        bar.close()
    for err in inv.errors:
        print(f"vmsentry: {printable(err.line())}", file=sys.stderr)
    return inv, skipped


class ProgressBar:
    """A one-line progress bar on stderr for long scans (shown after the first 200 files)."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.shown = False
        self.last = 0.0

    def update(self, count: int, path: str) -> None:
        now = time.monotonic()
        if count < 200 or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        done = min(count * self.WIDTH // self.total, self.WIDTH)
        sys.stderr.write(
            f"\rvmsentry: [{'#' * done}{'.' * (self.WIDTH - done)}] {count}/{self.total} "
            f"{printable(os.path.basename(path))[:30]:<30}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()
