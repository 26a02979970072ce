"""What else joins a guest to its host: shared folders, passthrough devices, console channels,
confinement of the emulator, memory and disk encryption, snapshots."""

from __future__ import annotations

from datetime import UTC, datetime

from vmsentry.analyse.checks import check, fail, not_applicable, passed, snapshot_memory, unknown
from vmsentry.model import VM

# Host paths whose exposure hands the guest the host itself.
SENSITIVE_PATHS = (
    "/",
    "/etc",
    "/root",
    "/home",
    "/boot",
    "/dev",
    "/proc",
    "/sys",
    "/var/lib/libvirt",
    "/var/run",
    "/run",
    "/usr",
    "/var/lib/docker",
    "/var/run/docker.sock",
    "/run/docker.sock",
)


def _share_text(s) -> str:
    return f"{s.kind} {s.host_path or '?'} -> {s.guest_tag or '?'} ({'rw' if s.writable else 'ro'})"


@check("share_writable")
def share_writable(vm: VM, ctx):
    if not vm.shares:
        return not_applicable("no shared folders")
    out = [fail("filesystem", _share_text(s), locator=s.locator) for s in vm.shares if s.writable]
    return out or passed("filesystem", "; ".join(_share_text(s) for s in vm.shares))


# Windows and macOS host paths (VMware Workstation/Fusion, VirtualBox, Hyper-V hosts): drive roots, the
# system and profile roots, compared case-insensitively with / separators.
_WINDOWS_SENSITIVE = ("windows", "users", "programdata", "program files", "program files (x86)")
_MACOS_SENSITIVE = ("/users", "/library", "/system", "/applications", "/private/etc", "/private/var")


def _is_sensitive(path: str | None) -> bool:
    if not path:
        return False
    if len(path) >= 2 and path[1] == ":" and path[0].isalpha():  # C:\..., D:/...
        rest = path[2:].replace("\\", "/").strip("/").lower()
        return rest == "" or rest in _WINDOWS_SENSITIVE or rest.startswith("windows/")
    if path.rstrip("/").lower() in _MACOS_SENSITIVE:
        return True
    norm = "/" + path.strip("/") if path != "/" else "/"
    return norm in SENSITIVE_PATHS or any(
        norm.startswith(p + "/") for p in SENSITIVE_PATHS[1:] if p not in ("/home", "/var/lib/libvirt", "/usr")
    )


@check("share_sensitive_path")
def share_sensitive_path(vm: VM, ctx):
    if not vm.shares:
        return not_applicable("no shared folders")
    out = [
        fail("filesystem/source", _share_text(s), locator=s.locator) for s in vm.shares if _is_sensitive(s.host_path)
    ]
    return out or passed("filesystem/source", "; ".join(_share_text(s) for s in vm.shares))


@check("share_9p_passthrough")
def share_9p_passthrough(vm: VM, ctx):
    shares = [s for s in vm.shares if s.kind == "9p" and vm.platform == "libvirt"]
    if not shares:
        return not_applicable("no 9p shares")
    out = []
    for s in shares:
        mode = vm.facts.get(f"libvirt.filesystem.{s.guest_tag}.accessmode", {}).get("value", "passthrough")
        if mode == "passthrough" and s.writable:
            out.append(fail("filesystem/@accessmode", f"{_share_text(s)} accessmode={mode}", locator=s.locator))
    return out or passed("filesystem/@accessmode", "mapped/squash or read-only")


@check("pci_passthrough_iommu")
def pci_passthrough_iommu(vm: VM, ctx):
    devices = [d for d in vm.devices if d.kind == "pci-passthrough"]
    if not devices:
        return not_applicable("no PCI passthrough")
    iommu = ctx.host_fact(vm, "iommu")
    detail = ", ".join(d.detail for d in devices)
    if iommu is None:
        return [
            unknown(
                f"PCI device {d.detail} assigned; host IOMMU state not collected (scan with --host)",
                "hostdev",
                locator=d.locator,
            )
            for d in devices
        ]
    if iommu.enabled:
        return passed("hostdev", f"{detail}; host IOMMU groups: {iommu.groups}")
    return [fail("hostdev", f"{d.detail} with host IOMMU off", locator=d.locator) for d in devices]


@check("seclabel_none")
def seclabel_none(vm: VM, ctx):
    conf = vm.security.confinement
    if conf == "none":
        at = next(
            (
                v["at"]
                for k, v in vm.facts.items()
                if k.startswith("libvirt.seclabel.") and k.endswith(".type") and v["value"] == "none"
            ),
            None,
        )
        return fail(
            "seclabel",
            "none",
            locator=at,
            message=None
            if at
            else "confinement disabled host-wide (qemu.conf security_driver or security_default_confined)",
        )
    if conf == "unknown":
        return unknown(
            "no per-VM seclabel; confinement follows qemu.conf security_driver and the host LSM, which were not read",
            "seclabel",
        )
    return passed("seclabel", conf)


@check("seclabel_dac_root")
def seclabel_dac_root(vm: VM, ctx):
    label = vm.facts.get("libvirt.seclabel.dac.label")
    if not label:
        return passed("seclabel[@model='dac']", "absent: qemu.conf user/group apply")
    user = str(label["value"]).split(":", 1)[0]
    if user in ("root", "+0", "0"):
        return fail("seclabel[@model='dac']/label", label["value"], locator=label["at"])
    return passed("seclabel[@model='dac']/label", label["value"], locator=label["at"])


