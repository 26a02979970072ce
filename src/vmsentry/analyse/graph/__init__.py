"""Exposure graph and attack paths (``vmsentry paths``).

``analyse(inventory, source, target, vuln_db, what_if)`` builds the graph, finds each source's best path
to the targets, and the smallest fix found; see build.py (graph semantics), exposes.py (which rule results
open which edges), paths.py (path search), mincut.py (fix), analysis.py (the run) and docs/paths.md.

The names below load on first use: the rule catalogue reads ``techniques`` to check ``exposes:``, and a
scan must not pay for networkx.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "analyse": "analysis",
    "PathsResult": "analysis",
    "PathsAnalysis": "analysis",
    "resolve_changes": "analysis",
    "build_graph": "build",
    "ExposureGraph": "build",
    "Change": "build",
    "cut_effect": "mincut",
    "SpecError": "paths",
    "VulnDBError": "vulns",
    "load_vulns": "vulns",
}
__all__ = [
    "Change",
    "ExposureGraph",
    "PathsAnalysis",
    "PathsResult",
    "SpecError",
    "VulnDBError",
    "analyse",
    "build_graph",
    "cut_effect",
    "load_vulns",
    "resolve_changes",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
