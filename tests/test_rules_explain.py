"""`vmsentry rules --explain ID`: every rule of the catalogue explained in full (the ids `vmsentry fix` names in
"no fix known ... (vmsentry rules --explain ID)" must work), in text, JSON and Markdown; an unknown id is one
line and exit 3 (usage), as the rules verb's contract says."""

from __future__ import annotations

import json

import pytest

from vmsentry.analyse.rules import load_catalogue
from vmsentry.cli import main


def run(capsys, *args):
    code = main(["rules", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_rule_explains_in_json(capsys):
    ids = [r.id for r in load_catalogue()]
    code, out, _ = run(capsys, "--format", "json", "--explain", *ids)
    assert code == 0
    rules = json.loads(out)["rules"]
    assert [r["id"] for r in rules] == ids
    for rule in rules:
        for field in ("title", "severity", "category", "platforms", "checks", "rationale", "remediation", "references"):
            assert rule[field], (rule["id"], field)
        for entry in rule["fix"].values():  # a fix says what it changes and what could break, or why there is none
            assert entry["reason"] if not entry["fixable"] else entry["summary"] and entry["restart"], rule["id"]


def test_host_rule_text_names_fix_reason_sources_and_mappings(capsys):
    code, out, _ = run(capsys, "--explain", "VMS-HOST-002", "--explain", "vms-lvd-017")
    assert code == 0
    first, second = out.split("\n\nVMS-LVD-017")
    assert first.startswith("VMS-HOST-002  IPv6 forwarding is on")
    for needed in ("checks:", "why:", "remediation:", "fix (vmsentry fix):", "sources:", "compliance mappings:"):
        assert needed in first and needed in second, needed
    assert "not fixed by a script: IPv6 forwarding is needed" in first
    assert "ComplianceAsCode sysctl_net_ipv6_conf_all_forwarding" in first
    assert "mlps2-l3 L3-ABS1-03 (decides)" in first
    assert "in the host baseline template: default_tls_x509_verify, migrate_tls_x509_verify" in second
    assert "could break:" in second and "restart: service (libvirtd)" in second


def test_declarative_test_in_words_and_stig_ids(capsys):
    code, out, _ = run(capsys, "--explain", "VMS-HOST-008", "--format", "md")
    assert code == 0 and out.startswith("## VMS-HOST-008: The host sends ICMP redirects")
    assert "net.ipv4.conf.all.send_redirects of the host must be equal to 0" in out
    assert "- linux: net.ipv4.conf.all.send_redirects set to 0" in out
    vmware = next(r for r in load_catalogue() if r.compliance.get("disa_stig"))
    code, out, _ = run(capsys, "--explain", vmware.id, "--format", "json")
    rule = json.loads(out)["rules"][0]
    assert rule["compliance"]["disa_stig"] == list(vmware.compliance["disa_stig"])
    assert any(m["framework"] == "stig" for m in rule["mappings"])


@pytest.mark.parametrize(
    "args",
    [
        ("--explain", "VMS-NOPE-999"),
        ("--explain", "VMS-HOST-002", "VMS-NOPE-999"),
        ("--explain", "VMS-HOST-002", "--format", "html"),
        ("--explain", "VMS-HOST-002", "--matrix"),
    ],
)
def test_usage_errors_exit_3_with_one_line(capsys, args):
    code, out, err = run(capsys, *args)
    assert code == 3 and out == ""
    assert "Traceback" not in err and err.strip()
    if "VMS-NOPE-999" in args:
        assert err.strip().splitlines() == [
            "vmsentry: --explain VMS-NOPE-999: no such rule (vmsentry rules lists them)"
        ]


def test_explain_without_an_id_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["rules", "--explain"])
    assert exit_.value.code == 3 and "--explain" in capsys.readouterr().err


def test_fix_points_at_an_explain_that_works(capsys):
    """The id `vmsentry fix` names for a finding it cannot fix is explained."""
    from vmsentry.act.fix import NO_FIX

    assert "vmsentry rules --explain" in NO_FIX
    code, out, _ = run(capsys, "--explain", "VMS-HOST-010")
    assert code == 0 and "VMS-HOST-010" in out and "a firewall is a policy" in out
