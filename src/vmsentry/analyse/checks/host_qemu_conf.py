"""Predicates for libvirt's QEMU driver settings, ``qemu.conf``: console defaults, confinement, device
access, migration and character-device TLS."""

from __future__ import annotations

from dataclasses import dataclass

from vmsentry.analyse.addresses import bare_ip
from vmsentry.analyse.checks import Outcome, check, not_applicable, unknown
from vmsentry.analyse.checks.host_facts import on
from vmsentry.analyse.checks.libvirt_settings import Conf, as_list, conf_check, listens_publicly, with_conf
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import guest_bridges, guest_reach
from vmsentry.model import Host, ListeningSocket


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
    if not listens_publicly(listen):
        return conf.ok(f"{kind}_listen", "127.0.0.1", f"{console.label} displays listen on loopback by default")
    if on(conf.get(f"{kind}_tls", 0)):
        return conf.ok(f"{kind}_tls", 0, console.tls_ok and console.tls_ok.format(listen=listen or "0.0.0.0"))
    return conf.fail(f"{kind}_listen", "127.0.0.1", console.cleartext.format(listen=listen or "all addresses"))


def _console_password(conf: Conf, console: _Console) -> Outcome:
    kind = console.kind
    listen, unix = _graphics_default(conf, kind)
    if unix or not listens_publicly(listen):
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


@conf_check("qemu_conf_vnc_tls_verify", "qemu_conf")
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


@conf_check("qemu_conf_security_driver", "qemu_conf")
def security_driver(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if not conf.has("security_driver"):
        return conf.ok(
            "security_driver",
            "auto (selinux, else apparmor)",
            "libvirt picks the host's active LSM; see the host LSM rule for whether one is enforcing",
        )
    drivers = as_list(conf.values.get("security_driver")) or []
    drivers = [d for d in drivers if d]
    return conf.judge(
        not drivers or drivers == ["none"],
        "security_driver",
        None,
        "sVirt is disabled: QEMU processes run without SELinux/AppArmor "
        "confinement, so an escaped guest reaches every VM's disks",
    )


@conf_check("qemu_conf_default_confined", "qemu_conf")
def default_confined(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    off = conf.has("security_default_confined") and not on(conf.get("security_default_confined"))
    return conf.judge(off, "security_default_confined", 1, "guests without an explicit <seclabel> run unconfined")


@conf_check("qemu_conf_require_confined", "qemu_conf")
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


@conf_check("qemu_conf_user_root", "qemu_conf")
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


@conf_check("qemu_conf_seccomp", "qemu_conf")
def seccomp(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    off = conf.has("seccomp_sandbox") and str(conf.get("seccomp_sandbox")).strip() == "0"
    return conf.judge(
        off,
        "seccomp_sandbox",
        1,
        "QEMU runs without its seccomp filter: a compromised QEMU may spawn processes and use obsolete or privilege-raising syscalls",
    )


@conf_check("qemu_conf_namespaces", "qemu_conf")
def namespaces(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if not conf.has("namespaces"):
        return conf.ok("namespaces", '["mount"]')
    value = as_list(conf.values.get("namespaces")) or []
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


@conf_check("qemu_conf_cgroup_devices", "qemu_conf")
def cgroup_devices(host: Host, ctx: ScanContext, conf: Conf) -> Outcome | list[Outcome]:
    out: list[Outcome] = []
    if conf.has("cgroup_controllers"):
        controllers = as_list(conf.values.get("cgroup_controllers")) or []
        if "devices" not in controllers:
            out.append(
                conf.fail(
                    "cgroup_controllers",
                    None,
                    "the devices controller is not used: QEMU may open any device node its user and LSM permit",
                )
            )
    if conf.has("cgroup_device_acl"):
        acl = as_list(conf.values.get("cgroup_device_acl")) or []
        extra = [d for d in acl if d not in _ACL_KNOWN]
        if extra:
            out.append(
                conf.fail("cgroup_device_acl", None, f"extra device nodes every QEMU may open: {', '.join(extra[:6])}")
            )
    return out or conf.ok("cgroup_device_acl", "built-in list", "device cgroup with the stock device list")


@conf_check("qemu_conf_relaxed_acs", "qemu_conf")
def relaxed_acs(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    return conf.judge(
        on(conf.get("relaxed_acs_check", 0)),
        "relaxed_acs_check",
        0,
        "PCI devices below switches without ACS may be assigned: they can "
        "reach each other (and another guest's device) by peer-to-peer DMA "
        "without passing the IOMMU",
    )


@conf_check("qemu_conf_migration", "qemu_conf")
def migration(host: Host, ctx: ScanContext, conf: Conf) -> Outcome:
    if on(conf.get("migrate_tls_force", 0)):
        return conf.ok("migrate_tls_force", 0, "every migration must use TLS")
    addr = conf.get("migration_address", "0.0.0.0")
    if not listens_publicly(addr):
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


@conf_check("qemu_conf_chardev_tls", "qemu_conf")
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


@conf_check("qemu_conf_stdio_handler", "qemu_conf")
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


@conf_check("qemu_conf_tls_verify_off", "qemu_conf")
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
