"""`vmsentry paths` as text (an analyst's summary) and JSON (the contract in CONTRACTS.md)."""

from __future__ import annotations

import json
from typing import Any

from vmsentry.model.paths import PathsResult
from vmsentry.model.text import printable


def render_json(result: PathsResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


def _label(result: PathsResult, node: str) -> str:
    return printable(result.label(node))


def _where(ev: dict[str, Any]) -> str:
    parts = [p for p in (ev.get("file"), ev.get("locator")) if p]
    return printable(", ".join(str(p) for p in parts)) if parts else "(derived)"


def render_text(result: PathsResult, limit: int = 20) -> str:
    st = result.graph_stats
    inv_nets = sum(1 for n in result.nodes.values() if n.kind == "network")
    hosts = ", ".join(printable(h.split(":", 1)[1]) for h in result.hosts) or "none"
    out = [
        f"vmsentry paths: {printable(result.source)} -> {printable(result.target)}",
        f"{st['vms']} VMs, {inv_nets} networks/bridges, host {hosts}; exposure graph of {st['nodes']} nodes and "
        f"{st['edges']} edges.",
        "",
    ]
    paths = result.paths
    reaching = result.reaching
    if result.what_if:
        w = result.what_if
        out.append("What-if: with these changes applied")
        for c in w["applied"]:
            out.append(f"  - {printable(c['change'])} [{c['rule_id'] or 'no rule'}]")
        b, a = w["before"], w["after"]
        out.append(f"  before: {b['reaching']} sources with a path, {b['paths']} paths, worst score {b['worst_score']}")
        out.append(f"  after:  {a['reaching']} sources with a path, {a['paths']} paths, worst score {a['worst_score']}")
        out.append("")
    if not paths:
        out.append(f"No path found from {printable(result.source)} to {printable(result.target)}.")
    else:
        top = paths[0]
        out.append(
            f"{reaching['reaching']} of {reaching['sources']} sources reach {printable(result.target)}. "
            f"The worst path ({top.score}/10) goes {printable(top.source)} -> {printable(top.target)} via "
            f"{', '.join(printable(s['technique']) for s in top.steps)}."
        )
        techniques = sorted({s["technique"] for p in paths for s in p.steps if s.get("attack_id")})
        if techniques:
            ids = sorted({s["attack_id"] for p in paths for s in p.steps if s.get("attack_id")})
            out.append(f"ATT&CK techniques on these paths: {', '.join(ids)}.")
        out.append("")
        shown = paths[:limit]
        out.append(f"Worst paths ({len(paths)} found, {len(shown)} shown; score 0-10, higher is worse):")
        for i, p in enumerate(shown, 1):
            out.append(
                f"{i:>3}. [{p.score:>4}] {printable(p.source)} -> {printable(p.target)}  "
                f"(likelihood {p.probability:.2f})"
            )
            for j, s in enumerate(p.steps, 1):
                tag = s["technique"] + (f", {s['attack_id']}" if s.get("attack_id") else "")
                poss = " POSSIBLE" if s.get("possible") else ""
                out.append(
                    f"       {j}) {_label(result, s['from'])} -> {_label(result, s['to'])}: "
                    f"{printable(s['explanation'])} [{tag}]{poss}"
                )
                out.append(f"          at {_where(s['evidence'])}")
        out.append("")
    fix = result.fix
    if fix.uncuttable:
        out.append("Some paths cannot be cut by any change vmsentry knows:")
        for nodes in fix.uncuttable[:5]:
            out.append("  " + " -> ".join(_label(result, n) for n in nodes))
        out.append("")
    if result.remediation:
        state = (
            "verified on the graph: no source reaches the target once applied"
            if fix.verified
            else "NOT verified: some path remains"
        )
        out.append(f"Smallest fix found: {len(result.remediation)} change(s), total cost {fix.cost:g} ({state}).")
        out.append("Biggest cut first; 'cuts' counts the listed paths each change breaks.")
        for i, r in enumerate(result.remediation, 1):
            out.append(f"{i:>3}. {printable(r['change'])}")
            out.append(
                f"       asset {printable(r['asset'])}, rule {r['rule_id'] or '-'}, cuts {r['cuts']}, "
                f"cost {r['cost']:g}; what-if id: {printable(r['id'])}"
            )
        # every change of the fix: a change that cuts none of the listed paths may still be needed to cut the rest
        ids = " ".join(f"--what-if '{printable(r['id'])}'" for r in result.remediation)
        out.append(f"Preview the effect before touching the host: vmsentry paths ... {ids}")
        out.append("")
    if result.vulnerabilities:
        out.append("Hypervisor flaws that match this inventory:")
        for v in result.vulnerabilities:
            state = "affected" if v["status"] == "affected" else "possible (version not known)"
            out.append(
                f"  {v['id']} {v['component']} {v['version'] or '?'} on {printable(v['host'])}: {state}; "
                f"fixed in {v['fixed']}"
            )
        out.append("")
    for note in result.notes:
        out.append(f"note: {printable(note)}")
    return "\n".join(out).rstrip() + "\n"
