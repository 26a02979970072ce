"""Predicates for libvirt's remote access settings, ``libvirtd.conf`` / ``virtproxyd.conf``. Where a file
setting is superseded by what is running (systemd socket units, the ``--listen`` flag), the host's
listening sockets decide.
"""

from __future__ import annotations

from typing import Any

from vmsentry.analyse.addresses import is_loopback
from vmsentry.analyse.checks import Outcome, check, not_applicable, unknown
from vmsentry.analyse.checks.host_facts import on
from vmsentry.analyse.checks.libvirt_settings import Conf, as_list, conf_check, conf_of, listens_publicly
from vmsentry.analyse.context import ScanContext
from vmsentry.model import Host, ListeningSocket


def _num(value: Any, default: int = 0) -> int:
    try:
        return int(str(value).strip().strip('"'))
    except (TypeError, ValueError):
        return default


def _octal(value: Any, default: int) -> int:
    try:
        return int(str(value).strip().strip('"'), 8)
    except (TypeError, ValueError):
        return default


def _remote_sockets(host: Host, daemon: Conf, tls: bool) -> list[ListeningSocket] | None:
    """The daemon's TCP or TLS listeners on a non-loopback address, or None when sockets were not collected."""
    socks = host.listeners
    if socks is None:
        return None
    port = _num(daemon.get("tls_port" if tls else "tcp_port"), 16514 if tls else 16509)
    return [s for s in socks if s.proto == "tcp" and s.port == port and not is_loopback(s.address)]


def _remote_state(host: Host, daemon: Conf, tls: bool) -> tuple[bool, list[ListeningSocket] | None, str]:
    """(enabled in file, observed non-loopback sockets or None, description)."""
    key = "listen_tls" if tls else "listen_tcp"
    enabled = on(daemon.get(key, 1 if tls else 0))
    socks = _remote_sockets(host, daemon, tls)
    if socks is None:
        seen = "listening sockets not collected"
    elif socks:
        seen = "listening on " + ", ".join(s.label for s in socks[:3])
    else:
        seen = "no such socket listening"
    return enabled, socks, seen


