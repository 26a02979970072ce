"""``vmsentry detect``: traffic detectors (collect.traffic -> analyse.detectors -> report.alerts)."""

from __future__ import annotations

import argparse
import gc
import os
import socket
import stat
import sys

from vmsentry.commands.audit import add_audit_option, close_command_audit, open_command_audit
from vmsentry.commands.base import Command, FatalError, reraise_as, seconds, write
from vmsentry.model.text import printable

FORMATS = ("text", "json", "jsonl", "eve", "ecs")


class DetectCommand(Command):
    """Traffic detectors over capture files, a live bridge, Zeek logs or Suricata eve.json.
    With --model (a calibrated behaviour model, `vmsentry baseline train`) it also raises `anomaly` alerts.
    Exit 0: no alert; 1: alerts; 2: some input could not be read, or only in part (wins over 1), or the model
    cannot be used; 3: usage or fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("pcaps", nargs="*", metavar="PCAP", help="pcap or pcapng file, gzip'd or not ('-': stdin)")
        p.add_argument("-i", "--interface", metavar="IF", help="capture live from IF (a bridge such as virbr0; root)")
        p.add_argument(
            "--zeek",
            action="append",
            default=[],
            metavar="PATH",
            help="Zeek conn/dns/dhcp log (TSV or JSON), or a folder of them (repeatable)",
        )
        p.add_argument("--eve", action="append", default=[], metavar="FILE", help="Suricata eve.json (repeatable)")
        p.add_argument(
            "--inventory",
            action="append",
            default=[],
            metavar="FILE|URI",
            help="saved `vmsentry inventory` JSON, VM/network definitions, or a libvirt URI (repeatable): "
            "the true MAC/IP of each VM and host, the sanctioned DHCP and DNS servers",
        )
        p.add_argument(
            "--format",
            choices=FORMATS,
            default=None,
            help="default: jsonl with --follow, else text on a terminal and json otherwise; eve: Suricata eve.json "
            "alert events, ecs: Elastic Common Schema 8.x documents (one JSON object per line)",
        )
        p.add_argument(
            "--syslog",
            metavar="URL",
            help="also send each alert as RFC 5424 syslog with a CEF payload: udp://HOST:PORT, tcp://HOST:PORT, "
            "unix:///dev/log or a socket path",
        )
        p.add_argument(
            "--follow",
            action="store_true",
            help="print each alert as a JSON line when it is raised, reading the input as it grows (like tail -f: "
            "a pipe or FIFO until its writer closes it, the last file until stopped); SIGINT/SIGTERM stop cleanly",
        )
        p.add_argument(
            "--model",
            metavar="MODEL",
            help="a calibrated behaviour model (`vmsentry baseline train --calibrate`): also raise `anomaly` alerts "
            "for VMs whose traffic is unlike their learned baseline",
        )
        p.add_argument("--duration", type=seconds, metavar="SECONDS", help="live: stop after this long")
        p.add_argument("--count", type=int, metavar="N", help="live: stop after N packets")
        p.add_argument(
            "--tune",
            action="append",
            default=[],
            metavar="DETECTOR.NAME=VALUE",
            help="change a tunable (see docs/detection.md; repeatable)",
        )
        p.add_argument(
            "-o",
            "--output",
            metavar="FILE",
            help="write the report here instead of stdout (atomically; with --follow each line is appended and "
            "flushed as it comes)",
        )
        add_audit_option(p, "one entry per alert and one per run (counts, traffic, inputs)")

    def run(self, args: argparse.Namespace) -> int:
        import signal

        from vmsentry.analyse.detectors import Engine
        from vmsentry.analyse.detectors.tunables import TunableError, with_overrides
        from vmsentry.collect.traffic import BadTrafficInput, TrafficStream, open_inputs
        from vmsentry.collect.traffic.live import LiveError
        from vmsentry.collect.traffic.ring import RingReader
        from vmsentry.collect.traffic.tail import Follow
        from vmsentry.report import alerts as report
        from vmsentry.report.output import OutputError

        if not (args.pcaps or args.interface or args.zeek or args.eve):
            raise FatalError("nothing to read: give a PCAP, --interface, --zeek or --eve")
        with reraise_as(FatalError, TunableError):
            tunables = with_overrides(args.tune)
        truth = _truth(args.inventory, args.interface)
        model, model_name = None, ""
        if args.model:
            from vmsentry.commands.baseline import anomaly_stats, load_model

            loaded = load_model(args.model)
            if loaded is None:
                return 2
            model, model_name = loaded
        audit = open_command_audit(args)
        stopping: list[int] = []
        if args.follow or args.interface:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, frame: stopping.append(signum))
        readers, unreadable = [], 0
        paths = [*args.pcaps, *args.zeek, *args.eve]
        for n, path in enumerate(paths):
            try:
                readers.extend(
                    open_inputs(path, _follow(path, n == len(paths) - 1, args, Follow(lambda: bool(stopping))))
                )
            except BadTrafficInput as exc:
                print(f"vmsentry: {printable(str(exc))}", file=sys.stderr)
                unreadable += 1
        if args.interface:
            gc.enable()  # a watcher runs for long: let the collector work
            readers.append(
                RingReader(
                    [args.interface],
                    stop=lambda: bool(stopping),
                    duration=args.duration,
                    max_packets=args.count,
                    on_ready=lambda: print(f"vmsentry: watching {args.interface}", file=sys.stderr, flush=True),
                    on_problem=lambda _, line: print(f"vmsentry: {printable(line)}", file=sys.stderr, flush=True),
                    # quiet input: the behaviour model's last windows are scored without waiting for a frame
                    on_tick=(lambda now: engine.idle(now)) if model is not None else None,
                )
            )
        fmt = args.format or (
            "jsonl" if args.follow else "text" if args.output is None and sys.stdout.isatty() else "json"
        )
        sensor = socket.gethostname()
        # a line format is written as alerts are raised (and grow: "final" lines) to stdout, or with --follow
        # appended to -o; without --follow, -o gets each alert once, atomically, at the end
        writer = None
        if fmt in report.LINE_FORMATS and fmt != "text" and (args.follow or args.output is None):
            with reraise_as(FatalError, OutputError):
                writer = report.AlertWriter(fmt, args.output if args.follow else None, sensor, args.interface)
        syslog = None
        if args.syslog:
            from vmsentry.report.syslog import SyslogError, SyslogSender

            with reraise_as(FatalError, SyslogError):
                syslog = SyslogSender(args.syslog, sensor)

        def announce(alert) -> None:
            if writer is not None:
                writer.write(alert)
            if syslog is not None:
                syslog.send(alert.to_dict(), sensor, args.interface)

        engine = Engine(
            truth, tunables, on_raise=announce if writer or syslog else None, model=model, model_name=model_name
        )
        stream = TrafficStream(flow_limit=tunables["flows"].limit, frame_columns=model is not None)
        try:
            with reraise_as(FatalError, LiveError):
                for batch in stream.batches(readers):
                    engine.feed(batch)
            alerts = engine.finish()
        finally:
            if syslog is not None:
                syslog.close()
        stream.stats.finish()
        stats = stream.stats.to_dict()
        stats["evicted"].update(engine.evicted)
        stats["inventory"] = args.inventory if truth.known else []
        if engine.anomaly is not None:
            stats["anomaly"] = anomaly_stats(engine.anomaly)
        if writer is not None:
            for alert in alerts:
                if alert.count != alert.printed_count:
                    writer.write(alert, "final")
            writer.stats(stats)
            writer.close()
        elif fmt in ("jsonl", "eve", "ecs"):
            lines = report.AlertWriter(fmt, None, sensor, args.interface)
            text = "".join(lines.line(a, "final") for a in alerts)
            write(text + (report.stats_line(stats) if fmt == "jsonl" else ""), args.output)
        else:
            write((report.render_json if fmt == "json" else report.render_text)(alerts, stats), args.output)
        damaged = sum(n for kind, n in stats["problems"].items() if kind.startswith(report.DAMAGE))
        for line in report.damage_lines(stats):
            print(f"vmsentry: {printable(line)}", file=sys.stderr)
        code = 2 if unreadable or damaged else 1 if alerts else 0
        if args.audit:
            from vmsentry.report.audit.records import alert_records, detect_record

            inputs = {"pcaps": args.pcaps, "interface": args.interface, "zeek": args.zeek, "eve": args.eve}
            audit.append_many([*alert_records(alerts), ("detect", detect_record(alerts, stats, inputs, code))])
            close_command_audit(audit)
        return code


def _follow(path: str, last: bool, args: argparse.Namespace, follow):
    """``follow`` when ``path`` is to be read as it grows: with --follow, a pipe, a FIFO or stdin (until
    the writer closes it), and the last input if it is a file and no interface is watched (a file given
    before another is read to its end, or the next would never come)."""
    if not args.follow:
        return None
    if path == "-":
        return follow
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # (open_inputs says why)
    if stat.S_ISDIR(mode):
        return None
    if not stat.S_ISREG(mode):
        return follow
    return follow if last and not args.interface else None


def _truth(specs: list[str], interface: str | None):
    """What the network should look like (true MACs/IPs, sanctioned servers), from ``--inventory``."""
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
