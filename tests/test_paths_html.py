"""The HTML attack-path page, rendered in headless Chromium: it renders, nodes and paths are there,
the worst paths are highlighted, and hostile names are escaped (no injected element, no script runs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from vmsentry.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB = os.path.join(ROOT, "examples", "lab")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL = "<script>alert(1)</script>"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def dump_dom(path: str) -> str:
    res = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", f"file://{path}"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def evil_inventory(tmp_path) -> str:
    with open(os.path.join(LAB, "host", "host-facts.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    data["vms"] = [
        {
            "name": EVIL,
            "platform": "libvirt",
            "source": {"file": 'evil"<img src=x onerror=alert(2)>.xml'},
            "nics": [
                {
                    "id": "net0",
                    "mode": "bridged",
                    "bridge": "br0",
                    "network": None,
                    "spoof_protection": False,
                    "locator": "<b>line 1</b>",
                }
            ],
            "listeners": [{"kind": "vnc", "transport": "tcp", "address": "0.0.0.0", "port": 5909, "auth": "none"}],
            "shares": [{"kind": "virtiofs", "host_path": "/srv/<svg onload=alert(3)>", "writable": True}],
        }
    ]
    path = tmp_path / "evil-inventory.json"
    path.write_text(json.dumps(data))
    return str(path)


def render(tmp_path, *inputs) -> str:
    out = tmp_path / "paths.html"
    assert main(["paths", *inputs, "--format", "html", "-o", str(out)]) == 0
    return str(out)


def test_escaping_without_a_browser(tmp_path):
    with open(render(tmp_path, evil_inventory(tmp_path))) as fh:
        html = fh.read()
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "<svg onload" not in html
    assert html.count("<script") == 1  # only the page's own, static script
    assert "Content-Security-Policy" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_lab_page_renders_in_chromium(tmp_path):
    dom = dump_dom(render(tmp_path, LAB))
    assert 'data-rendered="1"' in dom  # the page's script ran under its CSP
    nodes = re.findall(r'<g class="node[^"]*" data-id="([^"]+)"', dom)
    assert "vm:build" in nodes and "host:kvm-lab-01" in nodes and len(nodes) >= 20
    assert len(re.findall(r'class="edge worst"', dom)) >= 3
    rows = re.findall(r'<tr class="path[^"]*" data-path="\d+"', dom)
    assert len(rows) >= 5
    assert "Smallest fix found" in dom


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_hostile_names_are_escaped_in_chromium(tmp_path):
    dom = dump_dom(render(tmp_path, evil_inventory(tmp_path)))
    assert 'data-rendered="1"' in dom
    # the name is shown as text ...
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    # ... and never became an element: one <script> (ours), no injected <img>/<svg onload>
    assert len(re.findall(r"<script\b", dom)) == 1
    assert "<img" not in dom and "onload=" not in dom.replace("&lt;svg onload=", "")
    assert re.search(r'data-id="vm:&lt;script&gt;alert\(1\)&lt;/script&gt;"', dom)


# --- issue 11, 4: the fix first, a legend, the whole drawing in the window, alike nodes and paths grouped ----
def many_builds(tmp_path, count: int) -> str:
    """The example lab with its build VM copied ``count`` times as build-0 .. build-N (real libvirt XML)."""
    folder = tmp_path / "many"
    shutil.copytree(os.path.join(LAB, "host"), folder / "host")
    shutil.copytree(os.path.join(LAB, "networks"), folder / "networks")
    (folder / "domains").mkdir()
    with open(os.path.join(LAB, "domains", "build.xml"), encoding="utf-8") as fh:
        template = fh.read()
    for i in range(count):
        xml = template.replace("<name>build</name>", f"<name>build-{i}</name>")
        xml = re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{i:08d}-edaf-9455-926a-d65c16db1809</uuid>", xml)
        (folder / "domains" / f"build-{i}.xml").write_text(xml)
    return str(folder)


def test_the_fix_comes_first_then_a_legend_and_a_drawing_that_fits_the_window(tmp_path):
    with open(render(tmp_path, LAB), encoding="utf-8") as fh:
        page = fh.read()
    assert page.index('id="fix"') < page.index('id="legend"') < page.index('id="graph"') < page.index('id="paths"')
    svg = re.search(r"<svg [^>]*>", page)[0]
    assert 'width="100%"' in svg and "viewBox" in svg  # scales to the window: the host column is never cut off
    legend = page[page.index('id="legend"') : page.index("</ul>", page.index('id="legend"'))]
    for text in ("VM", "host service", "the host", "one of the 5 worst paths"):
        assert text in legend
    preview = re.search(r'<p id="preview">.*?</p>', page)[0]
    assert preview.count("--what-if") == page.count('<tr class="fix">')  # every change of the fix


def test_thousands_of_alike_vms_are_one_box_and_paths_group_in_natural_order(tmp_path):
    out = tmp_path / "paths.html"
    assert main(["paths", many_builds(tmp_path, 1200), "--format", "html", "-o", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    vm_boxes = re.findall(r'<g class="node[^"]*" data-id="(vm:[^"]+)" data-kind="vm" data-members="(\d+)">', page)
    assert vm_boxes == [("vm:build-0", "1200")]
    assert "build-0 \u2026 build-1199 (1,200)" in page
    assert len(re.findall(r"<g class=\"node", page)) < 60
    more = re.search(r'<tr class="more"><td colspan="5">\+ ([\d,]+) more path\(s\)[^<]*from ([^<(]*)', page)
    assert more and more[1] == "1,199"
    assert more[2].startswith("vm:build-1, vm:build-2, vm:build-3, vm:build-4, vm:build-5")
    assert len(re.findall(r'<tr class="path', page)) <= 50


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_a_click_on_a_group_shows_its_paths_in_chromium(tmp_path):
    out = tmp_path / "paths.html"
    assert main(["paths", many_builds(tmp_path, 300), "--format", "html", "-o", str(out)]) == 0
    dom = dump_dom(str(out))
    assert 'data-rendered="1"' in dom and 'class="node onpath group"' in dom
    assert re.search(r'<tr class="path[^"]*" data-path="\d+" hidden="">', dom)  # collapsed until clicked
