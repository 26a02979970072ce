"""How text from a hostile file is shown: one line, nothing a terminal would act on, no secret.

VM, network and file names come from inputs anyone may have written. Every text output (reports, alerts,
error lines, policy comments) passes them through ``printable``, the one sanitiser of the project.
Text that may quote a configuration line (an error's excerpt, a raw argument) passes through
``redact_credentials`` first: a secret must never reach any output, error messages included.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
# Names whose value is a secret (QEMU options, qemu.conf/libvirtd.conf keys, JSON members ...). A name that
# only says *which* secret object to use (``password-secret``, ``key-secret``) is an id, not a secret.
SECRET_KEYS = frozenset(("password", "passwd", "pass", "data", "secret", "key", "psk", "token", "passphrase"))
# A URL's user information: scheme://user:PASSWORD@ (and iSCSI's user%PASSWORD@).
_URL_CREDENTIALS = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:%\s]*[:%])[^@/\s]*(?=@)", re.IGNORECASE)
# name=value, name: value or name = "value" where the name holds a secret (the value runs to a separator):
# a name ending in password/passwd/passphrase/secret/token/psk or ".key" (VMware's RemoteDisplay.vnc.key), or,
# in an option list or JSON object (after ",", ":" or "{", or at the start: QEMU's "data=", rbd's ":key=",
# {"data": ...}), a bare key/data/pass.
_NAMED_SECRET = re.compile(
    r"(?P<head>(?:(?<![\w.-])(?P<name>[\w.-]*(?:password|passwd|passphrase|secret|token|psk)|[\w-]+(?:\.[\w-]+)*\.key)"
    r"|(?:(?<=[,:{])|^)\"?(?P<bare>key|data|pass))\"?(?P<sep>\s*[=:]\s*))"
    r"(?P<value>\"(?:[^\"\\]|\\.)*\"?|'[^']*'?|(?:\\.|[^\s,;:'\"}\]])+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    lowered = key.strip().lower()
    return lowered in SECRET_KEYS or lowered.endswith("password")


def redact_credentials(text: str) -> str:
    """``text`` with the password of every URL and the value of every secret-named setting replaced."""
    if "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: m.group("head") + REDACTED, text)
    return _NAMED_SECRET.sub(_hide_named, text)


def _hide_named(match: re.Match[str]) -> str:
    name = match.group("name") or match.group("bare")
    if name.lower().endswith(("-secret", "_secret")) and match.group("sep").strip() == "=":
        return match.group(0)  # password-secret=s0 names a secret object: an id
    return match.group("head") + REDACTED


# Not printable: C0/C1 controls and DEL, format characters such as the bidi overrides that reorder what is
# shown ("trojan source"), lone surrogates (undecodable file names, which neither a terminal nor XML can
# carry), unassigned and private-use code points, and separators other than the plain space.
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    code = ord(char)
    return _NAMED.get(char) or (
        f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
    )


def printable(value: Any) -> str:
    """``value`` as one line of text with every non-printable character shown as an escape (``\\x1b``,
    ``\\n``, ``\\u202e``)."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():  # most names: nothing to escape
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)
