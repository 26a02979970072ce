"""`vmsentry audit ...` and `--audit DIR` as a user runs them: entries from scan and detect, verify's exit
codes and the entry it names, show, prune, export, and the private key never in any output."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from vmsentry.report.audit import AuditLog

REPO = Path(__file__).resolve().parents[1]
LAB = REPO / "examples" / "lab"


def _lab_pcaps(shared_dir):
    return [shared_dir / "pcaps" / "lab" / n for n in ("arpspoof-vm1-vs-vm2.pcap", "benign-http-ping.pcap")]


def _secrets(directory: Path) -> list[str]:
    """Every form the private key could be printed in."""
    pem = (directory / "audit.key").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    body = "".join(pem.decode().splitlines()[1:-1])
    return [body, body[:24], base64.b64encode(raw).decode(), raw.hex(), raw.hex()[:24]]


def test_scan_and_detect_write_entries_that_verify(tmp_path, run_cli, shared_dir):
    audit = tmp_path / "audit"
    outputs = []
    scan = run_cli("scan", LAB, "--audit", audit, "--format", "json")
    assert scan.returncode in (0, 1), scan.stderr
    assert "keep its public half elsewhere" in scan.stderr
    outputs.append(scan.stdout + scan.stderr)
    detect = run_cli("detect", *_lab_pcaps(shared_dir), "--audit", audit, "--format", "json")
    assert detect.returncode == 1, detect.stderr
    assert "keep its public half" not in detect.stderr  # printed once, when the key was made
    outputs.append(detect.stdout + detect.stderr)

    shown = run_cli("audit", "show", audit, "--format", "json")
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["entries"]
    alerts = json.loads(detect.stdout)["alerts"]
    assert [r["kind"] for r in rows] == ["scan", *["alert"] * len(alerts), "detect"]
    scan_entry = rows[0]["record"]
    inventory = json.loads(scan.stdout)["inventory"]
    canonical = json.dumps(inventory, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert scan_entry["inventory_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert scan_entry["summary"]["by_status"] == json.loads(scan.stdout)["summary"]["by_status"]
    assert [r["record"]["type"] for r in rows[1:-1]] == [a["type"] for a in alerts]
    assert rows[-1]["record"]["alerts"] == len(alerts)
    assert rows[0]["command"].startswith("vmsentry scan")

    verify = run_cli("audit", "verify", audit)
    assert verify.returncode == 0 and verify.stdout.startswith("intact:"), verify.stderr
    outputs.append(verify.stdout + verify.stderr)
    as_json = run_cli("audit", "verify", audit, "--format", "json")
    assert json.loads(as_json.stdout)["intact"] is True
    text = run_cli("audit", "show", audit, "--kind", "alert", "--since", "1h")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == len(alerts)
    exported = run_cli("audit", "export", audit, "-o", tmp_path / "export.jsonl")
    assert exported.returncode == 0, exported.stderr
    assert len((tmp_path / "export.jsonl").read_text().splitlines()) == len(rows) + 1
    assert run_cli("audit", "export", audit).stdout == (tmp_path / "export.jsonl").read_text()
    outputs.append((tmp_path / "export.jsonl").read_text() + exported.stderr)
    pruned = run_cli("audit", "prune", audit, "--format", "json")
    assert pruned.returncode == 0 and json.loads(pruned.stdout)["dropped_now"] == 0, pruned.stderr
    outputs.append(pruned.stdout + pruned.stderr + (audit / "checkpoint.json").read_text())

    everything = "\n".join(outputs)
    for secret in _secrets(audit):
        assert secret not in everything


def test_verify_names_the_tampered_entry_and_exits_1(tmp_path, run_cli):
    audit = tmp_path / "audit"
    assert run_cli("scan", LAB, "--audit", audit, "--format", "json").returncode in (0, 1)
    for n in range(2):  # two more runs (as a watcher would write them)
        with AuditLog(audit) as log:
            log.append("alert", {"n": n})
    db = sqlite3.connect(audit / "audit.db")
    db.execute("DELETE FROM entries WHERE seq = 1")
    db.commit()
    db.close()
    proc = run_cli("audit", "verify", audit)
    assert proc.returncode == 1
    assert proc.stdout == "TAMPERED: entry 1 was removed\n"
    assert run_cli("audit", "prune", audit).returncode == 1
    assert run_cli("audit", "export", audit).returncode == 1


def test_a_checkpoint_kept_elsewhere_catches_a_log_replaced_with_a_new_key(tmp_path, run_cli):
    audit = tmp_path / "audit"
    assert run_cli("scan", LAB, "--audit", audit, "--format", "json").returncode in (0, 1)
    kept = tmp_path / "kept-checkpoint.json"
    kept.write_bytes((audit / "checkpoint.json").read_bytes())
    public = tmp_path / "kept.pub"
    public.write_bytes((audit / "audit.pub").read_bytes())
    for name in ("audit.db", "audit.key", "audit.pub", "checkpoint.json"):
        (audit / name).unlink()
    with AuditLog(audit, announce=lambda line: None) as log:  # a forged history under a new key
        log.append("scan", {"summary": "all well"})
    assert run_cli("audit", "verify", audit).returncode == 0  # consistent on its own
    proc = run_cli("audit", "verify", audit, "--checkpoint", kept)
    assert proc.returncode == 1 and "re-signed" in proc.stdout
    proc = run_cli("audit", "verify", audit, "--public-key", public)
    assert proc.returncode == 1


def test_usage_and_missing_logs(tmp_path, run_cli):
    assert run_cli("audit").returncode == 3
    assert run_cli("audit", "show", tmp_path, "--since", "yesterday").returncode == 3
    assert run_cli("audit", "prune", tmp_path, "--keep-days", "x=y").returncode == 3
    proc = run_cli("audit", "verify", tmp_path / "nothing")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no audit log" in proc.stderr
    (tmp_path / "file").write_text("x")
    proc = run_cli("scan", LAB, "--audit", tmp_path / "file")
    assert proc.returncode == 3 and "Traceback" not in proc.stderr


def test_policy_confirm_writes_one_entry_per_action(tmp_path, run_cli):
    """A pending apply's state as `policy apply --confirm-within` leaves it (no watchdog: nothing of the host is
    touched); confirming it with --audit writes one `policy` entry. Apply and rollback write theirs through the
    same helper (their end-to-end run needs nft in a namespace: tests/test_policy_lab.py)."""
    import time

    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / "pending.json").write_text(json.dumps({"token": "t0", "deadline": time.time() + 60}))
    audit = tmp_path / "audit"
    proc = run_cli("policy", "confirm", "--state-dir", state, "--audit", audit)
    assert proc.returncode == 0, proc.stderr
    nothing = run_cli("policy", "confirm", "--state-dir", state, "--audit", audit)
    assert nothing.returncode == 1  # nothing pending: no action, no entry
    rows = json.loads(run_cli("audit", "show", audit, "--format", "json").stdout)["entries"]
    assert [(r["kind"], r["record"]["action"], r["record"]["outcome"]) for r in rows] == [
        ("policy", "confirm", "confirmed")
    ]
    assert rows[0]["record"]["state_dir"] == str(state) and rows[0]["record"]["seconds_left"] > 0
    assert run_cli("audit", "verify", audit).returncode == 0
