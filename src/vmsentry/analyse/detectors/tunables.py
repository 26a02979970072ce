"""Every detector's tunables, with their defaults and what they mean (as Zeek documents its `const &redef`s).

Change one with ``vmsentry detect --tune DETECTOR.NAME=VALUE`` (repeatable). ``docs/detection.md`` lists
them; ``table()`` renders the same list.

Every value is checked against its range before anything runs (``check``): a count is a whole number from 1
to ``MAX_COUNT`` (a table of 0 entries or a threshold of 0 events means nothing), a time in seconds is a
number above 0 and finite (only ``suppress`` may be ``inf``: never close an incident), a port 0-65535. A
field may narrow its range with ``metadata["range"] = (low, high)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

from vmsentry.analyse.addresses import MANAGEMENT_PORT_LIST

# the audit's list of management services (analyse/addresses.py): one list, so the audit and the detectors agree
MGMT_PORTS = MANAGEMENT_PORT_LIST
LATERAL_PORTS = {
    22: "ssh",
    135: "rpc",
    139: "smb",
    445: "smb",
    593: "rpc",
    3389: "rdp",
    5985: "winrm",
    5986: "winrm",
    **dict.fromkeys(range(5900, 5910), "vnc"),
}


def _doc(default, text: str):
    return field(default=default, metadata={"doc": text})


def _doc_factory(factory, text: str):
    return field(default_factory=factory, metadata={"doc": text})


@dataclass(frozen=True)
class Common:
    suppress: float = _doc(
        300.0,
        "seconds: an incident quiet for longer than this is closed; a repeat after "
        "it is a new alert (repeats within it only grow the open alert)",
    )
    max_state: int = _doc(
        65536,
        "entries per state table (bindings, MACs, scanners...); the oldest are "
        "evicted beyond it and counted in stats.evicted",
    )


@dataclass(frozen=True)
class ArpSpoof(Common):
    reply_window: float = _doc(5.0, "seconds: a reply this soon after the matching request is solicited")
    garp_flood: int = _doc(30, "gratuitous ARPs from one MAC within garp_window that make a flood")
    garp_window: float = _doc(10.0, "seconds")


@dataclass(frozen=True)
class NdSpoof(Common):
    reply_window: float = _doc(
        5.0, "seconds: an advertisement this soon after a solicitation (or a DAD probe) for its target answers it"
    )


@dataclass(frozen=True)
class MacFlood(Common):
    new_macs: int = _doc(200, "new source MACs within window that make a flood")
    window: float = _doc(10.0, "seconds")
    max_state: int = _doc(65536, "source MACs remembered; a flood of millions evicts the oldest")


@dataclass(frozen=True)
class Dhcp(Common):
    flood_messages: int = _doc(
        100, "client messages (DISCOVER/REQUEST/INFORM...) from one MAC within flood_window that make a DHCP flood"
    )
    flood_clients: int = _doc(100, "distinct client hardware addresses within flood_window (starvation)")
    flood_window: float = _doc(10.0, "seconds")


@dataclass(frozen=True)
class RogueRa(Common):
    pass


@dataclass(frozen=True)
class Scan(Common):
    ports: int = _doc(20, "distinct failed ports on one host within window: a port scan")
    hosts: int = _doc(20, "distinct hosts probed without answer within window (ARP, ping, TCP SYN): a sweep")
    window: float = _doc(60.0, "seconds")
    slow_ports: int = _doc(15, "distinct failed ports on one host within slow_window: a slow port scan")
    slow_hosts: int = _doc(15, "distinct unanswered hosts within slow_window: a slow sweep")
    slow_window: float = _doc(3600.0, "seconds")
    max_targets: int = _doc(4096, "ports or hosts remembered per scanner; beyond it only counted")
    suppress: float = _doc(600.0, "seconds (see Common)")


@dataclass(frozen=True)
class Access(Common):
    mgmt_ports: tuple = _doc(MGMT_PORTS, "host management ports a VM must not open (TCP)")
    lateral_ports: dict = _doc_factory(
        lambda: dict(LATERAL_PORTS), "VM-to-VM ports that mean lateral movement, and the service name reported"
    )
    signatures: bool = _doc(
        True, "look into SMB/RPC payloads for admin-share and service-control use (works without an inventory)"
    )
    short_session: float = _doc(
        30.0, "seconds: an SSH/RDP/VNC/WinRM/SMB session that ends sooner is short (a failed login's length)"
    )
    guesses: int = _doc(10, "short sessions from one client to one server and protocol within guess_window: guessing")
    guess_window: float = _doc(300.0, "seconds")
    suppress: float = _doc(3600.0, "seconds (see Common)")


@dataclass(frozen=True)
class DnsUnsanctioned(Common):
    ports: tuple = _doc((53, 853), "DNS (and DNS-over-TLS) ports")
    max_names: int = _doc(10, "query names kept as evidence per alert")
    suppress: float = _doc(3600.0, "seconds (see Common)")


@dataclass(frozen=True)
class Ipv6(Common):
    suppress: float = _doc(3600.0, "seconds (see Common)")


@dataclass(frozen=True)
class PolicyViolation(Common):
    suppress: float = _doc(
        float("inf"), "seconds (see Common); by default one alert per forbidden flow for the whole input"
    )
    udp_flows: int = _doc(
        1 << 20, "UDP exchanges remembered to tell a first datagram from an answer; forgotten all at once beyond it"
    )


@dataclass(frozen=True)
class Anomaly(Common):
    """The behaviour model's alerts (``--model``; analyse/behaviour/anomaly.py). Its window, thresholds and
    poisoning guard are the model file's (``vmsentry baseline show``)."""

    suppress: float = _doc(60.0, "seconds (see Common): alarmed windows of one VM closer than this are one alert")
    learn: bool = _doc(
        False,
        "online updates: the VMs' profiles follow their traffic under the model's poisoning guard (memory only; "
        "`watch` turns it on, `detect` leaves it off so a capture scores the same every time)",
    )


