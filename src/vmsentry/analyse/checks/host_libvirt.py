"""Predicates for libvirt's daemon settings: ``qemu.conf`` (QEMU driver) and ``libvirtd.conf`` /
``virtproxyd.conf`` (remote access). The facts hold only keys present in the file; an absent key means
libvirt's built-in default (src/qemu/qemu.conf.in, src/remote/libvirtd.conf.in), which each predicate
applies explicitly. Where a file setting is superseded by what is running (systemd socket units, the
``--listen`` flag), the host's listening sockets decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vmsentry.analyse.addresses import bare_ip, is_loopback
from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.checks.host_facts import on
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import guest_bridges, guest_reach
from vmsentry.model import Host, ListeningSocket

_DEFAULT_FILE = {"qemu_conf": "/etc/libvirt/qemu.conf", "libvirtd_conf": "/etc/libvirt/libvirtd.conf"}


@dataclass
class Conf:
    file: str
    values: dict[str, Any]
    lines: dict[str, Any]

    def has(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key, default)
        return value.strip().strip('"') if isinstance(value, str) else value

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"line {line}" if line is not None else f"{key} (not set: built-in default)"

    def fail(self, key: str, default: Any, message: str) -> Outcome:
        return fail(key, self._shown(key, default), file=self.file, locator=self.where(key), message=message)

    def ok(self, key: str, default: Any, message: str | None = None) -> Outcome:
        return passed(key, self._shown(key, default), file=self.file, locator=self.where(key), message=message)

    def judge(self, bad: bool, key: str, default: Any, message: str) -> Outcome:
        """One setting with one way to be wrong: a failure saying ``message``, else a pass."""
        return self.fail(key, default, message) if bad else self.ok(key, default)

    def _shown(self, key: str, default: Any) -> Any:
        if key in self.values:
            value = self.values[key]
            if ("password" in key or "secret" in key) and value not in ("", None):
                return "<set>"  # never echo a secret, even if a collector kept it
            return value
        return f"{default} (default)" if default is not None else "(unset, default)"


def _libvirt_absent(host: Host) -> bool:
    """Positive evidence that libvirt is not installed/running on the host."""
    versions, lv = host.versions, host.facts.get("libvirt")
    return (
        versions is not None
        and not versions.libvirt
        and isinstance(lv, dict)
        and lv.get("daemon_running") is False
        and not lv.get("processes")
    )


def conf_of(host: Host, name: str) -> Conf | Outcome:
    raw = host.facts.get(name)
    label = "qemu.conf" if name == "qemu_conf" else "libvirtd.conf/virtproxyd.conf"
    if not isinstance(raw, dict):
        if _libvirt_absent(host):
            return not_applicable(f"libvirt is not installed or running on this host ({label} not present)")
        errors = [
            e
            for e in host.facts.get("collection_errors") or []
            if isinstance(e, str) and label.split("/")[0].split(".")[0] in e
        ]
        extra = f" (collector said: {errors[0]})" if errors else ""
        return unknown(f"{label} not collected for this host{extra}", name)
    values = raw.get("values")
    if not isinstance(values, dict):
        return unknown(f"{label} was found but its values were not parsed", name, file=raw.get("file"))
    return Conf(raw.get("file") or _DEFAULT_FILE[name], values, raw.get("lines") or {})


def with_conf(name: str):
    """Registers ``fn(host, ctx, conf)`` as a predicate that first reads the ``name`` settings file; when it
    was not collected (or libvirt is absent) that outcome is the rule's."""

    def wrap(fn):
        def predicate(host: Host, ctx: ScanContext):
            conf = conf_of(host, name)
            return conf if isinstance(conf, Outcome) else fn(host, ctx, conf)

        predicate.__name__ = predicate.__qualname__ = fn.__name__
        predicate.__doc__ = fn.__doc__
        return predicate

    return wrap


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


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [str(v).strip().strip('"') for v in value]
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [p.strip().strip('"') for p in inner.split(",") if p.strip()] if inner else []
    return [text.strip('"')]


