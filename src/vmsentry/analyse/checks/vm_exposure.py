"""What a VM's definition makes the host listen on: consoles, character devices, monitors, socket
NICs, migration, and port forwards into the guest."""

from __future__ import annotations

from vmsentry.analyse.addresses import exposure, network_reachable, ports_in
from vmsentry.analyse.checks import check, fail, not_applicable, passed, unknown
from vmsentry.model import VM, Listener

CONSOLE_KINDS = ("vnc", "spice", "rdp", "vrde", "websocket")
CHARDEV_KINDS = ("serial", "chardev", "usbredir")


def _where(listener: Listener) -> str:
    addr = listener.address if listener.address is not None else "every address"
    port = listener.port if listener.port is not None else "auto"
    return (
        f"{listener.kind} {listener.transport} {addr}:{port}"
        if listener.transport != "unix"
        else f"{listener.kind} unix {listener.address}"
    )


def _listener_rule(vm: VM, kinds: tuple[str, ...], what: str):
    listeners = [l for l in vm.listeners if l.kind in kinds]
    if not listeners:
        return not_applicable(f"no {what}")
    out = []
    for l in listeners:
        reachable = network_reachable(l.address, l.transport)
        if reachable is None:
            out.append(
                unknown(
                    f"{_where(l)} listens on the host default address; read qemu.conf to resolve it",
                    "listen",
                    locator=l.locator,
                )
            )
        elif reachable:
            out.append(fail("listen", _where(l), locator=l.locator))
    return out or passed("listen", ", ".join(_where(l) for l in listeners))


@check("console_network_listen")
def console_network_listen(vm: VM, ctx):
    return _listener_rule(vm, CONSOLE_KINDS, "graphical console listener")


@check("console_without_auth")
def console_without_auth(vm: VM, ctx):
    listeners = [l for l in vm.listeners if l.kind in CONSOLE_KINDS]
    if not listeners:
        return not_applicable("no graphical console listener")
    out = []
    for l in listeners:
        reachable = network_reachable(l.address, l.transport)
        if reachable is False:
            continue
        if l.auth == "none":
            if reachable:
                out.append(fail("auth", f"{_where(l)} auth=none", locator=l.locator))
            else:
                out.append(
                    unknown(
                        f"{_where(l)} has no authentication; its address falls back to a host "
                        "default that was not read",
                        "auth",
                        locator=l.locator,
                    )
                )
        elif l.auth == "unknown":
            out.append(
                unknown(
                    f"{_where(l)}: authentication depends on host settings that were not read "
                    "(qemu.conf vnc_password/vnc_tls/vnc_sasl)",
                    "auth",
                    locator=l.locator,
                )
            )
    return out or passed("auth", ", ".join(f"{_where(l)} auth={l.auth}" for l in listeners))


def _each_listener(vm: VM, kinds: tuple[str, ...], none: str, key: str, failure, shown=_where):
    """Not applicable without a listener of ``kinds``; else ``failure(listener)`` (an Outcome or None) for
    each, or one pass listing them all."""
    listeners = [l for l in vm.listeners if l.kind in kinds]
    if not listeners:
        return not_applicable(none)
    out = [o for o in map(failure, listeners) if o is not None]
    return out or passed(key, ", ".join(map(shown, listeners)))


def _with_auth(listener: Listener) -> str:
    return f"{_where(listener)} auth={listener.auth}"


@check("vnc_password_only")
def vnc_password_only(vm: VM, ctx):
    return _each_listener(
        vm,
        ("vnc", "websocket"),
        "no VNC listener",
        "auth",
        lambda l: (
            fail("auth", f"{_where(l)} auth=password (no TLS)", locator=l.locator)
            if l.auth == "password" and network_reachable(l.address, l.transport)
            else None
        ),
        shown=_with_auth,
    )


@check("chardev_network_listen")
def chardev_network_listen(vm: VM, ctx):
    return _each_listener(
        vm,
        CHARDEV_KINDS,
        "no serial, channel or USB-redirection socket",
        "source",
        lambda l: (
            fail("source", _with_auth(l), locator=l.locator)
            if l.transport != "unix" and network_reachable(l.address, l.transport) and l.auth != "tls"
            else None
        ),
    )


