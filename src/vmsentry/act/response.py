"""The response policy of ``vmsentry watch`` (CONTRACTS.md "Watcher and response"): its YAML file and the
decision taken for every alert.

    respond: auto          # observe | ask | auto
    quarantine: nft        # nft | libvirt
    auto:                  # which alerts act by themselves (types omitted: any type)
      - {types: [arp_spoof, rogue_dhcp], min_severity: high, min_confidence: 0.9}
    never: [host, jump*]   # never quarantined: "host" (the host's own port and MACs) and VM names (fnmatch globs)
    max_per_minute: 3      # more quarantines wanted within 60 s: "rate_limited", alert only
    ttl: 3600              # a hold releases itself after this many seconds (0 = never)
    forensics_port: {proto: tcp, port: 22}
    host_addresses: [10.99.0.1]   # the forensics destination (default: the host's own addresses)
    host_ports: [p-host]          # bridge ports the host sits behind (none when it is the bridge itself)

and the watcher's other settings, each the value of the ``vmsentry watch`` option of the same name (the
command line wins over the file): interfaces, libvirt, inventory, model, evidence, audit, format, output,
syslog, metrics, netns, duration. An unknown key, a value of the wrong type or out of range is one error
``FILE:LINE: problem``.
"""

from __future__ import annotations

import math
import shlex
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from vmsentry.model.findings import SEVERITIES, SEVERITY_RANK
from vmsentry.model.yaml_lines import LMap, Loc, LSeq, describe, load_file

RESPOND = ("observe", "ask", "auto")
METHODS = ("nft", "libvirt")
FORMATS = ("text", "jsonl", "eve", "ecs")
ACTIONS = ("quarantine", "alert", "ask", "never", "rate_limited", "held")
MAX_BYTES = 1024 * 1024  # a response policy is a few dozen lines


class ConfigError(Exception):
    """A response configuration that cannot be used; the message is ``file:line: problem``."""


@dataclass(frozen=True)
class AutoRule:
    types: tuple[str, ...] = ()  # empty: every alert type
    min_severity: str | None = None
    min_confidence: float = 0.0

    def matches(self, alert: dict) -> bool:
        if self.types and alert.get("type") not in self.types:
            return False
        rank = SEVERITY_RANK.get(alert.get("severity"))
        if self.min_severity and (rank is None or rank > SEVERITY_RANK[self.min_severity]):
            return False
        confidence = alert.get("confidence")
        return isinstance(confidence, (int, float)) and confidence >= self.min_confidence


# the contract's example: layer-2 attacks that are certain act by themselves, anomalies when likely
DEFAULT_AUTO = (
    AutoRule(("arp_spoof", "nd_spoof", "rogue_dhcp", "rogue_ra", "mac_flood"), "high", 0.9),
    AutoRule(("anomaly",), None, 0.8),
)


@dataclass(frozen=True)
class ResponseConfig:
    respond: str = "observe"
    quarantine: str = "nft"
    auto: tuple[AutoRule, ...] = DEFAULT_AUTO
    never: tuple[str, ...] = ("host",)
    max_per_minute: int = 3
    ttl: float = 3600.0
    forensics_port: tuple[str, int] = ("tcp", 22)
    host_addresses: tuple[str, ...] = ()
    host_ports: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    libvirt: str | None = None
    inventory: tuple[str, ...] = ()
    model: str | None = None
    evidence: str | None = None
    audit: str | None = None
    format: str = "text"
    output: str | None = None
    syslog: str | None = None
    metrics: str | None = None
    netns: str | None = None
    duration: float | None = None
    source: str | None = field(default=None, compare=False)  # the file it was read from

    def merged(self, **options: Any) -> ResponseConfig:
        """This configuration with the command line's options on top (an option left out, None, is not given)."""
        given = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
        return replace(self, **given)


# ------------------------------------------------------------------------------------------------ loading
def load_response_config(path: str) -> ResponseConfig:
    root = load_file(path, MAX_BYTES, ConfigError)
    if root is None or root.value is None:
        return ResponseConfig(source=path)
    if not isinstance(root.value, LMap):
        raise ConfigError(f"{path}:{root.line}: expected a mapping of settings, not {describe(root.value)}")
    values: dict[str, Any] = {}
    for key, loc in root.value.items():
        check = _FIELDS.get(key)
        where = f"{path}:{root.value.key_lines[key]}"
        if check is None:
            raise ConfigError(f"{where}: unknown key {key!r} (expected {', '.join(_FIELDS)})")
        values[key] = check(_Where(path, loc), key)
    return ResponseConfig(**values, source=path)


