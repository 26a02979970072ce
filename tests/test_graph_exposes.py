"""One meaning of exposure: for every rule with ``exposes:``, on the example labs, each failing finding of
the scan has an edge of that technique for that asset and item, and each such edge has a failing finding
behind it (an unknown result: a 'possible' edge)."""

from __future__ import annotations

import os

import pytest

from vmsentry.analyse.engine import evaluate
from vmsentry.analyse.graph.build import build_graph
from vmsentry.analyse.graph.techniques import TECHNIQUES
from vmsentry.analyse.rules import load_catalogue
from vmsentry.collect import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = [os.path.join(ROOT, "examples", name) for name in ("lab", "incident-2022-finance", "incident-2023-hospital")]
LABS.append(os.path.join(ROOT, "tests", "fixtures", "graph", "misc"))
EXPOSING = [r for r in load_catalogue() if r.exposes]


def _id(path: str) -> str:
    return {"lab": "example-kvm"}.get(os.path.basename(path), os.path.basename(path))  # "lab" is a -k word


@pytest.fixture(scope="module", params=LABS, ids=_id)
def lab(request):
    inv, _ = collect([request.param], [], False)
    return inv, build_graph(inv), evaluate(inv)


# techniques the builder opens per item of an asset (a NIC, a share), matched by the finding's locator;
# the others per asset (a VM's clipboard, a network's mode), where the edge's evidence names the setting
PER_ITEM = ("user-nat-host-loopback", "shared-folder-write", "bridged-to-lan", "arp-mitm")


def _key(technique: str, asset: str, locator):
    return (asset, locator) if technique in PER_ITEM else (asset,)


def _edges(eg, rule, technique: str, possible: bool) -> set[tuple]:
    """Edges of the technique that leave a node of an asset of the rule's type, keyed like the findings."""
    g = eg.g
    out = set()
    for u, _v, d in g.edges(data=True):
        asset = g.nodes[u].get("asset") or ""
        if d["technique"] == technique and asset.startswith(rule.asset + ":") and d["possible"] == possible:
            out.add(_key(technique, asset, d["evidence"]["locator"]))
    return out


def test_exposes_names_graph_techniques():
    assert {r.id for r in EXPOSING} >= {"VMS-VM-013", "VMS-VM-030", "VMS-VM-060", "VMS-VM-070", "VMS-NET-005"}
    assert all(t in TECHNIQUES for r in EXPOSING for t in r.exposes)


@pytest.mark.parametrize("technique", sorted({t for r in EXPOSING for t in r.exposes}))
def test_failing_findings_and_edges_agree(lab, technique):
    inv, eg, findings = lab
    rules = [r for r in EXPOSING if technique in r.exposes]
    platform = {a.asset: a.platform for a in (*inv.vms, *inv.networks, *inv.hosts)}
    for possible, status in ((False, "fail"), (True, "unknown")):
        for rule in rules:
            covered = {a for a, p in platform.items() if "all" in rule.platforms or p in rule.platforms}
            found = {
                _key(technique, f.asset, f.evidence.get("locator"))
                for f in findings
                if f.rule_id == rule.id and f.status == status
            }
            edges = {e for e in _edges(eg, rule, technique, possible) if e[0] in covered}
            if status == "unknown" and technique != "arp-mitm":
                assert not edges, f"{technique}: only missing anti-spoofing is modelled as a possible edge"
                continue
            other = {
                k
                for r in rules
                if r is not rule
                for f in findings
                if f.rule_id == r.id and f.status == status
                for k in [_key(technique, f.asset, f.evidence.get("locator"))]
            }
            # arp-mitm needs a peer on the segment: a NIC alone on it has nobody to intercept
            lone = set() if technique != "arp-mitm" else {k for k in found if not _has_peer(eg, k[0])}
            # one edge per (from, to): two failing NICs of a VM onto the LAN are one step, so per asset here
            assert {k[0] for k in found - lone} <= {e[0] for e in edges}, (
                f"{rule.id} {status} without a {technique} edge: {found - lone - edges}"
            )
            assert edges - other <= found, f"{technique} edge without a {status} {rule.id} finding: {edges - found}"


def _has_peer(eg, vid: str) -> bool:
    return any(v.startswith(("net:", "bridge:")) for v in eg.g.successors(vid)) and any(
        n.startswith("mitm:") for n in eg.g.predecessors(vid)
    )


def test_examples_exercise_every_exposing_rule():
    seen = set()
    for path in LABS:
        inv, _ = collect([path], [], False)
        seen |= {f.rule_id for f in evaluate(inv, EXPOSING) if f.status == "fail"}
    assert {r.id for r in EXPOSING} - seen <= {"VMS-NET-002"}, "no example has a routed network"
