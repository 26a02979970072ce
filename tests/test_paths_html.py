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
