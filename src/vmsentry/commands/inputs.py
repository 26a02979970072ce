"""The inputs of the verbs that read VMs and networks (scan, inventory, paths): definition files and
folders, live libvirt connections and this host, collected into one inventory."""

from __future__ import annotations

import argparse
import os
import sys

from vmsentry.commands.base import FatalError, plain_terminal, use_progress_bar
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
    if progress and use_progress_bar():
        from vmsentry.collect import iter_files

        bar = ProgressBar(sum(1 for _ in iter_files(args.paths)))  # a second walk: ~30 ms per 10,000 files
    try:
        inv, skipped = collect(args.paths, args.libvirt, args.host, progress=bar.update if bar else None)
    finally:
        if bar:
            bar.close()
    for err in inv.errors:
        print(f"vmsentry: {printable(err.line())}", file=sys.stderr)
    return inv, skipped


class ProgressBar:
    """A progress bar on stderr for long scans: files read of the total, percentage, time left and the file
    being read. rich draws it on one line cut to the terminal's width (it never wraps in a narrow terminal;
    the file name, then the percentage, give way first) and removes it at the end. It appears only once the
    first SHOW_AFTER files are read (small scans end before a bar would help), and rich is imported only
    then: ``--help`` and small runs do not pay for it."""

    SHOW_AFTER = 200

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self._progress = None
        self._task = None

    def update(self, count: int, path: str) -> None:
        if count < self.SHOW_AFTER:
            return
        name = printable(os.path.basename(path))
        if self._progress is None:
            self._start(count, name)
        else:
            self._progress.update(self._task, completed=count, name=name)

    def _start(self, count: int, name: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.table import Column

        # under NO_COLOR the same bar without colour or any other style
        console = Console(file=sys.stderr, color_system=None if plain_terminal() else "auto")
        fixed = Column(no_wrap=True)
        columns = [
            TextColumn("vmsentry:", table_column=fixed),
            BarColumn(bar_width=None),
            MofNCompleteColumn(table_column=fixed),
        ]
        if console.width >= 50:
            columns.append(TaskProgressColumn(table_column=fixed))
        if console.width >= 40:
            columns.append(TextColumn("ETA", table_column=fixed))
        columns.append(TimeRemainingColumn(table_column=fixed))
        if console.width >= 80:
            # markup=False: a file name is text, never rich markup
            columns.append(
                TextColumn(
                    "{task.fields[name]}",
                    markup=False,
                    style="dim",
                    table_column=Column(no_wrap=True, overflow="ellipsis", max_width=30),
                )
            )
        self._progress = Progress(*columns, console=console, transient=True, refresh_per_second=5)
        self._task = self._progress.add_task("read", total=self.total, completed=count, name=name)
        self._progress.start()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
