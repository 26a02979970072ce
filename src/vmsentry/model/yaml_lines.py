"""YAML with line numbers, the one loader for the files people write (segmentation policy, waivers): every
mapping, list and scalar remembers the line it starts on, so errors can name it. Duplicate keys are reported
instead of silently overwritten (PyYAML's default): the first value stays, the repeat's line is kept.

Every YAML vmsentry reads (policy, waivers, the vulnerability table, the rule catalogue) is composed here
and checked before anything is built from it (``safe_load`` for plain data):

* aliases may add at most ``ALIAS_BUDGET`` nodes beyond the document's own (so a YAML "billion laughs",
  nine anchors of nine aliases each, is refused instead of growing to gigabytes);
* an alias inside the node it refers to (``&a [*a]``) is refused (it would never end);
* nesting deeper than ``MAX_DEPTH`` is refused (never a RecursionError).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (about 10x faster on big policies); same nodes and marks
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_NULL_TAG = "tag:yaml.org,2002:null"

# Aliases may add this many nodes, plus as many as the document itself has (a shared block reused a few
# times is fine; an exponential expansion is not)
ALIAS_BUDGET = 10_000
# The deepest real document (a policy, a catalogue test block) nests under 12 levels
MAX_DEPTH = 100


class Loc:
    __slots__ = ("value", "line")

    def __init__(self, value: Any, line: int):
        self.value = value
        self.line = line

    def __repr__(self) -> str:
        # messages quote values with !r: they show what was written, never this class
        return repr(plain(self))


class LMap(dict):
    """str key -> Loc; ``.line`` is where the mapping starts, ``.key_lines[key]`` where each key is,
    ``.repeated[key]`` where a key given twice comes again (its value is dropped)."""

    def __init__(self, line: int):
        super().__init__()
        self.line = line
        self.key_lines: dict[str, int] = {}
        self.repeated: dict[str, int] = {}

    def __repr__(self) -> str:
        return repr({k: plain(v) for k, v in self.items()})


class LSeq(list):
    def __init__(self, line: int):
        super().__init__()
        self.line = line

    def __repr__(self) -> str:
        return repr([plain(v) for v in self])


def describe(value: Any) -> str:
    """A value for a message, in YAML's words: "a mapping", "a list", "null", "true", "the number 5",
    "the text 'web'" (never a Python type name)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the value {value}"  # a date or time YAML 1.1 read from the text


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
    dups: list[tuple[int, str]] = []
    with _composed(text) as (loader, node):
        if node is None:
            return None, dups
        return _convert(loader, node, dups, raw_scalars), dups


def safe_load(text: str) -> Any:
    """Plain data, as ``yaml.safe_load`` builds it, after the same checks as ``load``."""
    with _composed(text) as (loader, node):
        return None if node is None else loader.construct_document(node)


@contextmanager
def _composed(text: str) -> Iterator[tuple[yaml.SafeLoader, yaml.Node | None]]:
    """The document's node graph, checked (aliases, self-reference, depth); every YAML problem
    becomes a ``YamlError``."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_graph(node)
        yield loader, node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "malformed YAML"
        raise YamlError(f"YAML syntax error: {problem}", line, problem) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"YAML error: {exc}", None, str(exc)) from None
    except RecursionError:  # PyYAML without libyaml composes recursively
        problem = f"nested deeper than {MAX_DEPTH} levels; refused"
        raise YamlError(problem, None, problem) from None
    finally:
        loader.dispose()


def _check_graph(root: yaml.Node) -> None:
    """Walk the composed nodes once (an alias is the same node object met again) and refuse what
    would expand too far, never end, or nest too deeply. Iterative: no recursion on hostile depth."""
    size: dict[int, int] = {}  # node -> nodes it stands for once every alias is expanded
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    seen = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            line = node.start_mark.line + 1
            if depth[key] > MAX_DEPTH:
                problem = f"nested deeper than {MAX_DEPTH} levels; refused"
                raise YamlError(problem, line, problem)
            if size[key] > 2 * seen + ALIAS_BUDGET:
                problem = (
                    f"aliases expand this node to {size[key]:,} nodes, more than the document holds "
                    f"plus {ALIAS_BUDGET:,} (an alias bomb?); refused"
                )
                raise YamlError(problem, line, problem)
            continue
        if key in size:  # an alias of a node already walked
            continue
        if key in on_path:
            problem = "an alias refers to the node that contains it (self-reference); refused"
            raise YamlError(problem, node.start_mark.line + 1, problem)
        on_path.add(key)
        seen += 1
        if len(on_path) > MAX_DEPTH:
            problem = f"nested deeper than {MAX_DEPTH} levels; refused"
            raise YamlError(problem, node.start_mark.line + 1, problem)
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return node.value
    return []


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


def load_file(
    path: str, max_bytes: int, error: type[Exception], raw_scalars: bool = False, duplicates: bool = True
) -> Loc | None:
    """The located document of the YAML file ``path`` (read through ``model.files``: size-capped, no wait on a
    FIFO), or ``error`` with one line naming the file and line: unreadable, bad YAML, or (``duplicates``) a
    key given twice. The one preamble of every YAML input (policy responses, cost options, waivers)."""
    from vmsentry.model.files import BadInput, read_text

    try:
        text = read_text(path, max_bytes)
    except BadInput as exc:
        raise error(f"{path}: {exc}") from None
    try:
        root, dups = load(text, raw_scalars=raw_scalars)
    except YamlError as exc:
        line = f"{exc.line}:" if exc.line is not None else ""
        raise error(f"{path}:{line} bad YAML: {exc.problem}") from None
    if duplicates and dups:
        line, message = dups[0]
        raise error(f"{path}:{line}: {message}")
    return root
