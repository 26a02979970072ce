"""``vmsentry policy compile|apply|confirm|rollback|check|suggest``: the CLI side of the policy library
(``vmsentry.act.policy``). Each sub-verb is a command; the library is imported when one runs.

Exit codes: 0 done (apply: applied or nothing to change; check: no violation); 1 check found violations,
apply was refused or nft failed (the old ruleset stays), confirm/rollback had nothing to do; 2 the policy,
inventory or traffic input is invalid or unreadable (every problem is printed with its file and line);
3 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vmsentry.commands.audit import add_audit_option, close_command_audit, open_command_audit
from vmsentry.commands.base import Command, CommandGroup, CommandInfo, netns_name, reraise_as, seconds, write
from vmsentry.model.text import printable

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_USAGE = 0, 1, 2, 3

# sub-verb -> (class in this module, one-line summary for `vmsentry policy --help`)
SUBCOMMANDS: dict[str, CommandInfo] = {
    "compile": CommandInfo(__name__, "CompileCommand", "print the nftables ruleset or nwfilter XML for a policy"),
    "apply": CommandInfo(
        __name__, "ApplyCommand", "apply atomically; with --confirm-within, roll back unless confirmed"
    ),
    "confirm": CommandInfo(__name__, "ConfirmCommand", "keep the ruleset applied with --confirm-within"),
    "rollback": CommandInfo(__name__, "RollbackCommand", "roll a pending (unconfirmed) apply back now"),
    "check": CommandInfo(
        __name__, "CheckCommand", "list flows in a capture or on an interface that the policy forbids"
    ),
    "suggest": CommandInfo(
        __name__, "SuggestCommand", "a default policy from the inventory (DHCP+DNS to the host, zones per network)"
    ),
}


class PolicyCommand(CommandGroup):
    """Segmentation policy (YAML, see docs/policy.md): compile it against an inventory to nftables or libvirt nwfilter,
    apply it atomically with an automatic rollback, and check traffic against it.
    Exit 0 done, 1 violations/refused/nothing pending, 2 invalid input, 3 usage."""

    subcommands = SUBCOMMANDS


class _Usage(Exception):
    """Exit 3: the command line cannot work (missing inventory, bad value, unwritable output)."""


class _Input(Exception):
    """Exit 2: the policy, inventory or traffic is invalid or unreadable."""


class _Refused(Exception):
    """Exit 1: apply was refused or failed; confirm or rollback had nothing to do."""


class _PolicyVerb(Command):
    """A policy sub-verb: its errors become one line on stderr and the exit code of their kind."""

    def main(self, argv: list[str]) -> int:
        verb = self.name.split()[-1]
        try:
            return super().main(argv)
        except (_Usage, _Refused) as exc:
            _err(f"policy {verb}: {exc}")
            return EXIT_USAGE if isinstance(exc, _Usage) else EXIT_FAIL
        except _Input as exc:
            _err(str(exc))
            return EXIT_INPUT


def _add_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("policy", metavar="POLICY", help="the policy YAML (see docs/policy.md)")


def _add_inventory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--inventory",
        action="append",
        default=[],
        metavar="INV",
        help="saved inventory JSON, or VM/network definition files/folders (repeatable)",
    )
    p.add_argument(
        "--libvirt",
        action="append",
        default=[],
        metavar="URI",
        help="read VMs from a live libvirt (qemu:///system): knows each NIC's host port (vnetN)",
    )


def _err(msg: str) -> None:
    print(f"vmsentry: {printable(msg)}", file=sys.stderr)


def _problems(problems) -> None:
    for p in problems:
        _err(str(p))


def _inventory(args):
    from vmsentry.collect import collect

    if not args.inventory and not args.libvirt:
        raise _Usage("give the inventory: --inventory FILE (vmsentry inventory ... -o FILE) or --libvirt URI")
    for path in args.inventory:
        if not os.path.exists(path):
            raise _Input(f"{path}: no such file or folder")
    inv, _ = collect(args.inventory, args.libvirt, False)
    for e in inv.errors:
        _err(f"inventory: {e.line()}")
    return inv


def _load(args, inv=None):
    from vmsentry.act.policy.problems import PolicyError
    from vmsentry.act.policy.resolve import resolve
    from vmsentry.act.policy.schema import load_policy

    if not os.path.exists(args.policy):
        raise _Input(f"{args.policy}: no such file")
    inv = inv if inv is not None else _inventory(args)
    try:
        pol = load_policy(args.policy)
        res = resolve(pol, inv)
    except PolicyError as exc:
        _problems(exc.problems)
        n = len(exc.errors)
        raise _Input(f"{args.policy}: {n} error{'s' if n != 1 else ''}; nothing compiled or applied") from None
    _problems(res.warnings)
    return inv, res


def _require_netns(args, error=_Input) -> None:
    """A --netns that names no namespace is one clear error before anything else is read (``error``: exit 2
    where the verb reads inputs, exit 3 for confirm/rollback, whose only input is the command line)."""
    from vmsentry.act.policy import nftexec

    with reraise_as(error, nftexec.NftError):
        nftexec.check_netns(getattr(args, "netns", None))


def _write_out(text: str, path: str | None) -> None:
    write(text, path, error=_Usage)


def _caps(args):
    from vmsentry.act.policy.nft import Caps

    if getattr(args, "no_probe", False):
        return Caps()
    from vmsentry.act.policy import nftexec

    try:
        if os.geteuid() != 0:
            return Caps()
        return nftexec.probe_caps(getattr(args, "netns", None))
    except nftexec.NftError:
        return Caps()


class CompileCommand(_PolicyVerb):
    """Compile a policy against an inventory and print the nftables ruleset (text for `nft -f`, JSON for `nft -j -f`)
    or libvirt nwfilter XML. Exit 0; 2: invalid policy or inventory; 3: usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_policy(p)
        _add_inventory(p)
        p.add_argument(
            "--target",
            choices=("nft", "nwfilter"),
            default="nft",
            help="nft: an nftables ruleset (default); nwfilter: libvirt nwfilter XML",
        )
        p.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="nft: text (nft -f) or json (nft -j -f, what apply loads)",
        )
        p.add_argument("-o", "--output", metavar="PATH", help="write here (nwfilter: a folder, one XML per filter)")
        p.add_argument(
            "--netns", type=netns_name, metavar="NS", help="ask this namespace's kernel what it supports (meta hour)"
        )
        p.add_argument("--no-probe", action="store_true", help="do not ask the kernel; assume meta hour works")

    def run(self, args: argparse.Namespace) -> int:
        t0 = time.perf_counter()
        _require_netns(args)
        _, res = _load(args)
        if args.target == "nwfilter":
            from vmsentry.act.policy.nwfilter import compile_nwfilter

            nwf = compile_nwfilter(res)
            _problems(nwf.warnings)
            if args.output:
                os.makedirs(args.output, exist_ok=True)
                for name, xml in nwf.filters.items():
                    _write_out(xml, os.path.join(args.output, f"{name}.xml"))
                _write_out(
                    "\n".join(f"{vm}: {s}" for vm, ss in nwf.interfaces.items() for s in ss) + "\n",
                    os.path.join(args.output, "interfaces.txt"),
                )
                _err(
                    f"wrote {len(nwf.filters)} filters to {args.output}/ "
                    "(virsh nwfilter-define each; attach as in interfaces.txt)"
                )
            else:
                _write_out(nwf.text(), None)
            return EXIT_OK
        from vmsentry.act.policy.nft import compile_nft

        caps = _caps(args)
        rs = compile_nft(res, caps)
        _problems(rs.warnings)
        _write_out(json.dumps(rs.commands(), indent=1) + "\n" if args.format == "json" else rs.text(), args.output)
        st = rs.stats()
        _err(
            f"compiled {st['rules']} rules, {st['sets']} sets ({st['elements']} elements) for "
            f"{len(res.endpoints)} VM NICs in {(time.perf_counter() - t0) * 1000:.0f} ms"
        )
        return EXIT_OK