def _public(addr: Any) -> bool:
    """A listen address that is not loopback ('0', '' and '0.0.0.0' are every address)."""
    text = "" if addr is None else str(addr).strip().strip('"')
    if text in ("", "0"):
        return True
    return not is_loopback(text)


# ------------------------------------------------------------------------------------------ sockets


def _listeners(host: Host) -> list[ListeningSocket] | None:
    return host.listeners


def _remote_sockets(host: Host, daemon: Conf | None, tls: bool) -> list[ListeningSocket] | None:
    socks = _listeners(host)
    if socks is None:
        return None
    port = _num(
        (daemon.get("tls_port") if tls else daemon.get("tcp_port")) if daemon else None, 16514 if tls else 16509
    )
    return [s for s in socks if s.proto == "tcp" and s.port == port and not is_loopback(s.address)]


# ===================================================================================== qemu.conf


def _graphics_default(conf: Conf, kind: str) -> tuple[str, bool]:
    """(effective default listen address, served on an automatic UNIX socket)."""
    listen = str(conf.get(f"{kind}_listen", "127.0.0.1"))
    return listen, on(conf.get(f"{kind}_auto_unix_socket", 0))


@dataclass(frozen=True)
class _Console:
    """What differs between the VNC and SPICE console defaults of qemu.conf (the keys share a prefix)."""

    kind: str  # key prefix: vnc_listen, vnc_tls, ...
    label: str
    unix_default: int  # built-in value of <kind>_auto_unix_socket shown when it decides
    tls_ok: str | None  # shown when the listener is public but TLS is on ({listen}: the address)
    cleartext: str  # the failure: public without TLS
    password_ok: str
    sasl_ok: str | None
    certificates: bool  # whether client certificates count as authentication (VNC only)
    unauthenticated: str  # the failure: public with no password/SASL (/certificates)


_VNC = _Console(
    "vnc",
    "VNC",
    1,
    "VNC listens on {listen} with TLS",
    "VNC consoles listen on {listen} without TLS (vnc_tls off): keyboard and screen of every VM in cleartext to "
    "anyone who reaches the host, guests included",
    "a default VNC password is set (only 8 bytes are significant)",
    "VNC clients authenticate with SASL",
    True,
    "VNC listens on {listen} and neither vnc_password, vnc_sasl nor client certificates are required: VMs without "
    "a per-domain passwd get an unauthenticated console",
)
_SPICE = _Console(
    "spice",
    "SPICE",
    0,
    None,
    "SPICE consoles (display, USB redirection, clipboard) listen on {listen} without TLS",
    "a default SPICE ticket is set",
    None,
    False,
    "SPICE listens on {listen} with neither spice_password nor spice_sasl: unauthenticated consoles",
)


def _console_listen_tls(conf: Conf, console: _Console) -> Outcome:
    kind = console.kind
    listen, unix = _graphics_default(conf, kind)
    if unix:
        return conf.ok(
            f"{kind}_auto_unix_socket",
            console.unix_default,
            f"address-less {console.label} displays are served on a UNIX socket",
        )
    if not _public(listen):
        return conf.ok(f"{kind}_listen", "127.0.0.1", f"{console.label} displays listen on loopback by default")
    if on(conf.get(f"{kind}_tls", 0)):
        return conf.ok(f"{kind}_tls", 0, console.tls_ok and console.tls_ok.format(listen=listen or "0.0.0.0"))
    return conf.fail(f"{kind}_listen", "127.0.0.1", console.cleartext.format(listen=listen or "all addresses"))


def _console_password(conf: Conf, console: _Console) -> Outcome:
    kind = console.kind
    listen, unix = _graphics_default(conf, kind)
    if unix or not _public(listen):
        return not_applicable(
            f"{console.label} defaults to loopback or a UNIX socket; per-VM listeners are audited per VM"
        )
    if conf.has(f"{kind}_password"):
        return conf.ok(f"{kind}_password", None, console.password_ok)
    if on(conf.get(f"{kind}_sasl", 0)):
        return conf.ok(f"{kind}_sasl", 0, console.sasl_ok)
    if console.certificates and on(conf.get(f"{kind}_tls", 0)) and _verify(conf, kind, 0):
        return conf.ok(f"{kind}_tls_x509_verify", 0, f"{console.label} clients must present a CA-signed certificate")
    return conf.fail(f"{kind}_password", None, console.unauthenticated.format(listen=listen or "all addresses"))


