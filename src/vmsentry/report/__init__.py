"""Stage 4: a scan's result in one of the output formats, and the exit code it implies.

This module stays import-light (the CLI imports it for every verb, ``--help`` included): each format
lives in its own module, imported only when that format is rendered.
"""

from __future__ import annotations

from html import escape
from importlib import import_module
from typing import Any

from vmsentry.model.scan import ScanResult
from vmsentry.model.text import printable

# format name -> module under vmsentry.report
FORMATS = {"text": "text", "json": "json_report", "sarif": "sarif", "junit": "junit", "html": "scan_report"}


def render(fmt: str, result: ScanResult, *, color: bool = False) -> str:
    """The report as text. ``color`` (ANSI) applies to the text format only."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    module = import_module(f"vmsentry.report.{FORMATS[fmt]}")
    return module.render(result, color=color) if fmt == "text" else module.render(result)


def exit_code(result: ScanResult) -> int:
    """0 clean, 1 failing findings at or above ``fail_on`` (only new ones when a baseline was given),
    2 some input could not be read (wins over 1). 3 (usage, fatal) is the CLI's."""
    from vmsentry.model.findings import SEVERITY_RANK  # here, not at the top: keeps this module light

    if result.inventory.errors:
        return 2
    if result.fail_on == "none":
        return 0
    if result.fail_on not in SEVERITY_RANK:
        raise ValueError(f"fail_on must be a severity or 'none', got {result.fail_on!r}")
    threshold = SEVERITY_RANK[result.fail_on]
    counted = result.baseline["new"] if result.baseline is not None else result.findings
    return int(any(f.status == "fail" and SEVERITY_RANK[f.severity] <= threshold for f in counted))


def markup_text(value: Any) -> str:
    """``value`` for HTML or XML text and attributes: one line of printable characters (which are all XML 1.0
    characters: a control character, U+FFFE or a lone surrogate in a VM name is shown as an escape) with
    the markup characters escaped (``]]>`` and ``-->`` cannot end anything)."""
    return escape(printable(value), quote=True)