class _Where:
    """A value and where it is, for messages."""

    def __init__(self, path: str, loc: Loc) -> None:
        self.path, self.loc, self.value = path, loc, loc.value

    def fail(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}:{self.loc.line}: {problem}")

    def at(self, loc: Loc) -> _Where:
        return _Where(self.path, loc)


def _choice(options: tuple[str, ...]) -> Callable[[_Where, str], str]:
    def check(w: _Where, key: str) -> str:
        if w.value not in options:
            raise w.fail(f"{key} must be one of {', '.join(options)}, not {describe(w.value)}")
        return w.value

    return check


def _text(w: _Where, key: str) -> str:
    if not isinstance(w.value, str) or not w.value.strip():
        raise w.fail(f"{key} must be a text, not {describe(w.value)}")
    return w.value


def _path_component(w: _Where, key: str) -> str:
    name = _text(w, key)
    if "/" in name or name in (".", "..") or any(ch.isspace() for ch in name):
        raise w.fail(f"{key} {name!r} is not a network namespace name (one name, as `ip netns list` shows)")
    return name


def _texts(w: _Where, key: str) -> tuple[str, ...]:
    """A list of texts; a single text is a list of one."""
    if isinstance(w.value, str):
        return (_text(w, key),)
    if not isinstance(w.value, LSeq):
        raise w.fail(f"{key} must be a list of texts, not {describe(w.value)}")
    return tuple(_text(w.at(item), f"each entry of {key}") for item in w.value)


def _number(low: float, high: float = math.inf, low_open: bool = False, integer: bool = False):
    def check(w: _Where, key: str) -> float:
        v = w.value
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or not math.isfinite(v) or v > high or v < low or (low_open and v == low):
            kind = "a whole number" if integer else "a number"
            bounds = f"above {low}" if low_open else f"from {low}" + (f" to {high}" if high != math.inf else " up")
            raise w.fail(f"{key} must be {kind} {bounds}, not {describe(v)}")
        return v if integer else float(v)

    return check


def _mapping(w: _Where, key: str, fields: tuple[str, ...]) -> LMap:
    if not isinstance(w.value, LMap):
        raise w.fail(f"{key} must be a mapping of {', '.join(fields)}, not {describe(w.value)}")
    for k in w.value:
        if k not in fields:
            raise ConfigError(
                f"{w.path}:{w.value.key_lines[k]}: unknown key {k!r} in {key} (expected {', '.join(fields)})"
            )
    return w.value


def _auto(w: _Where, key: str) -> tuple[AutoRule, ...]:
    if not isinstance(w.value, LSeq):
        raise w.fail(
            f"auto must be a list of rules ({{types: [...], min_severity: ..., min_confidence: ...}}), not {describe(w.value)}"
        )
    rules = []
    for item in w.value:
        r = _mapping(w.at(item), "an auto rule", ("types", "min_severity", "min_confidence"))
        kw: dict[str, Any] = {}
        if "types" in r:
            kw["types"] = _texts(w.at(r["types"]), "types")
        if "min_severity" in r:
            kw["min_severity"] = _choice(SEVERITIES)(w.at(r["min_severity"]), "min_severity")
        if "min_confidence" in r:
            kw["min_confidence"] = _number(0.0, 1.0)(w.at(r["min_confidence"]), "min_confidence")
        rules.append(AutoRule(**kw))
    return tuple(rules)


def _forensics(w: _Where, key: str) -> tuple[str, int]:
    m = _mapping(w, key, ("proto", "port"))
    if "port" not in m:
        raise w.fail(f"{key} needs a port")
    proto = _choice(("tcp", "udp"))(w.at(m["proto"]), "proto") if "proto" in m else "tcp"
    return proto, _number(1, 65535, integer=True)(w.at(m["port"]), "port")


_FIELDS: dict[str, Callable[[_Where, str], Any]] = {
    "respond": _choice(RESPOND),
    "quarantine": _choice(METHODS),
    "auto": _auto,
    "never": _texts,
    "max_per_minute": _number(0, integer=True),
    "ttl": _number(0.0),
    "forensics_port": _forensics,
    "host_addresses": _texts,
    "host_ports": _texts,
    "interfaces": _texts,
    "libvirt": _text,
    "inventory": _texts,
    "model": _text,
    "evidence": _text,
    "audit": _text,
    "format": _choice(FORMATS),
    "output": _text,
    "syslog": _text,
    "metrics": _text,
    "netns": _path_component,
    "duration": _number(0.0, low_open=True),
}


