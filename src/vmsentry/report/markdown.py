"""Markdown text from hostile names: the one escaper of the Markdown reports.

A VM may be called ``*[click](javascript:x)*`` or ``<img src=x onerror=alert(1)>``: in Markdown both would
become markup, and most viewers (GitHub, GitLab, an IDE preview) render inline HTML. ``md_text`` first
makes the value one printable line (``printable``), then escapes HTML's ``& < >`` as entities (no tag can
open) and puts a backslash before every ASCII punctuation character that Markdown (CommonMark, GitHub's
tables, strikethrough and math) gives a meaning to anywhere in a line: emphasis, code, links and images,
headings, the table's ``|``, ``~`` and ``$``; and before a leading ``-``, ``+``, ``=`` or ``.`` and after leading digits followed by ``.`` or ``)`` (a list item or
a heading underline when the text starts a line). CommonMark lets any ASCII punctuation be escaped, so the
text shows exactly as written; the rest (``:``, ``.`` inside a line, ``-`` in ``L3-ABS1-05``) stays readable.
"""

from __future__ import annotations

import re

from vmsentry.model.text import printable

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#!|~$])")
_LEADING = re.compile(r"^([-+=.]|\d+(?=[.)]))")
_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def md_text(value: object) -> str:
    """``value`` as Markdown text that shows exactly as written (one line; no markup, no HTML)."""
    text = printable("" if value is None else str(value))
    text = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    text = _LEADING.sub(lambda m: m.group() + "\\" if m.group()[0].isdigit() else "\\" + m.group(), text)
    return re.sub(r"[&<>]", lambda m: _HTML[m.group()], text)


def md_code(value: object) -> str:
    """``value`` in a code span: shown verbatim (no escape inside needed but the backtick fence); HTML
    characters stay literal in a code span by CommonMark's rules. Used for ids, file names and locators."""
    text = printable("" if value is None else str(value)).replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else ""


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table (cells already escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines
