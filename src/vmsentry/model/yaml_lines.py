"""YAML with line numbers, the one loader for the files people write (segmentation policy, waivers): every
mapping, list and scalar remembers the line it starts on, so errors can name it. Duplicate keys are reported
instead of silently overwritten (PyYAML's default): the first value stays, the repeat's line is kept."""

from __future__ import annotations

from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (about 10x faster on big policies); same nodes and marks
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULL_TAG = "tag:yaml.org,2002:null"


class Loc:
    __slots__ = ("value", "line")

    def __init__(self, value: Any, line: int):
        self.value = value
        self.line = line

    def __repr__(self) -> str:
        return f"Loc({self.value!r}@{self.line})"


class LMap(dict):
    """str key -> Loc; ``.line`` is where the mapping starts, ``.key_lines[key]`` where each key is,
    ``.repeated[key]`` where a key given twice comes again (its value is dropped)."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.repeated: dict[str, int] = {}


class LSeq(list):
    def __init__(self, line: int):
        super().__init__()
        self.line = line


class YamlError(ValueError):
    """``problem`` is the parser's own words, ``line`` where it stopped (None if it does not say)."""

    def __init__(self, message: str, line: int | None, problem: str = ""):
        super().__init__(message)
        self.line = line
        self.problem = problem or message


def load(text: str, raw_scalars: bool = False) -> tuple[Loc | None, list[tuple[int, str]]]:
    """Parse; returns the located document and a list of (line, message) for duplicate keys.
    ``raw_scalars``: values are the text as written (None for an empty value), not YAML 1.1's guesses
    (2026-12-31 a date, yes a boolean, 010 an octal number)."""
    loader = _Loader(text)
    dups: list[tuple[int, str]] = []
    try:
        node = loader.get_single_node()
        if node is None:
            return None, dups
        return _convert(loader, node, dups, raw_scalars), dups
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or str(exc)
        raise YamlError(f"YAML syntax error: {problem}", line, problem) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"YAML error: {exc}", None, str(exc)) from None
    finally:
        loader.dispose()


def _convert(loader: yaml.SafeLoader, node: yaml.Node, dups: list[tuple[int, str]], raw: bool) -> Loc:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out = LMap(line)
        for knode, vnode in node.value:
            key = loader.construct_object(knode, deep=True)
            kline = knode.start_mark.line + 1
            skey = str(key) if not isinstance(key, str) else key
            if skey in out:
                dups.append((kline, f"duplicate key {skey!r} (first at line {out.key_lines[skey]})"))
                out.repeated.setdefault(skey, kline)
                continue
            out[skey] = _convert(loader, vnode, dups, raw)
            out.key_lines[skey] = kline
        return Loc(out, line)
    if isinstance(node, yaml.SequenceNode):
        seq = LSeq(line)
        for item in node.value:
            seq.append(_convert(loader, item, dups, raw))
        return Loc(seq, line)
    if raw:
        return Loc(None if node.tag == _NULL_TAG else node.value, line)
    return Loc(loader.construct_object(node, deep=True), line)


def plain(loc: Loc | None) -> Any:
    """Strip the line information."""
    if loc is None:
        return None
    v = loc.value
    if isinstance(v, LMap):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, LSeq):
        return [plain(x) for x in v]
    return v
