"""Host predicates on the hardware isolation of a Linux KVM host: mandatory access control (sVirt),
IOMMU for passthrough, nested virtualization, KSM, VT-x/AMD-V and /dev/kvm, memory encryption, and the
hypervisor versions recorded for vulnerability matching. They read the typed hardware groups of ``Host``
(``cpu``, ``kvm``, ``iommu``, ``memory_encryption``, ``lsm``, ``versions``); a group not collected gives
``unknown``, never ``pass``.
"""

from __future__ import annotations

import re

from vmsentry.analyse.checks import Outcome, check, fail, not_applicable, passed, unknown
from vmsentry.analyse.checks.host_facts import missing, needs
from vmsentry.analyse.context import ScanContext
from vmsentry.analyse.hostnet import on_host
from vmsentry.model import Cpu, Host


@check("host_lsm_enforcing")
@needs("lsm", "LSM state")
def lsm_enforcing(host: Host, ctx: ScanContext) -> Outcome:
    lsm = host.lsm
    selinux, apparmor = lsm.selinux, lsm.apparmor
    if selinux is None and apparmor is None:
        return unknown("neither SELinux nor AppArmor state collected", "lsm")
    if selinux == "enforcing":
        return passed("lsm.selinux", selinux, file="/sys/fs/selinux/enforce")
    if apparmor == "enabled":
        return passed("lsm.apparmor", apparmor, file="/sys/module/apparmor/parameters/enabled")
    if selinux is None or apparmor is None:
        return unknown(f"SELinux {selinux!r}, AppArmor {apparmor!r}: one of them was not collected", "lsm")
    return fail(
        "lsm",
        f"selinux={selinux}, apparmor={apparmor}",
        file="/sys/kernel/security/lsm",
        message="no mandatory access control enforces sVirt: a QEMU process compromised from a guest can "
        "open every file its user can, including other guests' disks",
    )


@check("host_iommu_for_passthrough")
def iommu_for_passthrough(host: Host, ctx: ScanContext) -> Outcome:
    devices = [
        (vm.name, d)
        for vm in ctx.inventory.vms
        if on_host(ctx, host, vm)
        for d in vm.devices
        if d.kind == "pci-passthrough"
    ]
    if not devices:
        return not_applicable("no VM of this host has a PCI passthrough device")
    iommu = host.iommu
    names = ", ".join(f"{n} ({d.detail or 'pci'})" for n, d in devices[:4])
    if iommu is None or iommu.enabled is None:
        return unknown(f"PCI passthrough in use ({names}) but IOMMU state not collected", "iommu.enabled")
    if iommu.enabled:
        return passed("iommu.groups", iommu.groups, file="/sys/kernel/iommu_groups")
    return fail(
        "iommu.enabled",
        False,
        file="/proc/cmdline",
        locator="/sys/kernel/iommu_groups",
        message=f"PCI devices are passed to guests ({names}) while the IOMMU is off: a guest-driven DMA "
        f"device can read and write host memory; cmdline flags {iommu.cmdline_flags or []}",
    )


@check("host_nested_virt")
@needs("kvm", "KVM module state")
def nested_virt(host: Host, ctx: ScanContext) -> Outcome:
    kvm = host.kvm
    nested = kvm.nested
    if nested is None:
        cpu = host.cpu or Cpu()
        if kvm.dev_kvm is False:
            return not_applicable("/dev/kvm absent: no KVM, no nested virtualization")
        if cpu.vmx is False and cpu.svm is False:
            return not_applicable("no VT-x/AMD-V: kvm_intel/kvm_amd (and their nested parameter) are not in use")
        return unknown("kvm_intel/kvm_amd 'nested' parameter not collected", "kvm.nested")
    path = "/sys/module/kvm_intel/parameters/nested"
    cpu = host.cpu or Cpu()
    if "amd" in str(cpu.vendor or "").lower() or cpu.svm:
        path = "/sys/module/kvm_amd/parameters/nested"
    return _switched_off(
        "nested",
        nested,
        path,
        "guests can run their own hypervisors: larger KVM attack surface and VMs hidden from the host's inventory",
    )


@check("host_ksm")
@needs("kvm", "KVM module state")
def ksm(host: Host, ctx: ScanContext) -> Outcome:
    run = host.kvm.ksm_run
    if run is None:
        return unknown("/sys/kernel/mm/ksm/run not collected", "ksm_run")
    return _switched_off(
        "ksm_run",
        run,
        "/sys/kernel/mm/ksm/run",
        "KSM merges identical pages across guests: a cross-VM timing side channel",
    )


