"""``vmsentry audit verify|show|prune|export``: the tamper-evident audit log that ``--audit DIR`` writes
(``vmsentry.report.audit``; docs/audit.md).

Exit codes: 0 intact / done; 1 the log was tampered with (verify names the first entry changed, removed,
reordered or cut off; prune and export refuse a log that does not verify); 2 no audit log in DIR, or a
checkpoint or key file that cannot be read; 3 usage.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from datetime import UTC, datetime

from vmsentry.commands.base import Command, CommandGroup, CommandInfo, FatalError, reraise_as, write
from vmsentry.model.text import printable

EXIT_OK, EXIT_TAMPERED, EXIT_INPUT = 0, 1, 2

SUBCOMMANDS: dict[str, CommandInfo] = {
    "verify": CommandInfo(__name__, "VerifyCommand", "check every entry and checkpoint; name the first tampered entry"),
    "show": CommandInfo(__name__, "ShowCommand", "list entries (by kind, since a time)"),
    "prune": CommandInfo(__name__, "PruneCommand", "apply retention, leaving a signed record of what was removed"),
    "export": CommandInfo(__name__, "ExportCommand", "JSONL of every entry with its inclusion proof"),
}


def add_audit_option(p: argparse.ArgumentParser, what: str) -> None:
    """``--audit DIR`` for a verb that writes to the audit log (``what`` says which entries)."""
    p.add_argument(
        "--audit",
        metavar="DIR",
        help=f"append {what} to the tamper-evident audit log in DIR (made, with its signing key, on first use; "
        "see `vmsentry audit`)",
    )


def open_command_audit(args: argparse.Namespace, error: type[Exception] = FatalError):
    """The audit log of ``--audit`` (a no-op log without it), opened before the verb acts so a folder or key
    that cannot be used stops it first; an unusable log becomes ``error`` (one line)."""
    from vmsentry.report.audit import AuditError, open_audit

    with reraise_as(error, AuditError):
        return open_audit(getattr(args, "audit", None))


def close_command_audit(audit, error: type[Exception] = FatalError) -> None:
    """Signs the run's checkpoint and closes the log (an error becomes ``error``)."""
    from vmsentry.report.audit import AuditError

    with reraise_as(error, AuditError):
        audit.close()


def _err(message: str) -> None:
    print(f"vmsentry: {printable(message)}", file=sys.stderr)


class AuditCommand(CommandGroup):
    """The audit log written by `--audit DIR` (scan, detect, watch, policy apply/confirm/rollback, quarantine,
    release): an RFC 6962 Merkle log with Ed25519-signed checkpoints. Exit 0 intact/done, 1 tampered, 2 no log or
    unreadable file, 3 usage."""

    subcommands = SUBCOMMANDS


class _AuditVerb(Command):
    """An audit sub-verb: an AuditError is one line; a log that does not verify exits 1, others 2."""

    def main(self, argv: list[str]) -> int:
        from vmsentry.report.audit.keys import AuditError, AuditTampered

        try:
            return super().main(argv)
        except AuditError as exc:
            _err(str(exc))
            return EXIT_TAMPERED if isinstance(exc, AuditTampered) else EXIT_INPUT


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", metavar="DIR", help="the audit folder given to --audit")


class VerifyCommand(_AuditVerb):
    """Recompute every leaf hash and every checkpoint root, check the sequence and the signatures. Keep the
    public key and a checkpoint file (DIR/checkpoint.json) elsewhere: with --checkpoint (and --public-key) a
    rewrite of the whole log, even re-signed with a new key, is caught too. Exit 0 intact; 1 tampered (the first
    entry changed, removed, reordered or cut off is named); 2 no log or an unreadable file; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_dir(p)
        p.add_argument("--checkpoint", metavar="FILE", help="a checkpoint.json kept elsewhere (earlier or current)")
        p.add_argument(
            "--public-key", metavar="FILE", help="the public key kept elsewhere (audit.pub, or the base64 printed)"
        )
        p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.audit import keys
        from vmsentry.report.audit.verify import verify

        public = keys.read_public(args.public_key) if args.public_key else None
        started = time.perf_counter()
        report = verify(args.directory, args.checkpoint, public)
        seconds = time.perf_counter() - started
        if args.format == "json":
            document = report.to_dict()
            document["first_problem"] = report.first.to_dict() if report.first else None
            document["seconds"] = round(seconds, 3)
            write(json.dumps(document, indent=2, sort_keys=True) + "\n", None)
        else:
            for note in report.notes:
                _err(note)
            if report.ok:
                latest = report.latest or {}
                write(
                    f"intact: {report.size} entries ({report.start} pruned, {report.cleared} cleared by retention), "
                    f"{report.checkpoints} checkpoints checked, the latest at size {latest.get('size', '-')} signed "
                    f"{latest.get('time', '-')} by key {report.key_id} ({seconds:.2f} s)\n",
                    None,
                )
            else:
                write(f"TAMPERED: {printable(report.first.message)}\n", None)
                for problem in report.problems:
                    if problem is not report.first:
                        _err(f"also: {problem.message}")
        return EXIT_OK if report.ok else EXIT_TAMPERED


def parse_since(text: str) -> float:
    """An argparse type: an ISO date or time (UTC unless it says), or an age such as 90m, 24h, 7d."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
            return time.time() - float(text[:-1]) * units[text[-1]]
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give an ISO date/time or an age such as 24h or 7d") from None


