"""VM and network names nobody on the project wrote, in every output format (issue 11, 1 "Output"): control
characters, ``]]>``, ``-->``, U+FFFE/U+FFFF, a bidi override, a lone surrogate. Each output is parsed back with
a strict parser (lxml for XML, json for SARIF and JSON, lxml.html plus a check for characters that XML 1.0
and HTML forbid), and a run whose output cannot be written is one line and exit 3."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree, html

# the hostile-input suite: bounded subprocesses and many mutated inputs; out of the fast lane, in every
# full run (scripts/test.sh, CI)
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "examples" / "lab"
HOSTILE = "evil]]>-->\x01\x1b[31m\ufffe\uffff<b>&\"'\u202e\x7f\x85\ud800"
# what XML 1.0 cannot carry at all (escaped or not) and what HTML calls a parse error: C0/C1 controls
# other than tab/newline/return, DEL, surrogates, the noncharacters
FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff]")


@pytest.fixture(scope="module")
def hostile_inventory(tmp_path_factory):
    """The example lab's inventory, made by the real tool, with every VM and network renamed hostile."""
    folder = tmp_path_factory.mktemp("hostile")
    proc = subprocess.run(
        [sys.executable, "-m", "vmsentry", "inventory", str(LAB)], capture_output=True, text=True, check=True
    )
    inv = json.loads(proc.stdout)
    for vm in inv["vms"]:
        vm["name"] += HOSTILE
    (folder / "inventory.json").write_text(json.dumps(inv))  # ensure_ascii: the lone surrogate as \ud800
    return folder / "inventory.json"


@pytest.fixture(scope="module")
def hostile_vmx(tmp_path_factory, corpus_dir):
    """A real .vmx from the corpus whose display name and network name carry what a .vmx line can."""
    text = (corpus_dir / "vmware-vmx" / "libvirt__esx-in-the-wild-17.vmx").read_text(encoding="utf-8")
    name = HOSTILE.replace('"', "|").replace("\ud800", "")  # a .vmx value cannot hold a quote or a surrogate
    text = re.sub(r'displayName = ".*"', f'displayName = "{name}"', text)
    text = text.replace('"Mgmt Network"', '"net]]>-->\x02\ufffe"')
    path = tmp_path_factory.mktemp("vmx") / "evil.vmx"
    path.write_text(text, encoding="utf-8")
    return path


def _run(*args, check_code=(0, 1, 2)):
    proc = subprocess.run([sys.executable, "-m", "vmsentry", *map(str, args)], capture_output=True, text=True)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in check_code, (proc.returncode, proc.stderr)
    return proc


def _read(path) -> str:
    text = path.read_bytes().decode("utf-8")  # strict: the file is valid UTF-8
    assert not FORBIDDEN.search(text), sorted(set(FORBIDDEN.findall(text)))
    return text


@pytest.mark.parametrize("source", ["hostile_inventory", "hostile_vmx"])
def test_junit_is_well_formed_xml_1_0(request, tmp_path, source):
    _run("scan", request.getfixturevalue(source), "--format", "junit", "-o", tmp_path / "r.xml")
    _read(tmp_path / "r.xml")
    root = etree.parse(str(tmp_path / "r.xml")).getroot()  # lxml's parser refuses anything XML 1.0 does not allow
    names = [s.get("name") for s in root.iter("testsuite")]
    assert any("evil]]>-->\\x01\\x1b[31m\\ufffe\\uffff<b>&" in n for n in names), names


