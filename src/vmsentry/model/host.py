"""A host, and what is read from a Linux virtualisation host, as typed records.

``collect/linux_host.py`` reads each group (interfaces, bridges, sysctls, listening sockets, firewall, CPU,
KVM, IOMMU, memory encryption, LSM, versions); a group it could not read is ``None`` here, never an empty
value, so that "not collected" never reads as "nothing there".

The saved-inventory layout (``hosts[].facts`` in ``vmsentry.inventory/1``) is kept as it was: every typed
group is written back under its old key (``listening``, ``sysctl`` ...), and a saved file that has only
``facts`` loads into the typed fields. ``facts`` itself keeps what is platform configuration rather than
host state (``qemu_conf``, ``libvirtd_conf``, ``hyperv.host.*``, ``proxmox.*``, ``source_file``,
``collection_errors``, ``hostname`` ...). Values inside a group are kept as read; keys a group does not
know are dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from vmsentry.model.asset import AssetRecord

SS_LOCATOR = "ss -ltnup"  # evidence locator of every finding about a listening socket


@dataclass(slots=True)
class Interface:
    name: str | None = None
    kind: str | None = None  # physical|bridge|veth|tun|macvtap|macvlan|vlan|bond|dummy|loopback|other
    mac: str | None = None
    mtu: int | None = None
    state: str | None = None
    master: str | None = None  # the bridge or bond it is a port of
    promiscuity: int | None = None
    addresses: list[str] = field(default_factory=list)  # "address/prefix", as ``ip addr`` shows them


@dataclass(slots=True)
class Bridge:
    name: str | None = None
    addresses: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    physical_ports: list[str] = field(default_factory=list)  # NICs (or bonds/VLANs over one): the LAN uplinks
    stp: bool | None = None
    vlan_filtering: bool | None = None
    isolated_ports: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ListeningSocket:
    proto: str = "tcp"
    address: str | None = None
    port: int | None = None
    process: str | None = None
    pid: int | None = None
    interface: str | None = None  # bound to one device (``addr%dev``)

    @property
    def label(self) -> str:
        """``tcp [::]:22 (sshd)``: how evidence names the socket."""
        shown = f"[{self.address}]" if self.address and ":" in str(self.address) else self.address
        device = f"%{self.interface}" if self.interface else ""
        return f"{self.proto} {shown}{device}:{self.port} ({self.process or '?'})"


@dataclass(slots=True)
class Chain:
    name: str | None = None
    hook: str | None = None  # netfilter hook of a base chain; None for a chain only jumped to
    type: str | None = None
    priority: int | None = None
    policy: str | None = None
    rules: int | None = None


@dataclass(slots=True)
class RulesetTable:
    family: str | None = None  # ip|ip6|inet|bridge|arp|netdev
    name: str | None = None
    chains: list[Chain] = field(default_factory=list)


@dataclass(slots=True)
class Ruleset:
    tables: list[RulesetTable] = field(default_factory=list)
    ruleset_rules: int | None = None

    def chains(self) -> list[Chain]:
        return [chain for table in self.tables for chain in table.chains]

    def families(self) -> set[str]:
        return {str(table.family).lower() for table in self.tables if table.family}


@dataclass(slots=True)
class Firewall:
    """Both rulesets (None = could not be read) and the effective policy of the forward and input hooks
    ("drop", "accept" or "unknown"); the ``_v6`` fields are the same for IPv6."""

    nftables: Ruleset | None = None
    iptables_legacy: Ruleset | None = None
    libvirt_chains: list[str] | None = None
    forward_policy: str | None = None
    forward_rules: int | None = None
    input_policy: str | None = None
    forward_policy_v6: str | None = None
    forward_rules_v6: int | None = None
    input_policy_v6: str | None = None


@dataclass(slots=True)
class Cpu:
    vendor: str | None = None
    vmx: bool | None = None
    svm: bool | None = None
    model: str | None = None


@dataclass(slots=True)
class Kvm:
    dev_kvm: bool | None = None
    nested: str | None = None  # kvm_intel/kvm_amd "nested" parameter: Y|N
    ksm_run: str | None = None


@dataclass(slots=True)
class Iommu:
    groups: int | None = None
    cmdline_flags: list[str] | None = None
    enabled: bool | None = None


@dataclass(slots=True)
class MemoryEncryption:
    sev: bool | None = None
    sev_es: bool | None = None
    sev_snp: bool | None = None
    tdx: bool | None = None
    cpu_flags: list[str] | None = None


@dataclass(slots=True)
class Lsm:
    apparmor: str | None = None  # enabled|disabled|absent
    selinux: str | None = None  # enforcing|permissive|disabled|absent
    active: list[str] | None = None


@dataclass(slots=True)
class Versions:
    qemu: str | None = None
    libvirt: str | None = None
    kernel: str | None = None
    # a VMware product version, in inventories written by hand (no collector writes it; absent when unset)
    vmware: str | None = field(default=None, metadata={"omit_unset": True})


def sysctl_path(name: str) -> str:
    """/proc/sys path of a sysctl; an interface name keeps its dots (eth0.100)."""
    match = _CONF_RE.match(name)
    if match:
        return "/proc/sys/" + match.group(1).replace(".", "/") + f"/{match.group(2)}/{match.group(3)}"
    return "/proc/sys/" + name.replace(".", "/")


_CONF_RE = re.compile(r"^(net\.ipv[46]\.conf)\.(.+)\.([a-z0-9_]+)$")


# ---------------------------------------------------------------------------- the old facts layout


def _record(cls: type, data: Any) -> Any:
    """One group from its facts layout; None when it is not an object (not collected, or malformed)."""
    if not isinstance(data, dict):
        return None
    nested = _NESTED.get(cls, {})
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in nested:
            value = _records(nested[f.name], value) if isinstance(value, list) else _record(nested[f.name], value)
        elif isinstance(value, list):
            value = list(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _records(cls: type, data: Any) -> list[Any] | None:
    if not isinstance(data, list):
        return None
    return [_record(cls, item) for item in data if isinstance(item, dict)]


_NESTED: dict[type, dict[str, type]] = {
    Firewall: {"nftables": Ruleset, "iptables_legacy": Ruleset},
    Ruleset: {"tables": RulesetTable},
    RulesetTable: {"chains": Chain},
}


def _layout(value: Any) -> Any:
    """A typed group back in its facts layout (plain dicts and lists, the fields in declaration order)."""
    if isinstance(value, list):
        return [_layout(item) for item in value]
    if hasattr(value, "__dataclass_fields__"):
        return {
            f.name: _layout(getattr(value, f.name))
            for f in fields(value)
            if not (f.metadata.get("omit_unset") and getattr(value, f.name) is None)
        }
    if isinstance(value, dict):
        return dict(value)
    return value


def _sysctls(data: Any) -> dict[str, str] | None:
    return dict(data) if isinstance(data, dict) else None


# facts key -> (Host field, loader); in the order the Linux collector writes them
_GROUPS: dict[str, tuple[str, Any]] = {
    "interfaces": ("interfaces", lambda data: _records(Interface, data)),
    "bridges": ("bridges", lambda data: _records(Bridge, data)),
    "sysctl": ("sysctls", _sysctls),
    "listening": ("listeners", lambda data: _records(ListeningSocket, data)),
    "firewall": ("firewall", lambda data: _record(Firewall, data)),
    "cpu": ("cpu", lambda data: _record(Cpu, data)),
    "kvm": ("kvm", lambda data: _record(Kvm, data)),
    "iommu": ("iommu", lambda data: _record(Iommu, data)),
    "memory_encryption": ("memory_encryption", lambda data: _record(MemoryEncryption, data)),
    "lsm": ("lsm", lambda data: _record(Lsm, data)),
    "versions": ("versions", lambda data: _record(Versions, data)),
}
# where the typed groups go among the other facts when written (the collector's order)
_FACT_ORDER = (
    "hostname",
    "kernel",
    "os",
    *_GROUPS,
    "libvirt",
    "qemu_conf",
    "libvirtd_conf",
    "groups",
    "collection_errors",
)


@dataclass(slots=True)
class Host(AssetRecord):
    KIND: ClassVar[str] = "host"

    name: str
    platform: str = "linux"
    facts: dict[str, Any] = field(default_factory=dict)  # platform settings, keyed as the platform names them
    interfaces: list[Interface] | None = None
    bridges: list[Bridge] | None = None
    sysctls: dict[str, str] | None = None  # name -> value as read from /proc/sys
    listeners: list[ListeningSocket] | None = None
    firewall: Firewall | None = None
    cpu: Cpu | None = None
    kvm: Kvm | None = None
    iommu: Iommu | None = None
    memory_encryption: MemoryEncryption | None = None
    lsm: Lsm | None = None
    versions: Versions | None = None
    # groups that the facts it was built from listed as null (the collector tried and failed); written
    # back as null, so a saved inventory keeps saying so
    _listed_unknown: set[str] = field(default_factory=set, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Groups given in the old ``facts`` layout (a saved inventory, a test) move to the typed fields."""
        facts = dict(self.facts) if isinstance(self.facts, dict) else {}
        for key, (attr, load) in _GROUPS.items():
            if key in facts:
                data = facts.pop(key)
                setattr(self, attr, load(data))
                if data is None:
                    self._listed_unknown.add(key)
        self.facts = facts

    # -- reading ---------------------------------------------------------------------------------
    @property
    def addresses(self) -> list[str] | None:
        """Every address on the host's interfaces and bridges ("address/prefix", as read); None when
        neither was read."""
        if self.interfaces is None and self.bridges is None:
            return None
        seen: dict[str, None] = {}
        for owner in (self.interfaces or []) + (self.bridges or []):
            for address in owner.addresses:
                if isinstance(address, str):
                    seen.setdefault(address)
        return list(seen)

    @property
    def version(self) -> dict[str, str] | None:
        """The hypervisor product and its version, where read."""
        if self.versions is not None and self.versions.qemu:
            return {"product": "qemu", "version": str(self.versions.qemu)}
        return None

    def sysctl_int(self, name: str) -> int | None:
        """A sysctl's integer value; None when not collected or not a number."""
        value = (self.sysctls or {}).get(name)
        if value is None:
            return None
        try:
            return int(str(value).strip().split()[0])
        except (ValueError, IndexError):
            return None

    def config_values(self, name: str) -> dict[str, Any]:
        """The settings of a config-file group (``qemu_conf``, ``libvirtd_conf``); {} when not read."""
        conf = self.facts.get(name)
        values = conf.get("values") if isinstance(conf, dict) else None
        return values if isinstance(values, dict) else {}

    def collection_error(self, what: str) -> str | None:
        """What the collector said about a group it could not read (its first word names the group)."""
        word = what.split()[0].lower()
        errors = self.facts.get("collection_errors") or []
        return next((e for e in errors if isinstance(e, str) and word in e.lower()), None)

    # -- writing ---------------------------------------------------------------------------------
    def all_facts(self) -> dict[str, Any]:
        """The facts in the saved-inventory layout: the typed groups under their old keys, then the rest."""
        typed = {}
        for key, (attr, _) in _GROUPS.items():
            value = getattr(self, attr)
            if value is not None or key in self._listed_unknown:
                typed[key] = _layout(value)
        out = {}
        for key in _FACT_ORDER:
            if key in typed:
                out[key] = typed.pop(key)
            elif key in self.facts:
                out[key] = self.facts[key]
        out.update((key, value) for key, value in self.facts.items() if key not in out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "platform": self.platform,
            "facts": self.all_facts(),
            "addresses": self.addresses,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Host:
        """``addresses`` and ``version`` are derived from the facts, so only these are read."""
        if not isinstance(data, dict):
            raise ValueError(f"expected an object for Host, got {type(data).__name__}")
        return cls(**{key: data[key] for key in ("name", "platform", "facts") if key in data})
