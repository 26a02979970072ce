"""Stage 1, collect: platform adapters turn files, live APIs and host state into one ``Inventory``.

Adapters never decide severity. Each file adapter module offers ``claims(path, head) -> bool`` (is this
file mine? ``head`` is the first 4 KiB) and ``read(path, data) -> Inventory`` (``data``: the whole file,
read once here within the size limit); ``read`` raises ``BadInput``
for a file it cannot use at all and puts per-element problems into ``Inventory.errors``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from importlib import import_module
from typing import Any

from vmsentry.collect.source_file import DEFAULT_MAX_BYTES, BadInput
from vmsentry.model import InputError, Inventory
from vmsentry.model.files import InputFile

# Order matters: the first adapter that claims a file reads it. "module:function" asks that module with
# another claim function at that place: libvirt XML is claimed early by its root element (most files of a
# libvirt host, and nothing else starts with <domain>), and late by its name (any other *.xml).
FILE_ADAPTERS = (
    "vmsentry.collect.saved_inventory",
    "vmsentry.collect.libvirt_xml:claims_by_root",
    "vmsentry.collect.libvirt_conf",
    "vmsentry.collect.packer",  # VM definitions kept as code: before hyperv, which refuses Packer and DSC
    "vmsentry.collect.terraform_libvirt",
    "vmsentry.collect.vagrant",
    "vmsentry.collect.dsc_hyperv",
    "vmsentry.collect.proxmox",  # cheap claims (file name first): before the QEMU line scan
    "vmsentry.collect.hyperv",
    "vmsentry.collect.vmware_vmx",
    "vmsentry.collect.vmware_host",
    "vmsentry.collect.virtualbox_showvminfo",
    "vmsentry.collect.virtualbox",
    "vmsentry.collect.qemu_cmdline",  # scans every line of the head: after the adapters that claim by name
    "vmsentry.collect.libvirt_xml",
)


_LOADED: dict = {}


def _adapters() -> Iterator[tuple[Any, Callable[[str, bytes], bool]]]:
    """(adapter module, its claim function) in order, each module imported when first asked (reading a
    saved inventory then costs no import of the others, which is most of ``vmsentry detect``'s start-up)."""
    for entry in FILE_ADAPTERS:
        found = _LOADED.get(entry)
        if found is None:
            name, _, claim = entry.partition(":")
            module = import_module(name)
            found = _LOADED[entry] = (module, getattr(module, claim or "claims"))
        yield found


def iter_files(paths: Iterable[str], inv: Inventory | None = None) -> Iterator[tuple[str, bool]]:
    """(path, explicit): files given by name, and regular files found below folders (sorted, hidden
    skipped). Inside a folder, symbolic links, FIFOs, devices and sockets are passed over (a FIFO would
    block the scan, a link may point anywhere: /etc/libvirt's autostart/ links repeat definitions read
    anyway); with ``inv`` given they are counted in its notes, and a folder that cannot be read is an
    error there (never a silent "nothing found")."""
    passed_over = 0
    for path in paths:
        if not os.path.isdir(path):
            yield path, True
            continue

        def unreadable(exc: OSError, top: str = path) -> None:
            if inv is not None:
                inv.errors.append(InputError(exc.filename or top, f"cannot read folder: {exc.strerror}"))

        for root, dirs, files in os.walk(path, onerror=unreadable):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                if name.startswith("."):
                    continue
                full = os.path.join(root, name)
                try:
                    regular = stat.S_ISREG(os.lstat(full).st_mode)
                except OSError:
                    regular = False
                if regular:
                    yield full, False
                else:
                    passed_over += 1
    if passed_over and inv is not None:
        inv.notes.append(
            f"{passed_over} file(s) inside folders passed over: symbolic links, FIFOs, devices or sockets "
            "are not read there (name one on the command line to read it)"
        )


def read_paths(paths: Iterable[str], progress: Callable[[int, str], None] | None = None) -> tuple[Inventory, int]:
    """Read every file; returns the inventory and how many files were skipped as not ours (only files
    found inside folders are skipped silently; a file named on the command line that no adapter
    claims is an error)."""
    inv = Inventory()
    skipped = 0
    read: set[str] = set()  # a file reached twice (a folder and a folder inside it) is read once
    origins: dict[int, str] = {}  # id(host) -> the file it was read from, for the host join by folder
    for count, (path, explicit) in enumerate(iter_files(paths, inv), 1):
        if progress:
            progress(count, path)
        real = os.path.realpath(path)
        if real in read:
            continue
        read.add(real)
        try:
            with InputFile(path) as handle:  # never waits for a FIFO's writer (model/files.py)
                head = handle.head()
                adapter = next((module for module, claims in _adapters() if claims(path, head)), None)
                # each format's own size limit (a saved inventory of a fleet is larger than a definition)
                data = handle.read_all(getattr(adapter, "MAX_BYTES", DEFAULT_MAX_BYTES))
        except BadInput as exc:
            inv.errors.append(InputError(path, str(exc)))
            continue
        if adapter is None:
            if explicit:
                inv.errors.append(
                    InputError(
                        path,
                        "not a file vmsentry knows (libvirt XML, qemu.conf, "
                        "libvirtd.conf, QEMU command line, VMware .vmx or "
                        "vmnet host file or ESXi export, VirtualBox .vbox, VirtualBox.xml "
                        "or showvminfo output, Proxmox VE VMID.conf/*.fw/"
                        "network interfaces, Hyper-V export JSON, saved inventory JSON)",
                    )
                )
            else:
                skipped += 1
            continue
        try:
            found = adapter.read(path, data)
        except BadInput as exc:
            inv.errors.append(InputError(path, str(exc)))
            continue
        except MemoryError:
            inv.errors.append(InputError(path, "too large to read"))
            continue
        origins.update((id(host), path) for host in found.hosts)
        inv.extend(found)
    from vmsentry.collect.libvirt_link import merge_hosts_by_folder

    merge_hosts_by_folder(inv, origins)
    return inv, skipped


def collect(
    paths: Iterable[str] = (),
    libvirt_uris: Iterable[str] = (),
    host: bool = False,
    progress: Callable[[int, str], None] | None = None,
) -> tuple[Inventory, int]:
    inv, skipped = read_paths(paths, progress)
    for uri in libvirt_uris:
        from vmsentry.collect import libvirt_live

        inv.extend(libvirt_live.read_uri(uri))
    if host:
        from vmsentry.collect import linux_host

        inv.extend(linux_host.collect_host())
    from vmsentry.collect.libvirt_link import link

    link(inv)
    from vmsentry.collect.vmware_link import link as link_vmware

    link_vmware(inv)
    from vmsentry.collect.proxmox_link import link as link_proxmox

    link_proxmox(inv)
    return inv, skipped