def _switched_off(key: str, value: str, file: str, when_on: str) -> Outcome:
    """A kernel switch read from sysfs that must be off: "Y"/"1" (a module parameter or a sysfs knob) is on."""
    if str(value).strip().upper() in ("Y", "1"):
        return fail(key, value, file=file, message=when_on)
    return passed(key, value, file=file)


@check("host_hw_virtualization")
def hw_virtualization(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    cpu, kvm = host.cpu, host.kvm
    if cpu is None and kvm is None:
        return missing("CPU and KVM facts", host)
    out: list[Outcome] = []
    dev_kvm = kvm.dev_kvm if kvm else None
    if cpu is not None:
        vmx, svm = cpu.vmx, cpu.svm
        if vmx is None and svm is None:
            out.append(unknown("CPU virtualization flags not collected", "cpu.vmx"))
        elif not vmx and not svm:
            vendor = str(cpu.vendor or "")
            if vendor and not re.search(r"intel|amd|hygon", vendor, re.I):
                return not_applicable(f"CPU vendor {vendor}: VT-x/AMD-V flags do not apply")
            extra = " (/dev/kvm exists: a software or paravirtual KVM, not VT-x/AMD-V)" if dev_kvm else ""
            out.append(
                fail(
                    "cpu.flags",
                    "no vmx/svm",
                    file="/proc/cpuinfo",
                    message=f"the CPU offers no hardware-assisted virtualization{extra}",
                )
            )
    if dev_kvm is False:
        out.append(
            fail(
                "kvm.dev_kvm",
                False,
                file="/dev/kvm",
                message="no /dev/kvm: guests run under QEMU TCG emulation, which QEMU does not treat as a "
                "security boundary",
            )
        )
    elif dev_kvm is None and kvm is not None:
        out.append(unknown("/dev/kvm presence not collected", "kvm.dev_kvm"))
    if any(o.status == "fail" for o in out):
        return [o for o in out if o.status == "fail"]
    if out:
        return out
    if cpu is None:
        return unknown("CPU virtualization flags not collected", "cpu.vmx")
    return passed(
        "cpu.flags",
        "vmx" if cpu.vmx else "svm",
        file="/proc/cpuinfo",
        message=f"/dev/kvm {'present' if dev_kvm else 'state unknown'}",
    )


@check("host_memory_encryption_unused")
@needs("memory_encryption", "memory_encryption capabilities")
def memory_encryption_unused(host: Host, ctx: ScanContext) -> Outcome | list[Outcome]:
    mem = host.memory_encryption
    caps = {k: getattr(mem, k) for k in ("sev", "sev_es", "sev_snp", "tdx")}
    if all(v is None for v in caps.values()):
        flags = mem.cpu_flags
        if isinstance(flags, list) and not {"sev", "sev_es", "sev_snp", "tdx_host_platform"} & set(flags):
            return not_applicable("no SEV/TDX parameter in kvm_amd/kvm_intel and no SEV/TDX host CPU flag")
        return unknown(
            "SEV/SEV-ES/SEV-SNP/TDX capability not collected (kvm_amd/kvm_intel parameters absent)", "memory_encryption"
        )
    available = [k for k, v in caps.items() if v]
    if not available:
        return not_applicable("the host offers no SEV, SEV-SNP or TDX")
    vms = [vm for vm in ctx.inventory.vms if on_host(ctx, host, vm)]
    if not vms:
        return not_applicable(f"host offers {', '.join(available)} but no VM of this host was collected")
    param = (
        "/sys/module/kvm_intel/parameters/tdx"
        if available == ["tdx"]
        else f"/sys/module/kvm_amd/parameters/{next(a for a in available if a != 'tdx')}"
    )
    out = [
        fail(
            f"vm:{vm.name}.memory_encryption",
            None,
            file=param,
            locator=f"vm:{vm.name}",
            message=f"host offers {', '.join(available)}; VM {vm.name} runs without memory encryption",
        )
        for vm in vms
        if not vm.security.memory_encryption
    ]
    return out or passed("memory_encryption", ", ".join(available), message="every VM uses memory encryption")


@check("host_hypervisor_versions")
@needs("versions", "versions of QEMU, libvirt and kernel")
def hypervisor_versions(host: Host, ctx: ScanContext) -> Outcome:
    versions = host.versions
    known = {k: getattr(versions, k) for k in ("qemu", "libvirt", "kernel") if getattr(versions, k)}
    if not versions.qemu and not versions.libvirt:
        return unknown("neither the QEMU nor the libvirt version was collected", "versions.qemu")
    return passed(
        "versions",
        ", ".join(f"{k} {v}" for k, v in known.items()),
        file="virsh version",
        message="hypervisor versions recorded for vulnerability matching",
    )
