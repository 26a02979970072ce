"""The one normalised inventory every stage after *collect* works on.

Field names and values follow ``vmsentry.inventory/1`` in CONTRACTS.md. Fields beyond the contract
(``locator``, ``connected``, ``facts`` ...) are extensions: they carry evidence locations and the
platform settings rules need, so that analysis never has to look at a platform file again. ``Host``
and what is read from a Linux host are typed records in ``host.py``.

``facts`` maps a setting's name to ``{"value": ..., "at": locator}``; the name is the platform's own
key (``libvirt.seclabel.type``, ``qemu.conf.vnc_listen``) so a reader can find it in the file. A key
that is absent from ``facts`` means the platform default applies; each rule's metadata says what that
default is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from vmsentry.model.asset import AssetRecord
from vmsentry.model.host import Host
from vmsentry.model.text import redact_credentials

SCHEMA = "vmsentry.inventory/1"

NIC_MODES = (
    "nat",
    "bridged",
    "host-only",
    "isolated",
    "routed",
    "open",
    "user",
    "direct",
    "internal",
    "private",
    "passthrough",
    "disconnected",
    "unknown",
)
LISTENER_KINDS = (
    "vnc",
    "spice",
    "rdp",
    "vrde",
    "websocket",
    "serial",
    "monitor",
    "net-socket",
    "chardev",
    "usbredir",
    "migration",
)
AUTH_KINDS = ("none", "password", "tls", "sasl", "ticket", "unknown")

# How many devices of one kind (NICs, listeners, ports, rules ...) one VM or network keeps. A hostile
# definition can declare hundreds of thousands in a file under its input cap; each becomes records,
# findings and report lines, so memory and the report grew a hundred times the input (issue 11: a 15 MB
# .vmx took 1.1 GB and wrote a 525 MB report, a saved inventory with 600,000 NICs on one VM 3.1 GB). No
# real VM comes near: ESXi allows 10 NICs per VM, a PCI bus 32 slots, libvirt's limits are of that order.
# Every reader and the saved-inventory loader stop there and say so once per kind (collect/device_cap.py).
MAX_DEVICES_PER_KIND = 256


def capped_message(where: str, kind: str, limit: int = MAX_DEVICES_PER_KIND, unit: str = "devices in one VM") -> str:
    return f"{where}: more than {limit} {kind} {unit}; the rest are not read"


@dataclass(slots=True)
class Source:
    file: str | None = None
    uri: str | None = None


@dataclass(slots=True)
class Nic:
    id: str
    mode: str = "unknown"
    mac: str | None = None
    ip: str | None = None
    target: str | None = None
    network: str | None = None
    bridge: str | None = None
    model: str | None = None
    filter: str | None = None
    spoof_protection: bool | None = None
    # extensions
    locator: str | None = None
    connected: bool = True
    filter_params: dict[str, str] = field(default_factory=dict)
    port_isolated: bool | None = None
    type: str | None = None  # the platform's own attachment type (libvirt interface type=...)
    detail: str | None = None  # e.g. macvtap source device, vhost-user socket


@dataclass(slots=True)
class Forward:
    protocol: str
    host_ports: list[int]
    guest_ports: list[int]
    host_address: str | None = None
    nic: str | None = None
    locator: str | None = None


@dataclass(slots=True)
class Listener:
    kind: str
    transport: str = "tcp"
    address: str | None = None
    port: int | None = None
    auth: str = "unknown"
    locator: str | None = None
    tls: bool | None = None


@dataclass(slots=True)
class Share:
    kind: str
    host_path: str | None
    guest_tag: str | None = None
    writable: bool = True
    locator: str | None = None


@dataclass(slots=True)
class Device:
    kind: str
    detail: str = ""
    locator: str | None = None


@dataclass(slots=True)
class Security:
    memory_encryption: str | None = None
    secure_boot: bool | None = None
    disk_encryption: bool | None = None
    confinement: str = "unknown"


@dataclass(slots=True)
class Snapshot:
    name: str
    created: str | None = None


@dataclass(slots=True)
class Channels:
    clipboard: str = "unknown"
    drag_and_drop: str = "unknown"


@dataclass(slots=True)
class VM(AssetRecord):
    KIND: ClassVar[str] = "vm"

    name: str
    platform: str
    uuid: str | None = None
    source: Source = field(default_factory=Source)
    nics: list[Nic] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)
    shares: list[Share] = field(default_factory=list)
    channels: Channels = field(default_factory=Channels)
    devices: list[Device] = field(default_factory=list)
    security: Security = field(default_factory=Security)
    snapshots: list[Snapshot] = field(default_factory=list)
    # extensions
    host: str | None = None  # name of the host entry this VM runs on, when known
    state: str | None = None  # running|shut-off|... from a live collector
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class Network(AssetRecord):
    KIND: ClassVar[str] = "network"

    name: str
    platform: str
    mode: str = "unknown"
    bridge: str | None = None
    subnets: list[str] = field(default_factory=list)
    host_address: str | None = None
    host_mac: str | None = None
    dhcp: bool = False
    dhcp_servers: list[str] = field(default_factory=list)
    dns_servers: list[str] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)
    source: Source = field(default_factory=Source)
    # extensions
    host: str | None = None
    port_isolated: bool | None = None
    ipv6: bool = False
    ipv6_routers: list[dict[str, str | None]] = field(default_factory=list)  # sanctioned: {"mac", "ip"}
    locator: str | None = None
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class InputError:
    file: str
    message: str

    def __post_init__(self) -> None:
        # an error may quote the line it is about, and that line may hold a secret
        self.message = redact_credentials(self.message)

    def line(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(slots=True)
class NwFilter:
    """A libvirt nwfilter definition: which other filters it includes, so rules can tell whether a
    NIC's filter really blocks spoofing (a custom filter that includes clean-traffic does)."""

    name: str
    includes: list[str] = field(default_factory=list)
    source: Source = field(default_factory=Source)


