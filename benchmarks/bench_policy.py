#!/usr/bin/env python3
"""Benchmark for issue 6: segmentation policy compile and apply at scale.

Targets: compile a policy for 1,000 VMs in 50 zones with 200 allow rules in under 1 s; apply it in under
1 s; the ruleset's rule count grows with zones and rules, not with VMs (named sets).

    sudo .venv/bin/python benchmarks/bench_policy.py [--vms 1000] [--zones 50] [--rules 200] [--repeat 5]

Compile = parse YAML + resolve against the inventory + build nft JSON (best of --repeat, one core).
Apply   = one `nft -j -f -` transaction into a throw-away network namespace (vmsentry's nftexec.apply_json),
          and the whole `vmsentry.act.policy.apply.apply()` (br_netfilter check, dry load in a private
          namespace, diff, save of the previous tables, the transaction, read-back).
Rollback = nftexec.restore() of the saved tables.
Needs root for the apply part (network namespaces); prints JSON last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from vmsentry.act.policy import nftexec  # noqa: E402
from vmsentry.act.policy.apply import apply  # noqa: E402
from vmsentry.act.policy.nft import compile_nft  # noqa: E402
from vmsentry.act.policy.resolve import resolve  # noqa: E402
from vmsentry.act.policy.schema import parse_policy  # noqa: E402

from policy_lab import synth  # noqa: E402


def compile_once(n_vms, zones, rules):
    inv = synth.inventory(n_vms)
    text = synth.policy_text(n_vms, zones, rules)
    t = time.perf_counter()
    res = resolve(parse_policy(text, "bench.yaml"), inv)
    rs = compile_nft(res)
    payload = rs.json()
    return time.perf_counter() - t, rs, payload


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--zones", type=int, default=50)
    ap.add_argument("--rules", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    out: dict = {"vms": args.vms, "zones": args.zones, "allow_rules": args.rules}

    times = []
    for _ in range(args.repeat):
        dt, rs, payload = compile_once(args.vms, args.zones, args.rules)
        times.append(dt)
    out["compile_s_best"] = round(min(times), 4)
    out["compile_s_median"] = round(sorted(times)[len(times) // 2], 4)
    out["ruleset"] = rs.stats()
    out["json_bytes"] = len(payload)
    print(
        f"compile {args.vms} VMs / {args.zones} zones / {args.rules} allow rules: best {min(times) * 1000:.0f} ms, "
        f"median {sorted(times)[len(times) // 2] * 1000:.0f} ms -> {rs.stats()}"
    )

    growth = {}
    for n in (100, 1000, 5000):
        _, r, _ = compile_once(n, args.zones, args.rules)
        growth[n] = {"rules": r.rule_count(), "elements": r.element_count()}
    out["growth_by_vms"] = growth
    print(
        "rule count by VM count (same zones and rules): "
        + ", ".join(f"{n} VMs: {g['rules']} rules / {g['elements']} set elements" for n, g in growth.items())
    )
    z = {}
    for zones, rules in ((25, args.rules), (50, args.rules), (50, 2 * args.rules)):
        _, r, _ = compile_once(args.vms, zones, rules)
        z[f"{zones} zones, {rules} rules"] = r.rule_count()
    out["growth_by_zones_rules"] = z
    print("rule count by zones/rules (1000 VMs): " + ", ".join(f"{k}: {v}" for k, v in z.items()))

    if os.geteuid() != 0:
        print("not root: skipping the apply measurements")
        print(json.dumps(out))
        return 0
    ns = f"vsbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        tx = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            nftexec.apply_json(payload, ns)
            tx.append(time.perf_counter() - t)
        out["apply_transaction_s_best"] = round(min(tx), 4)
        out["apply_transaction_s_median"] = round(sorted(tx)[len(tx) // 2], 4)
        nftexec.delete_ours(ns)
        with tempfile.TemporaryDirectory() as sd:
            t = time.perf_counter()
            rep = apply(rs, netns=ns, state_dir=sd, set_sysctl=True)
            full = time.perf_counter() - t
            out["apply_full_s"] = round(full, 4)
            out["apply_full_breakdown"] = {
                "checks_and_dry_load_s": round(rep.seconds_check, 4),
                "transaction_s": round(rep.seconds_apply, 4),
            }
            t = time.perf_counter()
            again = apply(rs, netns=ns, state_dir=sd)
            out["apply_again_noop_s"] = round(time.perf_counter() - t, 4)
            assert not again.changed
            saved = nftexec.our_tables(nftexec.list_ruleset(ns, stateless=False))
            nftexec.delete_ours(ns)
            t = time.perf_counter()
            nftexec.restore(saved, ns)
            out["restore_s"] = round(time.perf_counter() - t, 4)
            # end to end through the command line: start-up, inventory JSON, compile, checks, transaction
            nftexec.delete_ours(ns)
            inv_file, pol_file = Path(sd) / "inv.json", Path(sd) / "policy.yaml"
            inv_file.write_text(json.dumps(synth.inventory(args.vms).to_dict()))
            pol_file.write_text(synth.policy_text(args.vms, args.zones, args.rules))
            t = time.perf_counter()
            p = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "vmsentry",
                    "policy",
                    "apply",
                    str(pol_file),
                    "--inventory",
                    str(inv_file),
                    "--netns",
                    ns,
                    "--state-dir",
                    str(Path(sd) / "cli"),
                ],
                capture_output=True,
                text=True,
            )
            out["cli_apply_s"] = round(time.perf_counter() - t, 4)
            assert p.returncode == 0, p.stderr
        print(
            f"apply (one nft -j -f - transaction): best {min(tx) * 1000:.0f} ms, median "
            f"{sorted(tx)[len(tx) // 2] * 1000:.0f} ms; whole apply() with checks, dry load, diff and save: "
            f"{full * 1000:.0f} ms (dry load {rep.seconds_check * 1000:.0f} ms, transaction "
            f"{rep.seconds_apply * 1000:.0f} ms); re-apply (no change) {out['apply_again_noop_s'] * 1000:.0f} ms; "
            f"rollback restore {out['restore_s'] * 1000:.0f} ms; `vmsentry policy apply` end to end "
            f"{out['cli_apply_s'] * 1000:.0f} ms"
        )
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
