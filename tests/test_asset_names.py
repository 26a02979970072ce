"""An asset keeps its name, and its findings, whatever other folders are scanned beside it (issue 13):
the example lab's host used to become ``host:host`` when another folder with another host was added, and
its VMs lost their host's facts (IOMMU, memory encryption, qemu.conf)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmsentry.collect import collect

REPO = Path(__file__).resolve().parents[1]
LAB = str(REPO / "examples" / "lab")
OTHERS = ["examples/incident-2022-finance", "examples/incident-2023-hospital", "examples/policy", "examples/lab"]


def scan(run_cli, *paths: str) -> dict:
    proc = run_cli("scan", *paths, "--format", "json", "--fail-on", "none", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def results(document: dict, assets: set[str] | None = None) -> set[tuple]:
    return {
        (f["rule_id"], f["asset"], f["status"], json.dumps(f["evidence"].get("value"), sort_keys=True))
        for f in document["findings"]
        if assets is None or f["asset"] in assets
    }


def test_lab_host_keeps_its_name_beside_each_other_folder():
    for other in OTHERS:
        inv, _ = collect([LAB, str(REPO / other)])
        names = [h.name for h in inv.hosts]
        assert "host" not in names, (other, names)
        assert names.count("kvm-lab-01") == 1, (other, names)


@pytest.mark.parametrize("other", ["examples/incident-2022-finance", "examples/incident-2023-hospital"])
def test_findings_of_each_folder_are_the_same_alone_and_together(run_cli, other):
    together = scan(run_cli, LAB, str(REPO / other))
    for alone in (scan(run_cli, LAB), scan(run_cli, str(REPO / other))):
        assets = {f["asset"] for f in alone["findings"]}
        assert results(alone) == results(together, assets)


def test_a_folder_given_twice_is_read_once():
    inv, _ = collect([LAB, LAB + "/", str(Path(LAB) / "domains")])
    assert sorted(vm.name for vm in inv.vms) == ["build", "db", "legacy", "web", "win-desktop"]
    assert [h.name for h in inv.hosts] == ["kvm-lab-01"]