@dataclass(slots=True)
class Inventory:
    hosts: list[Host] = field(default_factory=list)
    networks: list[Network] = field(default_factory=list)
    vms: list[VM] = field(default_factory=list)
    errors: list[InputError] = field(default_factory=list)
    nwfilters: list[NwFilter] = field(default_factory=list)
    # what a reader should know that is not an error (files passed over on purpose); not serialised
    notes: list[str] = field(default_factory=list)

    def extend(self, other: Inventory) -> None:
        self.hosts.extend(other.hosts)
        self.networks.extend(other.networks)
        self.vms.extend(other.vms)
        self.errors.extend(other.errors)
        self.nwfilters.extend(other.nwfilters)
        self.notes.extend(other.notes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "hosts": [h.to_dict() for h in self.hosts],
            "networks": [_plain(n) for n in self.networks],
            "vms": [_plain(v) for v in self.vms],
            "nwfilters": [_plain(f) for f in self.nwfilters],
            "errors": [_plain(e) for e in self.errors],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str = "(saved inventory)") -> Inventory:
        """Read a saved inventory back. Unknown fields are ignored so that a newer file still loads; a field
        that does not follow the schema raises ``SchemaError`` (a ValueError) naming its JSON path. A VM
        with more than ``MAX_DEVICES_PER_KIND`` of a kind keeps the first ones, with an error naming
        ``origin`` (the file) and the JSON path, as the readers do."""
        from vmsentry.model.inventory_schema import check_inventory  # it reads this module's records

        data, capped = _capped_vms(data, origin)
        check_inventory(data)
        return cls(
            hosts=[Host.from_dict(h) for h in data.get("hosts") or []],
            networks=[_saved_network(n) for n in data.get("networks") or []],
            vms=[_build(VM, v) for v in data.get("vms") or []],
            errors=[_build(InputError, e) for e in data.get("errors") or []] + capped,
            nwfilters=[_build(NwFilter, f) for f in data.get("nwfilters") or []],
        )


# the lists of a saved VM the per-VM cap applies to
_CAPPED_LISTS = ("nics", "forwards", "listeners", "shares", "devices", "snapshots")


def _capped_vms(data: Any, origin: str) -> tuple[Any, list[InputError]]:
    """``data`` with each VM's lists cut at the cap (before checking, which then walks only what is kept),
    and one error per list cut. ``data`` itself is not changed."""
    vms = data.get("vms") if isinstance(data, dict) else None
    if not isinstance(vms, list):
        return data, []
    errors: list[InputError] = []
    kept = []
    for index, vm in enumerate(vms):
        over = [
            key for key in _CAPPED_LISTS if isinstance(vm, dict) and len(_as_list(vm.get(key))) > MAX_DEVICES_PER_KIND
        ]
        if over:
            vm = dict(vm)
            for key in over:
                vm[key] = vm[key][:MAX_DEVICES_PER_KIND]
                where = f"vms[{index}].{key}[{MAX_DEVICES_PER_KIND}]"
                errors.append(InputError(origin, capped_message(where, key, unit="in one VM")))
        kept.append(vm)
    return ({**data, "vms": kept} if errors else data), errors


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _saved_network(data: Any) -> Network:
    """A saved network; ``ipv6`` left out is true exactly when a subnet is an IPv6 prefix (CONTRACTS.md)."""
    net = _build(Network, data)
    if "ipv6" not in data:
        net.ipv6 = any(":" in str(subnet) for subnet in net.subnets)
    return net


_NESTED: dict[type, dict[str, tuple[type, bool]]] = {
    VM: {
        "source": (Source, False),
        "nics": (Nic, True),
        "forwards": (Forward, True),
        "listeners": (Listener, True),
        "shares": (Share, True),
        "channels": (Channels, False),
        "devices": (Device, True),
        "security": (Security, False),
        "snapshots": (Snapshot, True),
    },
    Network: {"source": (Source, False)},
    NwFilter: {"source": (Source, False)},
}


_LAYOUT: dict[type, tuple[tuple[str, int], ...]] = {}
_LEAF, _ONE, _MANY = 0, 1, 2


def _plain(obj: Any) -> dict[str, Any]:
    """A dataclass tree as plain dicts and lists for JSON. Unlike dataclasses.asdict it does not
    deep-copy leaf values (fact dicts are shared with the model, which is fine for serialising) and is
    several times faster on 10,000-VM inventories: which fields nest is worked out once per class."""
    layout = _LAYOUT.get(type(obj))
    if layout is None:
        nested = _NESTED.get(type(obj), {})
        layout = _LAYOUT[type(obj)] = tuple(
            (f.name, (_MANY if nested[f.name][1] else _ONE) if f.name in nested else _LEAF) for f in fields(obj)
        )
    out = {}
    for name, how in layout:
        value = getattr(obj, name)
        if how == _MANY:
            value = [_plain(v) for v in value]
        elif how == _ONE and value is not None:
            value = _plain(value)
        out[name] = value
    return out


def _build(cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    nested = _NESTED.get(cls, {})
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name in nested and value is not None:
            sub, many = nested[f.name]
            value = [_build(sub, item) for item in value] if many else _build(sub, value)
        kwargs[f.name] = value
    return cls(**kwargs)
