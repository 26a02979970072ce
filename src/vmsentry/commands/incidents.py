"""``vmsentry incidents list|show ID|verify ID``: the evidence bundles the watcher left (report/incident.py).

Exit codes: 0 done (verify: the bundle matches its manifest); 1 verify found a changed, missing or added
file (each named, the first first); 2 the evidence folder is missing or unreadable; 3 usage, or no such
incident.
"""

from __future__ import annotations

import argparse
import json
import sys

from vmsentry.commands.base import Command, CommandGroup, CommandInfo, write
from vmsentry.model.text import printable

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_USAGE = 0, 1, 2, 3

SUBCOMMANDS: dict[str, CommandInfo] = {
    "list": CommandInfo(__name__, "ListCommand", "one line per incident: id, type, VM, first seen, response time"),
    "show": CommandInfo(__name__, "ShowCommand", "an incident's summary, alerts and timeline"),
    "verify": CommandInfo(__name__, "VerifyCommand", "check every file of a bundle against its manifest (SHA-256)"),
}


class IncidentsCommand(CommandGroup):
    """The evidence bundles of `vmsentry watch` (one folder per incident: capture, alerts, timeline, rulesets,
    report.html, manifest with SHA-256). Exit 0 done/intact, 1 verify found a problem, 2 evidence folder
    missing or unreadable, 3 usage or no such incident."""

    subcommands = SUBCOMMANDS


class _IncidentsVerb(Command):
    """A sub-verb: the store's errors become one line and their exit code."""

    needs_id = False

    def add_options(self, p: argparse.ArgumentParser) -> None:
        from vmsentry.report.incident import DEFAULT_EVIDENCE

        if self.needs_id:
            p.add_argument("id", metavar="ID", help="the incident id (as `vmsentry incidents list` shows it)")
        p.add_argument(
            "--evidence",
            metavar="DIR",
            default=DEFAULT_EVIDENCE,
            help=f"the evidence folder `vmsentry watch --evidence` wrote to (default {DEFAULT_EVIDENCE})",
        )
        p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.report.incident import IncidentError, IncidentStore

        store = IncidentStore(args.evidence)
        try:
            return self.work(store, args)
        except IncidentError as exc:
            _err(str(exc))
            return EXIT_USAGE if str(exc).startswith("no incident ") else EXIT_INPUT

    def work(self, store, args: argparse.Namespace) -> int:
        raise NotImplementedError


class ListCommand(_IncidentsVerb):
    """List the incidents of the evidence folder, oldest first."""

    def work(self, store, args: argparse.Namespace) -> int:
        rows = store.list()
        if args.format == "json":
            write(json.dumps({"incidents": rows}, indent=1) + "\n", None)
            return EXIT_OK
        lines = []
        for row in rows:
            if "problem" in row:
                lines.append(f"{row['id']}  ({row['problem']})")
                continue
            response = row.get("response_seconds")
            state = "released" if row.get("released") else "held" if response is not None else "alert only"
            attacker = row.get("attacker") or {}
            who = row.get("vm") or attacker.get("mac") or "?"
            took = f"{response:.3f} s" if isinstance(response, (int, float)) else "-"
            lines.append(f"{row['id']}  {row.get('type')}  {who}  first seen {row.get('first_seen')}  {took}  {state}")
        lines.append(f"{len(rows)} incident(s) in {args.evidence}")
        write("\n".join(printable(line) for line in lines) + "\n", None)
        return EXIT_OK


class ShowCommand(_IncidentsVerb):
    """Show one incident: who, what, when, the response time, its files and how to release."""

    needs_id = True

    def work(self, store, args: argparse.Namespace) -> int:
        data = store.show(args.id)
        if args.format == "json":
            write(json.dumps(data, indent=1, sort_keys=True) + "\n", None)
            return EXIT_OK
        m = data["manifest"]
        attacker = m.get("attacker") or {}
        times = m.get("times") or {}
        lines = [
            f"incident {m.get('id')}",
            f"type:      {m.get('type')}",
            f"attacker:  VM {m.get('vm') if m.get('vm') is not None else '(not a known VM)'}, "
            f"MAC {attacker.get('mac') or '?'}, IP {attacker.get('ip') or '?'}",
            f"seen:      {times.get('first_seen')} .. {times.get('last_seen')}",
            f"response:  {m['response_seconds']:.3f} s"
            if isinstance(m.get("response_seconds"), (int, float))
            else "response:  none",
            "alerts:",
            *(f"  {a.get('severity')} {a.get('type')}: {a.get('summary')}" for a in data["alerts"]),
            "timeline:",
            *(f"  {e.get('time')}  {e.get('kind')}{_fields(e)}" for e in data["timeline"]),
            "files:",
            *(f"  {f.get('path')}  {f.get('size')} B" for f in m.get("files", []) if isinstance(f, dict)),
            f"release:   {m.get('release_command')}",
        ]
        write("\n".join(printable(str(line)) for line in lines) + "\n", None)
        return EXIT_OK


class VerifyCommand(_IncidentsVerb):
    """Check every file of an incident's bundle against the SHA-256 and size in its manifest; name every file
    that changed, is missing or was added (exit 1), or say it is intact (exit 0)."""

    needs_id = True

    def work(self, store, args: argparse.Namespace) -> int:
        problems = store.verify(args.id)
        if args.format == "json":
            write(json.dumps({"id": args.id, "intact": not problems, "problems": problems}, indent=1) + "\n", None)
        elif problems:
            for problem in problems:
                _err(f"{args.id}: {problem}")
        else:
            write(printable(f"{args.id}: intact ({len(store.manifest(args.id)['files'])} files)") + "\n", None)
        return EXIT_FAIL if problems else EXIT_OK


def _fields(event: dict) -> str:
    extra = {k: v for k, v in event.items() if k not in ("kind", "time", "epoch") and v not in (None, "")}
    return ("  " + ", ".join(f"{k}={v}" for k, v in extra.items())) if extra else ""


def _err(msg: str) -> None:
    print(f"vmsentry: {printable(msg)}", file=sys.stderr)
