"""What a VM's definition makes the host listen on: consoles, character devices, monitors, socket
NICs, migration, and port forwards into the guest."""

from __future__ import annotations

from collections.abc import Callable

from vmsentry.analyse.addresses import exposure, network_reachable, ports_in
from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.model import VM, Forward, Listener

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


def _with_auth(listener: Listener) -> str:
    return f"{_where(listener)} auth={listener.auth}"


def each_listener(kinds: tuple[str, ...], none: str, key: str, shown: Callable[[Listener], str] = _where):
    """Makes ``judge(listener)`` (an Outcome, or None when that listener is fine) a VM predicate: not
    applicable without a listener of ``kinds``, else ``judge``'s outcome for each, or one pass (``key``)
    listing them all."""

    def wrap(judge: Callable[[Listener], Outcome | None]):
        def predicate(vm: VM, ctx):
            listeners = [listener for listener in vm.listeners if listener.kind in kinds]
            if not listeners:
                return not_applicable(none)
            out = [o for o in map(judge, listeners) if o is not None]
            return out or passed(key, ", ".join(map(shown, listeners)))

        predicate.__name__ = predicate.__qualname__ = judge.__name__
        predicate.__doc__ = judge.__doc__
        return predicate

    return wrap


@check("console_network_listen")
@each_listener(CONSOLE_KINDS, "no graphical console listener", "listen")
def console_network_listen(listener: Listener) -> Outcome | None:
    reachable = network_reachable(listener.address, listener.transport)
    if reachable is None:
        return unknown(
            f"{_where(listener)} listens on the host default address; read qemu.conf to resolve it",
            "listen",
            locator=listener.locator,
        )
    return fail("listen", _where(listener), locator=listener.locator) if reachable else None


@check("console_without_auth")
@each_listener(CONSOLE_KINDS, "no graphical console listener", "auth", shown=_with_auth)
def console_without_auth(listener: Listener) -> Outcome | None:
    reachable = network_reachable(listener.address, listener.transport)
    if reachable is False:
        return None
    if listener.auth == "none":
        if reachable:
            return fail("auth", f"{_where(listener)} auth=none", locator=listener.locator)
        return unknown(
            f"{_where(listener)} has no authentication; its address falls back to a host default that was not read",
            "auth",
            locator=listener.locator,
        )
    if listener.auth == "unknown":
        return unknown(
            f"{_where(listener)}: authentication depends on host settings that were not read "
            "(qemu.conf vnc_password/vnc_tls/vnc_sasl)",
            "auth",
            locator=listener.locator,
        )
    return None


@check("vnc_password_only")
@each_listener(("vnc", "websocket"), "no VNC listener", "auth", shown=_with_auth)
def vnc_password_only(listener: Listener) -> Outcome | None:
    if listener.auth == "password" and network_reachable(listener.address, listener.transport):
        return fail("auth", f"{_where(listener)} auth=password (no TLS)", locator=listener.locator)
    return None


@check("chardev_network_listen")
@each_listener(CHARDEV_KINDS, "no serial, channel or USB-redirection socket", "source")
def chardev_network_listen(listener: Listener) -> Outcome | None:
    if (
        listener.transport != "unix"
        and network_reachable(listener.address, listener.transport)
        and listener.auth != "tls"
    ):
        return fail("source", _with_auth(listener), locator=listener.locator)
    return None


_LOOPBACK_MONITOR = (
    "loopback-only, but any local user and any user-mode (slirp) guest reaching host loopback gets hypervisor control"
)


@check("monitor_on_network_socket")
@each_listener(("monitor",), "no QEMU monitor/QMP socket", "monitor")
def monitor_on_network_socket(listener: Listener) -> Outcome | None:
    if listener.transport == "unix":
        return None
    on_loopback = exposure(listener.address, listener.transport) == "loopback"
    return fail(
        "monitor", _where(listener), locator=listener.locator, message=_LOOPBACK_MONITOR if on_loopback else None
    )


@check("socket_nic_listen")
@each_listener(("net-socket",), "no socket-backed NIC listening", "source")
def socket_nic_listen(listener: Listener) -> Outcome | None:
    if network_reachable(listener.address, listener.transport):
        return fail("source", _where(listener), locator=listener.locator)
    return None


@check("migration_listen")
@each_listener(("migration",), "no incoming-migration listener", "incoming")
def migration_listen(listener: Listener) -> Outcome | None:
    if network_reachable(listener.address, listener.transport) and listener.auth != "tls":
        return fail("incoming", _where(listener), locator=listener.locator)
    return None


def _ports(ports: list[int]) -> str:
    """A forward's port range as written: ``22`` or ``8000-8100``."""
    return f"{ports[0]}" if ports[0] == ports[1] else f"{ports[0]}-{ports[1]}"


def _fwd_text(forward: Forward) -> str:
    addr = forward.host_address if forward.host_address is not None else "*"
    return f"{forward.protocol} {addr}:{_ports(forward.host_ports)} -> guest:{_ports(forward.guest_ports)}"


def each_forward(judge: Callable[[Forward], Outcome | None]):
    """Makes ``judge(forward)`` (an Outcome, or None when that forward is fine) a VM predicate: not
    applicable without port forwards, else ``judge``'s outcome for each, or one pass listing them all."""

    def predicate(vm: VM, ctx):
        if not vm.forwards:
            return not_applicable("no port forwards")
        out = [o for o in map(judge, vm.forwards) if o is not None]
        return out or passed("hostfwd", "; ".join(map(_fwd_text, vm.forwards)))

    predicate.__name__ = predicate.__qualname__ = judge.__name__
    predicate.__doc__ = judge.__doc__
    return predicate


@check("forward_all_addresses")
@each_forward
def forward_all_addresses(forward: Forward) -> Outcome | None:
    if exposure(forward.host_address) == "all":
        return fail("hostfwd", _fwd_text(forward), locator=forward.locator)
    return None


@check("forward_management_port")
@each_forward
def forward_management_port(forward: Forward) -> Outcome | None:
    if forward.protocol != "tcp" or not network_reachable(forward.host_address):
        return None
    hit = ports_in(forward.guest_ports[0], forward.guest_ports[1])
    if not hit:
        return None
    return fail("hostfwd", f"{_fwd_text(forward)} (guest {', '.join(map(str, hit[:5]))})", locator=forward.locator)


WIDE_RANGE = 100


@check("forward_wide_range")
@each_forward
def forward_wide_range(forward: Forward) -> Outcome | None:
    count = forward.host_ports[1] - forward.host_ports[0] + 1
    if count > WIDE_RANGE:
        return fail("hostfwd", f"{_fwd_text(forward)} ({count} ports)", locator=forward.locator)
    return None


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
