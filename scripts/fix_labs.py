#!/usr/bin/env python3
"""The example labs fixed for real: for each lab, on a COPY in a temporary folder,
scan -> count failing -> `vmsentry fix --format patch` applied with `patch -p1` -> `vmsentry fix --format sh`
run against a temporary ROOT holding the lab's host files (in a private network namespace, `unshare --net`,
so the sysctls it sets are not this machine's) -> re-scan -> count failing. Prints one table row per lab
(failing before, fixes, unfixable, failing after, new findings after: must be 0), then `vmsentry cost` of the
finance lab.

The lab host is a facts snapshot (host/host-facts.json, taken before the fix): what a reboot and a libvirtd
restart would show afterwards is written into the copy's snapshot, no more: the sysctls the script persisted
in ROOT/etc/sysctl.d/90-vmsentry.conf (loaded at boot) and libvirt's plain TCP listener (16509) gone once
listen_tcp = 0 is in libvirtd.conf. The snapshot's parsed qemu.conf/libvirtd.conf are dropped so the scan reads
host/*.conf, the files the fix edits. Needs root (unshare --net).

    sudo PYTHONPATH=src python3 scripts/fix_labs.py [LAB...]     # default: examples/lab and both incident labs
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABS = ("examples/lab", "examples/incident-2022-finance", "examples/incident-2023-hospital")
ENV = {**os.environ, "PYTHONPATH": os.path.join(REPO, "src"), "LC_ALL": "C"}
LIBVIRT_TCP = 16509
COLUMNS = ("lab", "failing before", "fixes", "unfixable", "failing after", "new after")


def vmsentry(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vmsentry", *args],
        capture_output=True,
        text=True,
        env=env or ENV,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def failing(path: str) -> set[tuple]:
    """The failing findings as (rule, asset, key, file name): a fix moves line numbers, not findings."""
    r = vmsentry("scan", path, "--format", "json", "--fail-on", "none")
    if r.returncode != 0:
        raise SystemExit(f"fix_labs: scan of {path} failed: {r.stderr.strip()}")
    return {
        (f["rule_id"], f["asset"], f["evidence"].get("key"), os.path.basename(f["evidence"].get("file") or ""))
        for f in json.loads(r.stdout)["findings"]
        if f["status"] == "fail"
    }


def facts_file(copy: str) -> str:
    return os.path.join(copy, "host", "host-facts.json")


def edit_snapshot(copy: str, change) -> None:
    path = facts_file(copy)
    if not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    for host in data["hosts"]:
        change(host["facts"])
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def read_conf_files(facts: dict) -> None:
    for key in ("qemu_conf", "libvirtd_conf"):
        facts.pop(key, None)


def persisted_sysctls(root: str) -> dict[str, str]:
    path = os.path.join(root, "etc", "sysctl.d", "90-vmsentry.conf")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        pairs = (line.split("=", 1) for line in handle if "=" in line and not line.startswith("#"))
        return {k.strip(): v.strip() for k, v in pairs}


def run(cmd: list[str], cwd: str | None = None, env: dict | None = None, stdin: str | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=env or ENV, input=stdin, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"fix_labs: {' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r.stdout


def fix_lab(lab: str, work: str) -> dict:
    copy = os.path.join(work, os.path.basename(lab.rstrip("/")))
    shutil.copytree(os.path.join(REPO, lab), copy)
    edit_snapshot(copy, read_conf_files)
    before = failing(copy)
    plan = json.loads(vmsentry("fix", copy, "--format", "json").stdout)
    patch = vmsentry("fix", copy, "--format", "patch").stdout
    script = os.path.join(work, "fix.sh")
    made = vmsentry("fix", copy, "--format", "sh", "-o", script)  # its generated secrets go to stderr, not here
    if made.returncode != 0:
        raise SystemExit(f"fix_labs: fix of {lab} failed: {made.stderr.strip()}")
    if "\n--- a/" in patch:
        run(["patch", "-p1", "--batch", "--forward"], cwd=copy, stdin=patch)
    # the host files the script edits, under ROOT as they sit on a host; the sysctls in a new namespace
    root = os.path.join(work, "root")
    os.makedirs(os.path.join(root, "etc", "libvirt"))
    for name in ("qemu.conf", "libvirtd.conf"):
        if os.path.exists(os.path.join(copy, "host", name)):
            shutil.copy(os.path.join(copy, "host", name), os.path.join(root, "etc", "libvirt", name))
    env = {**ENV, "ROOT": root, "VIRSH": "false"}  # the domain and network edits are the patch's
    # twice in one namespace: the second run must change nothing
    both = run(["unshare", "--net", "sh", "-c", 'sh "$0" && echo "=== second run" && sh "$0"', script], env=env)
    out = both.split("=== second run", 1)[1]
    if "vmsentry fix: nothing to change" not in out:
        raise SystemExit(f"fix_labs: {lab}: a second run of the script still changed something:\n{out}")
    for name in ("qemu.conf", "libvirtd.conf"):
        if os.path.exists(os.path.join(root, "etc", "libvirt", name)):
            shutil.copy(os.path.join(root, "etc", "libvirt", name), os.path.join(copy, "host", name))
    booted = persisted_sysctls(root)

    def after_reboot(facts: dict) -> None:
        facts.get("sysctl", {}).update({k: v for k, v in booted.items() if k in facts.get("sysctl", {})})
        if any(f["rule_id"] == "VMS-LVD-019" for f in plan["fixes"]):
            facts["listening"] = [s for s in facts.get("listening") or [] if s.get("port") != LIBVIRT_TCP]

    edit_snapshot(copy, after_reboot)
    after = failing(copy)
    return {
        "lab": lab,
        "failing before": len(before),
        "fixes": len(plan["fixes"]),
        "unfixable": len(plan["unfixable"]),
        "failing after": len(after),
        "new after": len(after - before),
        "new": sorted(after - before),
    }


def table(rows: list[dict]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
    line = "| " + " | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(r[c]).ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, rule, *body])


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("fix_labs: needs root (unshare --net keeps the script's sysctls off this machine)", file=sys.stderr)
        return 3
    labs = argv or list(LABS)
    rows = []
    for lab in labs:
        with tempfile.TemporaryDirectory(prefix="vmsentry-fix-labs-") as work:
            rows.append(fix_lab(lab, work))
    print(table(rows))
    for row in rows:
        for new in row["new"]:
            print(f"new after the fix in {row['lab']}: {new}")
    finance = "examples/incident-2022-finance"
    if finance in labs:
        path = os.path.join(REPO, finance)
        cost = vmsentry("cost", path, "--options", os.path.join(path, "cost-options.yaml"), "--format", "text")
        print(f"\nvmsentry cost {finance} --options {finance}/cost-options.yaml\n")
        ranking = cost.stdout.split("\n1. ", 1)[0]  # the ranking; the walk-through of each option follows it
        print(ranking.rstrip())
    return 1 if any(r["new after"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
