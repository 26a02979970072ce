"""Host predicates on what listens on a Linux KVM host and who may drive libvirt: services guests can
reach over their bridges, virtualization management sockets off loopback, and members of the groups that
control VMs. They read ``Host.listeners`` (``ss -ltnup``) and the ``groups`` fact; a group not collected
gives ``unknown``, never ``pass``.
"""

from __future__ import annotations

from vmsentry.analyse.addresses import is_loopback
from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.checks.host_facts import missing, with_guest_bridges
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import expected_guest_service, guest_bridges, guest_reach, mgmt_purpose
from vmsentry.model import SS_LOCATOR, Host


@check("host_services_reachable_from_guests")
def services_reachable(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    bridges = guest_bridges(host, ctx)
    if not bridges:
        return not_applicable("no bridge carries guests, so no guest reaches the host over a bridge")
    socks = host.listeners
    if socks is None:
        return missing("listening sockets", host)
    input_policy = host.firewall.input_policy if host.firewall else None
    out: list[Outcome] = []
    for sock in socks:
        if mgmt_purpose(sock, host) or expected_guest_service(sock, bridges):
            continue
        why = guest_reach(sock, bridges)
        if not why:
            continue
        label = sock.label
        if input_policy == "drop":
            out.append(
                unknown(
                    f"{label} is {why}, but INPUT policy is drop; which ports the rules open to guest "
                    "bridges was not collected",
                    f"{sock.proto}/{sock.port}",
                    file=SS_LOCATOR,
                    locator=label,
                )
            )
        else:
            out.append(
                fail(
                    f"{sock.proto}/{sock.port}",
                    label,
                    file=SS_LOCATOR,
                    locator=label,
                    message=f"guests can connect: {why}; INPUT policy {input_policy or 'unknown'}",
                )
            )
    return out or passed(
        "listening",
        len(socks),
        file=SS_LOCATOR,
        message=f"no host service other than libvirt's DNS/DHCP is reachable from guest bridges "
        f"{', '.join(sorted(bridges))}",
    )


@check("host_virt_mgmt_sockets_exposed")
@with_guest_bridges("listeners", "listening sockets")
def virt_mgmt_exposed(host: Host, ctx: ScanContext, socks, bridges) -> Outcome | list[Outcome]:
    out: list[Outcome] = []
    seen = 0
    for sock in socks:
        purpose = mgmt_purpose(sock, host)
        if not purpose:
            continue
        seen += 1
        if is_loopback(sock.address):
            continue
        label = sock.label
        guest = guest_reach(sock, bridges)
        where = f"reachable from guests ({guest})" if guest else "reachable from the networks the host is on"
        out.append(
            fail(
                f"tcp/{sock.port}",
                label,
                file=SS_LOCATOR,
                locator=label,
                message=f"{purpose} on a non-loopback address, {where}",
            )
        )
    return out or passed(
        "listening",
        seen,
        file=SS_LOCATOR,
        message=f"{seen} virtualization management/console sockets, all on loopback"
        if seen
        else "no virtualization management, console or migration socket is listening",
    )


@check("host_libvirt_groups")
def libvirt_groups(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    groups = host.facts.get("groups")
    if not isinstance(groups, dict):
        return missing("group membership", host)
    daemon = host.config_values("libvirtd_conf")
    sock_group = str(daemon.get("unix_sock_group") or "libvirt").strip('"')
    out: list[Outcome] = []
    for name, why in (
        (sock_group, "root-equivalent control of every VM through the libvirt socket"),
        ("libvirt-qemu", "access to guest disk images and QEMU sockets"),
    ):
        if name not in groups:
            out.append(unknown(f"membership of group '{name}' not collected", f"groups.{name}", file="/etc/group"))
            continue
        members = [m for m in groups.get(name) or [] if m not in ("root", "libvirt-qemu")]
        if members:
            out.append(
                fail(
                    f"groups.{name}",
                    ", ".join(members),
                    file="/etc/group",
                    locator=name,
                    message=f"{len(members)} account(s) in '{name}' have {why}",
                )
            )
    if any(o.status == "fail" for o in out):
        return [o for o in out if o.status == "fail"]
    return out or passed(
        f"groups.{sock_group}", "", file="/etc/group", message=f"no non-root member in '{sock_group}' or 'libvirt-qemu'"
    )
