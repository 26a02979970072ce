"""Reading one named input file, the one way every stage does it: never waiting for a writer, never
reading past a size limit, never recursing without bound.

Every file vmsentry reads goes through ``InputFile`` / ``read_bounded``:

* The file is opened with ``O_NONBLOCK``, so a FIFO with no writer does not hang the run: reading it
  gives end of file at once and it is refused as "a FIFO with nothing written to it". Once open, reads
  block again, so a pipe whose writer is still running (bash process substitution ``<(...)``, which
  passes ``/dev/fd/N``) is read to its end as before.
* A regular file larger than the limit is refused from its size without being read; anything else
  (``/dev/zero``, a pipe) is refused as soon as more than the limit has arrived. Memory stays bounded.
* ``parse_json`` refuses a document nested deeper than ``MAX_JSON_DEPTH`` (a 200,000-deep array
  would otherwise be a RecursionError in the decoder, or in whatever walks the result).

The limits of each input are named where that input is read (``*_MAX_BYTES``) and listed in
docs/contracts.md ("Input limits"). Problems are ``BadInput``: one line, without the file name, that the
caller prefixes with the file.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

MIB = 1024 * 1024
_CHUNK = MIB
# JSON nesting beyond this is refused: the deepest real document (a saved inventory's host facts) is
# under 10 levels; Python's own recursion limit is 1,000
MAX_JSON_DEPTH = 64


class BadInput(Exception):
    """An input that cannot be read or used. ``str(exc)`` is the one line shown to the user (without the file)."""


class MalformedJson(BadInput):
    """``line`` and ``problem``: where the JSON decoder stopped and why (for callers with their own wording)."""

    def __init__(self, line: int, column: int, problem: str):
        super().__init__(f"line {line}, column {column}: malformed JSON: {problem}")
        self.line = line
        self.problem = problem


def _limit(max_bytes: int) -> str:
    return f"{max_bytes / MIB:.0f} MiB" if max_bytes >= MIB else f"{max_bytes} bytes"


class InputFile:
    """A named input, open for reading: ``head()`` the first bytes (to tell its format), then ``read_all``
    with the limit of the format it turned out to be. Use as a context manager."""

    def __init__(self, path: str):
        self.path = path
        try:
            # O_NONBLOCK: opening a FIFO for reading returns at once even with no writer; O_NOCTTY: a
            # terminal named as input never becomes our controlling terminal
            self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise BadInput(f"cannot read: {exc.strerror}") from None
        try:
            self.mode = os.fstat(self.fd).st_mode
            self.size = os.fstat(self.fd).st_size if stat.S_ISREG(self.mode) else None
            if stat.S_ISDIR(self.mode):
                raise BadInput("is a folder, not a file")
            os.set_blocking(self.fd, True)  # a writer that is still writing is waited for, like cat does
        except BaseException:
            os.close(self.fd)
            raise
        self._chunks: list[bytes] = []
        self._total = 0
        self._eof = False

    def __enter__(self) -> InputFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _read_until(self, wanted: int) -> None:
        try:
            while not self._eof and self._total < wanted:
                chunk = os.read(self.fd, min(_CHUNK, wanted - self._total))
                if not chunk:
                    self._eof = True
                    break
                self._chunks.append(chunk)
                self._total += len(chunk)
        except OSError as exc:
            raise BadInput(f"cannot read: {exc.strerror}") from None

    def _data(self) -> bytes:
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    def head(self, size: int = 4096) -> bytes:
        """The first ``size`` bytes (fewer at end of file)."""
        self._read_until(size)
        return self._data()[:size]

    def read_all(self, max_bytes: int) -> bytes:
        """The whole file; BadInput when it is larger than ``max_bytes``, or a FIFO nobody wrote to."""
        if self.size is not None and self.size > max_bytes:
            raise BadInput(f"file is {self.size / MIB:.1f} MiB, larger than the {_limit(max_bytes)} limit; not read")
        # a regular file is read with one call of its size; /proc files and devices report 0 and still have data
        self._read_until(max_bytes + 1)
        if self._total > max_bytes:
            raise BadInput(f"file is larger than the {_limit(max_bytes)} limit; not read")
        if not self._total and stat.S_ISFIFO(self.mode):
            raise BadInput("a FIFO or pipe with nothing written to it (no writer); nothing to read")
        return self._data()


def read_bounded(path: str, max_bytes: int) -> bytes:
    """The bytes of a named input, read within ``max_bytes`` without waiting for a FIFO's writer."""
    with InputFile(path) as handle:
        return handle.read_all(max_bytes)


def read_text(path: str, max_bytes: int) -> str:
    """A UTF-8 text input (a byte order mark allowed), read as ``read_bounded`` does."""
    data = read_bounded(path, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"not UTF-8 text (byte {exc.start})") from None


def parse_json(data: bytes | str, not_utf8: str = "not UTF-8 text", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """A JSON document (a UTF-8 byte order mark allowed: PowerShell writes one), nested at most
    ``max_depth`` deep; ``not_utf8`` is the message when the bytes are not UTF-8."""
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise BadInput(not_utf8) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedJson(exc.lineno, exc.colno, exc.msg) from None
    except RecursionError:
        raise BadInput(f"JSON nested deeper than {max_depth} levels; not read") from None
    if json_depth(doc) > max_depth:
        raise BadInput(f"JSON nested deeper than {max_depth} levels; not read")
    return doc


def json_depth(doc: Any) -> int:
    """How deeply lists and objects nest in a parsed document (a scalar is 0), without recursing."""
    deepest = 0
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest
