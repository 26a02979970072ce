"""Smallest fix (min cut), what-if and the reusable cut computation."""

from __future__ import annotations

import itertools
import os

import pytest

from vmsentry.analyse.graph import SpecError, analyse, cut_effect, resolve_changes
from vmsentry.analyse.graph.build import build_graph
from vmsentry.analyse.graph.mincut import reaching_sources, smallest_fix
from vmsentry.collect import collect

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "examples", "lab")


@pytest.fixture(scope="module")
def lab():
    inv, _ = collect([LAB])
    return inv


def test_fix_cuts_every_vm_to_host_path(lab):
    r = analyse(lab)
    assert r.paths and r.fix.verified
    eg = r.graph
    assert not reaching_sources(eg, eg.vms, eg.hosts, set(r.fix.changes))
    cuts = [x["cuts"] for x in r.remediation]
    assert cuts == sorted(cuts, reverse=True)  # biggest cut first
    for x in r.remediation:
        assert set(x) >= {"change", "asset", "rule_id", "cuts"}
        assert x["id"] in eg.changes


def test_fix_is_minimal_no_change_redundant(lab):
    r = analyse(lab)
    eg = r.graph
    chosen = set(r.fix.changes)
    for c in chosen:
        assert reaching_sources(eg, eg.vms, eg.hosts, chosen - {c}), f"{c} is redundant"


def test_fix_matches_brute_force_on_a_small_case(lab):
    """On vm:web -> host the cut is small enough to check every cheaper combination."""
    inv = lab
    eg = build_graph(inv)
    fix = smallest_fix(eg, ["vm:web"], eg.hosts)
    assert fix.verified
    relevant = sorted({c for _, _, c in eg.g.edges(data="change") if c})
    best = None
    for n in range(1, 4):
        for combo in itertools.combinations(relevant, n):
            if not reaching_sources(eg, ["vm:web"], eg.hosts, set(combo)):
                cost = sum(eg.changes[c].cost for c in combo)
                best = cost if best is None else min(best, cost)
        if best is not None:
            break
    assert best is not None and fix.cost <= best + 1e-9


def test_what_if_applies_changes_and_reports_before_after(lab):
    base = analyse(lab)
    ids = [x["id"] for x in base.remediation]
    r = analyse(lab, what_if=ids)
    assert r.paths == []
    assert r.what_if["before"]["paths"] == len(base.paths)
    assert r.what_if["after"]["paths"] == 0


def test_what_if_by_rule_id(lab):
    eg = build_graph(lab)
    ids = resolve_changes(eg, ["VMS-VM-030"])
    assert ids and all(i.startswith("spoof:") for i in ids)
    with pytest.raises(SpecError):
        resolve_changes(eg, ["no-such-change"])


def test_what_if_single_change_lowers_worst_score(lab):
    r = analyse(lab, what_if=["svc:host:kvm-lab-01:tcp/16509"])
    assert r.what_if["after"]["worst_score"] < r.what_if["before"]["worst_score"]


def test_cut_effect_is_reusable(lab):
    eg = build_graph(lab)
    eff = cut_effect(eg, ["fw-seg:net:default"], eg.vms, eg.hosts)
    assert eff["reaching_before"] == 5
    assert eff["edges_removed"] == 1
    assert eff["reaching_after"] <= eff["reaching_before"]


def test_external_to_host(lab):
    r = analyse(lab, "external", "host")
    assert r.paths and r.paths[0].steps[0]["from"] == "external"
    assert r.fix.verified


def test_vm_to_any_includes_lan_and_vms(lab):
    r = analyse(lab, "vm:build", "any")
    targets = {p.target for p in r.paths}
    assert "lan" in targets and "host:kvm-lab-01" in targets and any(t.startswith("vm:") for t in targets)
    assert r.fix.verified


def test_bad_specs(lab):
    with pytest.raises(SpecError):
        analyse(lab, "vm:nope", "host")
    with pytest.raises(SpecError):
        analyse(lab, "any-vm", "mars")


def test_benchmark_inventory_small_scale():
    """The benchmark's synthetic fleet (every edge kind) at 400 VMs: every VM has a best path, the fix is
    verified, and the HTML stays bounded."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_paths", os.path.join(ROOT, "benchmarks", "bench_paths.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.run(400, 8)
    assert row["paths_found"] >= 400 and row["fix_changes"] > 0
    from vmsentry.report.paths_html import MAX_NODES, render_html

    inv = bench.inventory(400, 8)
    html = render_html(analyse(inv))
    assert html.count('<g class="node') <= MAX_NODES