def _register_console_rules(console: _Console) -> None:
    """qemu_conf_<kind>_listen_tls and qemu_conf_<kind>_password, one pair per console protocol."""
    check(f"qemu_conf_{console.kind}_listen_tls")(
        with_conf("qemu_conf")(lambda host, ctx, conf: _console_listen_tls(conf, console))
    )
    check(f"qemu_conf_{console.kind}_password")(
        with_conf("qemu_conf")(lambda host, ctx, conf: _console_password(conf, console))
    )


_register_console_rules(_VNC)
_register_console_rules(_SPICE)


def _verify(conf: Conf, prefix: str, builtin: int) -> bool:
    if conf.has(f"{prefix}_tls_x509_verify"):
        return on(conf.get(f"{prefix}_tls_x509_verify"))
    if conf.has("default_tls_x509_verify"):
        return on(conf.get("default_tls_x509_verify"))
    return bool(builtin)


@check("qemu_conf_vnc_tls_verify")
@with_conf("qemu_conf")
def vnc_tls_verify(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if not on(conf.get("vnc_tls", 0)):
        return not_applicable("vnc_tls is off (see the VNC listen rule)")
    if _verify(conf, "vnc", 0):
        key = "vnc_tls_x509_verify" if conf.has("vnc_tls_x509_verify") else "default_tls_x509_verify"
        return conf.ok(key, 0, "VNC clients must present a CA-signed certificate")
    if conf.has("vnc_password") or on(conf.get("vnc_sasl", 0)):
        return conf.ok("vnc_tls_x509_verify", 0, "no client certificates, but VNC password/SASL authenticate clients")
    return conf.fail(
        "vnc_tls_x509_verify",
        0,
        "VNC TLS only encrypts: no client certificate, password or SASL is "
        "required, so any client that reaches the port gets the console",
    )


@check("qemu_conf_security_driver")
@with_conf("qemu_conf")
def security_driver(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if not conf.has("security_driver"):
        return conf.ok(
            "security_driver",
            "auto (selinux, else apparmor)",
            "libvirt picks the host's active LSM; see the host LSM rule for whether one is enforcing",
        )
    drivers = _as_list(conf.values.get("security_driver")) or []
    drivers = [d for d in drivers if d]
    return conf.judge(
        not drivers or drivers == ["none"],
        "security_driver",
        None,
        "sVirt is disabled: QEMU processes run without SELinux/AppArmor "
        "confinement, so an escaped guest reaches every VM's disks",
    )


@check("qemu_conf_default_confined")
@with_conf("qemu_conf")
def default_confined(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    off = conf.has("security_default_confined") and not on(conf.get("security_default_confined"))
    return conf.judge(off, "security_default_confined", 1, "guests without an explicit <seclabel> run unconfined")


@check("qemu_conf_require_confined")
@with_conf("qemu_conf")
def require_confined(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if on(conf.get("security_require_confined", 0)):
        return conf.ok("security_require_confined", 0, "libvirt refuses to start unconfined guests")
    unconfined = [
        vm.name
        for vm in ctx.inventory.vms
        if ctx.host_of(vm) is host and vm.platform == "libvirt" and vm.security.confinement == "none"
    ]
    if unconfined:
        return conf.fail(
            "security_require_confined", 0, f"unconfined guests are allowed and present: {', '.join(unconfined[:6])}"
        )
    known = [vm for vm in ctx.inventory.vms if ctx.host_of(vm) is host and vm.platform == "libvirt"]
    if not known:
        return unknown(
            "security_require_confined is 0 (unconfined guests allowed); no VM of this host was "
            "collected to tell whether any runs unconfined",
            "security_require_confined",
            file=conf.file,
            locator=conf.where("security_require_confined"),
        )
    return conf.ok(
        "security_require_confined",
        0,
        f"unconfined guests would be allowed, but none of the {len(known)} collected VMs is unconfined",
    )


_ROOT = ("root", "+0", "0")


@check("qemu_conf_user_root")
@with_conf("qemu_conf")
def user_root(host: Host, ctx: ScanContext, conf: Conf) -> Outcome | list[Outcome]:
    out: list[Outcome] = []
    for key in ("user", "group"):
        if conf.has(key) and str(conf.get(key)).strip() in _ROOT:
            out.append(
                conf.fail(
                    key,
                    None,
                    f"QEMU processes run with {key} root: a device-emulation escape from a "
                    "guest is a host root compromise",
                )
            )
    return out or conf.ok("user", "distribution QEMU user", "QEMU runs as an unprivileged user")


@check("qemu_conf_seccomp")
@with_conf("qemu_conf")
def seccomp(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    off = conf.has("seccomp_sandbox") and str(conf.get("seccomp_sandbox")).strip() == "0"
    return conf.judge(
        off,
        "seccomp_sandbox",
        1,
        "QEMU runs without its seccomp filter: a compromised QEMU may spawn "
        "processes and use obsolete or privilege-raising syscalls",
    )


@check("qemu_conf_namespaces")
@with_conf("qemu_conf")
def namespaces(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if not conf.has("namespaces"):
        return conf.ok("namespaces", '["mount"]')
    value = _as_list(conf.values.get("namespaces")) or []
    return conf.judge(
        "mount" not in value,
        "namespaces",
        None,
        "no private mount namespace: each QEMU sees the host's whole /dev instead of only its own devices",
    )


_ACL_KNOWN = {
    "/dev/null",
    "/dev/full",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/ptmx",
    "/dev/kvm",
    "/dev/userfaultfd",
    "/dev/kqemu",
    "/dev/rtc",
    "/dev/hpet",
    "/dev/vfio/vfio",
    "/dev/sev",
}


@check("qemu_conf_cgroup_devices")
@with_conf("qemu_conf")
def cgroup_devices(host: Host, ctx: ScanContext, conf: Conf) -> Outcome | list[Outcome]:
    out: list[Outcome] = []
    if conf.has("cgroup_controllers"):
        controllers = _as_list(conf.values.get("cgroup_controllers")) or []
        if "devices" not in controllers:
            out.append(
                conf.fail(
                    "cgroup_controllers",
                    None,
                    "the devices controller is not used: QEMU may open any device node its user and LSM permit",
                )
            )
    if conf.has("cgroup_device_acl"):
        acl = _as_list(conf.values.get("cgroup_device_acl")) or []
        extra = [d for d in acl if d not in _ACL_KNOWN]
        if extra:
            out.append(
                conf.fail("cgroup_device_acl", None, f"extra device nodes every QEMU may open: {', '.join(extra[:6])}")
            )
    return out or conf.ok("cgroup_device_acl", "built-in list", "device cgroup with the stock device list")


@check("qemu_conf_relaxed_acs")
@with_conf("qemu_conf")
def relaxed_acs(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    return conf.judge(
        on(conf.get("relaxed_acs_check", 0)),
        "relaxed_acs_check",
        0,
        "PCI devices below switches without ACS may be assigned: they can "
        "reach each other (and another guest's device) by peer-to-peer DMA "
        "without passing the IOMMU",
    )


@check("qemu_conf_migration")
@with_conf("qemu_conf")
def migration(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if on(conf.get("migrate_tls_force", 0)):
        return conf.ok("migrate_tls_force", 0, "every migration must use TLS")
    addr = conf.get("migration_address", "0.0.0.0")
    if not _public(addr):
        return conf.ok("migration_address", "0.0.0.0", "incoming migrations listen on loopback only")
    bridges = guest_bridges(host, ctx)
    migration = ListeningSocket(address=bare_ip(str(addr)) or "0.0.0.0", port=49152)
    reach = guest_reach(migration, bridges) if bridges else None
    extra = f"; guests can reach it ({reach})" if reach else ""
    return conf.fail(
        "migrate_tls_force",
        0,
        f"incoming migrations listen on {addr or 'all addresses'} (ports 49152-"
        f"49215 by default) and may be plaintext: VM memory is readable on the "
        f"wire and any host or guest that reaches the port can talk to the "
        f"incoming QEMU{extra}",
    )


@check("qemu_conf_chardev_tls")
@with_conf("qemu_conf")
def chardev_tls(host: Host, ctx: ScanContext, conf: Conf) -> Outcome | list[Outcome]:
    if on(conf.get("chardev_tls", 0)):
        return conf.ok("chardev_tls", 0, "TCP character devices use TLS")
    tcp = [
        (vm.name, lst)
        for vm in ctx.inventory.vms
        if ctx.host_of(vm) is host and vm.platform == "libvirt"
        for lst in vm.listeners
        if lst.kind in ("serial", "chardev", "monitor") and lst.transport == "tcp" and lst.tls is not True
    ]
    if not tcp:
        return not_applicable("no collected VM of this host has a TCP character device")
    return [
        conf.fail(
            "chardev_tls",
            0,
            f"VM {name}: {lst.kind} on tcp {lst.address or '*'}:{lst.port or '?'} "
            "carries console/agent traffic in cleartext",
        )
        for name, lst in tcp
    ]


@check("qemu_conf_stdio_handler")
@with_conf("qemu_conf")
def stdio_handler(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    return conf.judge(
        str(conf.get("stdio_handler", "logd")) == "file",
        "stdio_handler",
        "logd",
        "QEMU writes its output straight to a file: a guest that makes QEMU log endlessly can fill the host filesystem",
    )


_VERIFY_KEYS = (
    "default_tls_x509_verify",
    "migrate_tls_x509_verify",
    "chardev_tls_x509_verify",
    "backup_tls_x509_verify",
)


@check("qemu_conf_tls_verify_off")
@with_conf("qemu_conf")
def tls_verify_off(host: Host, ctx: ScanContext, conf: Conf) -> Outcome | list[Outcome]:
    out = [
        conf.fail(
            key, 1, f"{key} = 0: TLS on this channel encrypts but accepts any client without a CA-signed certificate"
        )
        for key in _VERIFY_KEYS
        if conf.has(key) and not on(conf.get(key))
    ]
    return out or conf.ok(
        "default_tls_x509_verify",
        "1 for migration, chardev and backup",
        "client certificates are verified on migration, chardev and backup TLS",
    )


# ================================================================================= libvirtd.conf


def _remote_state(host: Host, daemon: Conf, tls: bool) -> tuple[bool | None, list[dict[str, Any]] | None, str]:
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


@check("libvirtd_tcp_no_auth")
@with_conf("libvirtd_conf")
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


@check("libvirtd_tcp_exposed")
@with_conf("libvirtd_conf")
def tcp_exposed(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    enabled, socks, seen = _remote_state(host, daemon, tls=False)
    addr = daemon.get("listen_addr")
    if socks:
        return daemon.fail("listen_tcp", 0, f"the libvirt TCP (non-TLS) API is reachable: {seen}")
    if enabled and (addr is None or _public(addr)):
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


@check("libvirtd_tls_no_verify")
@with_conf("libvirtd_conf")
def tls_no_verify(host: Host, ctx: ScanContext, daemon: Conf) -> Outcome:
    if on(daemon.get("tls_no_verify_certificate", 0)):
        _, _, seen = _remote_state(host, daemon, tls=True)
        return daemon.fail(
            "tls_no_verify_certificate",
            0,
            f"client certificates are not verified, so the TLS listener authenticates no one ({seen})",
        )
    return daemon.ok("tls_no_verify_certificate", 0)


@check("libvirtd_unix_rw_open")
@with_conf("libvirtd_conf")
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


@check("libvirtd_tls_dn_allowlist")
@with_conf("libvirtd_conf")
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
    drivers = _as_list(daemon.values.get("access_drivers")) if daemon.has("access_drivers") else ["nop"]
    if not drivers or drivers == ["nop"]:
        return daemon.fail(
            "access_drivers",
            '["nop"]',
            f"remote listener active ({remote[0].label}) and every authenticated client may call every API on every VM",
        )
    return daemon.ok("access_drivers", '["nop"]')
