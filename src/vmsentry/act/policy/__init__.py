"""Segmentation policy: YAML -> resolved model -> nftables / libvirt nwfilter; apply with rollback; check.

Library entry points (the CLI in ``vmsentry.commands.policy`` is a thin wrapper; the future quarantine watcher reuses
these, see ROADMAP.md):

    pol = load_policy(path)                 # or parse_policy(text, name)     -> Policy (PolicyError)
    res = resolve(pol, inventory)           # inventory-dependent checks      -> Resolved (PolicyError)
    rs  = compile_nft(res, caps)            # NftRuleset: .json() .text() .stats()
    nwf = compile_nwfilter(res)             # NwfilterSet: .filters {name: xml} .interfaces
    rep = apply(rs, netns=..., confirm_within=...)   # ApplyReport; confirm(), rollback_now()
    alerts, counts = check_flows(res, flows)   # policy_violation alerts (analyse.policy_decision.Flow records)
    txt = suggest(inventory)
    quarantine_commands(vm_mac, vm_ips)     # nft JSON to add a VM to the quarantine sets at run time
"""

from __future__ import annotations

__all__ = [
    "PolicyError",
    "Problem",
    "Policy",
    "load_policy",
    "parse_policy",
    "resolve",
    "compile_nft",
    "compile_nwfilter",
    "apply",
    "confirm",
    "rollback_now",
    "check_flows",
    "suggest",
    "quarantine_commands",
]


def __getattr__(name):
    # lazy: importing the package (e.g. for the CLI parser) must not pull YAML and zoneinfo in
    if name in ("PolicyError", "Problem"):
        from vmsentry.act.policy import problems

        return getattr(problems, name)
    if name in ("Policy", "load_policy", "parse_policy"):
        from vmsentry.act.policy import schema

        return getattr(schema, name)
    raise AttributeError(name)


def resolve(policy, inventory, now=None):
    from vmsentry.act.policy.resolve import resolve as _r

    return _r(policy, inventory, now)


def compile_nft(resolved, caps=None, table="vmsentry"):
    from vmsentry.act.policy.nft import Caps
    from vmsentry.act.policy.nft import compile_nft as _c

    return _c(resolved, caps or Caps(), table)


def compile_nwfilter(resolved):
    from vmsentry.act.policy.nwfilter import compile_nwfilter as _c

    return _c(resolved)


def apply(ruleset, **kw):
    from vmsentry.act.policy.apply import apply as _a

    return _a(ruleset, **kw)


def confirm(netns=None, state_dir=None):
    from vmsentry.act.policy.apply import confirm as _c

    return _c(netns, state_dir)


def rollback_now(netns=None, state_dir=None):
    from vmsentry.act.policy.apply import rollback_now as _r

    return _r(netns, state_dir)


def check_flows(resolved, flows):
    """Judge ``analyse.policy_decision.Flow`` records from any source with the ``policy_violation`` detector:
    (its alerts in time order, {flows_judged, flows_allowed, flows_forbidden})."""
    from vmsentry.analyse.detectors.base import Sink
    from vmsentry.analyse.detectors.policy_violation import PolicyViolation, in_time_order
    from vmsentry.analyse.detectors.truth import Truth
    from vmsentry.analyse.detectors.tunables import DEFAULTS

    sink = Sink()
    detector = PolicyViolation(Truth(), DEFAULTS["policy_violation"], sink, resolved)
    for flow in flows:
        detector.judge(flow)
    return in_time_order(sink.alerts), detector.counts()


def suggest(inventory, source=""):
    from vmsentry.act.policy.suggest import suggest as _s

    return _s(inventory, source)


def quarantine_commands(mac: str, ips: list[str], add: bool = True, table: str = "vmsentry") -> dict:
    """nft JSON (one transaction) that puts a VM into — or takes it out of — the quarantine sets of an
    applied policy: its MAC into ``bridge vmsentry quarantine_macs`` (bridged traffic from/to it dropped,
    its frames marked quarantined so the host accepts only the forensics service) and its addresses into
    ``inet vmsentry quarantine_ip4/6`` (routed traffic to it dropped). Takes effect at once; lab notes §5."""
    import ipaddress

    op = "add" if add else "delete"
    cmds = [{op: {"element": {"family": "bridge", "table": table, "name": "quarantine_macs", "elem": [mac.lower()]}}}]
    v4 = [a for a in ips if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in ips if ipaddress.ip_address(a).version == 6]
    if v4:
        cmds.append({op: {"element": {"family": "inet", "table": table, "name": "quarantine_ip4", "elem": v4}}})
    if v6:
        cmds.append({op: {"element": {"family": "inet", "table": table, "name": "quarantine_ip6", "elem": v6}}})
    return {"nftables": cmds}