@check("qemu_commandline_passthrough")
def qemu_commandline_passthrough(vm: VM, ctx):
    cmd = vm.facts.get("libvirt.qemu_commandline")
    if not cmd:
        return passed("qemu:commandline", "absent")
    return fail("qemu:commandline", cmd["value"][:200], locator=cmd["at"])


@check("qemu_sandbox_off")
def qemu_sandbox_off(vm: VM, ctx):
    sandbox = vm.facts.get("qemu.sandbox")
    if not sandbox:
        return fail("-sandbox", "absent (QEMU's default: no seccomp filter)")
    value = str(sandbox["value"]).split(",")[0].lower()
    if value in ("on", "yes", "true", "1"):
        return passed("-sandbox", sandbox["value"], locator=sandbox["at"])
    return fail("-sandbox", sandbox["value"], locator=sandbox["at"])


@check("memory_encryption_unused")
def memory_encryption_unused(vm: VM, ctx):
    if vm.security.memory_encryption:
        return passed("launchSecurity", vm.security.memory_encryption)
    caps = ctx.host_fact(vm, "memory_encryption")
    if caps is None:
        return unknown("host memory-encryption support not collected (scan with --host)", "launchSecurity")
    available = [k for k in ("sev_snp", "sev_es", "sev", "tdx") if getattr(caps, k)]
    if not available:
        return not_applicable("the host offers no SEV/SEV-SNP/TDX")
    return fail("launchSecurity", f"absent while the host offers {', '.join(available)}")


@check("memory_encryption_plain_sev")
def memory_encryption_plain_sev(vm: VM, ctx):
    if vm.security.memory_encryption != "sev":
        return (
            not_applicable("not using plain SEV")
            if vm.security.memory_encryption is None
            else passed("launchSecurity", vm.security.memory_encryption)
        )
    at = vm.facts.get("libvirt.launchSecurity.type", {}).get("at")
    return fail("launchSecurity/@type", "sev", locator=at)


@check("disk_unencrypted")
def disk_unencrypted(vm: VM, ctx):
    if vm.security.disk_encryption is None:
        return not_applicable("no disks")
    if vm.security.disk_encryption:
        return passed("disk/encryption", "luks")
    first = vm.facts.get("libvirt.disk.unencrypted") or vm.facts.get("vbox.disk.unencrypted")
    return fail("disk/encryption", first["value"] if first else "absent", locator=first["at"] if first else None)


@check("network_disk_unencrypted")
def network_disk_unencrypted(vm: VM, ctx):
    net = vm.facts.get("libvirt.disk.network")
    if not net:
        return not_applicable("no network disks")
    if vm.security.disk_encryption:
        return passed("disk/encryption", "luks")
    return fail("disk[@type='network']", net["value"], locator=net["at"])


@check("snapshot_with_memory")
def snapshot_with_memory(vm: VM, ctx):
    return snapshot_memory(
        vm, "libvirt.snapshot.", ".memory", "domainsnapshot/memory", "no snapshots collected", "disk-only"
    )


SNAPSHOT_MAX_AGE_DAYS = 90


@check("snapshot_stale")
def snapshot_stale(vm: VM, ctx):
    dated = [s for s in vm.snapshots if s.created]
    if not vm.snapshots:
        return not_applicable("no snapshots collected")
    if not dated:
        return unknown("snapshot creation times unknown", "snapshot")
    now = datetime.now(UTC)
    out = []
    for s in dated:
        try:
            created = datetime.fromisoformat(s.created.replace("Z", "+00:00"))
        except ValueError:
            out.append(unknown(f"snapshot {s.name}: unreadable creation time {s.created!r}", "snapshot"))
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        age = (now - created).days
        if age > SNAPSHOT_MAX_AGE_DAYS:
            out.append(fail("snapshot", f"{s.name}: {age} days old"))
    return out or passed("snapshot", f"{len(dated)} snapshot(s) within {SNAPSHOT_MAX_AGE_DAYS} days")


# The two console channels are judged alike: (rule, Channels attribute, what, the facts that set it).
_CHANNEL_RULES = (
    (
        "clipboard_shared",
        "clipboard",
        "clipboard setting",
        ("libvirt.spice.agent_channel", "vbox.Clipboard.mode", "vmx.isolation.tools.copy.disable",
         "vmx.isolation.tools.paste.disable"),
    ),
    (
        "drag_and_drop_shared",
        "drag_and_drop",
        "drag-and-drop / file-transfer setting",
        ("libvirt.spice.agent_channel", "vbox.DragAndDrop.mode", "vmx.isolation.tools.dnd.disable"),
    ),
)  # fmt: skip


def _channel_rule(attribute: str, what: str, fact_keys: tuple[str, ...]):
    not_collected = f"{what} not collected"

    def predicate(vm: VM, ctx):
        mode = getattr(vm.channels, attribute)
        if mode == "unknown":
            return unknown(not_collected, attribute)
        if mode == "disabled":
            return passed(attribute, mode)
        return fail(attribute, mode, locator=_first_at(vm, *fact_keys))

    predicate.__name__ = predicate.__qualname__ = f"{attribute}_shared"
    return predicate


for _rule, _attribute, _what, _facts in _CHANNEL_RULES:
    check(_rule)(_channel_rule(_attribute, _what, _facts))


def _first_at(vm: VM, *keys: str) -> str | None:
    """Locator of the first fact present (the setting that decided a channel; absent = platform default)."""
    for key in keys:
        fact = vm.facts.get(key)
        if fact:
            return fact.get("at")
    return None