# ----------------------------------------------------------------------------------------------- deciding
@dataclass(frozen=True)
class Decision:
    action: str  # one of ACTIONS
    reason: str  # one sentence: why
    command: str | None = None  # the quarantine command (ask: to run by hand; quarantine: what is done)
    ttl: float | None = None  # for "quarantine": seconds until the hold releases itself (None: never)


class Responder:
    """Decides, per alert, what the watcher does. ``held``: the names (VMs and MACs) held now, from the
    quarantine (read when needed). ``host_macs``: the host's own MACs on the watched bridges (for ``never:
    [host]``). The rate limit counts the quarantines this responder decided within the last 60 s."""

    def __init__(
        self, config: ResponseConfig, held: Callable[[], Iterable[str]] = tuple, host_macs: Iterable[str] = ()
    ) -> None:
        self.config = config
        self._held = held
        self.host_macs = {m.lower() for m in host_macs}
        self._recent: deque[float] = deque()
        self._decided: set[str] = set()  # quarantined by a decision here, until forget()

    @property
    def ttl(self) -> float | None:
        return self.config.ttl or None

    def forget(self, name: str) -> None:
        """``name`` was released (or its hold failed): a new alert about it may act again."""
        self._decided.discard(name)

    def decide(self, alert: dict, vm: str | None, now: float) -> Decision:
        cfg = self.config
        attacker = alert.get("attacker") or {}
        mac = (attacker.get("mac") or "").lower() or None
        what = f"{alert.get('type')} ({alert.get('severity')}, confidence {alert.get('confidence')})"
        never = self._never(vm, mac)
        if never:
            return Decision("never", f"{never} is on the never list: {what} not acted on")
        name = vm or mac
        names = {n for n in (vm, mac) if n}
        if names & (self._decided | set(self._held())):
            return Decision("held", f"{name} is already quarantined")
        if cfg.respond == "observe":
            return Decision("alert", f"respond is observe: {what} alerted only")
        rule = next((r for r in cfg.auto if r.matches(alert)), None)
        if rule is None:
            return Decision("alert", f"no auto rule matches {what}: alerted only")
        if vm is None and (cfg.respond == "auto" or not mac):
            return Decision("alert", f"the attacker of {what} is not a known VM: not quarantined by itself")
        command = self.command(name, alert)
        if cfg.respond == "ask":
            return Decision("ask", f"{what} matches an auto rule; respond is ask: run the command to act", command)
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= cfg.max_per_minute:
            return Decision(
                "rate_limited",
                f"response rate limit: {len(self._recent)} quarantines in the last minute "
                f"(max_per_minute {cfg.max_per_minute}); {name} alerted only",
                command,
            )
        self._recent.append(now)
        self._decided.add(name)
        return Decision("quarantine", f"{what} matches an auto rule: quarantine {name}", command, self.ttl)

    def _never(self, vm: str | None, mac: str | None) -> str | None:
        for entry in self.config.never:
            if entry == "host" and (vm == "host" or (mac is not None and mac in self.host_macs)):
                return "the host"
            if vm is not None and fnmatchcase(vm, entry):
                return vm
        return None

    def command(self, name: str, alert: dict) -> str:
        """``vmsentry quarantine NAME --reason ...`` with this configuration's method, TTL, inventory, netns."""
        cfg = self.config
        reason = f"{alert.get('type')} alert" + (f" {alert['id']}" if alert.get("id") else "")
        parts = ["vmsentry", "quarantine", name, "--reason", reason]
        if self.ttl:
            parts += ["--ttl", f"{self.ttl:g}"]
        if cfg.quarantine != "nft":
            parts += ["--method", cfg.quarantine]
        if cfg.libvirt:
            parts += ["--libvirt", cfg.libvirt]
        for inv in cfg.inventory:
            parts += ["--inventory", inv]
        if cfg.netns:
            parts += ["--netns", cfg.netns]
        return shlex.join(parts)


def expired(holds: Iterable, now: float) -> list:
    """The holds (``Held``) whose TTL has run out at ``now``: the watcher releases them."""
    return [h for h in holds if h.until is not None and h.until <= now]