class ShowCommand(_AuditVerb):
    """List entries, oldest first (it does not verify: run `audit verify` for that). Exit 0; 2 no log; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_dir(p)
        p.add_argument("--kind", action="append", default=[], metavar="K", help="only entries of kind K (repeatable)")
        p.add_argument("--since", type=parse_since, metavar="T", help="only entries from T on (ISO time, or 24h, 7d)")
        p.add_argument("--limit", type=int, metavar="N", help="only the last N entries that match")
        p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.audit.read import entries

        rows = entries(args.directory, kinds=args.kind, since=args.since, limit=args.limit)
        if args.format == "json":
            write(json.dumps({"entries": rows}, indent=1, sort_keys=True) + "\n", None)
            return EXIT_OK
        out = io.StringIO()
        for row in rows:
            if row.get("cleared"):
                out.write(f"{row['seq']:>8}  {row['time']}  {row['kind']:<13} (content cleared by retention)\n")
                continue
            record = json.dumps(row["record"], sort_keys=True, separators=(",", ":"))
            summary = record if len(record) <= 160 else record[:157] + "..."
            out.write(
                f"{row['seq']:>8}  {row['time']}  {printable(row['kind']):<13} {printable(row['actor'])}@"
                f"{printable(row['host'])}  {printable(summary)}\n"
            )
        write(out.getvalue(), None)
        return EXIT_OK


class PruneCommand(_AuditVerb):
    """Apply retention: clear entries older than their kind's retention (defaults: audit entries and alerts 184
    days, scan snapshots 30 days) and drop a cleared prefix, keeping its signed summary so the rest still verifies
    against every checkpoint. The log must verify first. Exit 0; 1 the log does not verify; 2 no log; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_dir(p)
        p.add_argument(
            "--keep-days",
            action="append",
            default=[],
            metavar="[CLASS=]DAYS",
            help="retention in days: DAYS for every class, or entries=, alerts=, snapshots= or KIND= (repeatable)",
        )
        p.add_argument("--format", choices=("text", "json"), default="text", help="text (default) or json")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.audit.prune import parse_keep_days, prune

        try:
            retention = parse_keep_days(args.keep_days)
        except ValueError as exc:
            self.parser().error(str(exc))
        if min(retention.get("entries", 184), retention.get("alerts", 184)) < 184:
            _err("retention below 184 days: less than the six months of China's Cybersecurity Law Art. 21(3)")
        record = prune(args.directory, retention)
        if args.format == "json":
            write(json.dumps(record, indent=1, sort_keys=True) + "\n", None)
        else:
            cleared = ", ".join(f"{n} {k}" for k, n in sorted(record["cleared_now"].items())) or "nothing"
            write(
                f"pruned: cleared {cleared}; dropped {record['dropped_now']} entries (the log now starts at "
                f"{record['dropped_before']}); a signed prune entry records it\n",
                None,
            )
        return EXIT_OK


class ExportCommand(_AuditVerb):
    """JSONL: the signed checkpoint, then every entry with its leaf hash and inclusion proof against it (RFC 6962
    2.1.1), for an auditor's own tools. Exit 0; 1 the log does not verify; 2 no log; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_dir(p)
        p.add_argument("-o", "--output", metavar="FILE", help="write here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.audit.read import export
        from vmsentry.report.output import OutputError, write_output_with

        with reraise_as(FatalError, OutputError):
            write_output_with(lambda out: export(args.directory, out), args.output)
        return EXIT_OK
