"""Compliance mappings as data: every framework loads and names only real rules; evaluation of a real scan of
examples/lab and of the shared corpus gives the hand-checked statuses; evidence facts gathered from a real
audit log decide the evidence-based requirements, and their absence never passes."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from vmsentry.analyse import compliance
from vmsentry.analyse.compliance.load import FrameworkError, _requirement, resolve
from vmsentry.analyse.engine import evaluate as run_rules
from vmsentry.analyse.rules import load_catalogue
from vmsentry.collect import collect
from vmsentry.commands.evidence_facts import gather
from vmsentry.model.compliance import EVIDENCE_KINDS, REQUIREMENT_STATUSES, EvidenceFacts
from vmsentry.report.audit import open_audit

from conftest import REPO

FRAMEWORKS = ["checklist", "gdpr", "mlps2-l3", "nist-800-125b", "nist-800-207", "stig"]


@pytest.fixture(scope="module")
def lab_findings():
    inventory, _ = collect([str(REPO / "examples" / "lab")])
    return run_rules(inventory)


def by_id(result):
    return {r.requirement.id: r for r in result.results}


def test_every_framework_loads_with_real_rules_and_texts():
    assert compliance.frameworks() == FRAMEWORKS
    known = {r.id for r in load_catalogue()}
    for fid in FRAMEWORKS:
        requirements = compliance.load(fid)
        assert requirements, fid
        for req in requirements:
            assert req.text and req.title and req.source, (fid, req.id)
            assert set(req.rules) <= known and set(req.related_rules) <= known, (fid, req.id)
            assert set(req.evidence) <= set(EVIDENCE_KINDS)
            assert req.rules or req.evidence or req.manual or req.not_applicable, (fid, req.id)


def test_mlps_covers_every_cloud_extension_item_and_keeps_unverified_marks():
    reqs = {r.id: r for r in compliance.load("mlps2-l3")}
    # every level-3 item of the cloud-computing extension (counts per compliance-anchors.md §1.7)
    for layer, count in (("PES2", 1), ("CNS2", 5), ("ABS2", 8), ("CES2", 19), ("SMC2", 4)):
        assert {f"L3-{layer}-{n:02d}" for n in range(1, count + 1)} <= set(reqs), layer
    assert reqs["L3-ABS2-05"].text_zh == "应能检测到虚拟机与宿主机、虚拟机与虚拟机之间的异常流量。"
    assert reqs["L3-ABS2-05"].clause == "8.2.3.2 c) [unverified]"
    assert reqs["L3-ABS1-13"].verified == "unverified"  # the sources disagree on its wording
    assert all(r.verified != "verified" for r in reqs.values())  # no MLPS id was checked against the standard


def test_nist_800_207_has_the_seven_tenets_verbatim():
    reqs = compliance.load("nist-800-207")
    assert [r.id for r in reqs] == [f"tenet-{n}" for n in range(1, 8)]
    assert reqs[0].text == "All data sources and computing services are considered resources."


def test_gdpr_articles():
    assert [r.id for r in compliance.load("gdpr")] == ["art-5-1-c", "art-25", "art-30", "art-32", "art-33", "art-34"]


def test_stig_is_generated_from_the_catalogue():
    cited = {}
    for rule in load_catalogue():
        for sid in rule.compliance.get("disa_stig", []):
            if re.fullmatch(r"(VMCH|ESXI|VCSA)-\d\d-\d{6}", sid):
                cited.setdefault(sid, set()).add(rule.id)
    reqs = {r.id: r for r in compliance.load("stig")}
    assert set(cited) <= set(reqs)
    for sid, rules in cited.items():
        assert set(reqs[sid].rules) == rules
    # cited only as an analogue on another platform: related, never deciding, so manual
    assert reqs["ESXI-80-000198"].rules == () and "VMS-HOST-014" in reqs["ESXI-80-000198"].related_rules
    assert reqs["ESXI-80-000198"].manual


def test_checklist_has_the_seeds_32_items_and_reaches_every_rule():
    items = compliance.load("checklist")
    assert len(items) == 32 and len({i.id for i in items}) == 32
    for item in items:
        assert item.rules or (item.manual or item.evidence), item.id
    reached = {rid for item in items for rid in item.rules}
    assert reached == {r.id for r in load_catalogue()}  # a new rule joins its category's item


def test_unknown_rule_id_evidence_kind_or_missing_text_is_an_error():
    rules = load_catalogue()
    with pytest.raises(FrameworkError, match="unknown rule id VMS-NOPE-1"):
        resolve(["VMS-NOPE-1"], "x.yaml", rules)
    with pytest.raises(FrameworkError, match="unknown rule category"):
        resolve(["category:nope"], "x.yaml", rules)
    base = {"id": "R1", "section": "s", "title": "t", "text": "x", "source": "s", "verified": "verified"}
    with pytest.raises(FrameworkError, match="unknown evidence kind"):
        _requirement("f", {**base, "evidence": ["telepathy"]}, "x.yaml", rules)
    with pytest.raises(FrameworkError, match="missing text"):
        _requirement("f", {**base, "text": "", "manual": "look"}, "x.yaml", rules)
    with pytest.raises(FrameworkError, match="no rule, no evidence"):
        _requirement("f", base, "x.yaml", rules)
    with pytest.raises(FrameworkError, match="unknown framework"):
        compliance.load("nope")


def test_lab_scan_hand_checked_statuses(lab_findings):
    checklist = by_id(compliance.evaluate("checklist", lab_findings))
    # legacy forwards SSH on every address and build exposes an admin port (examples/lab/README.md)
    assert checklist["CK-08"].status == "fail"
    fail = next(d for d in checklist["CK-08"].decided_by if d.rule_id == "VMS-VM-011")
    assert fail.status == "fail" and set(fail.assets) == {"vm:build", "vm:legacy"}
    assert checklist["CK-04"].status == "pass"  # no open or routed network in the lab
    assert checklist["CK-29"].status == "not_applicable"  # the lab host offers no memory encryption
    assert checklist["CK-19"].status == "manual"  # traffic monitoring: no watcher evidence given
    mlps = by_id(compliance.evaluate("mlps2-l3", lab_findings))
    assert mlps["L3-CES2-09"].status == "fail"  # db's snapshot holds the guest's memory
    assert any("VMS-VM-090 fails on vm:db" in g for g in mlps["L3-CES2-09"].gaps)
    assert mlps["L3-PES2-01"].status == "manual"
    stig = compliance.evaluate("stig", lab_findings)
    assert stig.summary["fail"] == 0 and stig.summary["pass"] == 0  # no VMware in the lab
    for result in (compliance.evaluate(f, lab_findings) for f in FRAMEWORKS):
        assert result.summary["total"] == len(result.results)
        assert all(r.status in REQUIREMENT_STATUSES for r in result.results)


def test_corpus_vmx_decides_stig_items(shared_dir):
    inventory, _ = collect([str(shared_dir / "corpus" / "vmware-vmx")])
    stig = by_id(compliance.evaluate("stig", run_rules(inventory)))
    # HGFS is on in the corpus' Workstation files (isolation.tools.hgfsServerSet.disable absent)
    assert stig["VMCH-70-000007"].status == "fail"
    assert stig["VMCH-80-000189"].status == "pass"
    assert stig["ESXI-80-000216"].status == "not_applicable"  # no port group in .vmx files


def test_unknown_never_counts_as_pass(lab_findings):
    from dataclasses import replace

    unknown = [replace(f, status="unknown") if f.status == "pass" else f for f in lab_findings]
    before = by_id(compliance.evaluate("checklist", lab_findings))
    after = by_id(compliance.evaluate("checklist", unknown))
    assert before["CK-04"].status == "pass" and after["CK-04"].status == "manual"
    assert any("could not be decided" in g for g in after["CK-04"].gaps)


def _lab_log(directory: Path) -> None:
    with open_audit(str(directory)) as audit:
        audit.append("scan", {"summary": {}})
        audit.append("watch", {"event": "started", "bridges": ["br0", "virbr0", "virbr1"], "detectors": ["arp_spoof"]})
        audit.append("policy", {"action": "apply", "outcome": "applied", "policy": "lab.yaml"})


def test_facts_absent_then_present(tmp_path, lab_findings, capsys):
    absent = by_id(compliance.evaluate("checklist", lab_findings, gather()))
    assert absent["CK-19"].status == "manual"
    assert any("--audit DIR" in g for g in absent["CK-19"].gaps)
    assert absent["CK-31"].status != "pass"

    _lab_log(tmp_path / "audit")
    (tmp_path / "evidence").mkdir()
    facts = gather(audit=str(tmp_path / "audit"), evidence=str(tmp_path / "evidence"))
    assert facts.audit_log.intact and facts.audit_log.entries == 3
    present = by_id(compliance.evaluate("checklist", lab_findings, facts))
    assert present["CK-19"].status == "pass"
    assert present["CK-19"].evidence == (
        "arp_spoof detection active on 3 bridges (br0, virbr0, virbr1) since " + facts.watch.since,
    )
    assert present["CK-18"].status == "pass"
    assert any(
        s.startswith("policy lab.yaml applied at") and "0 violations in 24 h" in s for s in present["CK-18"].evidence
    )
    assert present["CK-32"].status == "pass"
    # intact, never pruned, but a minute old: six months cannot be shown yet
    assert present["CK-31"].status == "partial"
    assert any("audit log intact, 3 entries" in s and "under the 184 days required" in s for s in present["CK-31"].gaps)
    # an empty incident store: no response time to show, so the 30-minute item is not a pass
    assert present["CK-30"].status == "partial"


def test_tampered_audit_log_fails_its_requirements(tmp_path, lab_findings, capsys):
    _lab_log(tmp_path / "audit")
    db = sqlite3.connect(tmp_path / "audit" / "audit.db")
    db.execute(
        "UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), 'lab.yaml', 'evil.yml') AS BLOB) WHERE kind = 'policy'"
    )
    db.commit()
    db.close()
    facts = gather(audit=str(tmp_path / "audit"))
    assert facts.audit_log is not None and not facts.audit_log.intact
    assert facts.watch is None and "does not verify" in facts.missing["watch"]
    result = by_id(compliance.evaluate("mlps2-l3", lab_findings, facts))
    assert result["L3-CES1-14"].status == "fail"
    assert any("audit log NOT intact" in g for g in result["L3-CES1-14"].gaps)
    assert result["L3-ABS2-05"].status == "manual"  # the watcher's records are in the untrusted log


def test_empty_facts_record_is_like_none(lab_findings):
    a = compliance.evaluate("gdpr", lab_findings, EvidenceFacts())
    b = compliance.evaluate("gdpr", lab_findings, None)
    assert [r.status for r in a.results] == [r.status for r in b.results]
    assert a.to_dict()["results"][0]["requirement"]["id"] == "art-5-1-c"