@dataclass(frozen=True)
class Flows:
    """Not a detector: the decoder's flow tables (``collect/traffic/flows.py``), which ``detect`` sizes."""

    limit: int = _doc(
        65536,
        "flow keys per generation of each flow table (TCP, UDP, half-open, ICMP); a flow flood drops the "
        "older generation (counted in stats.evicted.flows); a live flow found there moves back",
    )


DEFAULTS = {
    "arp_spoof": ArpSpoof(),
    "mac_flood": MacFlood(),
    "dhcp": Dhcp(),
    "rogue_ra": RogueRa(),
    "scan": Scan(),
    "access": Access(),
    "dns_unsanctioned": DnsUnsanctioned(),
    "ipv6": Ipv6(),
    "policy_violation": PolicyViolation(),
    "nd_spoof": NdSpoof(),
    "anomaly": Anomaly(),
    "flows": Flows(),
}


MAX_COUNT = 1_000_000_000
INFINITE_ALLOWED = {"suppress"}  # inf = one incident for the whole input (policy_violation's default)


class TunableError(ValueError):
    pass


def check(det: str, obj) -> None:
    """Raise TunableError (one line) for the first value of ``obj`` (a detector's tunables) outside its range."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # booleans and port lists are checked when parsed
        low, high = f.metadata.get("range", (1, MAX_COUNT) if isinstance(value, int) else (0.0, math.inf))
        where = f"{det}.{f.name}={value!r}"
        if isinstance(value, float):
            if math.isnan(value) or value <= low or value > high:
                raise TunableError(f"--tune {where}: must be a number above {low:g}")
            if math.isinf(value) and f.name not in INFINITE_ALLOWED:
                raise TunableError(f"--tune {where}: must be finite (only suppress may be inf)")
        elif not low <= value <= high:
            raise TunableError(f"--tune {where}: must be a whole number from {low} to {high:,}")


def with_overrides(overrides: list[str]) -> dict:
    """``["scan.ports=30", "mac_flood.window=5"]`` -> the DEFAULTS with those values changed."""
    out = dict(DEFAULTS)
    for item in overrides:
        name, sep, value = item.partition("=")
        det, dot, key = name.strip().partition(".")
        if not sep or not dot or det not in out:
            raise TunableError(
                f"--tune {item!r}: expected DETECTOR.NAME=VALUE with DETECTOR one of {', '.join(sorted(out))}"
            )
        current = out[det]
        kinds = {f.name: f for f in fields(current)}
        if key not in kinds:
            raise TunableError(f"--tune {item!r}: {det} has no tunable {key!r} ({', '.join(sorted(kinds))})")
        out[det] = replace(current, **{key: _convert(getattr(current, key), value.strip(), item)})
    for det, obj in out.items():
        check(det, obj)
    return out


def _convert(old, text: str, item: str):
    try:
        if isinstance(old, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(old, int):
            return int(text)
        if isinstance(old, float):
            return float(text)
        if isinstance(old, tuple):
            return tuple(_ports(text))
        if isinstance(old, dict):
            return dict.fromkeys(_ports(text), "custom")
    except ValueError:
        raise TunableError(f"--tune {item!r}: {text!r} is not a valid {type(old).__name__}") from None
    return text


def _ports(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.replace(" ", "").split(",")):
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if not 0 <= lo <= hi <= 65535:
            raise ValueError(part)
        out.extend(range(lo, hi + 1))
    return out


def table() -> list[tuple[str, str, str, str]]:
    """(detector, name, default, meaning) for every tunable."""
    rows = []
    for det, obj in DEFAULTS.items():
        for f in fields(obj):
            value = getattr(obj, f.name)
            if isinstance(value, tuple) and len(value) > 12:
                shown = ", ".join(map(str, value[:13])) + ", 5900-5999" if det == "access" else str(value)
            elif isinstance(value, dict):
                shown = ", ".join(f"{p} {s}" for p, s in value.items() if not (5901 <= p <= 5909))
                shown = shown.replace("5900 vnc", "5900-5909 vnc")
            else:
                shown = str(value)
            rows.append((det, f.name, shown, f.metadata.get("doc", "")))
    return rows
