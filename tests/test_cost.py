"""`vmsentry cost`: reproducible figures for a fixed seed, an option that cuts every path avoids the whole
expected loss, one that cuts nothing avoids nothing, and a bad options file is one line naming the place
(exit 3). Everything runs on the example labs' real definition files."""

from __future__ import annotations

import json
import os

import pytest

from vmsentry.analyse.cost import analyse_cost, draw
from vmsentry.analyse.cost_options import CHANGE_KINDS, default_model, load_options
from vmsentry.analyse.graph.build import build_graph
from vmsentry.cli import main
from vmsentry.collect import collect
from vmsentry.model.cost import Estimate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINANCE = os.path.join(ROOT, "examples", "incident-2022-finance")
OPTIONS = os.path.join(FINANCE, "cost-options.yaml")
LABS = [os.path.join(ROOT, "examples", n) for n in ("lab", "incident-2022-finance", "incident-2023-hospital")]


def graph_of(path: str):
    inv, _ = collect([path], [], False)
    return build_graph(inv)


@pytest.fixture(scope="module")
def finance_graph():
    return graph_of(FINANCE)


def run_json(capsys, *args: str) -> dict:
    assert main(["cost", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def by_name(doc: dict) -> dict[str, dict]:
    return {o["option"]["name"]: o for o in doc["options"]}


def test_the_same_seed_gives_the_same_figures_and_the_figures_follow_by_hand(capsys):
    first = run_json(capsys, FINANCE, "--options", OPTIONS)
    again = run_json(capsys, FINANCE, "--options", OPTIONS)
    assert first == again
    other = run_json(capsys, FINANCE, "--options", OPTIONS, "--seed", "16")
    assert other["before"]["ale"]["mean"] != first["before"]["ale"]["mean"]  # the seed is used ...
    assert other["before"]["ale"]["expected"] == first["before"]["ale"]["expected"]  # ... the model is not random
    before = first["before"]
    # the example's figures as docs/cost.md walks through them: PERT means and the graph's vulnerability
    assert before["threat_event_frequency"]["expected"] == pytest.approx(0.7)  # (0.2 + 4 x 0.5 + 2) / 6
    assert before["loss_magnitude"]["expected"] == pytest.approx(1_116_666.67, abs=0.01)
    assert before["vulnerability"] == pytest.approx(0.95)  # every VM reaches the host at 0.95 (libvirtd TCP)
    assert before["ale"]["expected"] == pytest.approx(0.7 * 0.95 * 6_700_000 / 6, rel=1e-12)
    # Monte Carlo figures for seed 15 (20,000 draws): within 1% of the analytic mean, pinned to the run
    assert before["ale"]["mean"] == pytest.approx(before["ale"]["expected"], rel=0.01)
    assert before["ale"]["mean"] == pytest.approx(739_672, abs=1)
    options = by_name(first)
    assert [o["option"]["name"] for o in first["options"]] == [
        "close-libvirt-tcp",
        "vlan",
        "microsegmentation",
        "physical-separation",
        "nat",
    ]
    assert options["vlan"]["cut"]["vulnerability"] == pytest.approx(0.6)
    assert options["vlan"]["loss_avoided"]["expected"] == pytest.approx(0.7 * 0.35 * 1_116_666.67, rel=1e-6)
    assert options["vlan"]["cost"]["expected"] == pytest.approx((5000 + 4 * 12000 + 30000) / 6)
    assert options["vlan"]["loss_avoided_per_cost"] == pytest.approx(273_583.33 / 13_833.33, rel=1e-6)


def test_an_option_cutting_every_path_avoids_the_whole_expected_loss(capsys):
    doc = run_json(capsys, FINANCE)
    phys = by_name(doc)["physical-separation"]
    assert phys["cut"]["reaching_after"] == 0 and phys["cut"]["paths_after"] == 0
    assert phys["cut"]["vulnerability"] == 0
    assert phys["ale"] == {"mean": 0, "p5": 0, "p50": 0, "p95": 0, "expected": 0}
    # the same draws before and after: the loss avoided is the loss before, figure for figure
    assert phys["loss_avoided"] == doc["before"]["ale"]


def test_an_option_cutting_nothing_avoids_nothing(finance_graph, tmp_path):
    path = tmp_path / "options.yaml"
    path.write_text(
        "options:\n"
        "  passthrough-off:\n"  # the finance host passes no device through: the pattern matches nothing
        "    changes: ['dev:*']\n"
        "    cost: {low: 1, most_likely: 2, high: 3}\n"
        "  nat:\n"
    )
    result = analyse_cost(finance_graph, load_options(str(path)), seed=15)
    by = {o.option.name: o for o in result.options}
    none = by["passthrough-off"]
    assert none.cut.applied == [] and none.cut.unmatched == ["dev:*"]
    assert none.avoided.mean == none.avoided.p95 == none.avoided.expected == 0
    assert none.worth_it == 0 and none.rank == 2
    assert any("passthrough-off: 'dev:*' matches no change" in n for n in result.notes)
    # NAT removes an edge (the host's own traffic on the bridge) that no best path needs: nothing avoided
    nat = by["nat"]
    assert nat.cut.edges_removed == 1 and nat.avoided.expected == 0 and nat.cut.vulnerability == result.vulnerability


def test_option_costs_do_not_depend_on_the_order_of_the_options(finance_graph):
    model = default_model()
    forward = analyse_cost(finance_graph, model, seed=3)
    reverse = analyse_cost(finance_graph, model.__class__(**{**_fields(model), "options": model.options[::-1]}), 3)
    assert {o.option.name: o.cost for o in forward.options} == {o.option.name: o.cost for o in reverse.options}


def _fields(model) -> dict:
    return {f: getattr(model, f) for f in model.__dataclass_fields__}


def test_pert_and_triangular_draws_stay_in_range_with_the_documented_means():
    import numpy as np

    estimate = Estimate(10, 20, 70)
    for dist, mean in (("pert", (10 + 80 + 70) / 6), ("triangular", 100 / 3)):
        values = draw(np.random.default_rng(1), estimate, 200_000, dist)
        assert values.min() >= 10 and values.max() <= 70
        assert values.mean() == pytest.approx(mean, rel=0.01) == estimate.mean(dist)
    assert (draw(np.random.default_rng(1), Estimate(5, 5, 5), 10, "pert") == 5).all()


@pytest.mark.parametrize("lab", LABS, ids=os.path.basename)
def test_every_change_the_graph_makes_is_of_a_kind_an_option_can_name(lab):
    kinds = {cid.split(":", 1)[0] for cid in graph_of(lab).changes}
    assert kinds <= set(CHANGE_KINDS)


def test_every_lab_ranks_the_four_default_options(capsys):
    for lab in LABS:
        doc = run_json(capsys, lab)
        assert sorted(o["option"]["name"] for o in doc["options"]) == sorted(
            ["nat", "vlan", "microsegmentation", "physical-separation"]
        )
        assert doc["schema"] == "vmsentry.cost/1" and doc["model"]["illustrative"] is True
        assert [o["rank"] for o in doc["options"]] == [1, 2, 3, 4]


def test_text_report_is_the_arithmetic_line_by_line(capsys):
    assert main(["cost", FINANCE, "--options", OPTIONS, "--format", "text"]) == 0
    text = capsys.readouterr().out
    assert "ILLUSTRATIVE" in text
    assert "LEF = TEF x V = 0.7 x 0.950 = 0.665 loss events a year" in text
    assert "ALE = LEF x LM = 0.665 x 1,116,667 = 742,583 a year" in text
    assert "loss avoided = 742,583 - 469,000 = 273,583" in text


BAD = [
    ("colour: red\n", 1, "unknown key 'colour'"),
    ("loss_magnitude: {low: 5, most_likely: 4, high: 3}\n", 1, "bad range, low 5 is above high 3"),
    ("threat_event_frequency:\n  low: 1\n  most_likely: 9\n  high: 3\n", 3, "most_likely 9 is outside 1 .. 3"),
    ("threat_event_frequency: {low: 1, high: 3}\n", 1, "lacks most_likely"),
    ("loss_magnitude: {low: a, most_likely: 4, high: 5}\n", 1, "expected a number, got the text 'a'"),
    ("loss_magnitude: {low: -1, most_likely: 4, high: 5}\n", 1, "from 0 to 1e15"),
    ("options:\n  teleport:\n    cost: {low: 1, most_likely: 2, high: 3}\n", 2, "unknown option 'teleport'"),
    ("options:\n  nat:\n    price: 3\n", 3, "unknown key 'price' in option 'nat'"),
    ("options:\n  x:\n    changes: ['wormhole:*']\n    cost: {low: 1, most_likely: 2, high: 3}\n", 3, "unknown change"),
    (
        "options:\n  x:\n    changes:\n      - VMS-VM-999\n    cost: {low: 1, most_likely: 2, high: 3}\n",
        4,
        "VMS-VM-999",
    ),
    ("options:\n  x:\n    changes: ['spoof:*']\n", 2, "must give its cost"),
    ("options:\n  nat:\n    cost: {low: 9, most_likely: 2, high: 3}\n", 3, "bad range"),
    ("samples: 5\n", 1, "samples: expected a whole number from 100"),
    ("distribution: normal\n", 1, "expected pert or triangular"),
    ("currency: EUR\ncurrency: USD\n", 2, "duplicate key 'currency'"),
    ("options: [nat]\n", 1, "options must be a mapping"),
    ("threat_event_frequency: {low: 1\n", 2, "bad YAML"),
    ("", 1, "empty options file"),
]


@pytest.mark.parametrize(("content", "line", "fragment"), BAD, ids=[b[2][:30] for b in BAD])
def test_a_bad_options_file_is_one_line_with_the_place(tmp_path, capsys, content, line, fragment):
    path = tmp_path / "opts.yaml"
    path.write_text(content)
    assert main(["cost", FINANCE, "--options", str(path)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"vmsentry: {path}:{line}:"), lines[0]
    assert fragment in lines[0]


def test_a_missing_options_file_and_bad_seeds_are_usage_errors(tmp_path, capsys):
    assert main(["cost", FINANCE, "--options", str(tmp_path / "none.yaml")]) == 3
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "none.yaml" in err
    for seed in ("-1", "x", str(2**63)):
        with pytest.raises(SystemExit) as exc:
            main(["cost", FINANCE, "--seed", seed])
        assert exc.value.code == 3
    capsys.readouterr()


def test_an_unreadable_input_is_exit_2_and_the_rest_is_still_costed(tmp_path, capsys):
    assert main(["cost", FINANCE, str(tmp_path / "missing.xml"), "--format", "json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["options"] and "missing.xml" in captured.err


def test_bad_specs_are_one_line(capsys):
    assert main(["cost", FINANCE, "--from", "vm:nobody"]) == 3
    assert "nobody" in capsys.readouterr().err
