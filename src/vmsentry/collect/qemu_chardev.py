"""QEMU character devices: ``-chardev`` backends and the legacy ``tcp:``/``unix:``/``udp:`` specs of
``-serial``, ``-monitor``, ``-gdb``... and the host listener each one opens."""

from __future__ import annotations

from dataclasses import dataclass

from vmsentry.collect.qemu_options import QemuOpts, normalise_host, split_host_port
from vmsentry.model import Listener


@dataclass
class Chardev:
    """A character device backend, from ``-chardev`` or a legacy ``tcp:...`` spec."""

    backend: str
    locator: str
    transport: str | None = None  # tcp | udp | unix when it is a socket
    address: str | None = None
    port: int | None = None
    server: bool = False
    tls: bool = False
    detail: str = ""

    def listener(self, kind: str) -> Listener | None:
        if self.transport is None or not self.server:
            return None
        return Listener(
            kind=kind,
            transport=self.transport,
            address=self.address,
            port=self.port,
            auth="tls" if self.tls else "none",
            locator=self.locator,
            tls=self.tls,
        )


def chardev_from_opts(opts: QemuOpts, locator: str) -> Chardev:
    backend = opts.get("backend", "") or ""
    chardev = Chardev(backend=backend, locator=locator, tls="tls-creds" in opts)
    if backend == "socket":
        if opts.get("path") or opts.get("abstract"):
            chardev.transport, chardev.address = "unix", opts.get("path") or "@" + (opts.get("abstract") or "")
        elif opts.get("port") is not None:
            chardev.transport = "tcp"
            chardev.address = normalise_host(opts.get("host"))
            chardev.port = opts.port("port")
        chardev.server = opts.flag("server")
        chardev.detail = "socket"
    elif backend == "udp":
        local_port = opts.port("localport")
        if local_port:
            chardev.transport, chardev.port, chardev.server = "udp", local_port, True
            chardev.address = normalise_host(opts.get("localaddr"))
        chardev.detail = "udp"
    else:
        chardev.detail = backend
    return chardev


def chardev_from_spec(spec: str, locator: str) -> tuple[Chardev | None, str | None, bool]:
    """A legacy device spec (``-monitor``, ``-serial``, ``-gdb``...): (chardev, id of an existing
    ``chardev:ID``, multiplexed with the monitor (``mon:``))."""
    with_monitor = spec.startswith("mon:")
    if with_monitor:
        spec = spec[4:]
    if spec.startswith("chardev:"):
        return None, spec[8:], with_monitor
    scheme, sep, rest = spec.partition(":")
    if not sep:
        return Chardev(backend=spec.split(",", 1)[0], locator=locator, detail=spec), None, with_monitor
    if scheme in ("tcp", "telnet", "tn3270", "websocket"):
        address, _, options = rest.partition(",")
        host, port = split_host_port(address, scheme)
        opts = QemuOpts.parse(options)
        chardev = Chardev(
            backend="socket",
            locator=locator,
            transport="tcp",
            address=host,
            port=port,
            server=opts.flag("server"),
            tls="tls-creds" in opts,
            detail=scheme,
        )
        return chardev, None, with_monitor
    if scheme == "unix":
        path, _, options = rest.partition(",")
        opts = QemuOpts.parse(options)
        return (
            Chardev(
                backend="socket",
                locator=locator,
                transport="unix",
                address=path,
                server=opts.flag("server"),
                tls="tls-creds" in opts,
                detail="unix",
            ),
            None,
            with_monitor,
        )
    if scheme == "udp":
        # udp:[remote_host]:remote_port[@[src_ip]:src_port] - the local side is bound when given
        _, at, local = rest.partition("@")
        chardev = Chardev(backend="udp", locator=locator, detail="udp")
        if at:
            host, port = split_host_port(local, "udp local address")
            if port:
                chardev.transport, chardev.address, chardev.port, chardev.server = "udp", host, port, True
        return chardev, None, with_monitor
    return Chardev(backend=scheme, locator=locator, detail=scheme), None, with_monitor
