#!/usr/bin/env python3
"""Coverage-guided fuzzing (atheris, libFuzzer's engine) of every parser vmsentry runs on hostile input, in
process, seeded from the real corpus (../shared/corpus, ../shared/pcaps, tests/fixtures). Not in CI.

    pip install -e '.[fuzz]'
    python benchmarks/fuzz.py vmx --seconds 600
    python benchmarks/fuzz.py --all --seconds 600 --jobs 6      # six parsers at once, each niced
    python benchmarks/fuzz.py --list

The targets are tests/fuzz_targets.py's (the Hypothesis suite uses the same). A crash is any exception
other than the parser's documented bad-input errors, an input that runs over the per-input time limit, or
one that needs more memory than the limit (both from fuzz_targets; libFuzzer's own -timeout and
-rss_limit_mb stay behind them as a backstop, and a run that they end is restarted on the same corpus).
Instrumented Python runs several times slower, so a hang or memory site is counted only when its input
still breaks the test suite's limits uninstrumented (``--check``); the others are listed apart.
Each distinct crash site (exception type and innermost vmsentry frame) keeps its first input in
benchmarks/.data/fuzz/<parser>/crash-*; the summary table gives the executions each parser really got
(with several parsers sharing the cores, executions say more than seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / ".data/fuzz"
MAX_LEN = 65536  # bytes per input: the seeds are cut there (a capture's head is still a capture)
TIME_LIMIT = 5.0  # seconds per input (each is at most MAX_LEN; a site found here is checked alone before a fix)
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]


def _folder(parser: str) -> Path:
    return DATA / parser


def _sites_file(parser: str) -> Path:
    return _folder(parser) / "sites.json"


def _load(path: Path, default):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


# --------------------------------------------------------------------------------- the child: one run


def child(parser: str, seconds: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["vmsentry"]):
        import fuzz_targets

        target = fuzz_targets.targets()[parser]
        # import every module the target reaches now, under instrumentation (they are imported lazily)
        for seed in target.seed_files()[:50]:
            try:
                fuzz_targets.bounded(target, seed.read_bytes()[:MAX_LEN])
            except Exception:  # a seed that crashes is found again by the fuzzer
                pass

    folder = _folder(parser)
    sites: dict = _load(_sites_file(parser), {})
    stats_path = folder / "child-stats.json"
    state = {"execs": 0, "last": time.monotonic()}

    def save() -> None:
        stats_path.write_text(json.dumps({"execs": state["execs"]}))
        _sites_file(parser).write_text(json.dumps(sites, indent=1))

    def one_input(data: bytes) -> None:
        state["execs"] += 1
        try:
            fuzz_targets.bounded(target, data, TIME_LIMIT)
        except Exception as exc:  # every other exception is a crash, recorded and passed
            site = fuzz_targets.crash_site(exc)
            entry = sites.get(site)
            if entry is None:
                digest = hashlib.sha1(site.encode()).hexdigest()[:12]
                crash = folder / f"crash-{digest}"
                crash.write_bytes(data)
                entry = sites[site] = {"count": 0, "input": crash.name, "message": str(exc)[:200]}
                print(f"\n== new crash site in {parser}: {site}: {str(exc)[:200]}", file=sys.stderr, flush=True)
                save()
            entry["count"] += 1
        if time.monotonic() - state["last"] > 2:
            state["last"] = time.monotonic()
            save()

    corpus, seeds = folder / "corpus", folder / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds.mkdir(exist_ok=True)
    for seed in target.seed_files():
        (seeds / re.sub(r"[^\w.-]", "_", seed.name)).write_bytes(seed.read_bytes()[:MAX_LEN])
    args = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN}",
        f"-timeout={int(TIME_LIMIT * 6)}",
        "-rss_limit_mb=3072",
        f"-artifact_prefix={folder}/libfuzzer-",
        "-print_final_stats=1",
        str(corpus),
        str(seeds),
    ]
    import atexit

    atexit.register(save)
    atheris.Setup(args, one_input)
    atheris.Fuzz()


def minimise(parser: str, data: bytes, budget: int = 4000) -> bytes:
    """The smallest input found (lines, then byte runs, removed while the same crash site stays) for a
    regression fixture."""
    import fuzz_targets

    target = fuzz_targets.targets()[parser]

    def site(candidate: bytes) -> str | None:
        try:
            fuzz_targets.bounded(target, candidate)
        except Exception as exc:
            return fuzz_targets.crash_site(exc)
        return None

    wanted = site(data)
    if wanted is None:
        raise SystemExit(f"{parser}: this input does not crash")
    for unit in ("lines", "bytes"):
        chunk = max(1, len(data) // 2)
        while chunk >= 1 and budget > 0:
            parts = data.split(b"\n") if unit == "lines" else None
            size = len(parts) if parts is not None else len(data)
            start, changed = 0, False
            while start < size and budget > 0:
                budget -= 1
                if parts is not None:
                    candidate = b"\n".join(parts[:start] + parts[start + chunk :])
                else:
                    candidate = data[:start] + data[start + chunk :]
                if candidate != data and site(candidate) == wanted:
                    data, changed = candidate, True
                    if parts is not None:
                        parts = data.split(b"\n")
                    size = len(parts) if parts is not None else len(data)
                else:
                    start += chunk
            if not changed:
                chunk //= 2
    return data


# ------------------------------------------------------------------------------- the parent: restarts


def run(parser: str, seconds: int, nice: int = 0) -> dict:
    """Fuzz ``parser`` for ``seconds`` of wall clock, restarting the child when libFuzzer ends it early
    (its backstop timeout or memory limit, which count as crashes too). Returns the summary row."""
    folder = _folder(parser)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    execs, restarts, backstops = 0, 0, 0
    log = (folder / "log.txt").open("a")
    while (left := seconds - (time.monotonic() - start)) > 5:
        stats_path = folder / "child-stats.json"
        stats_path.unlink(missing_ok=True)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", parser, "--seconds", str(int(left))]
        if nice:
            cmd = ["nice", "-n", str(nice), *cmd]
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONHASHSEED": "0"})
        execs += _load(stats_path, {}).get("execs", 0)
        if proc.returncode != 0:
            backstops += 1
            restarts += 1
    seconds = round(time.monotonic() - start)
    sites = _load(_sites_file(parser), {})
    # coverage instrumentation makes Python's own loops several times slower: a hang or memory site counts
    # only if its input still runs over the limits of the test suite without instrumentation
    slow_only = {}
    for site, entry in sites.items():
        if site.startswith(("Hang", "OutOfMemory")):
            check = [sys.executable, str(Path(__file__).resolve()), parser, "--check", str(folder / entry["input"])]
            if subprocess.run(check, capture_output=True, text=True).stdout.strip() == "ok":
                slow_only[site] = entry
    sites = {site: entry for site, entry in sites.items() if site not in slow_only}
    artifacts = sorted(p.name for p in folder.glob("libfuzzer-*"))
    return {
        "parser": parser,
        "seconds": seconds,
        "executions": execs,
        "crashes": sum(s["count"] for s in sites.values()) + len(artifacts),
        "sites": len(sites) + len(artifacts),
        "site_list": sorted(sites) + artifacts,
        "slow_only_when_instrumented": sorted(slow_only),
        "restarts": restarts,
    }


def table(rows: list[dict]) -> str:
    out = [f"{'parser':<16} {'seconds':>7} {'executions':>11} {'crashes':>8} {'sites':>6}"]
    for r in rows:
        out.append(f"{r['parser']:<16} {r['seconds']:>7} {r['executions']:>11,} {r['crashes']:>8} {r['sites']:>6}")
        out.extend(f"    {site}" for site in r["site_list"])
        out.extend(f"    (within the limits uninstrumented) {site}" for site in r["slow_only_when_instrumented"])
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parsers", nargs="*", help="parser names (--list)")
    ap.add_argument("--all", action="store_true", help="every parser")
    ap.add_argument("--seconds", type=int, default=600, help="wall clock per parser (default 600)")
    ap.add_argument("--jobs", type=int, default=1, help="parsers fuzzed at once, each under nice (default 1)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--minimise", metavar="FILE", help="shrink a crashing input of the one parser named, to stdout")
    ap.add_argument("--check", metavar="FILE", help="run one input of the parser named, uninstrumented")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.check:  # one input, uninstrumented, with the test suite's limits: "ok" or its crash site
        import fuzz_targets

        try:
            fuzz_targets.bounded(fuzz_targets.targets()[args.parsers[0]], Path(args.check).read_bytes())
        except Exception as exc:
            print(fuzz_targets.crash_site(exc))
            return
        print("ok")
        return
    if args.minimise:
        sys.stdout.buffer.write(minimise(args.parsers[0], Path(args.minimise).read_bytes()))
        return
    if args.child:
        sys.argv = [sys.argv[0]]
        child(args.child, args.seconds)
        return
    import fuzz_targets

    names = list(fuzz_targets.targets())
    if args.list:
        print("\n".join(names))
        return
    chosen = names if args.all else args.parsers
    unknown = [p for p in chosen if p not in names]
    if not chosen or unknown:
        ap.error(f"name parsers ({', '.join(names)}) or --all" + (f"; unknown: {unknown}" if unknown else ""))
    if args.jobs <= 1:
        rows = [run(p, args.seconds) for p in chosen]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(args.jobs) as pool:
            rows = list(pool.map(lambda p: run(p, args.seconds, nice=10), chosen))
    DATA.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (DATA / f"summary-{stamp}.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
