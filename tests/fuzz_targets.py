"""The parsers vmsentry runs on hostile input, as fuzz targets (not a test module): shared by the Hypothesis
suite (tests/test_fuzz_*.py) and the coverage-guided runs (benchmarks/fuzz.py).

A target takes the bytes of one file and parses them the way a run does. It may end in one of the parser's
documented bad-input errors (``BadInput``, ``PolicyError``, ``WaiverError``, ``BadTrafficInput``; per-element
problems land in ``Inventory.errors`` or the traffic stats and are not errors at all). Anything else is a
crash, and so is an input that takes longer than ``TIME_LIMIT`` or needs more than ``MEMORY_LIMIT`` bytes.
``bounded(target, data)`` runs one input under both limits and raises ``Hang`` / ``OutOfMemory``.
"""

from __future__ import annotations

import atexit
import contextlib
import gzip
import json
import os
import resource
import shutil
import signal
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VMSENTRY_SHARED") or REPO.parent / "shared").resolve()
FIXTURES = REPO / "tests/fixtures"
REGRESSIONS = FIXTURES / "hostile/fuzz"  # minimised crashing inputs, one folder per target
# seconds for one input: the slowest mutated example takes about 0.6 s alone; the margin is for a loaded CI
# machine (a hang is forever, a slow example on a busy machine is not a finding). benchmarks/fuzz.py is stricter.
TIME_LIMIT = 20.0
MEMORY_LIMIT = 512 << 20  # bytes of address space one input may add
SCRATCH = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else Path(tempfile.gettempdir())


class Hang(Exception):
    """One input ran past TIME_LIMIT (raised by the alarm where the parser was)."""


class OutOfMemory(Exception):
    """One input needed more than MEMORY_LIMIT (a MemoryError under the address-space cap)."""


@dataclass
class Target:
    name: str
    parse: Callable[[bytes], object]
    documented: tuple[type[BaseException], ...]
    seeds: tuple[str, ...]  # globs below SHARED ("shared:...") or the repository
    what: str = ""

    def seed_files(self) -> list[Path]:
        out: set[Path] = set()
        for pattern in self.seeds:
            base, _, glob = pattern.rpartition(":")
            root = SHARED if base == "shared" else REPO
            out.update(p for p in root.glob(glob) if p.is_file())
        out.update(p for p in (REGRESSIONS / self.name).glob("*") if p.is_file())
        return sorted(out)


# ------------------------------------------------------------------------------------------- limits


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def expired(_sig, _frame):
        raise Hang(f"over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _memory_cap(extra: int) -> Iterator[None]:
    """Lower the soft address-space limit to what the process has now plus ``extra`` (an unprivileged
    process may raise a soft limit back up to the hard one, so it is restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    cap = size + extra
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def bounded(target: Target, data: bytes, seconds: float = TIME_LIMIT, memory: int = MEMORY_LIMIT) -> object:
    """Parse ``data`` with ``target`` under the time and memory limits. Documented bad-input errors are
    returned (not raised); anything else propagates, a hang as ``Hang``, memory as ``OutOfMemory``."""
    try:
        with _memory_cap(memory), _alarm(seconds):
            return target.parse(data)
    except target.documented as exc:
        return exc
    except MemoryError as exc:
        raise OutOfMemory(f"over {memory >> 20} MiB") from exc


def crash_site(exc: BaseException) -> str:
    """Where a crash happened: the innermost frame in vmsentry's code (else the innermost), with the
    exception type: one site however many inputs reach it."""
    tb = traceback.extract_tb(exc.__traceback__)
    cause = exc.__cause__ if isinstance(exc, OutOfMemory) and exc.__cause__ else exc
    if cause is not exc:
        tb = traceback.extract_tb(cause.__traceback__) or tb
    ours = [f for f in tb if "/vmsentry/" in f.filename and "fuzz_targets" not in f.filename]
    frame = (ours or list(tb) or [None])[-1]
    where = f"{frame.filename.split('/src/')[-1]}:{frame.lineno} {frame.name}" if frame else "?"
    return f"{type(exc).__name__} at {where}"


# ------------------------------------------------------------------------------------------ targets


def _adapter(module_name: str, *paths: str) -> Callable[[bytes], object]:
    """Read the bytes as the file adapter would for each of ``paths`` it claims (the names choose the file
    kind, as in a run), and turn each inventory into its JSON form as a report does."""

    def parse(data: bytes) -> object:
        from importlib import import_module

        from vmsentry.collect.source_file import BadInput

        module = import_module(module_name)
        out = []
        for path in paths:
            if not module.claims(path, data[:4096]):
                continue  # a run would not give this file to this adapter
            try:
                inv = module.read(path, data)
            except BadInput as exc:  # documented: one line for the user; the other names are still tried
                out.append(exc)
                continue
            out.append(json.dumps(inv.to_dict(), default=str))
        return out

    return parse


def _policy(data: bytes) -> object:
    from vmsentry.act.policy.schema import parse_policy

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None  # load_policy refuses it before parsing
    return parse_policy(text, "fuzz-policy.yaml")


def _scratch_file(name: str, data: bytes) -> str:
    """``data`` in a file called ``name`` (the readers open files by name), in memory where possible."""
    folder = SCRATCH / f"vmsentry-fuzz-{os.getpid()}"
    if not folder.exists():
        folder.mkdir()
        atexit.register(shutil.rmtree, folder, True)
    path = folder / name
    path.write_bytes(data)
    return str(path)


def _waivers(data: bytes) -> object:
    from vmsentry.analyse.waivers import load_waivers

    return load_waivers(_scratch_file("waivers.yaml", data))


def _traffic(name: str) -> Callable[[bytes], object]:
    """Read the bytes as a capture or log called ``name`` through the real opener, decoder and every
    detector, and render the stats."""

    def parse(data: bytes) -> object:
        from vmsentry.analyse.detectors import Engine, Truth
        from vmsentry.collect.traffic import TrafficStream, open_inputs

        path = _scratch_file(name, data)
        engine = Engine(Truth(), None)
        stream = TrafficStream()
        readers = open_inputs(path)
        try:
            for batch in stream.batches(readers):
                engine.feed(batch)
        finally:
            for reader in readers:  # the file under the guard (and under gzip), closed now, not by the GC
                inner = reader.stream.stream
                (inner.fileobj.raw if isinstance(inner, gzip.GzipFile) else inner).close()
        alerts = engine.finish()
        stream.stats.finish()
        return json.dumps([a.to_dict() for a in alerts] + [stream.stats.to_dict()], default=str)

    return parse


def _bad_input():
    from vmsentry.collect.source_file import BadInput

    return (BadInput,)


def _policy_error():
    from vmsentry.act.policy.problems import PolicyError

    return (PolicyError,)


def _waiver_error():
    from vmsentry.analyse.waivers import WaiverError

    return (WaiverError,)


def _traffic_error():
    from vmsentry.collect.traffic import BadTrafficInput

    return (BadTrafficInput,)


_SPECS = [
    # name, parse, documented errors, seeds
    (
        "libvirt-domain",
        _adapter("vmsentry.collect.libvirt_xml", "/fuzz/domain.xml"),
        _bad_input,
        ("shared:corpus/libvirt-domain/*", "tests/fixtures/libvirt/*.xml", "examples/lab/domains/*.xml"),
    ),
    (
        "libvirt-network",
        _adapter("vmsentry.collect.libvirt_xml", "/fuzz/network.xml"),
        _bad_input,
        ("shared:corpus/libvirt-network/*", "shared:corpus/libvirt-nwfilter/*"),
    ),
    (
        "libvirt-conf",
        _adapter("vmsentry.collect.libvirt_conf", "/fuzz/qemu.conf", "/fuzz/libvirtd.conf"),
        _bad_input,
        ("tests/fixtures/conf/*",),
    ),
    (
        "qemu-cmdline",
        _adapter("vmsentry.collect.qemu_cmdline", "/fuzz/vm.args"),
        _bad_input,
        ("tests/fixtures/qemu/**/*",),
    ),
    (
        "vmx",
        _adapter("vmsentry.collect.vmware_vmx", "/fuzz/vm.vmx"),
        _bad_input,
        ("shared:corpus/vmware-vmx/*", "tests/fixtures/vmware/*.vmx"),
    ),
    (
        "vmware-host",
        _adapter(
            "vmsentry.collect.vmware_host",
            "/fuzz/networking",
            "/fuzz/netmap.conf",
            "/fuzz/nat.conf",
            "/fuzz/vmnetdhcp.conf",
            "/fuzz/esxi.json",
        ),
        _bad_input,
        ("tests/fixtures/vmware/host-*/**/*", "tests/fixtures/vmware/esxi-export.json"),
    ),
    (
        "virtualbox",
        _adapter("vmsentry.collect.virtualbox", "/fuzz/vm.vbox"),
        _bad_input,
        ("shared:corpus/virtualbox/*", "tests/fixtures/virtualbox/*.vbox", "tests/fixtures/virtualbox/*.xml"),
    ),
    (
        "showvminfo",
        _adapter("vmsentry.collect.virtualbox_showvminfo", "/fuzz/vm.showvminfo"),
        _bad_input,
        ("tests/fixtures/virtualbox/*.showvminfo",),
    ),
    (
        "hyperv",
        _adapter("vmsentry.collect.hyperv", "/fuzz/export.hyperv.json"),
        _bad_input,
        ("tests/fixtures/hyperv/*.json",),
    ),
    (
        "proxmox",
        _adapter(
            "vmsentry.collect.proxmox",
            "/fuzz/pve/qemu-server/100.conf",
            "/fuzz/pve/firewall/100.fw",
            "/fuzz/pve/firewall/cluster.fw",
            "/fuzz/network/interfaces",
        ),
        _bad_input,
        (
            "shared:corpus/proxmox/*",
            "tests/fixtures/proxmox/**/*.conf",
            "tests/fixtures/proxmox/**/*.fw",
            "tests/fixtures/proxmox/**/interfaces",
        ),
    ),
    (
        "saved-inventory",
        _adapter("vmsentry.collect.saved_inventory", "/fuzz/inventory.json"),
        _bad_input,
        (
            "tests/fixtures/traffic/lab-inventory*.json",
            "tests/fixtures/policy/*inventory.json",
            "tests/fixtures/hostile/inventory/*.json",
        ),
    ),
    (
        "policy",
        _policy,
        _policy_error,
        ("tests/fixtures/policy/*.yaml", "tests/fixtures/policy/bad/*", "tests/fixtures/hostile/yaml/*"),
    ),
    ("waivers", _waivers, _waiver_error, ("tests/fixtures/report/waivers.yaml", "tests/fixtures/hostile/yaml/*")),
    (
        "pcap",
        _traffic("capture.pcap"),
        _traffic_error,
        ("shared:pcaps/*.pcap", "shared:pcaps/lab/*.pcap", "tests/fixtures/traffic/pcap/*.pcap"),
    ),
    ("pcapng", _traffic("capture.pcapng"), _traffic_error, ("tests/fixtures/hostile/fuzz/seed-*.pcapng",)),
    ("zeek", _traffic("conn.log"), _traffic_error, ("tests/fixtures/traffic/zeek/*",)),
    ("eve", _traffic("eve.json"), _traffic_error, ("tests/fixtures/traffic/eve/*",)),
    (
        "packer",
        _adapter("vmsentry.collect.packer", "/fuzz/build.pkr.hcl", "/fuzz/build.pkr.json"),
        _bad_input,
        ("tests/fixtures/iac/*.pkr.hcl", "shared:corpus/hyperv/*.json"),
    ),
    (
        "terraform",
        _adapter("vmsentry.collect.terraform_libvirt", "/fuzz/main.tf", "/fuzz/show.json"),
        _bad_input,
        ("tests/fixtures/iac/*.tf", "tests/fixtures/iac/terraform-show.json"),
    ),
    (
        "vagrant",
        _adapter("vmsentry.collect.vagrant", "/fuzz/Vagrantfile"),
        _bad_input,
        ("tests/fixtures/iac/vagrant/*",),
    ),
    ("dsc", _adapter("vmsentry.collect.dsc_hyperv", "/fuzz/config.ps1"), _bad_input, ("shared:corpus/hyperv/*.ps1",)),
]


def targets() -> dict[str, Target]:
    out = {}
    for name, parse, documented, seeds in _SPECS:
        out[name] = Target(name, parse, documented(), seeds)
    return out
