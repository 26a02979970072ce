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
    return f"{listener.kind} {listener.transport} {addr}:{port}" if listener.transport != "unix" else \
        f"{listener.kind} unix {listener.address}"


def _listener_rule(vm: VM, kinds: tuple[str, ...], what: str):
    listeners = [l for l in vm.listeners if l.kind in kinds]
    if not listeners:
        return not_applicable(f"no {what}")
    out = []
    for l in listeners:
        reachable = network_reachable(l.address, l.transport)
        if reachable is None:
            out.append(unknown(f"{_where(l)} listens on the host default address; read qemu.conf to resolve it",
                               "listen", locator=l.locator))
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
                out.append(unknown(f"{_where(l)} has no authentication; its address falls back to a host "
                                   "default that was not read", "auth", locator=l.locator))
        elif l.auth == "unknown":
            out.append(unknown(f"{_where(l)}: authentication depends on host settings that were not read "
                               "(qemu.conf vnc_password/vnc_tls/vnc_sasl)", "auth", locator=l.locator))
    return out or passed("auth", ", ".join(f"{_where(l)} auth={l.auth}" for l in listeners))


@check("vnc_password_only")
def vnc_password_only(vm: VM, ctx):
    listeners = [l for l in vm.listeners if l.kind in ("vnc", "websocket")]
    if not listeners:
        return not_applicable("no VNC listener")
    out = [fail("auth", f"{_where(l)} auth=password (no TLS)", locator=l.locator) for l in listeners
           if l.auth == "password" and network_reachable(l.address, l.transport)]
    return out or passed("auth", ", ".join(f"{_where(l)} auth={l.auth}" for l in listeners))


@check("chardev_network_listen")
def chardev_network_listen(vm: VM, ctx):
    listeners = [l for l in vm.listeners if l.kind in CHARDEV_KINDS]
    if not listeners:
        return not_applicable("no serial, channel or USB-redirection socket")
    out = []
    for l in listeners:
        if l.transport == "unix" or not network_reachable(l.address, l.transport):
            continue
        if l.auth == "tls":
            continue
        out.append(fail("source", f"{_where(l)} auth={l.auth}", locator=l.locator))
    return out or passed("source", ", ".join(_where(l) for l in listeners))


@check("monitor_on_network_socket")
def monitor_on_network_socket(vm: VM, ctx):
    monitors = [l for l in vm.listeners if l.kind == "monitor"]
    if not monitors:
        return not_applicable("no QEMU monitor/QMP socket")
    out = []
    for l in monitors:
        if l.transport == "unix":
            continue
        reach = exposure(l.address, l.transport)
        msg = None if reach != "loopback" else ("loopback-only, but any local user and any user-mode "
                                                "(slirp) guest reaching host loopback gets hypervisor control")
        out.append(fail("monitor", _where(l), locator=l.locator, message=msg))
    return out or passed("monitor", ", ".join(_where(l) for l in monitors))


@check("socket_nic_listen")
def socket_nic_listen(vm: VM, ctx):
    sockets = [l for l in vm.listeners if l.kind == "net-socket"]
    if not sockets:
        return not_applicable("no socket-backed NIC listening")
    out = [fail("source", _where(l), locator=l.locator) for l in sockets if network_reachable(l.address, l.transport)]
    return out or passed("source", ", ".join(_where(l) for l in sockets))


@check("migration_listen")
def migration_listen(vm: VM, ctx):
    incoming = [l for l in vm.listeners if l.kind == "migration"]
    if not incoming:
        return not_applicable("no incoming-migration listener")
    out = [fail("incoming", _where(l), locator=l.locator) for l in incoming
           if network_reachable(l.address, l.transport) and l.auth != "tls"]
    return out or passed("incoming", ", ".join(_where(l) for l in incoming))


def _fwd_text(f) -> str:
    hp = f"{f.host_ports[0]}" if f.host_ports[0] == f.host_ports[1] else f"{f.host_ports[0]}-{f.host_ports[1]}"
    gp = f"{f.guest_ports[0]}" if f.guest_ports[0] == f.guest_ports[1] else f"{f.guest_ports[0]}-{f.guest_ports[1]}"
    addr = f.host_address if f.host_address is not None else "*"
    return f"{f.protocol} {addr}:{hp} -> guest:{gp}"


@check("forward_all_addresses")
def forward_all_addresses(vm: VM, ctx):
    if not vm.forwards:
        return not_applicable("no port forwards")
    out = [fail("hostfwd", _fwd_text(f), locator=f.locator) for f in vm.forwards
           if exposure(f.host_address) == "all"]
    return out or passed("hostfwd", "; ".join(_fwd_text(f) for f in vm.forwards))


@check("forward_management_port")
def forward_management_port(vm: VM, ctx):
    if not vm.forwards:
        return not_applicable("no port forwards")
    out = []
    for f in vm.forwards:
        if f.protocol != "tcp" or not network_reachable(f.host_address):
            continue
        hit = ports_in(f.guest_ports[0], f.guest_ports[1])
        if hit:
            out.append(fail("hostfwd", f"{_fwd_text(f)} (guest {', '.join(map(str, hit[:5]))})", locator=f.locator))
    return out or passed("hostfwd", "; ".join(_fwd_text(f) for f in vm.forwards))


WIDE_RANGE = 100


@check("forward_wide_range")
def forward_wide_range(vm: VM, ctx):
    if not vm.forwards:
        return not_applicable("no port forwards")
    out = [fail("hostfwd", f"{_fwd_text(f)} ({f.host_ports[1] - f.host_ports[0] + 1} ports)", locator=f.locator)
           for f in vm.forwards if f.host_ports[1] - f.host_ports[0] + 1 > WIDE_RANGE]
    return out or passed("hostfwd", "; ".join(_fwd_text(f) for f in vm.forwards))


@check("user_mode_unrestricted")
def user_mode_unrestricted(vm: VM, ctx):
    nics = [n for n in vm.nics if n.mode == "user"]
    if not nics:
        return not_applicable("no user-mode (slirp/passt) NIC")
    out = []
    for n in nics:
        restrict = vm.facts.get(f"qemu.netdev.{n.id}.restrict", {}).get("value")
        if str(restrict).lower() in ("on", "yes", "true", "1"):
            continue
        out.append(fail("restrict", restrict or "off (default)", locator=n.locator))
    return out or passed("restrict", "on")
