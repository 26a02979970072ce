"""Checks as data (analyse/checks/declarative.py): each operator, each meaning of an absent fact,
preconditions and shown values; the catalogue's rules each have exactly one of check/test, with the
predicate registered or the test valid; a bad test block stops the catalogue from loading."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from vmsentry.analyse.checks import CHECKS, load_checks
from vmsentry.analyse.checks.declarative import OPS, InvalidTest, predicate, validate
from vmsentry.analyse.rules import CatalogueError, _rule_from, load_catalogue

CATALOGUE_DIR = "vmsentry.analyse.rules"


def asset(**facts):
    return SimpleNamespace(name="pg1", facts={k: {"value": v, "at": f"line {k}"} for k, v in facts.items()})


def run(test: dict, **facts):
    return predicate(validate(test))(asset(**facts), None)


def base(op: str, value=None, **extra) -> dict:
    test = {"fact": "x.k", "key": "k", "op": op, "absent": {"status": "pass", "value": "absent (default)"}}
    if value is not None:
        test["value"] = value
    test.update(extra)
    return test


@pytest.mark.parametrize(
    "op,value,good,bad",
    [
        ("eq", "1", " 1 ", "2"),
        ("eq", "hosted", "HOSTED", "esxi"),
        ("eq", True, True, "true"),  # a YAML boolean compares by identity, not by spelling
        ("eq", 1, 1, "1"),
        ("ne", "disabled", "opportunistic", "Disabled"),
        ("ne", True, False, True),
        ("in", ["a", "b"], "B", "c"),
        ("not_in", ["a", "b"], "c", "A"),
        ("gte", 10, "12", "9"),
        ("gte", 10, 10, "ten"),
        ("lte", 10, "8", "11"),
        ("truthy", None, "Yes", "no"),
        ("truthy", None, True, "maybe"),
        ("falsy", None, "FALSE", "true"),
        ("falsy", None, "off", "maybe"),
    ],
)
def test_each_operator(op, value, good, bad):
    test = base(op, value)
    ok = run(test, **{"x.k": good})
    assert (ok.status, ok.key, ok.value, ok.locator) == ("pass", "k", good, "line x.k")
    ko = run(test, **{"x.k": bad})
    assert (ko.status, ko.key, ko.value, ko.locator, ko.message) == ("fail", "k", bad, "line x.k", None)


def test_unset_fails_on_any_value():
    assert run(base("unset"), **{"x.k": "0"}).status == "fail"
    assert run(base("unset")).status == "pass"


def test_every_operator_is_tested():
    assert set(OPS) == {"eq", "ne", "in", "not_in", "gte", "lte", "truthy", "falsy", "unset"}


@pytest.mark.parametrize(
    "absent,expected",
    [
        ({"status": "pass", "value": "absent (default)"}, ("pass", "absent (default)", None)),
        ({"status": "fail", "value": "absent", "message": "k must be set"}, ("fail", "absent", "k must be set")),
        ({"status": "unknown", "message": "k not in the export"}, ("unknown", None, "k not in the export")),
        ({"status": "not_applicable", "message": "not a {name} thing"}, ("not_applicable", None, "not a pg1 thing")),
    ],
)
def test_absent_meanings(absent, expected):
    out = run(base("truthy", absent=absent))
    assert (out.status, out.value, out.message) == expected
    assert out.locator is None
    assert out.key == (None if absent["status"] == "not_applicable" else "k")


def test_precondition_makes_rule_not_applicable_first():
    test = base(
        "truthy", not_applicable_when=[{"fact": "x.kind", "op": "ne", "value": "External", "message": "{value} switch"}]
    )
    assert run(test, **{"x.kind": "Internal", "x.k": "no"}).message == "Internal switch"
    assert run(test).message == "unknown switch"  # absent precondition fact: None
    assert run(test, **{"x.kind": "external", "x.k": "no"}).status == "fail"
    falsy = base("truthy", not_applicable_when=[{"fact": "x.on", "op": "falsy", "message": "off"}])
    assert run(falsy).status == "not_applicable"  # absent is falsy in a precondition
    assert run(falsy, **{"x.on": True, "x.k": "yes"}).status == "pass"


def test_shown_values_and_messages():
    test = base("ne", True, **{"pass": {"value": "Reject"}, "fail": {"value": "Accept", "message": "on {name}"}})
    assert (run(test, **{"x.k": False}).value) == "Reject"
    out = run(test, **{"x.k": True})
    assert (out.status, out.value, out.message) == ("fail", "Accept", "on pg1")


@pytest.mark.parametrize(
    "test,why",
    [
        ({"fact": "a", "key": "k", "op": "like", "absent": {"status": "pass", "value": "x"}}, "op 'like'"),
        ({"fact": "a", "key": "k", "op": "eq", "absent": {"status": "pass", "value": "x"}}, "needs a value"),
        ({"fact": "a", "key": "k", "op": "in", "value": "x", "absent": {"status": "pass", "value": "x"}}, "list"),
        ({"fact": "a", "key": "k", "op": "gte", "value": "9", "absent": {"status": "pass", "value": "x"}}, "number"),
        ({"fact": "a", "op": "truthy", "absent": {"status": "pass", "value": "x"}}, "lacks key"),
        ({"fact": "a", "key": "k", "op": "truthy"}, "lacks absent"),
        ({"fact": "a", "key": "k", "op": "truthy", "absent": {"status": "ok"}}, "status"),
        ({"fact": "a", "key": "k", "op": "truthy", "absent": {"status": "unknown"}}, "needs a message"),
        ({"fact": "a", "key": "k", "op": "truthy", "absent": {"status": "pass"}}, "needs a value"),
        (
            {"fact": "a", "key": "k", "op": "truthy", "absent": {"status": "pass", "value": "x"}, "when": 1},
            "unknown field",
        ),
        (
            {
                "fact": "a",
                "key": "k",
                "op": "truthy",
                "absent": {"status": "pass", "value": "x"},
                "not_applicable_when": [{"fact": "b", "op": "eq", "value": 1}],
            },
            "lacks message",
        ),
    ],
)
def test_bad_blocks_are_refused(test, why):
    with pytest.raises(InvalidTest, match=why):
        validate(test)


ENTRY = {
    "id": "VMS-T-001",
    "title": "t",
    "severity": "low",
    "category": "clipboard",
    "platforms": ["vmware"],
    "asset": "vm",
    "rationale": "r",
    "remediation": "fix",
    "references": ["ref"],
    "default": "d",
}


def test_catalogue_error_names_the_rule():
    with pytest.raises(CatalogueError, match="VMS-T-001.*op 'like'"):
        _rule_from(
            {**ENTRY, "test": {"fact": "a", "key": "k", "op": "like", "absent": {"status": "pass", "value": "x"}}},
            "t.yaml",
        )
    with pytest.raises(CatalogueError, match="VMS-T-001 needs exactly one of check and test"):
        _rule_from(dict(ENTRY), "t.yaml")
    with pytest.raises(CatalogueError, match="exactly one"):
        _rule_from(
            {
                **ENTRY,
                "check": "vmx_dvfilter",
                "test": {"fact": "a", "key": "k", "op": "truthy", "absent": {"status": "pass", "value": "x"}},
            },
            "t.yaml",
        )


def _all_entries():
    from importlib import resources

    folder = resources.files(CATALOGUE_DIR) / "catalogue"
    for item in sorted(folder.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".yaml"):
            for entry in yaml.safe_load(item.read_text(encoding="utf-8")) or []:
                yield item.name, entry


def test_every_rule_has_one_check_or_test_that_exists():
    load_checks()
    entries = list(_all_entries())
    assert len(entries) == len(load_catalogue())
    for name, entry in entries:
        assert ("check" in entry) != ("test" in entry), (name, entry["id"])
        if "check" in entry:
            assert entry["check"] in CHECKS, (name, entry["id"], entry["check"])
        else:
            validate(entry["test"])
    rules = load_catalogue()
    assert all((r.check is None) != (r.test is None) for r in rules)


def test_no_predicate_is_left_unused():
    load_checks()
    used = {r.check for r in load_catalogue() if r.check}
    assert set(CHECKS) <= used, sorted(set(CHECKS) - used)


def device(kind, detail, locator):
    return SimpleNamespace(kind=kind, detail=detail, locator=locator)


def test_devices_fail_once_each_or_say_what_none_means():
    test = validate(
        {
            "devices": ["usb-passthrough", "usb-redirection"],
            "key": "device",
            "shown": "{kind} {detail}",
            "absent": {"status": "not_applicable", "message": "no USB passthrough or redirection"},
        }
    )
    vm = SimpleNamespace(
        name="v",
        facts={},
        devices=[
            device("usb-passthrough", "1d6b:0002", "hostdev[1]"),
            device("disk", "vda", "disk[1]"),
            device("usb-redirection", "spicevmc", "redirdev[1]"),
        ],
    )
    out = predicate(test)(vm, None)
    assert [(o.status, o.key, o.value, o.locator) for o in out] == [
        ("fail", "device", "usb-passthrough 1d6b:0002", "hostdev[1]"),
        ("fail", "device", "usb-redirection spicevmc", "redirdev[1]"),
    ]
    none = predicate(test)(SimpleNamespace(name="v", facts={}, devices=[]), None)
    assert (none.status, none.message) == ("not_applicable", "no USB passthrough or redirection")
    passing = predicate({**test, "shown": "{detail}", "absent": {"status": "pass", "value": "no USB device"}})
    assert passing(SimpleNamespace(name="v", facts={}, devices=[]), None).value == "no USB device"
    assert predicate({**test, "shown": "{detail}"})(vm, None)[0].value == "1d6b:0002"


@pytest.mark.parametrize(
    "test,why",
    [
        ({"devices": "usb", "key": "k", "shown": "{detail}", "absent": {"status": "pass", "value": "x"}}, "list"),
        ({"devices": ["usb"], "key": "k", "shown": "{name}", "absent": {"status": "pass", "value": "x"}}, "shown"),
        ({"devices": ["usb"], "key": "k", "shown": "{detail}"}, "lacks absent"),
        (
            {
                "devices": ["usb"],
                "key": "k",
                "shown": "{detail}",
                "op": "eq",
                "absent": {"status": "pass", "value": "x"},
            },
            "unknown field",
        ),
    ],
)
def test_bad_device_blocks_are_refused(test, why):
    with pytest.raises(InvalidTest, match=why):
        validate(test)
