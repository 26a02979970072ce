"""HCL (Terraform ``.tf``, Packer ``.pkr.hcl``) read into blocks and literal values with their lines.

Parsing is python-hcl2's (its Lark grammar for HCL2; a well-kept library, so no hand-written grammar
here). Its ``loads`` gives dicts without line numbers, so this module walks python-hcl2's rule tree
itself: each block and attribute keeps the line it starts on, which becomes the fact's locator.

Nothing is evaluated. A value that is a literal (string, number, bool, null, list or object of
literals) is returned as that Python value; anything else (``var.x``, ``"web-${count.index}"``, a
function call, a heredoc with an interpolation) is a ``Computed`` holding the source text, and the
adapters read it as "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vmsentry.collect.source_file import NOT_UTF8, BadInput, decode_text, read_text_file

# A Terraform or Packer file is a few KB. Lark's parse tree costs ~300 bytes of memory and ~20 us per byte
# of input (measured: 2 MB of .tf took 44 s and 600 MB), so the cap on HCL is far below the 16 MiB of
# the other readers: 512 KiB bounds a hostile file to ~10 s and ~150 MB.
MAX_HCL_BYTES = 512 * 1024


@dataclass(frozen=True, slots=True)
class Computed:
    """A value the file does not state: an expression, a variable, an interpolation (its source text)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class Block:
    type: str
    labels: list[str]
    line: int
    attrs: dict[str, tuple[Any, int]] = field(default_factory=dict)  # name -> (value, line)
    blocks: list[Block] = field(default_factory=list)

    def children(self, type_: str) -> list[Block]:
        return [b for b in self.blocks if b.type == type_]


def read_hcl(path: str, data: bytes | None, what: str) -> tuple[list[Block], list[str]]:
    """The top-level blocks of an HCL file and the problems met (``what`` names the format in errors).
    A file that does not parse raises ``BadInput`` with the line and column of the first error."""
    data = read_text_file(path, data, what)
    if len(data) > MAX_HCL_BYTES:
        raise BadInput(f"file is larger than the {MAX_HCL_BYTES // 1024} KiB limit for {what}; not read")
    text, lossy = decode_text(data)
    problems = [NOT_UTF8] if lossy else []
    import hcl2  # imported when first needed: Lark builds its parser on first use (~0.3 s)
    from lark.exceptions import LarkError

    try:
        tree = hcl2.parses(text)
        body = _body(tree.body)
    except LarkError as exc:
        line, column = getattr(exc, "line", None), getattr(exc, "column", None)
        where = f"line {line}, column {column}: " if line and line > 0 else ""
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"{where}not valid HCL: {first[:160]}") from None
    except (RecursionError, RuntimeError, ValueError) as exc:
        # python-hcl2 raises RuntimeError for a duplicate name; deep nesting exhausts the stack
        raise BadInput(f"not valid HCL: {str(exc)[:160] or type(exc).__name__}") from None
    return body.blocks, problems


def _line(rule: Any) -> int:
    meta = getattr(rule, "_meta", None)  # python-hcl2 keeps Lark's position metadata there
    return int(getattr(meta, "line", 0) or 0)


def _body(body: Any, block: Block | None = None) -> Block:
    from hcl2.rules.base import AttributeRule, BlockRule

    block = block or Block("", [], 1)
    for child in body.children:
        if isinstance(child, BlockRule):
            names = [_label(label.serialize()) for label in child.labels]
            sub = Block(names[0], names[1:], _line(child))
            block.blocks.append(_body(child.body, sub))
        elif isinstance(child, AttributeRule):
            block.attrs[str(child.identifier.serialize())] = (literal(child.expression.serialize()), _line(child))
    return block


def _label(text: Any) -> str:
    text = str(text)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


def literal(value: Any) -> Any:
    """python-hcl2's serialised value as a Python literal, or ``Computed``. python-hcl2 keeps a quoted
    string's quotes and writes every expression as ``${...}``, which is how the two are told apart."""
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return value
    if isinstance(value, list):
        return [literal(v) for v in value]
    if isinstance(value, dict):
        return {_label(k): literal(v) for k, v in value.items() if not str(k).startswith("__")}
    text = str(value)
    if "${" in text or "%{" in text:
        return Computed(text)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        inner = text[1:-1]
        if inner.startswith("<<"):  # a heredoc without interpolation: its lines, as written
            lines = inner.split("\n")
            return "\n".join(lines[1:-1])
        return _unescape(inner)
    return Computed(text)


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in escapes:
            out.append(escapes[text[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)
