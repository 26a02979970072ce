"""The options file of `vmsentry cost` (docs/cost.md), and the four built-in isolation options.

    currency: EUR
    samples: 20000                 # Monte Carlo draws (100 .. 1,000,000)
    distribution: pert             # or triangular
    illustrative: true             # say so on every report when the figures are examples
    threat_event_frequency: {low: 0.1, most_likely: 0.3, high: 1}      # compromised VMs a year
    loss_magnitude: {low: 20000, most_likely: 150000, high: 1500000}   # one loss event
    options:
      nat:                         # a built-in option: its changes stay, the fields given replace its own
        cost: {low: 500, most_likely: 2000, high: 6000}
      close-libvirt-tcp:           # an option of the file's own: changes and cost are required
        title: Close libvirtd's TCP port
        changes: ["svc:*:tcp/16509"]
        cost: {low: 100, most_likely: 300, high: 1000}

A change is what `vmsentry paths --what-if` takes: a change id as `vmsentry paths` prints it, an fnmatch
pattern over those ids (``spoof:*``), or a rule id (every change of that rule). Everything is checked
before the inventory is read; the first problem is one ``file:line: problem``.
"""

from __future__ import annotations

import math
import re

from vmsentry.model.cost import DISTRIBUTIONS, CostModel, Estimate, IsolationOption
from vmsentry.model.yaml_lines import LMap, Loc, LSeq, describe, load_file

MAX_BYTES = 1024 * 1024  # a few dozen options are a few kilobytes
MIN_SAMPLES, MAX_SAMPLES = 100, 1_000_000
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RULE_RE = re.compile(r"VMS-[A-Z0-9]+-\d+")

# The first part (before ':') of every change id the exposure graph makes (analyse/graph/build.py and
# vm_edges.py; tests/test_cost.py checks the example graphs against this list)
CHANGE_KINDS = (
    "clipboard",
    "dev",
    "disk",
    "dnd",
    "fw-port",
    "fw-seg",
    "fwd",
    "iommu",
    "isolate",
    "lan-off",
    "listener",
    "mgmt-off",
    "nic",
    "nicmodel",
    "nousernic",
    "restrict",
    "share",
    "share-off",
    "sharepath",
    "spoof",
    "svc",
    "upgrade",
)

# Illustrative defaults for a small KVM host: examples of the shape of an answer, not facts about anyone's
# losses or prices (docs/cost.md says where such figures should come from).
DEFAULT_TEF = Estimate(0.1, 0.3, 1.0)
DEFAULT_LM = Estimate(20_000, 150_000, 1_500_000)
BUILTIN_OPTIONS = (
    IsolationOption(
        "nat",
        "NAT: guests behind the host's NAT bridge",
        ("mgmt-off:*",),
        Estimate(500, 2_000, 6_000),
        "the host's management address leaves the guests' segment; guests still reach the host's services "
        "through the NAT bridge's address and still open connections to the LAN (NAT is not a boundary)",
        builtin=True,
    ),
    IsolationOption(
        "vlan",
        "VLAN: guests on a VLAN of their own, routed through a firewall",
        ("lan-off:*", "mgmt-off:*", "fw-seg:*"),
        Estimate(3_000, 8_000, 20_000),
        "the guests' segments leave the production LAN, the host has no address on them; guests on one "
        "VLAN still reach each other",
        builtin=True,
    ),
    IsolationOption(
        "microsegmentation",
        "Micro-segmentation: a filter on every guest NIC and host port",
        ("spoof:*", "isolate:*", "fw-seg:*", "fw-port:*"),
        Estimate(6_000, 15_000, 40_000),
        "anti-spoofing and port isolation between guests, guest traffic to the host dropped on each bridge "
        "and port; the segments stay on the LAN",
        builtin=True,
    ),
    IsolationOption(
        "physical-separation",
        "Physical separation: the workloads on hardware and networks of their own",
        ("*",),
        Estimate(30_000, 60_000, 150_000),
        "every change the graph knows: nothing a guest could use is shared with another workload, the host "
        "of the others or their LAN",
        builtin=True,
    ),
)
BUILTIN = {o.name: o for o in BUILTIN_OPTIONS}
TOP_KEYS = (
    "currency",
    "samples",
    "distribution",
    "illustrative",
    "threat_event_frequency",
    "loss_magnitude",
    "options",
)
OPTION_KEYS = ("title", "changes", "cost", "models")
RANGE_KEYS = ("low", "most_likely", "high")


