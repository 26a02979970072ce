"""docs/contracts.md is the project's copy of shared/docs/CONTRACTS.md: every line of the shared text must
stand in it, so a contract that arrives in the shared copy is not silently missing from ours."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_project_copy_holds_every_line_of_the_shared_contracts(shared_dir):
    shared = (shared_dir / "docs" / "CONTRACTS.md").read_text(encoding="utf-8").splitlines()[1:]  # its own title
    ours = set((REPO / "docs" / "contracts.md").read_text(encoding="utf-8").splitlines())
    missing = [line for line in shared if line.strip() and line not in ours]
    assert not missing, f"lines of shared CONTRACTS.md not in docs/contracts.md: {missing[:5]}"


def test_rules_json_lists_the_fields_the_contract_copy_names(run_cli):
    out = run_cli("rules", "--format", "json")
    assert out.returncode == 0, out.stderr
    rule = json.loads(out.stdout)["rules"][0]
    for key in (
        "id",
        "title",
        "severity",
        "category",
        "platforms",
        "asset",
        "rationale",
        "remediation",
        "references",
        "default",
        "verified",
        "compliance",
        "control",
        "setting",
        "recommended",
    ):
        assert key in rule
