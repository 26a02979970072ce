"""``vmsentry quarantine`` and ``vmsentry release``: cut a VM off its network by hand (the watcher does the same
through act/quarantine), list the holds in force, undo one exactly."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from vmsentry.commands.audit import add_audit_option, close_command_audit, open_command_audit
from vmsentry.commands.base import Command, FatalError, netns_name, seconds
from vmsentry.model.text import printable

EXIT_NOT_HELD = 1
EXIT_INPUT = 2


class _Input(Exception):
    """Exit 2: the inventory cannot be read."""


def _forensics(text: str) -> tuple[str, int]:
    proto, _, port = text.partition("/")
    if proto not in ("tcp", "udp") or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: give PROTO/PORT, e.g. tcp/22 (tcp or udp, port 1-65535)")
    return proto, int(port)


def _add_method(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--method",
        choices=("nft", "libvirt"),
        default="nft",
        help="nft: drop the VM's frames on its bridge port and MAC in table bridge vmsentry_quarantine (default); "
        "libvirt: move its NIC live to the isolated network vmsentry-quarantine (needs --libvirt)",
    )
    p.add_argument(
        "--libvirt", metavar="URI", help="the live libvirt (qemu:///system): the VM's NICs, and the libvirt method"
    )
    p.add_argument("--netns", type=netns_name, metavar="NS", help="nft: act inside this network namespace (ip netns)")


def _quarantine(args: argparse.Namespace):
    """The Quarantine of ``--method``; FatalError (one line) if it cannot be used."""
    from vmsentry.act.quarantine import QuarantineError

    if args.method == "libvirt":
        if not args.libvirt:
            raise FatalError("--method libvirt needs --libvirt URI (the libvirt that runs the VM)")
        if args.netns:
            raise FatalError("--netns applies to the nft method only")
        try:
            from vmsentry.act.quarantine.libvirt import LibvirtQuarantine
        except ModuleNotFoundError as exc:
            if exc.name == "vmsentry.act.quarantine.libvirt":
                raise FatalError(
                    "the libvirt quarantine method is not in this build of vmsentry; use --method nft"
                ) from None
            raise FatalError(f"the libvirt method needs the libvirt Python binding ({exc.name} is missing)") from None
        try:
            return LibvirtQuarantine(args.libvirt)
        except QuarantineError as exc:
            raise FatalError(str(exc)) from None
    from vmsentry.act.quarantine.nft import NftQuarantine

    try:
        return NftQuarantine(
            args.netns,
            forensics=getattr(args, "forensics_port", None) or ("tcp", 22),
            host_ips=getattr(args, "host_address", None) or (),
            host_ports=getattr(args, "host_port", None) or (),
        )
    except QuarantineError as exc:
        raise FatalError(str(exc)) from None


def _say(text: str) -> None:
    print(printable(text))


def _describe(h) -> str:
    t = h.target
    where = f" on port {t.port}" if t.port else ""
    until = f", until {_iso(h.until)}" if h.until else ""
    return f"{t.vm} ({t.mac}{where}) by {h.method} since {_iso(h.since)}{until}: {h.reason}"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class QuarantineCommand(Command):
    """Cut a VM off its network, except the host's forensics port (tcp/22 by default): by nft (its bridge port
    and MAC dropped both ways) or libvirt (its NIC moved live to an isolated network). The VM's MAC and bridge
    port come from --inventory or --libvirt; a MAC alone is accepted. Idempotent: a VM already held keeps its
    first hold. --list shows the holds in force. Exit 0: done (or already held); 2: the inventory cannot be
    read; 3: usage or fatal error (nft refused, VM unknown)."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("target", nargs="?", metavar="VM|MAC", help="the VM's name in the inventory, or a MAC address")
        p.add_argument("--reason", metavar="TEXT", help="why (kept with the hold; required unless --list)")
        p.add_argument("--ttl", type=seconds, metavar="S", help="release by itself after S seconds (by the watcher)")
        where = "saved inventory JSON or VM definitions (repeatable): the VM's MAC and bridge port"
        p.add_argument("--inventory", action="append", default=[], metavar="INV", help=where)
        _add_method(p)
        p.add_argument(
            "--host-address",
            action="append",
            metavar="IP",
            help="nft: an address of the host a held VM may still reach on the forensics port (repeatable; "
            "default: every address of the host or namespace). Set when the table is created (first hold)",
        )
        p.add_argument(
            "--host-port",
            action="append",
            metavar="IFNAME",
            help="nft: a bridge port the host sits behind (repeatable; none when the host is the bridge itself)",
        )
        p.add_argument(
            "--forensics-port", type=_forensics, metavar="PROTO/PORT", help="what a held VM may reach (default tcp/22)"
        )
        p.add_argument("--list", action="store_true", help="list the holds in force instead")
        add_audit_option(p, "one entry per hold (who, why, method, when)")
        p.add_argument("--format", choices=("text", "json"), default="text", help="--list output (default text)")

    def run(self, args: argparse.Namespace) -> int:
        if args.list:
            if args.target:
                raise FatalError("--list takes no VM or MAC")
            return self._list(args)
        if not args.target:
            raise FatalError("give the VM (or MAC) to quarantine, or --list")
        if not args.reason or not args.reason.strip():
            raise FatalError("give --reason TEXT: it is kept with the hold and shown by --list")
        try:
            targets = _targets(args)
        except _Input as exc:
            print(f"vmsentry: {printable(str(exc))}", file=sys.stderr)
            return EXIT_INPUT
        from vmsentry.act.quarantine import QuarantineError, find_held, no_port_warning

        if args.method == "nft":
            targets = _with_ports(targets, args.netns)
        audit = open_command_audit(args)
        q = _quarantine(args)
        for target in targets:
            try:
                before = find_held(q.held(), target.mac)
                held = before or q.hold(target, args.reason.strip(), args.ttl, None)
            except QuarantineError as exc:
                audit.append(
                    "quarantine", {"by": "hand", "vm": target.vm, "mac": target.mac, "ok": False, "error": str(exc)}
                )
                close_command_audit(audit)
                raise FatalError(str(exc)) from None
            if not before:
                audit.append("quarantine", {"by": "hand", "ok": True, **held.to_dict()})
            _say(("already quarantined: " if before else "quarantined ") + _describe(held))
            warning = no_port_warning(held.target) if args.method == "nft" else None
            if warning:
                _say(f"warning: {warning}")
        close_command_audit(audit)
        how = " ".join(a for a in (f"--method {args.method}", f"--netns {args.netns}" if args.netns else "") if a)
        _say(f"release with: vmsentry release {targets[0].vm} {how}".rstrip())
        return 0

    def _list(self, args) -> int:
        from vmsentry.act.quarantine import QuarantineError

        try:
            holds = _quarantine(args).held()
        except QuarantineError as exc:
            raise FatalError(str(exc)) from None
        if args.format == "json":
            print(json.dumps({"held": [h.to_dict() for h in holds]}, indent=2, sort_keys=True))
        elif not holds:
            _say("nothing is quarantined")
        for h in holds if args.format == "text" else ():
            expired = " (TTL passed: released when the watcher runs)" if h.until and h.until <= time.time() else ""
            _say(_describe(h) + expired)
        return 0


