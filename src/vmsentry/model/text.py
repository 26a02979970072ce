"""How a name from a hostile file is shown: one line, nothing a terminal would act on.

VM, network and file names come from inputs anyone may have written. Every text output (reports, alerts,
error lines, policy comments) passes them through ``printable``, the one sanitiser of the project.
"""

from __future__ import annotations

import re
from typing import Any

# Not printable: C0/C1 controls and DEL, format characters such as the bidi overrides that reorder what is
# shown ("trojan source"), lone surrogates (undecodable file names, which neither a terminal nor XML can
# carry), unassigned and private-use code points, and separators other than the plain space.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Fast path: most names are plain ASCII and have nothing to escape.
_PLAIN_ASCII = re.compile(r"[ -~]*\Z")


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def printable(value: Any) -> str:
    """``value`` as one line of text with every non-printable character shown as an escape (``\\x1b``,
    ``\\n``, ``\\u202e``)."""
    text = value if isinstance(value, str) else str(value)
    if _PLAIN_ASCII.match(text) or text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
