"""libvirt daemon settings: ``qemu.conf``, ``libvirtd.conf`` and ``virtproxyd.conf``.

The files use libvirt's own config syntax (``src/util/virconf.c``): ``name = value`` where a value is a
string in double or single quotes (or ``\"\"\"`` triple quotes, which may span lines), an integer, or a list
``[ "a", "b" ]`` that may span lines; ``#`` starts a comment. Only the settings actually written in the
file are recorded: an absent key means the platform default, which each rule knows.

libvirt refuses to start when a file has a syntax error; we report the line instead and keep reading,
so one typo does not hide the rest of the file from the audit.
"""

from __future__ import annotations

import os
import re
from typing import Any

from vmsentry.collect.source_file import NOT_UTF8, decode_text, looks_binary, read_text_file
from vmsentry.model import Host, InputError, Inventory

# basename suffix -> fact group (virtproxyd reads the same remote-access keys as libvirtd)
_FACT_GROUP_BY_SUFFIX = (
    ("qemu.conf", "qemu_conf"),
    ("libvirtd.conf", "libvirtd_conf"),
    ("virtproxyd.conf", "libvirtd_conf"),
)

SECRET_PLACEHOLDER = "<set>"

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_LIST_CONTINUATION = re.compile(r"[ \t]*[\"'0-9,\]+-]")
_ASSIGNMENT = re.compile(r"[ \t]*[A-Za-z][A-Za-z0-9_]*[ \t]*=")
_BLANK = " \t"
_EOL = "\r\n"


def fact_group(path: str) -> str | None:
    """``qemu_conf`` / ``libvirtd_conf`` for a file of ours (``host1-qemu.conf`` included), else None."""
    base = os.path.basename(path)
    for suffix, group in _FACT_GROUP_BY_SUFFIX:
        if base.endswith(suffix):
            return group
    return None


def claims(path: str, head: bytes) -> bool:
    return fact_group(path) is not None and not looks_binary(head)


def read(path: str, data: bytes | None = None) -> Inventory:
    text, lossy = decode_text(read_text_file(path, data, "a libvirt configuration file"))
    settings, errors = parse_text(path, text)
    inv = Inventory(errors=errors)
    if lossy:
        inv.errors.append(InputError(path, NOT_UTF8))
    inv.hosts.append(Host(name="", platform="linux", facts={fact_group(path) or "libvirtd_conf": settings}))
    return inv


def is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return "password" in lowered or "secret" in lowered


def parse_text(path: str, text: str) -> tuple[dict[str, Any], list[InputError]]:
    """Settings of one file as ``{"file": path, "values": {key: value}, "lines": {key: line}}`` plus the
    syntax errors found. Values are str, int or list; secrets are replaced by ``"<set>"``."""
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    errors: list[InputError] = []
    parser = _ConfParser(text)
    while True:
        try:
            statement = parser.next_statement()
        except _SyntaxError as exc:
            errors.append(InputError(path, f"line {exc.line}: {exc.message}"))
            parser.skip_broken_statement()
            continue
        if statement is None:
            break
        key, value, line = statement
        # libvirt looks a setting up by its first occurrence (virConfGetValue), so later repeats are ignored
        if key in values:
            continue
        if is_secret_key(key):
            value = _presence_only(value)
        values[key] = value
        lines[key] = line
    return {"file": path, "values": values, "lines": lines}, errors


def _presence_only(value: Any) -> Any:
    # an empty string reveals nothing and means "no password", so it is kept as it is
    if value == "" or value == []:
        return value
    return SECRET_PLACEHOLDER


class _SyntaxError(Exception):
    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message = message
        self.line = line