class OptionsError(Exception):
    """An options file that cannot be used; the message is ``file:line: problem``."""


def default_model() -> CostModel:
    return CostModel(DEFAULT_TEF, DEFAULT_LM, BUILTIN_OPTIONS)


def load_options(path: str) -> CostModel:
    root = load_file(path, MAX_BYTES, OptionsError)
    if root is None or root.value is None:
        raise OptionsError(f"{path}:1: empty options file (expected a mapping: {', '.join(TOP_KEYS)})")
    return _Reader(path).model(root)


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, line: int, problem: str) -> OptionsError:
        return OptionsError(f"{self.path}:{line}: {problem}")

    def mapping(self, loc: Loc, what: str, keys: tuple[str, ...]) -> LMap:
        if not isinstance(loc.value, LMap):
            raise self.fail(loc.line, f"{what} must be a mapping of {', '.join(keys)}, got {describe(loc.value)}")
        for key in loc.value:
            if key not in keys:
                raise self.fail(loc.value.key_lines[key], f"unknown key {key!r} in {what} (expected {', '.join(keys)})")
        return loc.value

    def model(self, root: Loc) -> CostModel:
        top = self.mapping(root, "the options file", TOP_KEYS)
        base = default_model()
        currency = self.text(top["currency"], "currency") if "currency" in top else base.currency
        if len(currency) > 16:
            raise self.fail(top["currency"].line, "currency: at most 16 characters (EUR, USD, kCHF...)")
        samples = base.samples
        if "samples" in top:
            samples = self.integer(top["samples"], "samples", MIN_SAMPLES, MAX_SAMPLES)
        distribution = base.distribution
        if "distribution" in top:
            distribution = self.text(top["distribution"], "distribution")
            if distribution not in DISTRIBUTIONS:
                raise self.fail(
                    top["distribution"].line,
                    f"distribution: expected {' or '.join(DISTRIBUTIONS)}, got {distribution!r}",
                )
        illustrative = True
        if "illustrative" in top:
            if not isinstance(top["illustrative"].value, bool):
                raise self.fail(top["illustrative"].line, "illustrative: expected true or false")
            illustrative = top["illustrative"].value
        tef = (
            self.estimate(top["threat_event_frequency"], "threat_event_frequency")
            if "threat_event_frequency" in top
            else base.threat_event_frequency
        )
        lm = self.estimate(top["loss_magnitude"], "loss_magnitude") if "loss_magnitude" in top else base.loss_magnitude
        options = self.options(top["options"]) if "options" in top else base.options
        return CostModel(tef, lm, options, currency, samples, distribution, self.path, illustrative)

    def options(self, loc: Loc) -> tuple[IsolationOption, ...]:
        if not isinstance(loc.value, LMap) or not loc.value:
            raise self.fail(
                loc.line, f"options must be a mapping of option names to their fields, got {describe(loc.value)}"
            )
        out = []
        for name, fields in loc.value.items():
            line = loc.value.key_lines[name]
            if not NAME_RE.fullmatch(name):
                raise self.fail(
                    line, f"option name {name!r}: 1-64 of A-Z a-z 0-9 _ . -, starting with a letter or digit"
                )
            out.append(self.option(name, line, fields))
        return tuple(out)

    def option(self, name: str, line: int, loc: Loc) -> IsolationOption:
        what = f"option {name!r}"
        if loc.value is None:
            fields: LMap | dict = {}
        else:
            fields = self.mapping(loc, what, OPTION_KEYS)
        builtin = BUILTIN.get(name)
        if builtin is None and "changes" not in fields:
            raise self.fail(
                line,
                f"unknown option {name!r}: not one of {', '.join(BUILTIN)}, so it must give its changes (and its cost)",
            )
        if builtin is None and "cost" not in fields:
            raise self.fail(line, f"{what} must give its cost (low, most_likely, high)")
        title = (
            self.text(fields["title"], f"{what} title") if "title" in fields else (builtin.title if builtin else name)
        )
        models = (
            self.text(fields["models"], f"{what} models") if "models" in fields else (builtin.models if builtin else "")
        )
        changes = self.changes(fields["changes"], what) if "changes" in fields else builtin.changes
        cost = self.estimate(fields["cost"], f"{what} cost") if "cost" in fields else builtin.cost
        return IsolationOption(
            name, title, changes, cost, models, builtin is not None and "changes" not in fields, line
        )

    def changes(self, loc: Loc, what: str) -> tuple[str, ...]:
        if not isinstance(loc.value, LSeq) or not loc.value:
            raise self.fail(loc.line, f"{what} changes must be a non-empty list, got {describe(loc.value)}")
        out = []
        for item in loc.value:
            entry = self.text(item, f"{what} change")
            problem = change_problem(entry)
            if problem:
                raise self.fail(item.line, f"{what}: {problem}")
            out.append(entry)
        return tuple(dict.fromkeys(out))

    def text(self, loc: Loc, what: str) -> str:
        if not isinstance(loc.value, str) or not loc.value.strip():
            raise self.fail(loc.line, f"{what}: expected a text, got {describe(loc.value)}")
        if len(loc.value) > 500:
            raise self.fail(loc.line, f"{what}: longer than 500 characters")
        return loc.value.strip()

    def number(self, loc: Loc, what: str) -> float:
        value = loc.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(loc.line, f"{what}: expected a number, got {describe(value)}")
        if not math.isfinite(value) or value < 0 or value > 1e15:
            raise self.fail(loc.line, f"{what}: expected a finite number from 0 to 1e15, got {value}")
        return float(value)

    def integer(self, loc: Loc, what: str, low: int, high: int) -> int:
        value = loc.value
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                loc.line, f"{what}: expected a whole number from {low:,} to {high:,}, got {describe(value)}"
            )
        return value

    def estimate(self, loc: Loc, what: str) -> Estimate:
        fields = self.mapping(loc, what, RANGE_KEYS)
        missing = [k for k in RANGE_KEYS if k not in fields]
        if missing:
            raise self.fail(loc.line, f"{what} lacks {', '.join(missing)} (a range is low, most_likely, high)")
        low, ml, high = (self.number(fields[k], f"{what} {k}") for k in RANGE_KEYS)
        if low > high:
            raise self.fail(fields["low"].line, f"{what}: bad range, low {low:g} is above high {high:g}")
        if not low <= ml <= high:
            raise self.fail(
                fields["most_likely"].line, f"{what}: bad range, most_likely {ml:g} is outside {low:g} .. {high:g}"
            )
        return Estimate(low, ml, high)


def change_problem(entry: str) -> str | None:
    """Why ``entry`` cannot be an option's change (None when it can): a rule id, '*', or a change id or
    pattern whose kind (the part before ':') the graph makes."""
    if RULE_RE.fullmatch(entry):
        from vmsentry.analyse.rules import load_catalogue

        if entry not in {r.id for r in load_catalogue()}:
            return f"unknown rule {entry!r} (`vmsentry rules` lists them)"
        return None
    if entry == "*":
        return None
    kind = entry.split(":", 1)[0]
    if kind not in CHANGE_KINDS or ":" not in entry:
        return (
            f"unknown change {entry!r}: give a change id as `vmsentry paths` prints it, a pattern such as "
            f"'spoof:*' (kinds: {', '.join(CHANGE_KINDS)}), '*', or a rule id such as VMS-VM-030"
        )
    return None