class ReleaseCommand(Command):
    """Undo a quarantine exactly (the VM's own network and filter back, or its nft elements removed; the table
    goes with the last hold). VM is the name the hold records, or the MAC; a VM held on several NICs is released
    on all of them. Exit 0: released; 1: not held; 3: usage or fatal error."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("target", metavar="VM|MAC", help="the held VM's name or MAC (as `quarantine --list` shows)")
        _add_method(p)
        add_audit_option(p, "one entry per release")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.act.quarantine import QuarantineError, normalise_mac

        audit = open_command_audit(args)
        q = _quarantine(args)
        key = normalise_mac(args.target) or args.target
        try:
            holds = [h for h in q.held() if key in h.names()]
            if not holds:
                print(f"vmsentry: {printable(args.target)} is not quarantined (by {args.method})", file=sys.stderr)
                return EXIT_NOT_HELD
            for h in holds:
                released = q.release(h.target.mac)
                audit.append("release", {"by": "hand", **released.to_dict()})
                _say("released " + _describe(released))
        except QuarantineError as exc:
            raise FatalError(str(exc)) from None
        finally:
            close_command_audit(audit)
        return 0


def _targets(args: argparse.Namespace) -> list:
    """The Targets to hold: each NIC (with a MAC) of the VM named, or the NIC with that MAC; a MAC no
    inventory knows is held alone (by MAC only)."""
    from vmsentry.act.quarantine import Target, normalise_mac

    mac = normalise_mac(args.target)
    if not args.inventory and not args.libvirt:
        if mac:
            return [Target(mac, mac)]
        raise FatalError(f"to find {args.target}'s MAC and bridge port give --inventory INV or --libvirt URI")
    for path in args.inventory:
        if not os.path.exists(path):
            raise _Input(f"{path}: no such file or folder")
    from vmsentry.collect import collect

    inv, _ = collect(args.inventory, [args.libvirt] if args.libvirt else [], False)
    for e in inv.errors:
        print(f"vmsentry: inventory: {printable(e.line())}", file=sys.stderr)
    found = []
    for vm in inv.vms:
        for nic in vm.nics:
            nic_mac = normalise_mac(nic.mac or "")
            if nic_mac and (vm.name == args.target or nic_mac == mac):
                port = nic.target if nic.target and nic.target != "-" else None
                found.append(Target(vm.name, nic_mac, port, nic.bridge, nic.network, nic.ip))
    if found:
        return found
    if mac:
        return [Target(mac, mac)]
    if inv.errors and not inv.vms:
        raise _Input("the inventory could not be read (above)")
    if any(vm.name == args.target for vm in inv.vms):
        raise FatalError(f"{args.target} has no NIC with a MAC address in the inventory: nothing to quarantine")
    raise FatalError(
        f"no VM named {args.target} in the inventory (give its name as `vmsentry inventory` shows, or a MAC)"
    )


def _with_ports(targets: list, netns: str | None) -> list:
    """Targets without a bridge port get the port the bridge has learned their MAC on (the bridge FDB in
    sysfs; with --netns read by a child process that enters the namespace and mounts its sysfs, as ``ip netns
    exec`` does). Those the FDB does not know stay MAC-only."""
    from dataclasses import replace

    wanted = [t for t in targets if not t.port]
    if not wanted:
        return targets
    found = _learned_ports([t.mac for t in wanted], netns)
    return [
        replace(t, port=found[t.mac][1], bridge=found[t.mac][0]) if not t.port and t.mac in found else t
        for t in targets
    ]


def _learned_ports(macs: list[str], netns: str | None) -> dict[str, list[str]]:
    """MAC -> [bridge, port] for the MACs a bridge of the host (or of ``netns``) has learned."""
    from vmsentry.collect import bridge_fdb

    def lookup() -> dict[str, list[str]]:
        raw = {bytes.fromhex(m.replace(":", "")): m for m in macs}
        found = bridge_fdb.learned(list(raw), bridge_fdb.bridges())
        return {raw[k]: [bridge, port] for k, (bridge, port, _age) in found.items()}

    if not netns:
        return lookup()
    from vmsentry.watch import netns as namespaces

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a private mount table, the namespace, its sysfs; the answer as JSON
        status = 1
        try:
            os.close(reader)
            if namespaces.private_mounts():
                namespaces.enter(netns, remount_sys=True)
                os.write(writer, json.dumps(lookup()).encode())
                status = 0
        except BaseException:
            pass
        finally:
            os._exit(status)
    os.close(writer)
    with os.fdopen(reader, "rb") as f:
        data = f.read(1 << 20)
    os.waitpid(pid, 0)
    try:
        return json.loads(data) if data else {}
    except ValueError:
        return {}