def _lockout(res, netns):
    """The caller's own SSH session: would the new policy let its source open a new connection?"""
    ssh = os.environ.get("SSH_CONNECTION", "").split()
    if netns or len(ssh) != 4:
        return None
    client, _, server, port = ssh
    from vmsentry.analyse.policy_decision import Evaluator, Flow

    try:
        d = Evaluator(res).decide(Flow(time.time(), None, client, server, "tcp", int(port)))
    except ValueError:
        return None
    if d.action == "drop":
        return (
            f"this policy blocks new connections from your SSH source {client} to the host port {port} "
            f"({d.why}); your current session survives as established traffic"
        )
    return None


class ApplyCommand(_PolicyVerb):
    """Apply the compiled nftables ruleset in one transaction, on the host or in a network namespace. With
    --confirm-within, a watchdog rolls it back unless `vmsentry policy confirm` comes in time. Exit 0 applied or
    nothing to change; 1 refused or nft failed (the old ruleset stays); 2 invalid input; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_policy(p)
        _add_inventory(p)
        p.add_argument("--netns", type=netns_name, metavar="NS", help="apply inside this network namespace (ip netns)")
        p.add_argument(
            "--confirm-within",
            type=seconds,
            metavar="SECONDS",
            help="roll back by itself after SECONDS unless `vmsentry policy confirm` comes first",
        )
        p.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
        p.add_argument("--state-dir", metavar="DIR", help="rollback state (default /run/vmsentry/policy/<netns|host>)")
        p.add_argument(
            "--set-sysctl",
            action="store_true",
            help="set net.bridge.bridge-nf-call-iptables=1 if it is 0 (otherwise apply refuses)",
        )
        p.add_argument("--force", action="store_true", help="apply even if it would block your own SSH source")
        p.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="text (default): the diff and a summary on stderr; json: the apply report",
        )
        add_audit_option(p, "one entry per apply (applied or refused; not --dry-run)")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.policy import nftexec
        from vmsentry.act.policy.apply import ApplyError, apply
        from vmsentry.act.policy.nft import compile_nft

        if args.confirm_within is not None and args.confirm_within <= 0:
            raise _Usage("--confirm-within takes a positive number of seconds")
        _require_netns(args)
        inv = _inventory(args)
        if inv.errors and not args.dry_run:
            raise _Input("the inventory has errors (above): refusing to apply a policy built on it")
        _, res = _load(args, inv)
        t0 = time.perf_counter()
        rs = compile_nft(res, _caps(args))
        compile_s = time.perf_counter() - t0
        _problems(rs.warnings)
        audit = open_command_audit(None if args.dry_run else args, _Usage)  # a dry run changes nothing: no entry
        action = _action_record(args, "apply", ruleset_sha256=_sha256(rs.text()), rules=rs.stats().get("rules"))
        try:
            with reraise_as(_Refused, ApplyError, nftexec.NftError):
                rep = apply(
                    rs,
                    netns=args.netns,
                    confirm_within=args.confirm_within,
                    dry_run=args.dry_run,
                    state_dir=args.state_dir,
                    set_sysctl=args.set_sysctl,
                    ipv6=res.has_ipv6,
                    lockout_check=lambda: _lockout(res, args.netns),
                    force=args.force,
                )
        except _Refused as exc:
            _record(audit, {**action, "outcome": "refused", "error": str(exc)})
            raise
        _record(
            audit,
            {
                **action,
                "outcome": "applied" if rep.applied else "unchanged",
                "confirm_within": args.confirm_within,
                "rollback_at": rep.deadline,
            },
        )
        if args.format == "json":
            d = rep.to_dict()
            d["stats"] = rs.stats()
            d["seconds_compile"] = round(compile_s, 4)
            _write_out(json.dumps(d, indent=2) + "\n", None)
            return EXIT_OK
        if rep.diff:
            _write_out(rep.diff, None)
        for n in rep.notes:
            _err(n)
        where = f"netns {args.netns}" if args.netns else "the host"
        st = rs.stats()
        if rep.dry_run:
            _err(f"dry run: {'changes above' if rep.changed else 'nothing would change'}; nothing applied to {where}")
        elif rep.applied:
            _err(
                f"applied to {where} in one transaction: {st['rules']} rules, {st['sets']} sets, "
                f"{st['elements']} elements (compile {compile_s * 1000:.0f} ms, "
                f"checks {rep.seconds_check * 1000:.0f} ms, apply {rep.seconds_apply * 1000:.0f} ms)"
            )
        if rep.deadline is not None:
            _err(
                f"rolls back by itself at {time.strftime('%H:%M:%S', time.localtime(rep.deadline))} "
                f"(in {args.confirm_within:g} s) unless you run: vmsentry policy confirm"
                + (f" --netns {args.netns}" if args.netns else "")
                + (f" --state-dir {args.state_dir}" if args.state_dir else "")
                + f"   (watchdog pid {rep.watchdog_pid})"
            )
        return EXIT_OK


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def _action_record(args: argparse.Namespace, action: str, **fields) -> dict:
    """The audit record of a policy action: what, where, with which files (and their digests)."""
    from vmsentry.report.audit.records import file_digest

    record = {"action": action, "netns": args.netns, "state_dir": args.state_dir}
    if getattr(args, "policy", None):
        record.update(policy=args.policy, policy_sha256=file_digest(args.policy), inventory=args.inventory)
    return {**record, **fields}


def _record(audit, record: dict) -> None:
    """One ``policy`` entry, then the run's signed checkpoint (the action is done: a log error is one line)."""
    audit.append("policy", record)
    close_command_audit(audit, _Refused)


