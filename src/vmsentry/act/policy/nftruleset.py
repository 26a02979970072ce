"""nftables objects as vmsentry builds them (tables, sets, chains, rules), the expression builders the
compiler writes rules with, and their two renderings: one nft JSON transaction (``nft -j -f``, what apply
loads) and the text form (``nft -f``). Both renderings of one ruleset load to the same kernel ruleset
(tests/test_policy_compile.py checks it). The compiler from a resolved policy is ``nft``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import NamedTuple

from vmsentry.act.policy.problems import Problem


class Q(str):
    """A string nft's text syntax wants in double quotes (interface names, times, comments)."""


# --------------------------------------------------------------------------------------------- expressions
def meta(key):
    return {"meta": {"key": key}}


def pl(proto, fld):
    return {"payload": {"protocol": proto, "field": fld}}


def raw(base, offset, length):
    return {"payload": {"base": base, "offset": offset, "len": length}}


def cat(*parts):
    return {"concat": list(parts)}


def ct(key):
    return {"ct": {"key": key}}


def match(left, right, op="=="):
    return {"match": {"op": op, "left": left, "right": right}}


def aset(items):
    return {"set": list(items)}


def rng(a, b):
    return {"range": [a, b]}


def mark_prefix(value, mask):
    # nft prints "meta mark & 0xff000000 == 0x76000000" as a prefix match: write it that way
    length = bin(mask).count("1")
    return match(meta("mark"), {"prefix": {"addr": value, "len": length}})


ACCEPT = {"accept": None}
DROP = {"drop": None}
RETURN = {"return": None}
COUNTER = {"counter": None}


def jump(target):
    return {"jump": {"target": target}}


# ------------------------------------------------------------------------------------------------- objects
@dataclass(slots=True)
class NSet:
    name: str
    type: str | list[str]
    elements: list = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    map: str | None = None  # data type for a map
    comment: str | None = None


class NChain(NamedTuple):
    """A chain as built, never changed afterwards (a base chain has a hook)."""

    name: str
    hook: str | None = None
    prio: int = 0
    policy: str = "accept"


class NRule(NamedTuple):
    chain: str
    expr: list
    comment: str | None = None


@dataclass(slots=True)
class NTable:
    family: str
    name: str
    sets: list[NSet] = field(default_factory=list)
    chains: list[NChain] = field(default_factory=list)
    rules: list[NRule] = field(default_factory=list)

    def add_set(self, s: NSet) -> str:
        self.sets.append(s)
        return "@" + s.name

    def rule(self, chain: str, *expr, comment: str | None = None) -> None:
        self.rules.append(NRule(chain, list(expr), _comment(comment)))

    def drop(self, chain: str, *matches, comment: str | None = None) -> None:
        """A rule that counts and drops what ``matches`` select."""
        self.rule(chain, *matches, COUNTER, DROP, comment=comment)


@dataclass(slots=True)
class NftRuleset:
    tables: list[NTable]
    warnings: list[Problem] = field(default_factory=list)

    def commands(self, replace: bool = True) -> dict:
        """One nft JSON transaction. With ``replace`` the tables are deleted and re-created inside the same
        transaction (``add`` first so the delete never fails), so the switch is atomic and idempotent."""
        cmds: list[dict] = []
        for t in self.tables:
            tid = {"family": t.family, "name": t.name}
            cmds.append({"add": {"table": dict(tid)}})
            if replace:
                cmds.append({"delete": {"table": dict(tid)}})
                cmds.append({"add": {"table": dict(tid)}})
            for s in t.sets:
                obj = {"family": t.family, "table": t.name, "name": s.name, "type": s.type}
                if s.flags:
                    obj["flags"] = list(s.flags)
                if s.map:
                    obj["map"] = s.map
                if s.elements:
                    obj["elem"] = list(s.elements)
                cmds.append({"add": {"map" if s.map else "set": obj}})
            for c in t.chains:
                obj = {"family": t.family, "table": t.name, "name": c.name}
                if c.hook:
                    obj.update({"type": "filter", "hook": c.hook, "prio": c.prio, "policy": c.policy})
                cmds.append({"add": {"chain": obj}})
            for r in t.rules:
                obj = {"family": t.family, "table": t.name, "chain": r.chain, "expr": r.expr}
                if r.comment:
                    obj["comment"] = r.comment
                cmds.append({"add": {"rule": obj}})
        return {"nftables": cmds}

    def json(self, replace: bool = True) -> str:
        return json.dumps(self.commands(replace), separators=(",", ":"))

    def text(self, header: bool = True) -> str:
        out = []
        if header:
            out.append("#!/usr/sbin/nft -f")
            out.append("# generated by vmsentry policy compile; load with: TZ=UTC nft -f FILE")
            out.append("# (replaces only vmsentry's own tables; meta hour/day are UTC)")
        for t in self.tables:
            out.append(f"table {t.family} {t.name}")
            out.append(f"delete table {t.family} {t.name}")
        for t in self.tables:
            out.append(render_table(t))
        return "\n".join(out) + "\n"

    def rule_count(self) -> int:
        return sum(len(t.rules) for t in self.tables)

    def element_count(self) -> int:
        return sum(len(s.elements) for t in self.tables for s in t.sets)

    def stats(self) -> dict:
        return {
            "tables": [f"{t.family} {t.name}" for t in self.tables],
            "rules": self.rule_count(),
            "sets": sum(len(t.sets) for t in self.tables),
            "elements": self.element_count(),
            "chains": sum(len(t.chains) for t in self.tables),
        }


