"""The command line itself: options and paths in any order, enumerations that name their valid values,
a description and help text on every verb, sub-verb and option, and verbs imported only when they run."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmsentry.cli import build_parser, main
from vmsentry.commands import COMMANDS, create_command
from vmsentry.model.rule import PLATFORMS

REPO = Path(__file__).resolve().parents[1]
LAB, FINANCE = REPO / "examples" / "lab", REPO / "examples" / "incident-2022-finance"
POLICY_FIX = REPO / "tests" / "fixtures" / "policy"


def _without_timings(doc):
    """A report with its measured times and its run id and start time (which differ run to run) left out."""
    if isinstance(doc, dict):
        return {
            k: _without_timings(v)
            for k, v in doc.items()
            if "seconds" not in k and "per_second" not in k and k not in ("generated", "run_id", "timestamp")
        }
    if isinstance(doc, list):
        return [_without_timings(v) for v in doc]
    return doc


# --- options and paths in any order -------------------------------------------------------------------
def test_detect_takes_captures_on_both_sides_of_an_option(run_cli, shared_dir):
    arp, nmap = (shared_dir / "pcaps" / "lab" / n for n in ("arpspoof-vm1-vs-vm2.pcap", "nmap-sS-vm1-vs-hostns.pcap"))
    mixed = run_cli("detect", arp, "--format", "json", nmap)
    ordered = run_cli("detect", arp, nmap, "--format", "json")
    assert mixed.returncode == ordered.returncode == 1, mixed.stderr
    doc = json.loads(mixed.stdout)
    assert [i["name"] for i in doc["stats"]["inputs"]] == [str(arp), str(nmap)]
    assert _without_timings(doc) == _without_timings(json.loads(ordered.stdout))


def test_policy_check_takes_the_capture_after_the_options(run_cli, shared_dir):
    nmap = shared_dir / "pcaps" / "lab" / "nmap-sS-vm1-vs-hostns.pcap"
    policy, inventory = POLICY_FIX / "notes-lab-policy.yaml", POLICY_FIX / "notes-lab-inventory.json"
    mixed = run_cli("policy", "check", policy, "--inventory", inventory, nmap, "--format", "json")
    ordered = run_cli("policy", "check", policy, nmap, "--inventory", inventory, "--format", "json")
    assert mixed.returncode == ordered.returncode == 1, mixed.stderr
    doc = json.loads(mixed.stdout)
    assert doc["stats"]["packets"] == 2056 and doc["alerts"]
    assert _without_timings(doc) == _without_timings(json.loads(ordered.stdout))


def test_scan_takes_paths_before_between_and_after_options(run_cli):
    mixed = run_cli("scan", LAB, "--format", "json", "--fail-on", "none", FINANCE, "--no-progress")
    ordered = run_cli("scan", LAB, FINANCE, "--format", "json", "--fail-on", "none")
    assert mixed.returncode == ordered.returncode == 0, mixed.stderr
    doc = json.loads(mixed.stdout)
    folders = {Path(vm["source"]["file"]).relative_to(REPO / "examples").parts[0] for vm in doc["inventory"]["vms"]}
    assert folders == {"lab", "incident-2022-finance"}
    assert _without_timings(doc) == _without_timings(json.loads(ordered.stdout))


def test_parsed_arguments_do_not_depend_on_the_order():
    scan = create_command("scan").parser()
    a = scan.parse_intermixed_args(["a", "--format", "json", "b", "--platform", "vmware", "c"])
    assert a.paths == ["a", "b", "c"] and a.format == "json" and a.platform == ["vmware"]
    check = create_command("policy").subcommand("check").parser()
    a = check.parse_intermixed_args(["P", "--inventory", "I", "x.pcap", "--format", "json", "y.pcap"])
    assert a.policy == "P" and a.pcaps == ["x.pcap", "y.pcap"] and a.inventory == ["I"]


# --- enumerations name their valid values --------------------------------------------------------------
def _usage_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    assert exc.value.code == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("vmsentry: error:")]
    assert len(errors) == 1, err  # the usage, then one line that says what is wrong
    return errors[0]


@pytest.mark.parametrize("argv", [["scan", "--platform", "bogus", "x"], ["rules", "--platform", "bogus"]])
def test_unknown_platform_exits_3_naming_the_valid_ones(capsys, argv):
    line = _usage_error(capsys, *argv)
    assert "bogus" in line and all(p in line for p in PLATFORMS)


def test_unknown_platform_in_a_subprocess_is_one_line_without_traceback(run_cli):
    proc = run_cli("scan", "--platform", "bogus", "x")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("vmsentry: error: argument --platform: invalid choice: 'bogus'")


@pytest.mark.parametrize(
    "argv,valid",
    [
        (["scan", "--format", "pdf", "x"], ("text", "json", "sarif", "junit")),
        (["scan", "--fail-on", "severe", "x"], ("critical", "high", "medium", "low", "info", "none")),
        (["rules", "--format", "pdf"], ("text", "json", "md", "html")),
        (["paths", "x", "--format", "sarif"], ("text", "json", "html")),
        (["detect", "x.pcap", "--format", "xml"], ("text", "json", "jsonl")),
        (["policy", "compile", "P", "--target", "iptables"], ("nft", "nwfilter")),
        (["policy", "check", "P", "x.pcap", "--format", "xml"], ("text", "json")),
        (["bogus"], tuple(COMMANDS)),
        (["policy", "bogus"], ("compile", "apply", "confirm", "rollback", "check", "suggest")),
    ],
)
def test_every_enumeration_exits_3_naming_the_valid_values(capsys, argv, valid):
    line = _usage_error(capsys, *argv)
    assert all(repr(v) in line for v in valid), line


def test_every_catalogue_platform_is_a_valid_platform():
    from vmsentry.analyse.rules import load_catalogue

    assert {p for r in load_catalogue() for p in r.platforms} - {"all"} <= set(PLATFORMS)


# --- every verb, sub-verb and option is described ------------------------------------------------------
def _walk(parser: argparse.ArgumentParser, command=None):
    """(prog, parser) of the top level, every verb and every sub-verb."""
    yield parser.prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name in action.choices:
                sub = create_command(name) if command is None else command.subcommand(name)
                yield from _walk(sub.parser(), sub)


def _parsers():
    return list(_walk(build_parser()))


def test_the_walk_reaches_every_verb_and_sub_verb():
    progs = {prog for prog, _ in _parsers()}
    assert {f"vmsentry {v}" for v in COMMANDS} <= progs
    assert {f"vmsentry policy {v}" for v in ("compile", "apply", "confirm", "rollback", "check", "suggest")} <= progs


@pytest.mark.parametrize("prog,parser", _parsers(), ids=lambda x: x if isinstance(x, str) else "")
def test_every_parser_has_a_description_and_help_on_every_option(prog, parser):
    assert parser.description and len(parser.description) > 20, prog
    undocumented = [
        a.option_strings or a.dest
        for a in parser._actions
        if not isinstance(a, argparse._SubParsersAction) and (not a.help or a.help == argparse.SUPPRESS)
    ]
    assert not undocumented, f"{prog}: no help on {undocumented}"
    parser.format_help()  # renders (a bad %-format in a help text would raise)


# --- verbs are imported only when they run -------------------------------------------------------------
@pytest.mark.parametrize(
    "argv,absent",
    [
        (["--help"], [f"vmsentry.commands.{v}" for v in COMMANDS] + ["vmsentry.model", "vmsentry.report"]),
        (
            ["scan", "--help"],
            ["vmsentry.commands.detect", "vmsentry.commands.policy", "vmsentry.act", "vmsentry.collect"],
        ),
    ],
)
def test_help_imports_only_what_it_shows(argv, absent):
    code = (
        f"import sys\nfrom vmsentry.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('vmsentry'))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    loaded = proc.stdout.splitlines()[-1].split()
    assert not [m for m in loaded if any(m == a or m.startswith(a + ".") for a in absent)], loaded


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-5", "ten"])
@pytest.mark.parametrize(
    "argv",
    [
        ["policy", "apply", "P.yaml", "--inventory", "I.json", "--confirm-within"],
        ["policy", "check", "P.yaml", "--inventory", "I.json", "--interface", "lo", "--duration"],
        ["detect", "--interface", "lo", "--duration"],
    ],
    ids=["apply-confirm-within", "check-duration", "detect-duration"],
)
def test_durations_are_finite_and_positive_before_anything_is_done(run_cli, argv, value):
    """issue 11: `policy apply --confirm-within nan` applied the ruleset and then crashed, rollback unarmed."""
    proc = run_cli(*argv[:-1], f"{argv[-1]}={value}")  # "--duration=-5": argparse reads "-5" alone as an option
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "seconds" in proc.stderr.splitlines()[-1]


@pytest.mark.parametrize("name", ["../..", "..", "a/b", "x y", "-x", "", "a" * 65])
@pytest.mark.parametrize("verb", ["confirm", "rollback", "apply", "compile", "check"])
def test_network_namespace_names_cannot_build_paths(run_cli, verb, name):
    """issue 11: `policy confirm|rollback --netns ../..` built a state path from the argument."""
    proc = run_cli("policy", verb, "P.yaml", "--inventory", "I.json", f"--netns={name}")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert "network namespace name" in proc.stderr.splitlines()[-1]