class _PendingCommand(_PolicyVerb):
    """confirm and rollback: act on the pending apply (--confirm-within) of a netns or state folder."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--netns", type=netns_name, metavar="NS", help="the network namespace given to `policy apply --netns`"
        )
        p.add_argument(
            "--state-dir",
            metavar="DIR",
            help="the --state-dir given to `policy apply` (default /run/vmsentry/policy/<netns|host>)",
        )
        add_audit_option(p, "one entry for this action")

    def act(self, args: argparse.Namespace, action):
        """(the audit log, what ``action(netns, state_dir)`` returned); the log is opened before acting."""
        from vmsentry.act.policy.apply import ConfirmError

        _require_netns(args, _Usage)
        audit = open_command_audit(args, _Usage)
        with reraise_as(_Refused, ConfirmError):
            return audit, action(args.netns, args.state_dir)


class ConfirmCommand(_PendingCommand):
    """Keep the ruleset of a pending `policy apply --confirm-within`: its automatic rollback is cancelled.
    Exit 0; 1 nothing to confirm; 3 usage (also a --netns that does not exist)."""

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.policy.apply import confirm

        audit, info = self.act(args, confirm)
        _record(
            audit, {**_action_record(args, "confirm"), "outcome": "confirmed", "seconds_left": info["seconds_left"]}
        )
        _err(f"confirmed with {info['seconds_left']:.1f} s to spare; the rollback is cancelled")
        return EXIT_OK


class RollbackCommand(_PendingCommand):
    """Roll a pending (unconfirmed) `policy apply --confirm-within` back now: the previous ruleset is restored.
    Exit 0; 1 nothing to roll back or the restore failed; 3 usage (also a --netns that does not exist)."""

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.policy.apply import rollback_now

        audit, r = self.act(args, rollback_now)
        _record(
            audit,
            {
                **_action_record(args, "rollback"),
                "outcome": "rolled_back" if r.get("ok") else "failed",
                "identical": r.get("identical"),
                "error": r.get("error"),
            },
        )
        if not r.get("ok"):
            _err(f"policy rollback failed: {r.get('error')}")
            return EXIT_FAIL
        _err(
            f"rolled back in {r['restore_ms']:.0f} ms; previous ruleset "
            f"{'restored exactly' if r.get('identical') else 'restored (listing differs!)'}"
        )
        return EXIT_OK


class CheckCommand(_PolicyVerb):
    """List the flows in capture files, or on a live interface, that the policy forbids.
    Exit 0 no violation; 1 violations; 2 invalid policy, inventory or capture (wins over 1); 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_policy(p)
        p.add_argument("pcaps", nargs="*", metavar="PCAP", help="pcap or pcapng file, gzip'd or not ('-': stdin)")
        _add_inventory(p)
        p.add_argument("--interface", metavar="IF", help="capture live on this interface (root)")
        p.add_argument("--duration", type=seconds, default=10.0, metavar="S", help="live capture length (default 10 s)")
        p.add_argument("--netns", type=netns_name, metavar="NS", help="the interface is in this network namespace")
        p.add_argument(
            "--format",
            choices=("text", "json"),
            default=None,
            help="output format (default: text on a terminal, json otherwise)",
        )

    def run(self, args: argparse.Namespace) -> int:
        """The ``policy_violation`` detector over the traffic, read as ``detect`` reads it (every packet)."""
        from vmsentry.analyse.detectors import Engine
        from vmsentry.analyse.detectors.policy_violation import in_time_order
        from vmsentry.collect.traffic import BadTrafficInput, TrafficStream, open_inputs
        from vmsentry.collect.traffic.live import LiveError
        from vmsentry.report.alerts import damage_lines

        if not args.pcaps and not args.interface:
            raise _Usage("give a PCAP file or --interface IF")
        _require_netns(args)
        for p in args.pcaps:
            if p != "-" and not os.path.exists(p):
                raise _Input(f"{p}: no such file")
        _, res = _load(args)
        t0 = time.perf_counter()
        readers = []
        with reraise_as(_Input, BadTrafficInput):
            for path in args.pcaps:
                readers.extend(open_inputs(path))
        if args.interface:
            readers.append(_live_reader(args.interface, args.duration, args.netns))
        engine = Engine(only=["policy_violation"], policy=res)
        stream = TrafficStream(all_packets=True)  # every packet: a forged source mid-flow counts
        with reraise_as(_Input, LiveError):
            for batch in stream.batches(readers):
                engine.feed(batch)
        alerts = [a.to_dict() for a in in_time_order(engine.finish())]
        stream.stats.finish()
        st = stream.stats.to_dict()
        st["evicted"].update(engine.evicted)
        [detector] = engine.detectors
        st.update(detector.counts())
        st["analysis_seconds"] = round(time.perf_counter() - t0, 4)
        fmt = args.format or ("text" if sys.stdout.isatty() else "json")
        if fmt == "json":
            _write_out(json.dumps({"alerts": alerts, "stats": st}, indent=2) + "\n", None)
        else:
            lines = [f"{a['severity']:<6} {a['count']:>5}x  {a['summary']}" for a in alerts]
            lines.append(f"{len(alerts)} policy violation(s) in {st['flows_judged']} flows ({st['packets']} packets)")
            _write_out("\n".join(lines) + "\n", None)
        damage = damage_lines(st)
        for line in damage:
            _err(line)
        return EXIT_INPUT if damage else EXIT_FAIL if alerts else EXIT_OK