@pytest.mark.parametrize("source", ["hostile_inventory", "hostile_vmx"])
def test_sarif_and_json_parse_and_sarif_messages_are_one_printable_line(request, tmp_path, source):
    _run("scan", request.getfixturevalue(source), "--format", "sarif", "-o", tmp_path / "r.sarif")
    sarif = json.loads((tmp_path / "r.sarif").read_text(encoding="utf-8"))
    messages = [r["message"]["text"] for r in sarif["runs"][0]["results"]]
    hostile = [m for m in messages if "evil]]>" in m]
    assert hostile and not any(FORBIDDEN.search(m) or "\u202e" in m for m in messages), hostile[:2]
    _run("scan", request.getfixturevalue(source), "--format", "json", "-o", tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert any("evil]]>" in f["asset"] for f in report["findings"])  # JSON keeps the name as it is


@pytest.mark.parametrize("source", ["hostile_inventory", "hostile_vmx"])
def test_paths_html_has_no_forbidden_character_and_no_injected_markup(request, tmp_path, source):
    _run("paths", request.getfixturevalue(source), "--format", "html", "-o", tmp_path / "p.html")
    text = _read(tmp_path / "p.html")
    page = html.fromstring(text)
    assert "<b>&" not in text  # the name's "<b>" is text, not an element
    assert any("evil]]>-->\\x01\\x1b[31m\\ufffe\\uffff<b>&" in t for t in page.xpath("//title/text()"))
    assert len(page.xpath("//script")) == 1


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "junit"])
def test_text_outputs_have_no_control_characters(hostile_inventory, tmp_path, fmt):
    _run("scan", hostile_inventory, "--format", fmt, "-o", tmp_path / "r")
    text = (tmp_path / "r").read_bytes().decode("utf-8")
    if fmt in ("text", "junit"):
        assert not FORBIDDEN.search(text) and "\u202e" not in text


def test_rules_html_parses(tmp_path):
    _run("rules", "--format", "html", "-o", tmp_path / "r.html")
    _run("rules", "--matrix", "--format", "html", "-o", tmp_path / "m.html")
    for name in ("r.html", "m.html"):
        assert html.fromstring(_read(tmp_path / name)).xpath("//table")


def test_nwfilter_xml_for_a_hostile_vm_name_is_well_formed(tmp_path):
    """act/policy/nwfilter.py: a VM name went raw into an XML comment (``-->`` ended it, a control character
    made the document invalid)."""
    inv = json.loads(_run("inventory", LAB).stdout)
    for vm in inv["vms"]:
        if vm["name"] == "web":
            vm["name"] = "web--> <x>\x01\ufffe]]>"
    (tmp_path / "inv.json").write_text(json.dumps(inv))
    policy = (REPO / "examples" / "policy" / "lab-policy.yaml").read_text()
    policy = policy.replace("{vms: [web]}", '{match: ["web*"]}').replace(
        "{vm: web}", '{vm: "web--> <x>\\x01\\ufffe]]>"}'
    )
    (tmp_path / "policy.yaml").write_text(policy)
    proc = _run(
        "policy", "compile", tmp_path / "policy.yaml", "--inventory", tmp_path / "inv.json", "--target", "nwfilter"
    )
    assert proc.returncode == 0
    # the printed filters and comments, under one root, are one well-formed document
    root = etree.fromstring(f"<all>{proc.stdout}</all>".encode())
    assert len(root.findall("filter")) == 4
    assert not any("<x>" in (c.text or "") and "-->" in (c.text or "") for c in root.iter(etree.Comment))


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "{inv}", "--format", "junit"],
        ["scan", "{inv}", "--format", "sarif"],
        ["scan", "{inv}", "--format", "text"],
        ["paths", "{inv}", "--format", "html"],
        ["rules", "--format", "html"],
        ["rules", "--matrix", "--format", "html"],
    ],
    ids=lambda a: "-".join(a[:1] + a[-1:]),
)
def test_an_output_that_cannot_be_written_is_one_line_and_exit_3(hostile_inventory, argv):
    args = [a.replace("{inv}", str(hostile_inventory)) for a in argv]
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "vmsentry", *args], stdout=full, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and "No space left on device" in proc.stderr.splitlines()[-1]


def test_a_name_the_terminal_cannot_encode_is_escaped_and_a_full_device_still_one_line(tmp_path):
    inv = json.loads(_run("inventory", LAB).stdout)
    inv["vms"][0]["name"] = "caf\u00e9-\u4e2d"
    (tmp_path / "inv.json").write_text(json.dumps(inv))
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    argv = [sys.executable, "-m", "vmsentry", "scan", str(tmp_path / "inv.json"), "--format", "text"]
    proc = subprocess.run(argv, capture_output=True, env=env)
    assert proc.returncode == 1 and b"caf\\xe9-\\u4e2d" in proc.stdout
    with open("/dev/full", "w") as full:
        proc = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1 and "No space left" in proc.stderr
