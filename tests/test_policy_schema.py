"""Policy files: the contract's example parses; bad input gives one clear error per problem, with the line,
and nothing is compiled (exit 2, no traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsentry.act.policy.problems import PolicyError
from vmsentry.act.policy.resolve import resolve
from vmsentry.act.policy.schema import load_policy, parse_policy
from vmsentry.model import Inventory

FIX = Path(__file__).parent / "fixtures" / "policy"
INV = FIX / "lab-inventory.json"
CONTRACT_EXAMPLE = Path(__file__).parents[1].parent / "shared" / "docs" / "CONTRACTS.md"


def lab_inventory() -> Inventory:
    return Inventory.from_dict(json.loads(INV.read_text()))


def errors_of(path_or_text, inventory=True, name="p.yaml"):
    try:
        if isinstance(path_or_text, Path):
            pol = load_policy(str(path_or_text))
        else:
            pol = parse_policy(path_or_text, name)
        if inventory:
            resolve(pol, lab_inventory())
    except PolicyError as exc:
        return [(p.line, p.message) for p in exc.errors], exc
    return [], None


def test_contract_example_parses_and_resolves(shared_dir):
    text = (shared_dir / "docs" / "CONTRACTS.md").read_text()
    block = text.split("## Segmentation policy")[1].split("```yaml")[1].split("```")[0]
    pol = parse_policy(block, "CONTRACTS.md")
    assert set(pol.zones) == {"web", "app"}
    assert [r.name for r in pol.roles.values()] == ["admin", "developer", "tester"]
    dev = pol.roles["developer"]
    assert (
        dev.window is not None
        and dev.window.tz == "Asia/Shanghai"
        and (dev.window.start, dev.window.end) == (480, 1200)
    )
    assert pol.roles["admin"].via.name == "jump"
    assert str(pol.roles["tester"].sources[0]) == "10.77.0.64/26"
    res = resolve(pol, lab_inventory())
    assert res.zones == {"web": ["vm1"], "app": ["vm2", "vm3"]}
    assert res.jumps == {"jump": "vm4"}


def test_unknown_key_names_line_and_suggests():
    errs, _ = errors_of(FIX / "bad" / "unknown-key.yaml")
    assert errs == [(4, "defaults: unknown key 'anti_spoofng'; did you mean 'anti_spoofing'?")]


def test_unknown_zone():
    errs, _ = errors_of(FIX / "bad" / "unknown-zone.yaml")
    assert errs == [(7, "allow[1].to: unknown zone 'dbase' (zones: web, app)")]


def test_unknown_vms_each_reported_with_line():
    errs, _ = errors_of(FIX / "bad" / "unknown-vm.yaml")
    assert [(line, msg.split(":")[0]) for line, msg in errs] == [
        (3, "zones.web.vms"),
        (5, "jump_hosts.jump.vm"),
        (6, "quarantine"),
    ]
    assert "unknown VM 'vm9'" in errs[0][1] and "unknown VM 'vm42'" in errs[1][1] and "'ghost'" in errs[2][1]


def test_bad_and_overlapping_cidrs():
    errs, _ = errors_of(FIX / "bad" / "bad-cidr.yaml")
    assert [line for line, _ in errs] == [5, 6, 7]
    assert "10.77.0.64/26 overlaps 10.77.0.0/24" in errs[0][1]
    assert "host bits set; did you mean 10.77.0.0/24?" in errs[1][1]
    assert "'10.300.0.0/16' is not an address or CIDR" in errs[2][1]


def test_impossible_time_windows():
    errs, exc = errors_of(FIX / "bad" / "bad-time.yaml")
    assert [line for line, _ in errs] == [5, 6, 7, 8, 9]
    assert "window is empty" in errs[0][1]
    assert "25:00 is not a time of day" in errs[1][1]
    assert "not a known IANA timezone" in errs[2][1]
    assert "is not HH:MM-HH:MM" in errs[3][1]
    assert "'funday' is not a weekday" in errs[4][1]
    assert any(w.line == 9 and "no timezone" in w.message for w in exc.warnings)


def test_ports_and_protocols():
    errs, _ = errors_of(FIX / "bad" / "bad-ports.yaml")
    assert [line for line, _ in errs] == [5, 6, 7, 8, 9]
    assert "proto icmp has no ports" in errs[2][1]
    assert "missing 'proto'" in errs[4][1]


def test_yaml_syntax_error_has_line():
    errs, _ = errors_of(FIX / "bad" / "syntax.yaml")
    assert len(errs) == 1 and errs[0][0] == 4 and errs[0][1].startswith("YAML syntax error")


def test_duplicate_keys_are_errors_not_silently_overwritten():
    errs, _ = errors_of(FIX / "bad" / "duplicate.yaml")
    assert errs == [(4, "duplicate key 'web' (first at line 3)")]


def test_lockout_without_jump_host_is_an_error():
    errs, exc = errors_of(FIX / "bad" / "lockout.yaml")
    assert len(errs) == 1 and errs[0][0] == 4
    assert "would cut the administrators' own access" in errs[0][1]
    # and the time-limited host role gets its own warning, on its line
    assert any(w.line == 8 and "only in its time window" in w.message for w in exc.warnings)


def test_quarantined_jump_host_is_an_error():
    errs, _ = errors_of(FIX / "bad" / "jump-quarantined.yaml")
    assert errs == [(5, "roles.admin.via: jump host jump (VM vm4) is quarantined: nobody in this role could get in")]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("", "a policy is a YAML mapping"),
        ("- a\n- b\n", "a policy is a YAML mapping"),
        ("version: 2\n", "version 2 is not supported"),
        ("zones: {}\n", "missing 'version: 1'"),
        ("version: 1\nzones:\n  host: {vms: [vm1]}\n", "zone name 'host' is reserved"),
        ("version: 1\nzones:\n  web: {}\n", "no selector"),
        (
            "version: 1\nzones:\n  web: {vms: [vm1]}\nroles:\n  r: {sources: [10.0.0.0/8], to: [web], proto: tcp, via: nojump}\n",
            "unknown jump host 'nojump'",
        ),
        ("version: 1\ndefaults: {vm_to_host: maybe}\n", "defaults.vm_to_host must be one of allow, deny"),
        ("version: 1\nallow:\n  - {from: external, to: external, proto: any}\n", "from external to external"),
        ("version: 1\nallow: {from: a}\n", "allow must be a list"),
    ],
)
def test_small_bad_inputs(text, needle):
    errs, _ = errors_of(text, inventory=False)
    assert any(needle in m for _, m in errs), errs


def test_cli_bad_policy_exit_2_one_line_per_problem(run_cli):
    p = run_cli("policy", "compile", FIX / "bad" / "unknown-vm.yaml", "--inventory", INV, "--no-probe")
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert all(line.startswith("vmsentry: ") for line in lines)
    assert "Traceback" not in p.stderr
    assert f"{FIX / 'bad' / 'unknown-vm.yaml'}:3: error: zones.web.vms: unknown VM 'vm9'" in p.stderr
    assert lines[-1].endswith("3 errors; nothing compiled or applied")


def test_cli_missing_files_and_usage(run_cli, tmp_path):
    assert run_cli("policy", "compile", tmp_path / "nope.yaml", "--inventory", INV).returncode == 2
    p = run_cli("policy", "compile", FIX / "lab-policy.yaml")
    assert p.returncode == 3 and "give the inventory" in p.stderr
    assert run_cli("policy").returncode == 3
    assert (
        run_cli("policy", "apply", FIX / "lab-policy.yaml", "--inventory", INV, "--confirm-within", "-1").returncode
        == 3
    )
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    p = run_cli("policy", "compile", bad, "--inventory", INV)
    assert p.returncode == 2 and "not UTF-8" in p.stderr and "Traceback" not in p.stderr
