"""`vmsentry paths` on the command line: formats, contract shape, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from vmsentry.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "examples", "lab")
VMSENTRY = os.path.join(os.path.dirname(sys.executable), "vmsentry")


def run(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_json_contract(capsys):
    code, out, _ = run(capsys, "paths", LAB, "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["paths"] and data["remediation"]
    p = data["paths"][0]
    assert p["from"].startswith("vm:") and p["to"].startswith("host:")
    assert 0 <= p["score"] <= 10
    for st in p["steps"]:
        assert set(st) >= {"from", "to", "technique", "attack_id", "evidence"}
        assert set(st["evidence"]) >= {"file", "locator"}
    for r in data["remediation"]:
        assert set(r) >= {"change", "asset", "rule_id", "cuts"}
    scores = [p["score"] for p in data["paths"]]
    assert scores == sorted(scores, reverse=True)
    assert data["fix"]["verified"] is True


def test_text_reads_like_a_summary(capsys):
    code, out, _ = run(capsys, "paths", LAB, "--format", "text")
    assert code == 0
    assert "sources reach host" in out
    assert "Smallest fix found" in out and "what-if id:" in out
    assert "T1611" in out


def test_what_if_cli(capsys):
    code, out, _ = run(
        capsys,
        "paths",
        LAB,
        "--format",
        "json",
        "--what-if",
        "svc:host:kvm-lab-01:tcp/16509",
        "--what-if",
        "VMS-VM-005",
    )
    assert code == 0
    data = json.loads(out)
    assert len(data["what_if"]["applied"]) >= 2
    assert data["what_if"]["after"]["worst_score"] < data["what_if"]["before"]["worst_score"]


def test_html_written_to_file(capsys, tmp_path):
    out_file = tmp_path / "paths.html"
    code, _, _ = run(capsys, "paths", LAB, "--format", "html", "-o", str(out_file))
    assert code == 0
    text = out_file.read_text()
    assert "<svg" in text and 'class="edge worst"' in text


@pytest.mark.parametrize(
    "args,msg",
    [
        (["paths", LAB, "--from", "vm:ghost"], "no VM named"),
        (["paths", LAB, "--to", "moon"], "expected vm:NAME"),
        (["paths", LAB, "--what-if", "nope"], "--what-if"),
        (["paths", LAB, "--vuln-db", "/nonexistent.yaml"], "cannot read"),
        (["paths"], "nothing to read"),
    ],
)
def test_usage_errors_exit_3_without_traceback(capsys, args, msg):
    code, _, err = run(capsys, *args)
    assert code == 3
    assert msg in err and "Traceback" not in err


def test_a_missing_path_exits_2_and_the_rest_is_analysed(capsys):
    code, out, err = run(capsys, "paths", "/nonexistent-dir", LAB, "--format", "json")
    assert code == 2 and "No such file" in err and "Traceback" not in err
    assert json.loads(out)["paths"]


def test_bad_format_exits_3(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["paths", LAB, "--format", "sarif"])
    assert exc.value.code == 3


def test_bad_vuln_db_names_file_and_line(capsys, tmp_path):
    bad = tmp_path / "v.yaml"
    bad.write_text("vulns: [\n")
    code, _, err = run(capsys, "paths", LAB, "--vuln-db", str(bad))
    assert code == 3 and str(bad) in err and "line" in err


def test_unreadable_input_exits_2(capsys, tmp_path):
    bad = tmp_path / "broken.xml"
    bad.write_text("<domain><name>x</name><devices>")
    code, out, err = run(capsys, "paths", LAB, str(bad), "--format", "json")
    assert code == 2
    assert json.loads(out)["paths"]


@pytest.mark.skipif(not os.path.exists(VMSENTRY), reason="console script not installed")
def test_help_stays_fast():
    t = time.perf_counter()
    subprocess.run([VMSENTRY, "--help"], check=True, capture_output=True)
    assert time.perf_counter() - t < 0.3 * 3  # generous for loaded CI; measured ~0.05 s
    res = subprocess.run([VMSENTRY, "paths", "--help"], check=True, capture_output=True, text=True)
    assert "--what-if" in res.stdout and "--vuln-db" in res.stdout
