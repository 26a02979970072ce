"""The ``vmsentry`` command. Only argparse is imported up front so ``vmsentry --help`` starts fast;
each verb imports its stages when it runs."""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from vmsentry.model.text import printable

FORMATS_SCAN = ("text", "json", "sarif", "junit")
SEVERITY_CHOICES = ("critical", "high", "medium", "low", "info", "none")
EXIT_USAGE = 3


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 3 (CONTRACTS.md), not argparse's 2, which means 'incomplete input'."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"vmsentry: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="VM/network definition file or folder, or a saved inventory JSON")
    p.add_argument("--libvirt", action="append", default=[], metavar="URI",
                   help="read a live libvirt connection (test:///default, qemu:///system, qemu+ssh://...)")
    p.add_argument("--host", action="store_true",
                   help="collect this Linux host's facts (sysctls, bridges, sockets, firewall, IOMMU, ...)")


def build_parser() -> argparse.ArgumentParser:
    from vmsentry import __version__
    parser = _Parser(prog="vmsentry", description="Can something inside a VM reach my host, my other VMs or "
                     "my LAN? vmsentry discovers how every VM is connected, audits it and says what to change.")
    parser.add_argument("--version", action="version", version=f"vmsentry {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    scan = sub.add_parser("scan", help="discover and audit VMs, networks and the host",
                          description="Discover and audit. Exit 0: no failing finding at or above --fail-on; "
                          "1: some; 2: some input could not be read (wins over 1); 3: usage or fatal error.")
    _add_inputs(scan)
    scan.add_argument("--format", choices=FORMATS_SCAN, default=None,
                      help="output format (default: text on a terminal, json otherwise)")
    scan.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")
    scan.add_argument("--fail-on", choices=SEVERITY_CHOICES, default="high",
                      help="lowest severity of a failing finding that makes the exit code 1 (default high)")
    scan.add_argument("--waivers", metavar="FILE", help="YAML waiver file (rule, asset, owner, reason, expires)")
    scan.add_argument("--baseline", metavar="FILE", help="previous `scan --format json`: report only new and fixed")
    scan.add_argument("--platform", action="append", default=[], metavar="P",
                      help="only rules for this platform (repeatable)")
    scan.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    inv = sub.add_parser("inventory", help="print the normalised inventory as JSON")
    _add_inputs(inv)
    inv.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")

    rules = sub.add_parser("rules", help="list the rule catalogue")
    rules.add_argument("--platform", metavar="P", help="only rules for this platform")
    rules.add_argument("--format", choices=("text", "json", "md", "html"), default="text")
    rules.add_argument("--matrix", action="store_true",
                       help="platform comparison table: each control on KVM/libvirt, VMware, Hyper-V, VirtualBox "
                       "and Proxmox (--format md|html|json; text = md)")

    paths = sub.add_parser("paths", help="attack paths over the exposure graph, and the smallest fix",
                           description="Attack paths from a compromised VM (or the outside) to the host, other VMs "
                           "and the LAN, ranked by score (0-10), with the smallest set of changes found that cuts "
                           "them. Exit 0; 2: some input could not be read; 3: usage or fatal error.")
    _add_inputs(paths)
    paths.add_argument("--from", dest="source", default="any-vm", metavar="SPEC",
                       help="vm:NAME, any-vm (default), external or any")
    paths.add_argument("--to", dest="target", default="host", metavar="SPEC",
                       help="host (default), vm:NAME, any-vm, lan or any")
    paths.add_argument("--format", choices=("text", "json", "html"), default=None,
                       help="output format (default: text on a terminal, json otherwise)")
    paths.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")
    paths.add_argument("--vuln-db", metavar="FILE", help="hypervisor vulnerability table (vulns.yaml format)")
    paths.add_argument("--what-if", action="append", default=[], metavar="CHANGE",
                       help="re-run with this change applied: a change id printed by `vmsentry paths`, or a rule id "
                       "(repeatable)")
    paths.add_argument("--limit", type=int, default=20, metavar="N", help="paths shown in text/html (default 20)")

    _add_detect_parser(sub)
    from vmsentry.act.policy.command import add_parser as _add_policy_parser   # argparse only; work is lazy
    _add_policy_parser(sub, _Parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.verb:
        parser.print_help()
        return EXIT_USAGE
    # A scan builds millions of small acyclic objects (elements, findings, dicts): the cyclic garbage
    # collector's passes over them cost about 40 % of a 10,000-VM scan and free nothing. Reference
    # counting still frees everything; this process is short-lived.
    gc.disable()
    try:
        if args.verb == "scan":
            return _scan(args)
        if args.verb == "inventory":
            return _inventory(args)
        if args.verb == "rules":
            return _rules(args)
        if args.verb == "paths":
            return _paths(args)
        if args.verb == "detect":
            return _detect(args)
        if args.verb == "policy":
            from vmsentry.act.policy.command import run as _policy
            return _policy(args)
    except KeyboardInterrupt:
        print("vmsentry: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except FatalError as exc:
        print(f"vmsentry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE


class FatalError(Exception):
    pass


def _collect(args: argparse.Namespace, progress: bool):
    from vmsentry.collect import collect
    if not (args.paths or args.libvirt or args.host):
        raise FatalError("nothing to read: give a PATH, --libvirt URI or --host")
    for path in args.paths:
        if not os.path.exists(path) and not os.path.islink(path):
            raise FatalError(f"{path}: no such file or folder")
    bar = None
    if progress and sys.stderr.isatty():
        from vmsentry.collect import iter_files
        bar = _ProgressBar(sum(1 for _ in iter_files(args.paths)))   # a second walk: ~30 ms per 10,000 files
    inv, skipped = collect(args.paths, args.libvirt, args.host, progress=bar.update if bar else None)
    if bar:
        bar.close()
    for err in inv.errors:
        print(f"vmsentry: {printable(err.line())}", file=sys.stderr)
    return inv, skipped


def _inventory(args: argparse.Namespace) -> int:
    import json
    inv, _ = _collect(args, progress=False)
    _emit(json.dumps(inv.to_dict(), indent=2, sort_keys=False) + "\n", args.output)
    return 2 if inv.errors else 0


def _scan(args: argparse.Namespace) -> int:
    from datetime import date

    from vmsentry import __version__
    from vmsentry.analyse.engine import evaluate
    from vmsentry.analyse.rules import load_catalogue
    from vmsentry.report import ScanResult, exit_code, render

    started = time.perf_counter()
    notes: list[str] = []
    waivers = None
    if args.waivers:
        from vmsentry.analyse.waivers import WaiverError, load_waivers
        try:
            waivers = load_waivers(args.waivers)
        except WaiverError as exc:
            raise FatalError(str(exc)) from None
    previous = None
    if args.baseline:
        from vmsentry.analyse.baseline import BaselineError, load_baseline
        try:
            previous = load_baseline(args.baseline)
        except BaselineError as exc:
            raise FatalError(str(exc)) from None
    inv, skipped = _collect(args, progress=not args.no_progress)
    rules = load_catalogue()
    if args.platform:
        rules = tuple(r for r in rules if "all" in r.platforms or set(r.platforms) & set(args.platform))
    not_applicable: dict[str, int] = {}
    findings = evaluate(inv, rules, not_applicable_counts=not_applicable)   # each report sorts for itself
    if waivers is not None:
        from vmsentry.analyse.waivers import apply_waivers
        notes += apply_waivers(findings, waivers, date.today())
    baseline = None
    if previous is not None:
        from vmsentry.analyse.baseline import compare
        baseline = compare(findings, previous)
        baseline["file"] = args.baseline
    for note in notes:
        print(f"vmsentry: {note}", file=sys.stderr)
    fmt = args.format or ("text" if (args.output is None and sys.stdout.isatty()) else "json")
    result = ScanResult(findings=findings, inventory=inv, rules=rules, skipped_files=skipped,
                        seconds=time.perf_counter() - started, tool_version=__version__, fail_on=args.fail_on,
                        baseline=baseline, notes=notes, not_applicable=sum(not_applicable.values()))
    _emit(render(fmt, result, color=(fmt == "text" and args.output is None and sys.stdout.isatty())), args.output)
    return exit_code(result)


def _paths(args: argparse.Namespace) -> int:
    from vmsentry.analyse.graph import SpecError, VulnDBError, analyse, load_vulns
    from vmsentry.analyse.graph.build import build_graph

    if args.limit < 1:
        raise FatalError("--limit must be at least 1")
    try:
        vulns = load_vulns(args.vuln_db)
    except VulnDBError as exc:
        raise FatalError(str(exc)) from None
    inv, _ = _collect(args, progress=False)
    graph = build_graph(inv, args.vuln_db, vulns=vulns)
    try:
        result = analyse(inv, args.source, args.target, args.vuln_db, args.what_if, graph=graph)
    except SpecError as exc:
        raise FatalError(str(exc)) from None
    fmt = args.format or ("text" if (args.output is None and sys.stdout.isatty()) else "json")
    if fmt == "json":
        from vmsentry.report.paths import render_json
        text = render_json(result)
    elif fmt == "html":
        from vmsentry.report.paths_html import render_html
        text = render_html(result, limit=max(args.limit, 50))
    else:
        from vmsentry.report.paths import render_text
        text = render_text(result, limit=args.limit)
    _emit(text, args.output)
    return 2 if inv.errors else 0


def _rules(args: argparse.Namespace) -> int:
    import json

    from vmsentry.analyse.rules import load_catalogue
    rules = [r for r in load_catalogue() if not args.platform or args.platform in r.platforms or "all" in r.platforms]
    if args.matrix:
        from vmsentry.report.matrix import render
        _emit(render(args.format, rules), None)
        return 0
    if args.format == "html":
        from html import escape
        rows = "".join(f"<tr><td>{escape(r.id)}</td><td>{escape(r.severity)}</td><td>{escape(r.category)}</td>"
                       f"<td>{escape(', '.join(r.platforms))}</td><td>{escape(r.title)}</td></tr>" for r in rules)
        _emit("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>vmsentry rules</title></head>"
              "<body><table><tr><th>id</th><th>severity</th><th>category</th><th>platforms</th><th>title</th></tr>"
              f"{rows}</table></body></html>\n", None)
        return 0
    if args.format == "json":
        _emit(json.dumps({"rules": [r.to_dict() for r in rules]}, indent=2) + "\n", None)
    elif args.format == "md":
        lines = ["| id | severity | category | platforms | title |", "|---|---|---|---|---|"]
        lines += [f"| {r.id} | {r.severity} | {r.category} | {', '.join(r.platforms)} | {r.title} |" for r in rules]
        _emit("\n".join(lines) + "\n", None)
    else:
        width = max((len(r.id) for r in rules), default=10)
        out = [f"{r.id:<{width}}  {r.severity:<8}  {r.category:<18}  {r.title}" for r in rules]
        out.append(f"{len(rules)} rules")
        _emit("\n".join(out) + "\n", None)
    return 0


def _emit(text: str, path: str | None) -> None:
    from vmsentry.report.output import OutputError, write_output
    try:
        write_output(text, path)
    except OutputError as exc:
        raise FatalError(str(exc)) from None




class _ProgressBar:
    """A one-line progress bar on stderr for long scans (shown after the first 200 files)."""

    WIDTH = 30

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.shown = False
        self.last = 0.0

    def update(self, count: int, path: str) -> None:
        now = time.monotonic()
        if count < 200 or now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        done = min(count * self.WIDTH // self.total, self.WIDTH)
        sys.stderr.write(f"\rvmsentry: [{'#' * done}{'.' * (self.WIDTH - done)}] {count}/{self.total} "
                         f"{printable(os.path.basename(path))[:30]:<30}")
        sys.stderr.flush()

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


# --- vmsentry detect: traffic detectors (collect.traffic -> analyse.detectors -> report.alerts) --------
def _add_detect_parser(sub) -> None:
    det = sub.add_parser(
        "detect", help="find ARP spoofing, floods, rogue DHCP/RA, scans, VM-to-host and VM-to-VM access in traffic",
        description="Traffic detectors over capture files, a live bridge, Zeek logs or Suricata eve.json. Exit 0: no "
        "alert; 1: alerts; 2: some input could not be read, or only in part (wins over 1); 3: usage or fatal error.")
    det.add_argument("pcaps", nargs="*", metavar="PCAP", help="pcap or pcapng file, gzip'd or not ('-': stdin)")
    det.add_argument("-i", "--interface", metavar="IF", help="capture live from IF (a bridge such as virbr0; root)")
    det.add_argument("--zeek", action="append", default=[], metavar="PATH",
                     help="Zeek conn/dns/dhcp log (TSV or JSON), or a folder of them (repeatable)")
    det.add_argument("--eve", action="append", default=[], metavar="FILE", help="Suricata eve.json (repeatable)")
    det.add_argument("--inventory", action="append", default=[], metavar="FILE|URI",
                     help="saved `vmsentry inventory` JSON, VM/network definitions, or a libvirt URI (repeatable): "
                     "the true MAC/IP of each VM and host, the sanctioned DHCP and DNS servers")
    det.add_argument("--format", choices=("text", "json", "jsonl"), default=None,
                     help="default: jsonl with --follow, else text on a terminal and json otherwise")
    det.add_argument("--follow", action="store_true",
                     help="print each alert as a JSON line when it is raised; SIGINT/SIGTERM stop cleanly")
    det.add_argument("--duration", type=float, metavar="SECONDS", help="live: stop after this long")
    det.add_argument("--count", type=int, metavar="N", help="live: stop after N packets")
    det.add_argument("--tune", action="append", default=[], metavar="DETECTOR.NAME=VALUE",
                     help="change a tunable (see docs/detection.md; repeatable)")
    det.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")


def _detect(args: argparse.Namespace) -> int:
    import signal

    from vmsentry.analyse.detectors import Engine
    from vmsentry.analyse.detectors.tunables import TunableError, with_overrides
    from vmsentry.collect.traffic import BadTrafficInput, TrafficStream, open_inputs
    from vmsentry.collect.traffic.live import LiveError, LiveReader
    from vmsentry.report import alerts as report

    if not (args.pcaps or args.interface or args.zeek or args.eve):
        raise FatalError("nothing to read: give a PCAP, --interface, --zeek or --eve")
    try:
        tunables = with_overrides(args.tune)
    except TunableError as exc:
        raise FatalError(str(exc)) from None
    truth = _detect_truth(args.inventory, args.interface)
    readers, unreadable = [], 0
    for path in [*args.pcaps, *args.zeek, *args.eve]:
        try:
            readers.extend(open_inputs(path))
        except BadTrafficInput as exc:
            print(f"vmsentry: {printable(str(exc))}", file=sys.stderr)
            unreadable += 1
    stopping: list[int] = []
    if args.interface:
        gc.enable()                          # a watcher runs for long: let the collector work
        readers.append(LiveReader(args.interface, stop=lambda: bool(stopping), duration=args.duration,
                                  max_packets=args.count,
                                  on_ready=lambda: print(f"vmsentry: watching {args.interface}", file=sys.stderr,
                                                         flush=True)))
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda signum, frame: stopping.append(signum))
    fmt = args.format or ("jsonl" if args.follow else "text" if args.output is None and sys.stdout.isatty() else "json")

    def announce(alert) -> None:
        sys.stdout.write(report.alert_line(alert))
        sys.stdout.flush()
        alert.printed_count = alert.count
    engine = Engine(truth, tunables, on_raise=announce if fmt == "jsonl" else None)
    stream = TrafficStream()
    try:
        for batch in stream.batches(readers):
            engine.feed(batch)
    except LiveError as exc:
        raise FatalError(str(exc)) from None
    alerts = engine.finish()
    stream.stats.finish()
    stats = stream.stats.to_dict()
    stats["evicted"].update(engine.evicted)
    stats["inventory"] = args.inventory if truth.known else []
    if fmt == "jsonl":
        for alert in alerts:
            if alert.count != alert.printed_count:
                sys.stdout.write(report.alert_line(alert, "final"))
        sys.stdout.write(report.stats_line(stats))
        sys.stdout.flush()
    else:
        _emit((report.render_json if fmt == "json" else report.render_text)(alerts, stats), args.output)
    damaged = sum(n for kind, n in stats["problems"].items() if kind.startswith(report.DAMAGE))
    for line in report.damage_lines(stats):
        print(f"vmsentry: {printable(line)}", file=sys.stderr)
    return 2 if unreadable or damaged else 1 if alerts else 0


def _detect_truth(specs: list[str], interface: str | None):
    from vmsentry.analyse.detectors import Truth
    if not specs:
        return Truth()
    from vmsentry.collect import collect
    uris = [s for s in specs if "://" in s or s.startswith(("qemu:", "test:", "xen:", "lxc:"))]
    paths = [s for s in specs if s not in uris]
    for path in paths:
        if not os.path.exists(path):
            raise FatalError(f"{path}: no such file or folder")
    inv, _ = collect(paths, uris)
    for err in inv.errors:
        print(f"vmsentry: {printable(err.line())}", file=sys.stderr)
    if not (inv.vms or inv.networks):
        raise FatalError(f"{', '.join(specs)}: no VM or network found to take the truth from")
    return Truth.from_inventory(inv, bridge=interface)
