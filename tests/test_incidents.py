"""Evidence of an incident: recent frames per VM (collect/traffic/recent.py), the bundle (report/incident.py:
all or nothing, links refused, manifest checked), report.html in headless Chromium with hostile names, and
`vmsentry incidents list|show|verify`. Bundles are built from the real lab captures through the real
detector: their alerts from `vmsentry detect`, their frames from the same capture through RecentFrames."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import struct
import subprocess

import numpy as np
import pytest

from vmsentry.cli import main
from vmsentry.collect.traffic.recent import RecentFrames
from vmsentry.report.incident import IncidentError, IncidentStore

ARPSPOOF, NMAP, BENIGN = "arpspoof-vm1-vs-vm2.pcap", "nmap-sS-vm1-vs-hostns.pcap", "benign-http-ping.pcap"
MAC = {name: bytes.fromhex(f"525400990{n}") for name, n in (("vm1", "011"), ("vm2", "012"), ("hostns", "001"))}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
EVIL = "<script>alert(1)</script>\"q\" 'x'\nline2\x1b[31mred"


LAB: list = []  # the lab captures' folder, ../shared/pcaps/lab (set by the fixture below)


@pytest.fixture(autouse=True)
def lab(shared_dir):
    LAB[:] = [shared_dir / "pcaps" / "lab"]


def lab_path(name):
    """A lab capture by file name (a path is taken as it is)."""
    return LAB[0] / name if isinstance(name, str) else name


def read_pcap(path) -> list[tuple[float, bytes, int]]:
    """The records of a classic little-endian microsecond pcap (the lab captures)."""
    data = lab_path(path).read_bytes()
    assert data[:4] == bytes.fromhex("d4c3b2a1")
    out, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        out.append((sec + usec / 1e6, data[off + 16 : off + 16 + incl], orig))
        off += 16 + incl
    return out


def blocks(records, per_block: int):
    """The records as the capture ring hands them over: (buf, offsets, ts, incl, orig) per block, with a
    capture header before every frame and 48 readable bytes after the last."""
    for i in range(0, len(records), per_block):
        buf, frame = bytearray(), []
        for _, data, _ in records[i : i + per_block]:
            buf += bytes(16)
            frame.append(len(buf))
            buf += data
        buf += bytes(48)
        part = records[i : i + per_block]
        yield (
            bytes(buf),
            np.array(frame, np.int64),
            np.array([r[0] for r in part]),
            np.array([len(r[1]) for r in part], np.int64),
            np.array([r[2] for r in part], np.int64),
        )


def feed(recent: RecentFrames, path, per_block: int = 7) -> list:
    records = read_pcap(path)
    for block in blocks(records, per_block):
        recent.add("br-test", *block)
    return records


def lab_recent(**kw) -> RecentFrames:
    recent = RecentFrames(**kw)
    recent.set_macs({MAC["vm1"]: "vm1", MAC["vm2"]: "vm2"})  # hostns: no VM (its frames go to the shared ring)
    return recent


def detect(path, tmp_path) -> list[dict]:
    path = lab_path(path)
    out = tmp_path / f"{path.name}.json"
    assert main(["detect", str(path), "--format", "json", "-o", str(out)]) in (0, 1)
    return json.loads(out.read_text())["alerts"]


# --- RecentFrames ----------------------------------------------------------------------------------
def test_each_vm_gets_its_frames_once_in_time_order_and_the_rest_is_shared():
    recent = lab_recent()
    records = feed(recent, ARPSPOOF)
    involving = lambda mac: [r for r in records if mac in (r[1][:6], r[1][6:12])]
    assert recent.frames({"vm1"}) == sorted(involving(MAC["vm1"]), key=lambda r: r[0])
    assert recent.frames({"vm2"}) == sorted(involving(MAC["vm2"]), key=lambda r: r[0])
    # vm1 <-> vm2 frames are in both rings but come out once; hostns (no VM) is picked from the shared ring
    everything = recent.frames({"vm1", "vm2"}, {MAC["hostns"]})
    assert len(everything) == len({(r[0], r[1]) for r in records}) and len(everything) >= len(records) - 1
    assert [r[0] for r in everything] == sorted(r[0] for r in everything)
    # a time window, and a MAC of a known VM means its ring
    some = recent.frames(set(), {MAC["vm2"]}, since=records[5][0], until=records[15][0])
    assert some and all(records[5][0] <= r[0] <= records[15][0] for r in some)
    assert recent.stats()["evicted"] == {"vms": 0, "shared": 0}


def test_rings_stay_within_their_bytes_and_keep_the_newest_frames():
    limit = 30_000
    recent = lab_recent(per_vm_bytes=limit, shared_bytes=limit)
    records = feed(recent, NMAP, per_block=64)
    stats = recent.stats()
    assert all(ring.bytes <= limit for ring in recent.rings.values()) and recent.shared.bytes <= limit
    assert stats["evicted"]["vms"] > 0
    assert stats["chunk_bytes"] <= 2 * (limit * stats["rings"] + limit)  # the documented bound
    kept = recent.frames({"vm1"})
    newest = sorted((r for r in records if MAC["vm1"] in (r[1][:6], r[1][6:12])), key=lambda r: r[0])
    assert kept and kept == newest[-len(kept) :]


def test_a_quiet_vm_keeps_its_frames_while_a_busy_one_turns_over():
    recent = lab_recent(per_vm_bytes=40_000)
    records = feed(recent, BENIGN, per_block=5)  # vm2's frames, all of them
    vm2_before = recent.frames({"vm2"})
    recent.set_macs({MAC["vm1"]: "vm1", MAC["hostns"]: "hostns"})  # vm2 gone from the inventory: its ring stays
    feed(recent, NMAP, per_block=200)  # hostns and vm1 are busy
    assert recent.frames({"vm2"}) == vm2_before and len(vm2_before) == sum(
        1 for r in records if MAC["vm2"] in (r[1][:6], r[1][6:12])
    )
    assert recent.stats()["chunk_bytes"] <= 2 * (40_000 * 3 + recent.shared.limit)


# --- bundles -----------------------------------------------------------------------------------------
def arp_bundle(tmp_path, vm="vm1"):
    alerts = detect(ARPSPOOF, tmp_path)
    spoof = next(a for a in alerts if a["type"] == "arp_spoof")
    recent = lab_recent()
    feed(recent, ARPSPOOF)
    store = IncidentStore(str(tmp_path / "evidence"))
    inventory = {"vms": [{"name": "vm1", "nics": [{"mac": "52:54:00:99:00:11"}]}]}
    incident = store.open(spoof, vm, inventory, ("vm1.xml", "<domain><name>vm1</name></domain>"))
    incident.event("decision", action="quarantine", reason="arp_spoof high 0.95")
    incident.event(
        "action", at=spoof["first_seen"] + 0.012, method="nft", release=f"vmsentry release {shlex.quote(vm)}"
    )
    incident.rulesets("table bridge vmsentry_quarantine {}\n", "table bridge vmsentry_quarantine { set macs {} }\n")
    frames = recent.frames({"vm1"}, {bytes.fromhex(spoof["attacker"]["mac"].replace(":", ""))})
    incident.finish(frames)
    return store, incident, spoof, frames


def test_a_bundle_from_a_real_arp_spoof_holds_everything_and_verifies(tmp_path):
    store, incident, spoof, frames = arp_bundle(tmp_path)
    bundle = tmp_path / "evidence" / incident.id
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z-arp_spoof-vm1-[0-9a-f]{4}", incident.id)
    names = sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*") if p.is_file())
    assert names == [
        "alerts.jsonl",
        "capture.pcap",
        "config/vm1.xml",
        "inventory.json",
        "manifest.json",
        "report.html",
        "ruleset-after.nft",
        "ruleset-before.nft",
        "timeline.jsonl",
    ]
    assert store.verify(incident.id) == []
    assert [p.name for p in (tmp_path / "evidence").iterdir()] == [incident.id]  # no temporary left
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["schema"] == "vmsentry.incident/1" and manifest["vmsentry_version"]
    assert manifest["response_seconds"] == pytest.approx(0.012, abs=1e-5)
    assert [e["kind"] for e in map(json.loads, (bundle / "timeline.jsonl").read_text().splitlines())] == [
        "detection",
        "decision",
        "action",
    ]
    # the capture is a real pcap: vmsentry's own detector finds the same attack in it
    again = detect(bundle / "capture.pcap", tmp_path)
    assert any(a["type"] == "arp_spoof" and a["attacker"] == spoof["attacker"] for a in again)
    assert len(read_pcap(bundle / "capture.pcap")) == len(frames) > 10
    if shutil.which("tcpdump"):
        res = subprocess.run(["tcpdump", "-nr", str(bundle / "capture.pcap")], capture_output=True, text=True)
        assert res.returncode == 0 and res.stdout.count("\n") == len(frames)


def test_verify_names_a_flipped_byte_a_removed_file_and_an_added_one(tmp_path):
    store, incident, _, _ = arp_bundle(tmp_path)
    bundle = tmp_path / "evidence" / incident.id
    evidence = ["--evidence", str(tmp_path / "evidence")]
    assert main(["incidents", "verify", incident.id, *evidence]) == 0
    data = bytearray((bundle / "capture.pcap").read_bytes())
    data[100] ^= 0x01
    (bundle / "capture.pcap").write_bytes(bytes(data))
    assert store.verify(incident.id) == ["capture.pcap: changed (SHA-256 differs from the manifest)"]
    (bundle / "config" / "vm1.xml").unlink()
    (bundle / "notes.txt").write_text("planted")
    os.symlink("/etc/passwd", bundle / "inventory.json.bak")
    assert store.verify(incident.id) == [
        "capture.pcap: changed (SHA-256 differs from the manifest)",
        "config/vm1.xml: missing",
        "inventory.json.bak: not in the manifest (added)",
        "notes.txt: not in the manifest (added)",
    ]
    (bundle / "timeline.jsonl").unlink()
    os.symlink("/etc/passwd", bundle / "timeline.jsonl")  # a link where a file was: never followed
    assert "timeline.jsonl: not a regular file (a link?)" in store.verify(incident.id)
    # a bundle renamed: its manifest names another incident
    os.rename(bundle, tmp_path / "evidence" / "renamed")
    assert store.verify("renamed")[0] == f"manifest.json: names incident {incident.id!r}, not this one"


def test_the_cli_lists_shows_and_verifies(tmp_path, capsys):
    store, incident, _, _ = arp_bundle(tmp_path)
    evidence = ["--evidence", str(tmp_path / "evidence")]
    capsys.readouterr()
    assert main(["incidents", "list", *evidence]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{incident.id}  arp_spoof  vm1  first seen ") and "0.012 s  held" in out
    assert main(["incidents", "list", *evidence, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["incidents"]
    assert [r["id"] for r in rows] == [incident.id] and rows[0]["files"] == 8
    assert main(["incidents", "show", incident.id, *evidence]) == 0
    out = capsys.readouterr().out
    assert "release:   vmsentry release vm1" in out and "action  method=nft" in out
    assert main(["incidents", "show", incident.id, *evidence, "--format", "json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alerts"][0]["type"] == "arp_spoof" and len(shown["timeline"]) == 3
    assert main(["incidents", "verify", incident.id, *evidence]) == 0
    assert "intact (8 files)" in capsys.readouterr().out
    (tmp_path / "evidence" / incident.id / "alerts.jsonl").write_text("{}\n")
    assert main(["incidents", "verify", incident.id, *evidence]) == 1
    assert capsys.readouterr().err.startswith(f"vmsentry: {incident.id}: alerts.jsonl: changed (size 3, ")
    for unknown in ("2026-01-01T000000Z-x-y-0000", "../" + incident.id, "/etc"):
        assert main(["incidents", "show", unknown, *evidence]) == 3
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["incidents", "list", "--evidence", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err == f"vmsentry: evidence {tmp_path / 'none'}: no such folder\n"
    assert main(["incidents"]) == 3


def test_hostile_names_make_safe_ids_and_links_are_refused(tmp_path):
    alert = detect(ARPSPOOF, tmp_path)[0]
    store = IncidentStore(str(tmp_path / "evidence"))
    incident = store.open(alert, "../../" + EVIL, {}, ("../../etc/passwd", "x"))
    assert "/" not in incident.id and re.fullmatch(r"[A-Za-z0-9._-]+", incident.id)
    assert (tmp_path / "evidence" / incident.id / "config" / "etc_passwd").is_file()
    assert store.verify(incident.id) == []
    # the store folder is a link: refused, nothing written through it
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(IncidentError, match="symbolic link"):
        IncidentStore(str(tmp_path / "link")).open(alert, "vm1", {})
    assert list((tmp_path / "elsewhere").iterdir()) == []
    # a bundle replaced by a link to another folder: not read
    shutil.move(tmp_path / "evidence" / incident.id, tmp_path / "moved")
    os.symlink(tmp_path / "moved", tmp_path / "evidence" / incident.id)
    with pytest.raises(IncidentError, match="symbolic link"):
        store.verify(incident.id)
    assert incident.id not in store.ids()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs it)")
def test_the_report_reads_in_chromium_and_a_hostile_name_stays_text(tmp_path):
    store, incident, _, _ = arp_bundle(tmp_path, vm=EVIL)
    page = tmp_path / "evidence" / incident.id / "report.html"
    html = page.read_text()
    assert "<script" not in html and "Content-Security-Policy" in html and "\x1b" not in html
    res = subprocess.run([CHROMIUM, *FLAGS, "--dump-dom", f"file://{page}"], capture_output=True, text=True, timeout=90)
    assert res.returncode == 0, res.stderr[-2000:]
    dom = res.stdout
    assert "<script" not in dom  # the name never became an element
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "\\x1b[31mred" in dom and "\\nline2" in dom
    title = re.search(r'<h1 id="title">(.*?)</h1>', dom, re.S)[1]
    assert title.startswith("arp_spoof by &lt;script&gt;")
    for section in ("what", "who", "evidence", "done", "release"):
        assert f'id="{section}"' in dom
    assert re.search(r'<pre id="release-command">vmsentry release \'&lt;script&gt;alert\(1\)&lt;/script&gt;', dom)
    assert "Response time" in dom and "0.012 s" in dom
    assert re.search(r"capture\.pcap</code>, \d+ bytes", dom)


# --- a full disk (a real one: a small tmpfs) ------------------------------------------------------------
@pytest.mark.lab
def test_a_full_disk_is_one_line_and_leaves_every_bundle_whole(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], check=True)
    try:
        alert = detect(ARPSPOOF, tmp_path)[0]
        store = IncidentStore(str(mount))
        recent = lab_recent()
        feed(recent, NMAP)
        opened, errors = [], []
        for _ in range(200):
            try:
                opened.append(store.open(alert, "vm1", {"pad": "x" * 2000}))
            except IncidentError as exc:
                errors.append(str(exc))
                break
        assert opened and errors and "\n" not in errors[0] and "No space left on device" in errors[0]
        assert not [p.name for p in mount.iterdir() if p.name.startswith(".")]  # no half-built bundle
        # a later addition that does not fit: an error, and the bundle stays as it was
        frames = recent.frames({"vm1"}, {MAC["hostns"]})
        with pytest.raises(IncidentError, match="No space left on device"):
            opened[0].finish(frames)
        assert all(store.verify(i.id) == [] for i in opened)
        assert not list(mount.rglob(".*"))
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_past_max_vms_frames_go_to_the_shared_ring_and_are_still_found_by_mac():
    recent = RecentFrames(max_vms=1)
    recent.set_macs({MAC["vm1"]: "vm1", MAC["vm2"]: "vm2"})
    records = feed(recent, ARPSPOOF)
    assert recent.stats()["refused_vms"] == 1 and list(recent.rings) == ["vm1"]
    vm2 = sorted((r for r in records if MAC["vm2"] in (r[1][:6], r[1][6:12])), key=lambda r: r[0])
    assert recent.frames(set(), {MAC["vm2"]}) == vm2  # from vm1's ring and the shared one, each once
