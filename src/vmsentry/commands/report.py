"""``vmsentry report``: reports a person reads. Without ``--framework``, the scan report (summary per asset and
severity, a hardening score per host and VM, findings grouped by rule with every place); with one, the
compliance report of that framework. HTML, PDF (headless Chromium prints the HTML), JSON or Markdown."""

from __future__ import annotations

import argparse
import os
import sys

from vmsentry.commands.base import Command, FatalError, reraise_as, write
from vmsentry.commands.inputs import add_inputs
from vmsentry.commands.scan import add_scan_options
from vmsentry.model.text import printable

# the contract's framework ids (analyse.compliance.frameworks() lists the same: a test keeps them equal); here
# so that --help does not load the mappings
FRAMEWORKS = ("mlps2-l3", "nist-800-125b", "nist-800-207", "gdpr", "stig", "checklist")
FORMATS = ("html", "pdf", "json", "md")
SUFFIXES = {".html": "html", ".htm": "html", ".pdf": "pdf", ".json": "json", ".md": "md"}
EXIT_OK, EXIT_INPUT = 0, 2


class ReportCommand(Command):
    """Reports a person reads: the scan report of PATH... (or of a saved `scan --format json`), or with
    --framework the compliance report of that framework (every requirement with its status, the rules and
    evidence that decide it, its gaps, and what an auditor must check by hand). Exit 0: written; 2: some input
    could not be read (the report covers the rest); 3: usage or fatal error. See docs/reports.md."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        add_inputs(p)
        p.add_argument(
            "--from-scan", metavar="SCAN.json", help="report on a saved `vmsentry scan --format json` instead of PATH"
        )
        p.add_argument(
            "--framework",
            choices=FRAMEWORKS,
            metavar="F",
            help=f"the compliance report of this framework: {', '.join(FRAMEWORKS)} (default: the scan report)",
        )
        p.add_argument(
            "--format",
            choices=FORMATS,
            default=None,
            help="html, pdf (Chromium prints the HTML), json or md (default: from -o's suffix, else html)",
        )
        p.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")
        p.add_argument(
            "--audit", metavar="DIR", help="the audit log to verify and cite as evidence (compliance report)"
        )
        p.add_argument(
            "--checkpoint", metavar="FILE", help="with --audit: a checkpoint kept elsewhere to verify the log against"
        )
        p.add_argument(
            "--evidence", metavar="DIR", help="the watcher's incident store to cite as evidence (compliance report)"
        )
        p.add_argument(
            "--policy-state",
            metavar="DIR",
            help="the applied policy's state folder to cite (compliance report; default: the host's, if any)",
        )
        add_scan_options(p)
        p.set_defaults(baseline=None, fail_on="none")

    def run(self, args: argparse.Namespace) -> int:
        from datetime import UTC, datetime

        from vmsentry import __version__

        if args.from_scan and (args.paths or args.libvirt or args.host):
            raise FatalError("give PATH, --libvirt or --host, or --from-scan, not both")
        if not args.framework and (args.audit or args.evidence or args.policy_state or args.checkpoint):
            raise FatalError(
                "--audit, --checkpoint, --evidence and --policy-state are evidence for a compliance report: "
                "add --framework F"
            )
        if args.checkpoint and not args.audit:
            raise FatalError("--checkpoint verifies the audit log of --audit DIR: give both")
        fmt = args.format or SUFFIXES.get(os.path.splitext(args.output or "")[1].lower(), "html")
        if args.from_scan:
            result = load_scan(args.from_scan)
            if result is None:
                return EXIT_INPUT
        else:
            from vmsentry.commands.scan import scan

            result = scan(args)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        if args.framework:
            text = compliance_report(args, result.findings, fmt, __version__)
        else:
            text = scan_report(result, fmt, now)
        if fmt == "pdf":
            from vmsentry.report.pdf import PdfError, html_to_pdf

            with reraise_as(FatalError, PdfError):
                text = html_to_pdf(text)
        write(text, args.output)
        return EXIT_INPUT if result.inventory.errors else EXIT_OK


def scan_report(result, fmt: str, now: str) -> str:
    from vmsentry.report import scan_report as view

    page = view.build(result, now)
    if fmt == "json":
        return view.render_json(page)
    if fmt == "md":
        return view.render_markdown(page)
    return view.render_html(page)


def compliance_report(args: argparse.Namespace, findings, fmt: str, version: str) -> str:
    from vmsentry.analyse.compliance import FrameworkError, evaluate
    from vmsentry.commands.evidence_facts import default_policy_state, gather
    from vmsentry.report import compliance_report as view

    facts = gather(
        audit=args.audit,
        evidence=args.evidence,
        policy_state=args.policy_state or default_policy_state(),
        checkpoint=args.checkpoint,
    )
    given = {"audit_log": args.audit, "incidents": args.evidence, "policy": args.policy_state}
    for kind, why in facts.missing.items():
        if given.get(kind):  # given but unreadable: say so (the report shows it as absent evidence)
            print(f"vmsentry: {printable(why)}", file=sys.stderr)
    with reraise_as(FatalError, FrameworkError):
        result = evaluate(args.framework, findings, facts)
    if fmt == "json":
        return view.render_json(result, version)
    if fmt == "md":
        return view.render_markdown(result, version)
    return view.render_html(result, version)


def load_scan(path: str):
    """A saved ``scan --format json`` as a ScanResult (its findings and inventory), or None after one line on
    stderr naming the file and the problem."""
    from vmsentry import __version__
    from vmsentry.analyse.baseline import BaselineError, load_baseline
    from vmsentry.collect.saved_inventory import read as read_inventory
    from vmsentry.collect.source_file import BadInput
    from vmsentry.model.findings import SEVERITIES, STATUSES, Finding
    from vmsentry.model.scan import ScanResult

    try:
        saved = load_baseline(path)
        inventory = read_inventory(path)
    except (BaselineError, BadInput) as exc:
        message = str(exc) if str(exc).startswith(path) else f"{path}: {exc}"
        print(f"vmsentry: {printable(message)}", file=sys.stderr)
        return None
    findings = []
    for i, item in enumerate(saved):
        problem = (
            f"severity is not one of {', '.join(SEVERITIES)}"
            if item.get("severity") not in SEVERITIES
            else f"status is not one of {', '.join(STATUSES)}"
            if item["status"] not in STATUSES
            else None
        )
        if problem:
            print(f"vmsentry: {printable(path)}: findings[{i}]: {problem}", file=sys.stderr)
            return None
        findings.append(
            Finding(
                rule_id=item["rule_id"],
                title=str(item.get("title") or ""),
                severity=item["severity"],
                status=item["status"],
                category=str(item.get("category") or ""),
                platform=str(item.get("platform") or ""),
                asset=item["asset"],
                evidence=item["evidence"],
                remediation=str(item.get("remediation") or ""),
                references=[str(r) for r in item.get("references") or []],
                waiver=item.get("waiver") if isinstance(item.get("waiver"), dict) else None,
            )
        )
    return ScanResult(findings=findings, inventory=inventory, tool_version=__version__, fail_on="none")
