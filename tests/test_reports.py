"""Reports a person reads (issue 13, part 4): ``vmsentry report`` and ``scan --format html``, rendered in headless
Chromium (screenshots checked for their regions, the DOM for content), hostile names shown as text with nothing
run, PDF text extracted with pdftotext, JSON validated against docs/schemas, Markdown escaping."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import unescape

import jsonschema
import numpy as np
import pytest

from report_fixtures import EVIL_IMG, EVIL_SCRIPT, compliance_fixture, dump_dom, screenshot
from vmsentry.cli import main
from vmsentry.report import compliance_report
from vmsentry.report.markdown import md_code, md_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "examples", "lab")
SCHEMAS = os.path.join(ROOT, "docs", "schemas")
HEADER = np.array([0x1F, 0x2A, 0x36])  # the page header's background
CRITICAL = np.array([0x7B, 0x10, 0x20])  # the critical severity colour (tiles, badges, rule borders)
PASS = np.array([0x1E, 0x84, 0x49])


def schema(name: str) -> dict:
    with open(os.path.join(SCHEMAS, name), encoding="utf-8") as fh:
        return json.load(fh)


def near(image: np.ndarray, colour: np.ndarray, tolerance: int = 12) -> np.ndarray:
    return np.all(np.abs(image.astype(int) - colour) <= tolerance, axis=2)


def margin_is_empty(image: np.ndarray) -> bool:
    """Nothing wider than the window: each row's right-most pixels are one colour (the header's or the page's),
    not clipped content."""
    edge = image[:, -10:].astype(int)
    return bool(np.abs(edge - edge[:, :1]).max() <= 2)


def hostile_lab(tmp_path) -> str:
    """examples/lab with two more VMs (real libvirt XML) named like an injection and a script."""
    folder = tmp_path / "lab"
    shutil.copytree(LAB, folder)
    with open(os.path.join(LAB, "domains", "build.xml"), encoding="utf-8") as fh:
        template = fh.read()
    for i, name in enumerate((EVIL_IMG, EVIL_SCRIPT)):
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        xml = template.replace("<name>build</name>", f"<name>{escaped}</name>")
        xml = re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{i:08d}-edaf-9455-926a-d65c16db1809</uuid>", xml)
        (folder / "domains" / f"evil-{i}.xml").write_text(xml, encoding="utf-8")
    return str(folder)


def run(*argv: str) -> int:
    return main(list(argv))


# --- the scan report ---------------------------------------------------------------------------------
def test_scan_report_html_renders_with_its_regions_in_chromium(tmp_path):
    page = tmp_path / "scan.html"
    assert run("report", LAB, "-o", str(page), "--no-progress") == 0
    image = screenshot(str(page), str(tmp_path / "scan.png"), width=1400, height=1800)
    assert image.shape[1] == 1400
    assert image.std() > 20, "a blank page"
    # the dark header band across the top, the severity tiles and the score bars below it
    assert near(image[2:14], HEADER).mean() > 0.98
    assert near(image[60:700], CRITICAL).sum() > 200, "no critical tile or badge in the overview"
    assert near(image[200:1000], PASS).sum() > 500, "no green score bar"
    assert margin_is_empty(image)
    dom = dump_dom(str(page))
    assert "<title>vmsentry scan report</title>" in dom
    for text in ("kvm-lab-01", "How the score is computed", "VMS-LVD-018", "examples/lab/host/libvirtd.conf", "line 5"):
        assert text in dom, text
    # every asset has a score row; every listed finding is a place under its rule
    assert len(re.findall(r'<tr class="asset kind-vm"', dom)) == 5
    assert len(re.findall(r'<tr class="place st-', dom)) == 161


def test_scan_format_html_is_the_same_report(tmp_path):
    page = tmp_path / "scan.html"
    assert run("scan", LAB, "--format", "html", "-o", str(page), "--fail-on", "none", "--no-progress") == 0
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and 'id="asset-table"' in html and 'id="filters"' in html


def test_the_page_is_self_contained_and_runs_nothing(tmp_path):
    page = tmp_path / "scan.html"
    assert run("report", LAB, "-o", str(page), "--no-progress") == 0
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "http://" not in html and "https://" not in html and "@import" not in html
    assert "default-src 'none'" in unescape(html) and "script-src" not in html and "@media print" in html


def test_filters_hide_by_severity_and_status_without_script(tmp_path):
    """The filters are CSS (no script): an unticked box hides what carries its class. With every severity box
    unticked, or every status box, the page ends after the asset table; ticked, rules fill it."""
    page = tmp_path / "scan.html"
    assert run("report", LAB, "-o", str(page), "--no-progress") == 0
    html = page.read_text(encoding="utf-8")
    assert "body:has(#show-sev-high:not(:checked)) .rule.sev-high { display: none; }" in html
    background = np.array([0xF5, 0xF6, 0xF8])

    def below_the_assets(text: str, name: str) -> float:
        variant = tmp_path / f"{name}.html"
        variant.write_text(text, encoding="utf-8")
        image = screenshot(str(variant), str(tmp_path / f"{name}.png"), width=1400, height=3000)
        return near(image[1500:], background, 2).mean()

    assert below_the_assets(html, "all") < 0.9  # rules shown
    for boxes in ("sev", "st"):
        unticked = re.sub(rf'(id="show-{boxes}-[a-z_]+") checked', r"\1", html)
        assert below_the_assets(unticked, boxes) > 0.99, boxes  # nothing but the background


def test_hostile_vm_names_show_as_text_and_nothing_runs(tmp_path):
    page = tmp_path / "evil.html"
    assert run("report", hostile_lab(tmp_path), "-o", str(page), "--no-progress") == 0
    dom = dump_dom(str(page))
    assert "<title>vmsentry scan report</title>" in dom  # the script would have renamed the page
    assert "PWNED" not in dom.split("</title>")[0]
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "&lt;script&gt;document.title" in dom
    assert "<img" not in dom and "<script" not in dom  # neither became an element
    md = tmp_path / "evil.md"
    assert run("report", hostile_lab(tmp_path / "2"), "--format", "md", "-o", str(md), "--no-progress") == 0
    text = md.read_text(encoding="utf-8")
    assert "<img" not in text and "<script" not in text and "&lt;img src=x onerror=alert\\(1\\)&gt;" in text


def test_scan_report_json_validates_and_scores(tmp_path):
    out = tmp_path / "scan.json"
    assert run("report", LAB, "--format", "json", "-o", str(out), "--no-progress") == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema("scan-report.schema.json")).validate(document)
    assets = {a["asset"]: a for a in document["assets"]}
    # backend: 7 passes, no failure: 100; kvm-lab-01 fails a critical rule: well below
    assert assets["network:backend"]["score"] == 100
    assert assets["host:kvm-lab-01"]["score"] < 50 and assets["host:kvm-lab-01"]["failing"]["critical"] == 1
    places = sum(len(r["places"]) for r in document["rules"])
    assert places == document["summary"]["by_status"]["fail"] + document["summary"]["by_status"]["pass"]


def test_from_scan_gives_the_same_report(tmp_path):
    saved = tmp_path / "scan.json"
    assert run("scan", LAB, "--format", "json", "-o", str(saved), "--fail-on", "none", "--no-progress") == 0
    direct, again = tmp_path / "a.json", tmp_path / "b.json"
    assert run("report", LAB, "--format", "json", "-o", str(direct), "--no-progress") == 0
    assert run("report", "--from-scan", str(saved), "-o", str(again)) == 0  # the format from the suffix
    a, b = (json.loads(p.read_text(encoding="utf-8")) for p in (direct, again))
    assert a["assets"] == b["assets"] and a["rules"] == b["rules"]


def test_from_scan_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"tool": {"name": "vmsentry"}, "findings": [1]}')
    out = tmp_path / "r.html"
    assert run("report", "--from-scan", str(bad), "-o", str(out)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "Traceback" not in err[0]
    assert not out.exists()


# --- the compliance report ---------------------------------------------------------------------------
def test_compliance_report_fixture_html_in_chromium(tmp_path):
    result = compliance_fixture()
    page = tmp_path / "c.html"
    page.write_text(compliance_report.render_html(result, "test"), encoding="utf-8")
    dom = dump_dom(str(page))
    assert "<title>MLPS 2.0 level 3 (GB/T 22239-2019) 2019: compliance report</title>" in dom
    assert "<img" not in dom and "<script" not in dom and "&lt;script&gt;document.title" in dom
    # bilingual: the standard's Chinese and the English, the status in both
    assert "应在网络边界或区域之间根据访问控制策略设置访问控制规则" in dom and "Default-deny access control" in dom
    assert "不符合" in dom and "测评人员须核查" in dom
    # marks stay visible
    assert '<span class="unverified"' in dom and "[unverified]" in dom and "[derived]" in dom
    # the summary counts and the worst gaps first: the failing requirement, then the partial one
    for status in ("pass", "fail", "partial", "manual", "not_applicable"):
        assert re.search(rf'id="count-{status}"><div class="n">1</div>', dom)
    worst = dom[dom.index('id="worst"') : dom.index('id="requirements"')]
    assert worst.index("L3-ABS1-05") < worst.index("L3-CES1-14") and "L3-CNS1-03" not in worst
    # an auditor's part is on a manual item
    assert "Look at the operator accounts." in dom
    image = screenshot(str(page), str(tmp_path / "c.png"), width=1400, height=1400)
    assert image.std() > 20 and near(image[2:14], HEADER).mean() > 0.98


def test_compliance_report_json_and_markdown(tmp_path):
    result = compliance_fixture()
    document = json.loads(compliance_report.render_json(result, "test"))
    jsonschema.Draft202012Validator(schema("compliance-report.schema.json")).validate(document)
    assert document["summary"] == {"pass": 1, "fail": 1, "partial": 1, "manual": 1, "not_applicable": 1, "total": 5}
    md = compliance_report.render_markdown(result, "test")
    assert "#### L3-CES1-14 \\[unverified\\]" in md and "部分符合" in md
    assert "<img" not in md and "<script" not in md
    assert "&lt;script&gt;document.title=" in md


def test_compliance_report_of_the_lab_cli(tmp_path):
    out = tmp_path / "mlps.json"
    assert run("report", LAB, "--framework", "mlps2-l3", "-o", str(out), "--no-progress") == 0
    document = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema("compliance-report.schema.json")).validate(document)
    statuses = {r["requirement"]["id"]: r["status"] for r in document["results"]}
    assert statuses and "fail" in statuses.values()
    # without --audit, nothing resting on the audit log passes
    for r in document["results"]:
        if "audit_log" in r["requirement"]["evidence"]:
            assert r["status"] != "pass", r["requirement"]["id"]


def test_pdf_text_holds_the_requirement_ids(tmp_path):
    pdf = tmp_path / "mlps.pdf"
    assert run("report", LAB, "--framework", "mlps2-l3", "--format", "pdf", "-o", str(pdf), "--no-progress") == 0
    assert pdf.read_bytes()[:5] == b"%PDF-"
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    result = _lab_mlps()
    missing = [r.requirement.id for r in result.results if r.requirement.id not in text]
    assert not missing, missing[:10]
    assert "不符合" in text  # the Chinese labels print (a CJK font is installed by scripts/setup.sh)
    # the summary is one page: the counts and every worst gap on page 1, the requirements from page 2
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(pdf), "-"], capture_output=True, text=True).stdout
    second = subprocess.run(["pdftotext", "-f", "2", "-l", "2", str(pdf), "-"], capture_output=True, text=True).stdout
    assert "Worst gaps" in first and all(r.requirement.id in first for r in compliance_report.worst(result))
    assert second.lstrip().startswith("Requirements")


def _lab_mlps():
    from vmsentry.analyse.compliance import evaluate
    from vmsentry.analyse.engine import evaluate as run_rules
    from vmsentry.analyse.rules import load_catalogue
    from vmsentry.collect import collect

    inventory, _ = collect([LAB], [], False)
    return evaluate("mlps2-l3", run_rules(inventory, load_catalogue()))


def test_pdf_without_chromium_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VMSENTRY_CHROMIUM", "no-such-browser-here")
    out = tmp_path / "r.pdf"
    assert run("report", LAB, "--format", "pdf", "-o", str(out), "--no-progress") == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs Chromium" in err[0] and not out.exists()


def test_framework_choices_are_the_mappings():
    from vmsentry.analyse.compliance import frameworks
    from vmsentry.commands.report import FRAMEWORKS

    assert set(frameworks()) <= set(FRAMEWORKS)


# --- Markdown escaping -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert\\(1\\)&gt;"),
        ("*bold* _it_ `code`", "\\*bold\\* \\_it\\_ \\`code\\`"),
        ("[x](javascript:alert(1))", "\\[x\\]\\(javascript:alert\\(1\\)\\)"),
        ("a|b", "a\\|b"),
        ("# heading", "\\# heading"),
        ("- item", "\\- item"),
        ("1. item", "1\\. item"),
        ("line\nbreak", "line\\\\nbreak"),
        ("L3-ABS1-05 2.0", "L3-ABS1-05 2.0"),
    ],
)
def test_md_text_escapes(name, shown):
    assert md_text(name) == shown


def test_md_code_keeps_the_text_and_the_table():
    assert md_code("a`b|c") == "``a`b\\|c``"
    assert md_code("<b>") == "`<b>`"


def test_compliance_report_cites_the_audit_log_and_a_tampered_one_fails(tmp_path):
    import sqlite3

    audit = tmp_path / "audit"
    assert (
        run(
            "scan",
            LAB,
            "--audit",
            str(audit),
            "--format",
            "json",
            "-o",
            str(tmp_path / "s.json"),
            "--fail-on",
            "none",
            "--no-progress",
        )
        == 0
    )
    out = tmp_path / "mlps.json"
    assert run("report", LAB, "--framework", "mlps2-l3", "--audit", str(audit), "-o", str(out), "--no-progress") == 0
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    ces14 = next(r for r in results if r["requirement"]["id"] == "L3-CES1-14")
    assert any(e.startswith("audit log intact, 1 entries") for e in ces14["evidence"]), ces14
    # change one byte of the stored entry (the real file, as an intruder would)
    db = sqlite3.connect(audit / "audit.db")
    db.execute("UPDATE entries SET entry = CAST(replace(CAST(entry AS TEXT), 'scan', 'scam') AS BLOB) WHERE seq = 0")
    db.commit()
    db.close()
    assert run("report", LAB, "--framework", "mlps2-l3", "--audit", str(audit), "-o", str(out), "--no-progress") == 0
    results = json.loads(out.read_text(encoding="utf-8"))["results"]
    ces14 = next(r for r in results if r["requirement"]["id"] == "L3-CES1-14")
    assert ces14["status"] == "fail" and any("NOT intact" in g for g in ces14["evidence"] + ces14["gaps"]), ces14


def test_audit_without_framework_is_a_usage_error(tmp_path, capsys):
    assert run("report", LAB, "--audit", str(tmp_path)) == 3
    assert "--framework" in capsys.readouterr().err


@pytest.mark.slow
def test_run_example_generates_a_report_per_framework_and_each_renders(tmp_path):
    """scripts/run-example.sh writes out/report-scan.html and out/report-<framework>.html for examples/lab; each
    is screenshot in Chromium: not blank, the header drawn, the status tiles or score table in place."""
    import sys

    from vmsentry.commands.report import FRAMEWORKS

    env = dict(
        os.environ,
        VMSENTRY_OUT=str(tmp_path),
        VMSENTRY_PYTHON=sys.executable,
        VMSENTRY_SKIP_SETUP="1",
        PYTHONPATH=os.path.join(ROOT, "src"),
    )
    res = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "run-example.sh")], env=env, capture_output=True, text=True, timeout=900
    )
    assert res.returncode in (0, 1), res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    for name in ("scan", *FRAMEWORKS):
        page = tmp_path / f"report-{name}.html"
        assert page.is_file(), name
        image = screenshot(str(page), str(tmp_path / f"{name}.png"), width=1400, height=1200)
        assert image.std() > 20, f"{name}: blank"
        assert near(image[2:14], HEADER).mean() > 0.98, name
        assert margin_is_empty(image), f"{name}: wider than 1,400 px"
        dom = dump_dom(str(page))
        assert "<img" not in dom and "<script" not in dom
        if name == "scan":
            assert 'id="asset-table"' in dom and "How the score is computed" in dom
        else:
            assert 'id="status-tiles"' in dom and 'id="requirements"' in dom
            assert len(re.findall(r'<article class="req st-', dom)) >= 6, name


def test_scan_report_pdf(tmp_path):
    pdf = tmp_path / "scan.pdf"
    assert run("report", LAB, "-o", str(pdf), "--no-progress") == 0  # pdf from the suffix
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "vmsentry scan report" in text and "VMS-LVD-018" in text and "How the score is computed" in text
    assert "Severity" not in text.split("Findings by rule")[1][:200]  # the filter boxes are not printed
