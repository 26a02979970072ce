"""The ``.vmx`` text format: its character set (``.encoding``), its ``key = "value"`` lines with VMware's
``|XX`` escapes, its boolean spellings, and how a setting is located (``line N, key``). Read by
``vmware_vmx`` (the machine file) and ``vmware_product`` (which product wrote it)."""

from __future__ import annotations

import codecs
import functools
import re

_HEX_ESCAPE = re.compile(r"\|([0-9A-Fa-f]{2})")
_ENCODING = re.compile(rb'^[ \t]*\.encoding[ \t]*=[ \t]*"([^"\r\n]+)"', re.IGNORECASE | re.MULTILINE)
_TRUE = frozenset(("true", "yes", "1", "on"))
_FALSE = frozenset(("false", "no", "0", "off"))


# Every byte a .vmx's keys and structure use: a character set must decode these to themselves
_ASCII_PROBE = bytes(range(0x20, 0x7F)) + b"\t\r\n"


@functools.lru_cache(maxsize=64)
def _codec(name: str) -> str | None:
    """The Python codec for a ``.encoding`` value, or None when it names none or names one that is not a
    character set: ``hex``/``base64``/``zlib`` (bytes-to-bytes), ``punycode``/``idna``/``unicode_escape``/
    ``undefined`` (text transforms, not charsets) are refused, as is any codec that does not read ASCII as
    ASCII (UTF-16, UTF-32): the ``.encoding`` line itself is ASCII, so the file cannot be in it."""
    name = name.strip().lower()
    if name.endswith("-2000"):  # VMware's "windows-949-2000" = Windows code page 949
        name = name[:-5]
    if name.startswith("windows-"):
        name = "cp" + name[8:]
    try:
        info = codecs.lookup(name)
        if not info._is_text_encoding or info.name in _NOT_CHARSETS:  # the only public mark of a text codec
            return None
        if info.decode(_ASCII_PROBE)[0] != _ASCII_PROBE.decode("ascii"):
            return None
    except (LookupError, UnicodeError, ValueError, TypeError):
        return None
    return info.name


_NOT_CHARSETS = frozenset(("punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined", "utf-7"))


def decode_vmx(data: bytes) -> tuple[str, str | None]:
    """(text, problem): decodes with the file's .encoding when it names a known codec, else UTF-8; bytes
    that do not decode become U+FFFD and ``problem`` says so."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    match = _ENCODING.search(data, 0, 4096)
    declared = match.group(1).decode("ascii", "replace") if match else None
    codec = _codec(declared) if declared else None
    if declared and codec is None:
        text = data.decode("utf-8", "replace")
        return text, f".encoding {declared[:60]!r} is not a character set vmsentry knows; read as UTF-8"
    try:
        return data.decode(codec or "utf-8"), None
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f"declared {declared!r}" if declared else "no .encoding, so UTF-8"
        return data.decode(codec or "utf-8", "replace"), (
            f"line {line}: bytes that are not valid in the file's character set ({where}); replaced, rest read"
        )


def parse_vmx(text: str) -> tuple[dict[str, tuple[str, int, str]], list[str], dict[str, list[int]]]:
    """{lower-case key: (value, line, key as written)}, problems (one line each), duplicates {key: lines}.

    Plain string methods per line (``partition``/``strip``/``find``), no regular expression: a .vmx has a
    hundred or more lines and a fleet ten thousand files. A broken line is reported and skipped."""
    entries: dict[str, tuple[str, int, str]] = {}
    problems: list[str] = []
    dups: dict[str, list[int]] = {}
    lineno = 0
    for raw in text.split("\n"):
        lineno += 1
        key, eq, rest = raw.partition("=")
        key = key.strip()
        if not eq:
            if key and key[0] != "#":
                problems.append(f"line {lineno}: not a 'key = \"value\"' line; ignored")
            continue
        if not key or key[0] == "#":
            if not key:
                problems.append(f"line {lineno}: not a 'key = \"value\"' line; ignored")
            continue
        rest = rest.strip()
        if rest[:1] == '"':
            close = rest.find('"', 1)
            if close < 0:
                problems.append(f"line {lineno}: value of {key} has no closing quote; read to the end of the line")
                value = rest[1:]
            else:
                value = rest[1:close]
                if close != len(rest) - 1 and rest[close + 1 :].lstrip()[:1] != "#":
                    problems.append(f"line {lineno}: text after the closing quote of {key} ignored")
        else:
            value = rest.partition("#")[0].rstrip() if "#" in rest else rest
        if "|" in value:
            value = _HEX_ESCAPE.sub(_unhex, value)
        lower = key.lower()
        if lower in entries:
            dups.setdefault(lower, [entries[lower][1]]).append(lineno)
        entries[lower] = (value, lineno, key)
    return entries, problems, dups


def _unhex(h: re.Match) -> str:
    return chr(int(h.group(1), 16))


def as_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def locator(entry: tuple[str, int | str, str] | None) -> str | None:
    """'line N, key' for a file; an entry from another source (the ESXi export) carries its own locator."""
    if entry is None:
        return None
    where = entry[1]
    return f"line {where}, {entry[2]}" if type(where) is int else f"{where}, {entry[2]}"