_LOOPBACK_MONITOR = (
    "loopback-only, but any local user and any user-mode (slirp) guest reaching host loopback gets hypervisor control"
)


@check("monitor_on_network_socket")
def monitor_on_network_socket(vm: VM, ctx):
    return _each_listener(
        vm,
        ("monitor",),
        "no QEMU monitor/QMP socket",
        "monitor",
        lambda l: (
            fail(
                "monitor",
                _where(l),
                locator=l.locator,
                message=_LOOPBACK_MONITOR if exposure(l.address, l.transport) == "loopback" else None,
            )
            if l.transport != "unix"
            else None
        ),
    )


@check("socket_nic_listen")
def socket_nic_listen(vm: VM, ctx):
    return _each_listener(
        vm,
        ("net-socket",),
        "no socket-backed NIC listening",
        "source",
        lambda l: fail("source", _where(l), locator=l.locator) if network_reachable(l.address, l.transport) else None,
    )


@check("migration_listen")
def migration_listen(vm: VM, ctx):
    return _each_listener(
        vm,
        ("migration",),
        "no incoming-migration listener",
        "incoming",
        lambda l: (
            fail("incoming", _where(l), locator=l.locator)
            if network_reachable(l.address, l.transport) and l.auth != "tls"
            else None
        ),
    )


def _fwd_text(f) -> str:
    hp = f"{f.host_ports[0]}" if f.host_ports[0] == f.host_ports[1] else f"{f.host_ports[0]}-{f.host_ports[1]}"
    gp = f"{f.guest_ports[0]}" if f.guest_ports[0] == f.guest_ports[1] else f"{f.guest_ports[0]}-{f.guest_ports[1]}"
    addr = f.host_address if f.host_address is not None else "*"
    return f"{f.protocol} {addr}:{hp} -> guest:{gp}"


def _each_forward(vm: VM, failure):
    """Not applicable without port forwards; else ``failure(forward)`` (an Outcome or None) for each, or one
    pass listing them all."""
    if not vm.forwards:
        return not_applicable("no port forwards")
    out = [o for o in map(failure, vm.forwards) if o is not None]
    return out or passed("hostfwd", "; ".join(_fwd_text(f) for f in vm.forwards))


@check("forward_all_addresses")
def forward_all_addresses(vm: VM, ctx):
    return _each_forward(
        vm, lambda f: fail("hostfwd", _fwd_text(f), locator=f.locator) if exposure(f.host_address) == "all" else None
    )


def _management_forward(f):
    if f.protocol != "tcp" or not network_reachable(f.host_address):
        return None
    hit = ports_in(f.guest_ports[0], f.guest_ports[1])
    return fail("hostfwd", f"{_fwd_text(f)} (guest {', '.join(map(str, hit[:5]))})", locator=f.locator) if hit else None


@check("forward_management_port")
def forward_management_port(vm: VM, ctx):
    return _each_forward(vm, _management_forward)


WIDE_RANGE = 100


@check("forward_wide_range")
def forward_wide_range(vm: VM, ctx):
    return _each_forward(
        vm,
        lambda f: (
            fail("hostfwd", f"{_fwd_text(f)} ({f.host_ports[1] - f.host_ports[0] + 1} ports)", locator=f.locator)
            if f.host_ports[1] - f.host_ports[0] + 1 > WIDE_RANGE
            else None
        ),
    )


@check("user_mode_unrestricted")
def user_mode_unrestricted(vm: VM, ctx):
    nics = [n for n in vm.nics if n.mode == "user"]
    if not nics:
        return not_applicable("no user-mode (slirp/passt) NIC")
    restricts = [(n, vm.facts.get(f"qemu.netdev.{n.id}.restrict", {}).get("value")) for n in nics]
    return [
        fail("restrict", value or "off (default)", locator=n.locator)
        for n, value in restricts
        if str(value).lower() not in ("on", "yes", "true", "1")
    ] or passed("restrict", "on")
