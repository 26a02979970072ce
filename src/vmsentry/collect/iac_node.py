"""One block of settings from a VM definition kept as code, the same whether it came from HCL or JSON.

Packer (``.pkr.hcl`` and JSON templates) and the Terraform libvirt provider (``.tf`` and
``terraform show -json``) say the same settings in two syntaxes. The adapters read a ``Node``: each
setting's value (a literal, or ``Computed`` when the file does not state it) and its locator (``line N,
source.qemu.x.vnc_bind_address`` from HCL, ``builders[0].vnc_bind_address`` from JSON, where Python's
JSON reader gives no line numbers: the JSON path finds it as surely).
"""

from __future__ import annotations

import re
from typing import Any

from vmsentry.collect.hcl_reader import Block, Computed
from vmsentry.collect.source_file import NOT_UTF8, decode_text, read_text_file
from vmsentry.model import InputError, Inventory

# Packer's JSON templates interpolate with Go templates: "{{user `x`}}", "{{ .HTTPIP }}"
_GO_TEMPLATE = re.compile(r"\{\{.*?\}\}", re.DOTALL)


class Node:
    __slots__ = ("_attrs", "_blocks", "at")

    def __init__(self, at: str) -> None:
        self.at = at  # the locator of the block itself
        self._attrs: dict[str, tuple[Any, str]] = {}
        self._blocks: dict[str, list[Node]] = {}

    @classmethod
    def from_hcl(cls, block: Block, path: str) -> Node:
        node = cls(f"line {block.line}, {path}")
        for name, (value, line) in block.attrs.items():
            node._attrs[name] = (value, f"line {line}, {path}.{name}")
        for index, sub in enumerate(block.blocks):
            same = [b for b in block.blocks[:index] if b.type == sub.type]
            node._blocks.setdefault(sub.type, []).append(cls.from_hcl(sub, f"{path}.{sub.type}[{len(same)}]"))
        return node

    @classmethod
    def from_json(cls, obj: dict, path: str, templates: bool = False) -> Node:
        """``templates``: strings holding ``{{ }}`` are Go templates (Packer JSON) and so not stated."""
        node = cls(path)
        for name, value in obj.items():
            name = str(name)
            at = f"{path}.{name}" if path else name
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                node._blocks[name] = [cls.from_json(v, f"{at}[{i}]", templates) for i, v in enumerate(value)]
            node._attrs[name] = (_json_value(value, templates), at)
        return node

    def get(self, name: str, default: Any = None) -> Any:
        value = self._attrs.get(name)
        return default if value is None or value[0] is None else value[0]

    def has(self, name: str) -> bool:
        return name in self._attrs and self._attrs[name][0] is not None

    def where(self, name: str) -> str:
        value = self._attrs.get(name)
        return value[1] if value else self.at

    def sub(self, name: str) -> list[Node]:
        return self._blocks.get(name, [])

    def fact(self, facts: dict, key: str, name: str) -> None:
        """Setting ``name``, when the file has it, becomes fact ``key`` (unknown values as their text)."""
        if self.has(name):
            value = self.get(name)
            facts[key] = {"value": str(value) if isinstance(value, Computed) else value, "at": self.where(name)}


def read_script(path: str, data: bytes | None, what: str) -> tuple[str, Inventory]:
    """The text of a script read without running it (a Vagrantfile, a DSC configuration) and the
    inventory to fill, which already says so when bytes had to be replaced."""
    text, lossy = decode_text(read_text_file(path, data, what))
    inv = Inventory()
    if lossy:
        inv.errors.append(InputError(path, NOT_UTF8))
    return text, inv


def _json_value(value: Any, templates: bool) -> Any:
    if isinstance(value, str) and templates and _GO_TEMPLATE.search(value):
        return Computed(value)
    if isinstance(value, list):
        return [_json_value(v, templates) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v, templates) for k, v in value.items()}
    return value


def text(value: Any) -> str | None:
    """A stated string setting, or None when absent or not stated."""
    if value is None or isinstance(value, Computed | dict | list):
        return None
    return str(value)


def flag(value: Any) -> bool | None:
    """A stated boolean (Packer JSON often writes "true"), None when absent or not stated."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None