class _ConfParser:
    """A reader for virconf syntax, statement by statement, that can resume after an error."""

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self.line = 1
        self.statement_line = 1

    # -- low level -----------------------------------------------------------------------------------
    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _advance(self, count: int = 1) -> None:
        end = min(self.pos + count, len(self.text))
        self.line += self.text.count("\n", self.pos, end)
        self.pos = end

    def _skip_blanks(self) -> None:
        while self._peek() and self._peek() in _BLANK:
            self._advance()

    def _skip_blanks_and_eol(self) -> None:
        while self._peek() and self._peek() in _BLANK + _EOL:
            self._advance()

    def _error(self, message: str) -> _SyntaxError:
        return _SyntaxError(message, self.line)

    def skip_broken_statement(self) -> None:
        """Resume after an error at the next line that can start a statement. Lines that begin with a
        quote, digit, ',' or ']' are the rest of a broken list: skipping them reports one error per
        broken setting instead of one per list line. When the error was only noticed at the next
        setting (an unclosed list), that setting is read normally."""
        line_start = self.text.rfind("\n", 0, self.pos) + 1
        if self.line > self.statement_line and _ASSIGNMENT.match(self.text, line_start):
            self.pos = line_start
            return
        while self.pos < len(self.text):
            end = self.text.find("\n", self.pos)
            self._advance((len(self.text) if end < 0 else end + 1) - self.pos)
            if not _LIST_CONTINUATION.match(self.text, self.pos):
                return

    # -- grammar -------------------------------------------------------------------------------------
    def next_statement(self) -> tuple[str, Any, int] | None:
        while True:
            self._skip_blanks_and_eol()
            if not self._peek():
                return None
            if self._peek() == "#":
                self._skip_comment()
                continue
            if self._peek() == ";":  # an empty statement between separators
                self._advance()
                continue
            break
        line = self.statement_line = self.line
        match = _NAME.match(self.text, self.pos)
        if not match:
            raise self._error(f"expecting a setting name, found {self._shown_token('')}")
        key = match.group()
        self._advance(len(key))
        self._skip_blanks()
        if self._peek() != "=":
            raise self._error(f"expecting '=' after {key!r}")
        self._advance()
        self._skip_blanks()
        value = self._value(key)
        self._skip_blanks()
        if self._peek() == "#":
            self._skip_comment()
        elif self._peek() == ";":
            self._advance()
        elif self._peek() and self._peek() not in _EOL:
            raise self._error(f"unexpected {self._shown_token(key)} after the value of {key!r}")
        return key, value, line

    def _skip_comment(self) -> None:
        while self._peek() and self._peek() not in _EOL:
            self._advance()

    def _shown_token(self, key: str) -> str:
        """What stands where the parser stopped, for the error line; never text of a secret's line."""
        rest = self.text[self.pos : self.pos + 20].split("\n", 1)[0]
        if rest and is_secret_key(key):
            return "text (not shown: the setting holds a secret)"
        return repr(rest) if rest else "end of line"

    def _value(self, key: str) -> Any:
        char = self._peek()
        if not char or char in _EOL:
            raise self._error(f"expecting a value for {key!r}")
        if char in "\"'":
            return self._string(key)
        if char == "[":
            return self._list(key)
        match = _INTEGER.match(self.text, self.pos)
        if match:
            self._advance(len(match.group()))
            return int(match.group())
        raise self._error(
            f"expecting a value for {key!r} (a quoted string, a number or a [list]), found {self._shown_token(key)}"
        )

    def _string(self, key: str) -> str:
        if self.text.startswith('"""', self.pos):
            end = self.text.find('"""', self.pos + 3)
            if end < 0:
                raise self._error(f'unterminated """ string for {key!r}')
            value = self.text[self.pos + 3 : end]
            self._advance(end + 3 - self.pos)
            return value
        quote = self._peek()
        start = self.pos + 1
        end = start
        while end < len(self.text) and self.text[end] != quote and self.text[end] not in _EOL:
            end += 1
        if end >= len(self.text) or self.text[end] != quote:
            raise self._error(f"unterminated string for {key!r}")
        self._advance(end + 1 - self.pos)
        return self.text[start:end]

    def _list(self, key: str) -> list:
        self._advance()  # [
        items: list = []
        self._skip_blanks_and_eol()
        while True:
            char = self._peek()
            if char == "]":
                self._advance()
                return items
            if not char:
                raise self._error(f"list for {key!r} is not closed with ]")
            if items:
                if char != ",":
                    raise self._error(f"expecting ',' or ']' in the list for {key!r}, found {self._shown_token(key)}")
                self._advance()
                self._skip_blanks_and_eol()
                if self._peek() == "]":  # a trailing comma is allowed
                    continue
            if self._peek() == "[":
                raise self._error(f"nested lists are not allowed (in {key!r})")
            items.append(self._value(key))
            self._skip_blanks_and_eol()