def _live_reader(interface: str, duration: float | None, netns: str | None):
    from vmsentry.collect.traffic.live import LiveReader

    if not netns:
        return LiveReader(interface, duration=duration)

    class NetnsLiveReader(LiveReader):
        """The capture socket is made inside ``netns`` (the socket keeps its namespace)."""

        def open(self):
            from vmsentry.act.policy.netns import open_in_netns
            from vmsentry.collect.traffic.live import LiveError

            try:
                return open_in_netns(netns, super().open)
            except OSError as exc:  # the namespace went away, or entering it needs root (CAP_SYS_ADMIN)
                raise LiveError(f"{interface} in network namespace {netns}: {exc.strerror or exc}") from None

    reader = NetnsLiveReader(interface, duration=duration)
    reader.name = f"live:{interface}@{netns}"
    return reader


class SuggestCommand(_PolicyVerb):
    """Print a starting policy (YAML) for an inventory: DHCP and DNS to the host allowed, one zone per network.
    Exit 0; 2 unreadable inventory; 3 usage."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        _add_inventory(p)
        p.add_argument("-o", "--output", metavar="FILE", help="write the policy here (atomically) instead of stdout")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.policy.suggest import suggest

        inv = _inventory(args)
        _write_out(suggest(inv, ", ".join(args.inventory + args.libvirt)), args.output)
        return EXIT_OK