@conf_check("libvirtd_tcp_no_auth", "libvirtd_conf")
def tcp_no_auth(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    auth = str(daemon.get("auth_tcp", "sasl"))
    if auth != "none":
        return daemon.ok("auth_tcp", "sasl", "TCP connections must authenticate with SASL")
    enabled, socks, seen = _remote_state(host, daemon, tls=False)
    if enabled or socks:
        return daemon.fail(
            "auth_tcp",
            "sasl",
            f"auth_tcp = none with the TCP listener {'enabled' if enabled else 'active'} "
            f"({seen}): anyone who reaches port {daemon.get('tcp_port', 16509)} gets "
            "unauthenticated, cleartext, root-equivalent control of every VM",
        )
    if socks is None:
        return unknown(
            "auth_tcp = none; listen_tcp is off in the file, but whether a TCP socket unit "
            "(libvirtd-tcp.socket/virtproxyd-tcp.socket) is active was not collected",
            "auth_tcp",
            file=daemon.file,
            locator=daemon.where("auth_tcp"),
        )
    return daemon.ok("auth_tcp", "sasl", "auth_tcp = none is latent: no TCP listener is enabled or listening")


@conf_check("libvirtd_tcp_exposed", "libvirtd_conf")
def tcp_exposed(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    enabled, socks, seen = _remote_state(host, daemon, tls=False)
    addr = daemon.get("listen_addr")
    if socks:
        return daemon.fail("listen_tcp", 0, f"the libvirt TCP (non-TLS) API is reachable: {seen}")
    if enabled and (addr is None or listens_publicly(addr)):
        return daemon.fail(
            "listen_tcp",
            0,
            f"listen_tcp = 1 on {addr or 'all addresses'}: the management API is "
            f"offered to every network the host is on, guest networks included ({seen})",
        )
    if socks is None:
        if enabled:
            return daemon.ok("listen_addr", "all", f"TCP listener bound to loopback {addr}")
        return unknown(
            "listen_tcp is off in the file; whether a TCP socket unit is active was not collected",
            "listen_tcp",
            file=daemon.file,
            locator=daemon.where("listen_tcp"),
        )
    return daemon.ok("listen_tcp", 0, seen)


@conf_check("libvirtd_tls_no_verify", "libvirtd_conf")
def tls_no_verify(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    if on(daemon.get("tls_no_verify_certificate", 0)):
        _, _, seen = _remote_state(host, daemon, tls=True)
        return daemon.fail(
            "tls_no_verify_certificate",
            0,
            f"client certificates are not verified, so the TLS listener authenticates no one ({seen})",
        )
    return daemon.ok("tls_no_verify_certificate", 0)


@conf_check("libvirtd_unix_rw_open", "libvirtd_conf")
def unix_rw_open(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    auth = daemon.get("auth_unix_rw")
    if auth is None or str(auth) != "none":
        return daemon.ok("auth_unix_rw", "polkit (none when built without polkit, with a 0600 socket)")
    if not daemon.has("unix_sock_rw_perms"):
        return unknown(
            "auth_unix_rw = none and unix_sock_rw_perms unset: the socket mode then comes from the "
            "systemd socket unit (0666 when libvirt is built with polkit) or the built-in 0770; the real "
            "socket mode was not collected",
            "unix_sock_rw_perms",
            file=daemon.file,
            locator=daemon.where("auth_unix_rw"),
        )
    perms = _octal(daemon.get("unix_sock_rw_perms"), 0o770)
    if perms & 0o002:
        return daemon.fail(
            "unix_sock_rw_perms",
            "0770",
            f"auth_unix_rw = none with socket mode "
            f"{daemon.get('unix_sock_rw_perms')}: every local account "
            "(including services a guest can reach) gets root-equivalent "
            "libvirt access",
        )
    group_name = daemon.get("unix_sock_group", "root")
    return daemon.ok(
        "unix_sock_rw_perms",
        "0770",
        f"socket restricted to its owner and group {group_name} (membership is audited by the libvirt group rule)",
    )


@conf_check("libvirtd_tls_dn_allowlist", "libvirtd_conf")
def tls_dn_allowlist(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    socks = _remote_sockets(host, daemon, tls=True)
    if socks is None:
        return unknown(
            "whether the TLS listener (16514) is active was not collected", "tls_allowed_dn_list", file=daemon.file
        )
    return _allowlist(
        daemon,
        "tls_allowed_dn_list",
        socks,
        "no libvirt TLS listener on a non-loopback address",
        "TLS listener active ({socket}) and any certificate signed by the CA is accepted, with no DN allowlist",
    )


def _allowlist(daemon: Conf, key: str, active: list[ListeningSocket], idle: str, open_to_all: str) -> Outcome:
    """Not applicable without an ``active`` listener; else the allowlist ``key`` must be set."""
    if not active:
        return not_applicable(idle)
    if daemon.has(key):
        return daemon.ok(key, None)
    return daemon.fail(key, None, open_to_all.format(socket=active[0].label))


def with_remote_listeners(key: str):
    """Registers ``fn(host, ctx, daemon, tcp, tls)``: the daemon's settings and the non-loopback sockets of
    its active TCP and TLS listeners; when the settings or the listening sockets were not collected, that
    outcome is the rule's (``key`` names what could not be judged)."""

    def wrap(fn):
        def predicate(host: Host, ctx: ScanContext):
            daemon = conf_of(host, "libvirtd_conf")
            if isinstance(daemon, Outcome):
                return daemon
            tcp = _remote_sockets(host, daemon, tls=False)
            if tcp is None:
                return unknown("whether libvirt's remote listeners are active was not collected", key, file=daemon.file)
            return fn(host, ctx, daemon, tcp, _remote_sockets(host, daemon, tls=True) or [])

        predicate.__name__ = predicate.__qualname__ = fn.__name__
        return predicate

    return wrap


@check("libvirtd_sasl_allowlist")
@with_remote_listeners("sasl_allowed_username_list")
def sasl_allowlist(host: Host, ctx: ScanContext, daemon: Conf, tcp: list, tls: list) -> Outcome:
    sasl = [s for s in tcp if str(daemon.get("auth_tcp", "sasl")) == "sasl"] + [
        s for s in tls if str(daemon.get("auth_tls", "none")) == "sasl"
    ]
    return _allowlist(
        daemon,
        "sasl_allowed_username_list",
        sasl,
        "no active remote listener authenticates with SASL",
        "SASL listener active ({socket}) and every account the SASL database accepts gets full access",
    )


@check("libvirtd_access_driver")
@with_remote_listeners("access_drivers")
def access_driver(host: Host, ctx: ScanContext, daemon: Conf, tcp: list, tls: list) -> Outcome:
    remote = tcp + tls
    if not remote:
        return not_applicable("no remote libvirt listener: only local clients, controlled by socket permissions")
    drivers = as_list(daemon.values.get("access_drivers")) if daemon.has("access_drivers") else ["nop"]
    if not drivers or drivers == ["nop"]:
        return daemon.fail(
            "access_drivers",
            '["nop"]',
            f"remote listener active ({remote[0].label}) and every authenticated client may call every API on every VM",
        )
    return daemon.ok("access_drivers", '["nop"]')
