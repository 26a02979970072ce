#!/usr/bin/env python3
"""Benchmark for issue 3: audit of 10,000 mixed VMware ``.vmx``, VirtualBox ``.vbox`` and Proxmox VE
``VMID.conf`` files on one core (target >= 2,000 VMs/s).

Builds benchmarks/.data/platforms-N/ from the real corpus (../shared/corpus/vmware-vmx, virtualbox,
proxmox) plus the test fixtures (tests/fixtures/proxmox/lab, tests/fixtures/vmware, tests/fixtures/virtualbox
when present), replicated round-robin with new names and ids until there are N VM files. The Proxmox
files sit in an /etc/pve-like tree with a cluster.fw and a VMID.fw for every tenth VM, so the link step
is timed too. Only platforms whose file adapter is registered are included (the run says which).
Timing and peak RSS come from ``bench_scan.best_of``: the best of --runs (default 3) runs of
``vmsentry scan DIR --format json`` pinned to CPU 0 with taskset.

    python benchmarks/bench_platforms.py [--vms 10000] [--shared ../shared]
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scan import REPO, best_of, scan_arguments

FIREWALL_EVERY = 10


def _registered() -> set[str]:
    sys.path.insert(0, str(REPO / "src"))
    from vmsentry.collect import FILE_ADAPTERS

    return set(FILE_ADAPTERS)


def _templates(shared: Path) -> dict[str, list[str]]:
    registered = _registered()
    out: dict[str, list[str]] = {}
    if "vmsentry.collect.vmware_vmx" in registered:
        files = sorted((shared / "corpus" / "vmware-vmx").glob("*.vmx")) + sorted(
            (REPO / "tests" / "fixtures" / "vmware").rglob("*.vmx")
        )
        out["vmx"] = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    if "vmsentry.collect.virtualbox" in registered:
        files = sorted((shared / "corpus" / "virtualbox").glob("*.vbox")) + sorted(
            (REPO / "tests" / "fixtures" / "virtualbox").rglob("*.vbox")
        )
        out["vbox"] = [p.read_text(encoding="utf-8", errors="replace") for p in files if b"<Machine " in p.read_bytes()]
    if "vmsentry.collect.proxmox" in registered:
        files = sorted((shared / "corpus" / "proxmox").glob("*.conf")) + sorted(
            (REPO / "tests" / "fixtures" / "proxmox").rglob("*.conf")
        )
        out["conf"] = [p.read_text(encoding="utf-8", errors="replace") for p in files]
    return {k: v for k, v in out.items() if v}


def _vmx(text: str, i: int) -> str:
    name = f'displayName = "bench-{i:05d}"'
    text = (
        re.sub(r"(?im)^displayName\s*=.*$", name, text, count=1)
        if re.search(r"(?im)^displayName\s*=", text)
        else name + "\n" + text
    )
    return re.sub(r"(?im)^uuid\.bios\s*=.*$", f'uuid.bios = "{uuid.UUID(int=i).hex}"', text, count=1)


def _vbox(text: str, i: int) -> str:
    text = re.sub(r'(<Machine\b[^>]*?\bname=")[^"]*(")', rf"\g<1>bench-{i:05d}\g<2>", text, count=1)
    return re.sub(r'(<Machine\b[^>]*?\buuid="\{)[^}]*(\}")', rf"\g<1>{uuid.UUID(int=i)}\g<2>", text, count=1)


def _conf(text: str, i: int) -> str:
    text = re.sub(r"(?m)^name:.*$", f"name: bench-{i:05d}", text)
    if not re.search(r"(?m)^name:", text):
        text = f"name: bench-{i:05d}\n" + text
    return text


def build_corpus(shared: Path, target: Path, count: int) -> dict[str, int]:
    templates = _templates(shared)
    kinds = sorted(templates)
    marker = target / f".built-{count}-{'-'.join(kinds)}"
    counts = {k: len(range(n, count, len(kinds))) for n, k in enumerate(kinds)}
    if marker.exists():
        return counts
    shutil.rmtree(target, ignore_errors=True)
    (target / "vmware").mkdir(parents=True)
    (target / "virtualbox").mkdir()
    pve = target / "etc" / "pve"
    (pve / "qemu-server").mkdir(parents=True)
    (pve / "firewall").mkdir()
    (pve / "firewall" / "cluster.fw").write_text("[OPTIONS]\nenable: 1\npolicy_in: DROP\n", encoding="utf-8")
    seen = dict.fromkeys(kinds, 0)
    for i in range(count):
        kind = kinds[i % len(kinds)]
        tpl = templates[kind][seen[kind] % len(templates[kind])]
        seen[kind] += 1
        if kind == "vmx":
            (target / "vmware" / f"bench-{i:05d}.vmx").write_text(_vmx(tpl, i), encoding="utf-8")
        elif kind == "vbox":
            (target / "virtualbox" / f"bench-{i:05d}.vbox").write_text(_vbox(tpl, i), encoding="utf-8")
        else:
            vmid = 100000 + i
            (pve / "qemu-server" / f"{vmid}.conf").write_text(_conf(tpl, i), encoding="utf-8")
            if seen[kind] % FIREWALL_EVERY == 0:
                (pve / "firewall" / f"{vmid}.fw").write_text(
                    "[OPTIONS]\nenable: 1\nipfilter: 1\n\n[RULES]\nIN SSH(ACCEPT) -i net0 -source 10.0.0.5\n",
                    encoding="utf-8",
                )
    marker.write_text("ok\n")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args = scan_arguments(parser).parse_args()
    data = REPO / "benchmarks" / ".data" / f"platforms-{args.vms}"
    t0 = time.perf_counter()
    counts = build_corpus(args.shared, data, args.vms)
    missing = [
        name
        for name, key in (("VMware .vmx", "vmx"), ("VirtualBox .vbox", "vbox"), ("Proxmox VE", "conf"))
        if key not in counts
    ]
    print(
        f"corpus: {args.vms} VM files in {data} ({time.perf_counter() - t0:.1f} s to build): "
        + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    )
    if missing:
        print(f"note: no registered adapter (or no template) for {', '.join(missing)}: not included")
    result, runs = best_of(data, data.parent / f"scan-platforms-{args.vms}.json", args.runs)
    vms_per_s = result["vms"] / result["seconds"]
    print(
        f"scan: {result['vms']} VMs in {result['seconds']} s wall (best of {len(runs)}; {result['cpu_seconds']} s "
        f"CPU) on one core = {vms_per_s:,.0f} VMs/s (target >= 2,000); peak RSS "
        f"{max(r['peak_rss_mb'] for r in runs)} MB; {result['findings']} findings reported; exit {result['exit']}"
    )
    ok = vms_per_s >= 2000
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
