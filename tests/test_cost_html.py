"""The HTML cost page: self-contained, hostile VM names and option titles escaped, and its chart renders in
headless Chromium (a screenshot of the chart is not blank: the options' colours are drawn)."""

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
FINANCE = os.path.join(ROOT, "examples", "incident-2022-finance")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars"]
EVIL = "<script>alert(1)</script>"
EVIL_TITLE = '"><img src=x onerror=alert(2)>'


def hostile_inputs(tmp_path) -> tuple[str, str]:
    """The lab's host facts with two bridged VMs named like markup, and an option titled like markup."""
    with open(os.path.join(LAB, "host", "host-facts.json"), encoding="utf-8") as fh:
        data = json.load(fh)
    data["vms"] = [
        {
            "name": name,
            "platform": "libvirt",
            "source": {"file": f"{i}<b>.xml"},
            "nics": [{"id": "net0", "mode": "bridged", "bridge": "br0", "network": None, "spoof_protection": False}],
            "listeners": [{"kind": "vnc", "transport": "tcp", "address": "0.0.0.0", "port": 5909, "auth": "none"}],
        }
        for i, name in enumerate((EVIL, "x\x1b[31mred"))
    ]
    inventory = tmp_path / "evil-inventory.json"
    inventory.write_text(json.dumps(data))
    options = tmp_path / "options.yaml"
    options.write_text(
        "currency: '<i>EUR</i>'\n"
        "options:\n"
        "  vlan:\n"
        "  odd:\n"
        f"    title: '{EVIL_TITLE}'\n"
        "    changes: ['listener:*']\n"
        "    cost: {low: 10, most_likely: 20, high: 30}\n"
    )
    return str(inventory), str(options)


def render(tmp_path, *args: str) -> str:
    out = tmp_path / "cost.html"
    assert main(["cost", *args, "--format", "html", "-o", str(out)]) == 0
    return str(out)


def test_hostile_names_are_text_and_the_page_is_self_contained(tmp_path):
    inventory, options = hostile_inputs(tmp_path)
    with open(render(tmp_path, inventory, "--options", options), encoding="utf-8") as fh:
        html = fh.read()
    assert EVIL not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<i>EUR" not in html and "&lt;i&gt;EUR&lt;/i&gt;" in html
    assert "\x1b" not in html and "\\x1b[31mred" in html  # control characters shown, never passed through
    assert "<script" not in html  # no script at all, and a CSP that would refuse one
    assert "default-src 'none'" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "illustrative" in html


def dump_dom(path: str) -> str:
    res = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", f"file://{path}"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_hostile_names_are_escaped_in_chromium(tmp_path):
    inventory, options = hostile_inputs(tmp_path)
    dom = dump_dom(render(tmp_path, inventory, "--options", options))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert not re.search(r"<script\b", dom) and "<img" not in dom
    assert len(re.findall(r'<g class="point"', dom)) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_the_chart_renders_in_chromium(tmp_path):
    from PIL import Image

    page = render(tmp_path, FINANCE, "--options", os.path.join(FINANCE, "cost-options.yaml"))
    dom = dump_dom(page)
    assert len(re.findall(r'<g class="point" data-name="[^"]+"', dom)) == 5
    assert len(re.findall(r"<circle ", dom)) == 5
    # the chart alone, as the browser draws it: a page holding only the page's own <svg>
    with open(page, encoding="utf-8") as fh:
        html = fh.read()
    svg = html[html.index("<svg id=") : html.index("</svg>") + len("</svg>")]
    only = tmp_path / "chart.html"
    only.write_text(f"<!DOCTYPE html><html><body style='margin:0'>{svg}</body></html>")
    shot = tmp_path / "chart.png"
    res = subprocess.run(
        [CHROMIUM, *FLAGS, f"--screenshot={shot}", "--window-size=720,440", f"file://{only}"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # not one flat colour
    strong = {c for _, c in colours if max(c) - min(c) > 120}  # saturated: the option markers, not grey axes
    assert len(strong) >= 4, sorted(strong)[:10]
    # the first option's marker (#1f77b4) is drawn where its point is
    assert any(abs(r - 0x1F) < 30 and abs(g - 0x77) < 30 and abs(b - 0xB4) < 30 for _, (r, g, b) in colours)
