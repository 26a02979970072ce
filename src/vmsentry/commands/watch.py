"""``vmsentry watch``: the standing guardian (vmsentry.watch): live detection on the VM bridges, the response
policy, reversible quarantine and an evidence bundle per incident."""

from __future__ import annotations

import argparse

from vmsentry.commands.base import Command, FatalError, netns_name, reraise_as, seconds

FORMATS = ("text", "jsonl", "eve", "ecs")


class WatchCommand(Command):
    """Watch the VM bridges live: detect attacks, attribute each to the VM on the bridge port it came from,
    and respond as the policy says (observe: alert; ask: alert and print the quarantine command; auto:
    quarantine). Runs until SIGINT/SIGTERM (or --duration), then flushes and exits 0; SIGHUP reopens the
    output files. With --model (a calibrated behaviour model, `vmsentry baseline train`) it also raises
    `anomaly` alerts, which join the open incident of the same VM. Exit 2: the model cannot be used; 3: usage
    error, nothing to watch, or another watcher holds the bridge."""

    def add_options(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE", help="response policy and settings (YAML; options given win)")
        p.add_argument(
            "-i",
            "--interface",
            action="append",
            default=[],
            metavar="BRIDGE",
            help="a bridge to watch (repeatable; default: every bridge of the inventory's networks and VM NICs)",
        )
        p.add_argument(
            "--libvirt",
            metavar="URI",
            help="take the inventory from libvirt and follow its domain and network events (e.g. qemu:///system)",
        )
        p.add_argument(
            "--inventory",
            action="append",
            default=[],
            metavar="INV",
            help="saved `vmsentry inventory` JSON or VM/network definitions (repeatable)",
        )
        p.add_argument("--model", metavar="MODEL", help="behaviour model for anomaly alerts (vmsentry baseline)")
        p.add_argument(
            "--respond",
            choices=("observe", "ask", "auto"),
            help="observe: alert only; ask: alert and print the quarantine command; auto: quarantine as the "
            "policy says (default: the config's, else observe)",
        )
        p.add_argument(
            "--quarantine",
            choices=("nft", "libvirt"),
            help="nft: drop the VM's frames on its bridge port; libvirt: move its NIC to vmsentry-quarantine",
        )
        p.add_argument("--ttl", type=seconds, metavar="S", help="release a quarantine by itself after S seconds")
        p.add_argument("--evidence", metavar="DIR", help="write an evidence bundle per incident under DIR")
        p.add_argument(
            "--audit",
            metavar="DIR",
            help="write every detection, decision, action and configuration change to the signed audit log in DIR",
        )
        p.add_argument("--format", choices=FORMATS, help="alert lines (default: jsonl)")
        p.add_argument("-o", "--output", metavar="FILE", help="append alerts to FILE (reopened on SIGHUP)")
        p.add_argument("--syslog", metavar="URL", help="send alerts as RFC 5424 + CEF: udp://, tcp://, unix:///dev/log")
        p.add_argument("--metrics", metavar="ADDR:PORT", help="serve Prometheus metrics at http://ADDR:PORT/metrics")
        p.add_argument(
            "--netns",
            type=netns_name,
            metavar="NS",
            help="capture and quarantine inside network namespace NS (metrics stay on the host's side)",
        )
        p.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds")

    def run(self, args: argparse.Namespace) -> int:
        from vmsentry.collect.traffic.live import LiveError
        from vmsentry.watch import netns
        from vmsentry.watch.config import ConfigError, watch_config
        from vmsentry.watch.metrics import Metrics, MetricsError
        from vmsentry.watch.service import Watcher, WatchError

        with reraise_as(FatalError, ConfigError):
            config = watch_config(args)
        model = None
        if config.model:
            from vmsentry.commands.baseline import load_model

            model = load_model(config.model)  # (model, name), or None when it cannot be used: said, exit 2
            if model is None:
                return 2
        ns = config.netns
        # before any thread: the private mount table that lets /sys show the namespace's bridges
        own_sysfs = netns.private_mounts() if ns else True
        metrics = None
        address = config.metrics
        if address:
            metrics = Metrics()
            with reraise_as(FatalError, MetricsError, ValueError):
                metrics.serve(address)  # on the host's side: before entering the namespace
        if ns:
            with reraise_as(FatalError, netns.NetnsError):
                netns.enter(ns, remount_sys=own_sysfs)
        from vmsentry.report.audit import AuditError

        with reraise_as(FatalError, AuditError):
            watcher = Watcher(config, metrics=metrics, sysfs="/sys/class/net" if own_sysfs else None, model=model)
        if not own_sysfs:
            watcher.timeline.say(
                f"--netns {ns}: /sys could not be remounted: attacker attribution uses the inventory only"
            )
        with reraise_as(FatalError, WatchError, LiveError):
            return watcher.run()