def _comment(text: str | None) -> str | None:
    if not text:
        return None
    clean = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in text)
    return clean[:120]


# --------------------------------------------------------------------------------------------- text form
def render_table(t: NTable) -> str:
    lines = [f"table {t.family} {t.name} {{"]
    for s in t.sets:
        kind = "map" if s.map else "set"
        if s.comment:  # nft 1.0.6 drops set comments given in JSON: keep them out of the ruleset
            lines.append(f"\t# {_comment(s.comment)}")
        lines.append(f"\t{kind} {s.name} {{")
        typ = " . ".join(s.type) if isinstance(s.type, list) else s.type
        lines.append(f"\t\ttype {typ}" + (f" : {s.map}" if s.map else ""))
        if s.flags:
            lines.append(f"\t\tflags {','.join(s.flags)}")
        if s.elements:
            if s.map:
                items = [f"{_val(k)} : {_val(v, mark=True)}" for k, v in s.elements]
            else:
                items = [_val(e) for e in s.elements]
            lines.append("\t\telements = { " + ",\n\t\t\t     ".join(items) + " }")
        lines.append("\t}")
    for c in t.chains:
        lines.append(f"\tchain {c.name} {{")
        if c.hook:
            lines.append(f"\t\ttype filter hook {c.hook} priority {c.prio}; policy {c.policy};")
        for r in t.rules:
            if r.chain == c.name:
                text = " ".join(_stmt(x) for x in r.expr)
                if r.comment:
                    text += f' comment "{r.comment}"'
                lines.append("\t\t" + text)
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines)


def _val(v, mark: bool = False) -> str:
    if isinstance(v, Q):
        return f'"{v}"'
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"0x{v:08x}" if mark or v > 0xFFFF else str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return ",".join(_val(x) for x in v)
    if "concat" in v:
        return " . ".join(_val(x) for x in v["concat"])
    if "set" in v:
        return "{ " + ", ".join(_val(x, mark) for x in v["set"]) + " }"
    if "range" in v:
        return f"{_val(v['range'][0])}-{_val(v['range'][1])}"
    if "prefix" in v:
        addr = v["prefix"]["addr"]
        return f"{_val(addr, mark=isinstance(addr, int))}/{v['prefix']['len']}"
    return _expr(v)


def _expr(e) -> str:
    if "meta" in e:
        k = e["meta"]["key"]
        return k if k in ("iifname", "oifname") else f"meta {k}"
    if "payload" in e:
        p = e["payload"]
        if "base" in p:
            return f"@{p['base']},{p['offset']},{p['len']}"
        return f"{p['protocol']} {p['field']}"
    if "concat" in e:
        return " . ".join(_expr(x) for x in e["concat"])
    if "ct" in e:
        return f"ct {e['ct']['key']}"
    if "map" in e:
        return f"{_expr(e['map']['key'])} map {e['map']['data']}"
    if "|" in e:
        a, b = e["|"]
        return f"{_expr(a)} | {_val(b, mark=True)}"
    raise ValueError(f"cannot render {e!r}")


def _stmt(s) -> str:
    if "match" in s:
        m = s["match"]
        left = _expr(m["left"])
        mark = left == "meta mark"
        right = _val(m["right"], mark=mark)
        op = "" if m["op"] in ("==", "in") else m["op"] + " "
        return f"{left} {op}{right}"
    if "mangle" in s:
        k = _expr(s["mangle"]["key"])
        v = s["mangle"]["value"]
        return f"{k} set {_val(v, mark=True) if not isinstance(v, dict) else _expr(v)}"
    if "jump" in s:
        return f"jump {s['jump']['target']}"
    if "counter" in s:
        return "counter"
    for verdict in ("accept", "drop", "return"):
        if verdict in s:
            return verdict
    raise ValueError(f"cannot render {s!r}")
