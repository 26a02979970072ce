"""Reading one input file safely: size limit, binary detection, decoding, JSON, XML without entities.

Every problem becomes a ``BadInput`` with a message naming the place; collectors turn it into one
``errors`` entry and the run carries on. Nothing here ever resolves an entity, loads a DTD or touches
the network.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

# BadInput and parse_json live in model/files.py (every stage reads files the same way); collectors import them here
from vmsentry.model.files import BadInput, parse_json, read_bounded  # noqa: F401

if TYPE_CHECKING:  # lxml is imported when XML is first parsed: `vmsentry detect`
    from lxml import etree  # reading a saved inventory never needs it (20 ms of start-up)

# A VM or network definition is a few KB; the largest real one in the corpus is under 50 KB.
# 16 MiB leaves a wide margin and keeps memory bounded when someone points us at a disk image.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


def read_bytes(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """A definition file's bytes (model/files.py: no wait on a FIFO, refused beyond ``max_bytes``)."""
    return read_bounded(path, max_bytes)


def looks_binary(data: bytes) -> bool:
    return b"\x00" in data[:8192]


def read_text_file(path: str, data: bytes | None, what: str) -> bytes:
    """The bytes of a text file (``data`` when the caller already read them); binary data is refused
    with "binary data, not WHAT" (``what``: "a VMware .vmx file")."""
    if data is None:
        data = read_bytes(path)
    if looks_binary(data):
        raise BadInput(f"binary data, not {what}")
    return data


# The error entry a reader adds when ``decode_text`` had to replace bytes
NOT_UTF8 = "not valid UTF-8; undecodable bytes were replaced"


def decode_text(data: bytes) -> tuple[str, bool]:
    """Text of a config file. Returns (text, lossy): undecodable bytes become U+FFFD so the rest of the
    file is still read; ``lossy`` tells the caller to say so."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), True


def line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_XML_DECL = re.compile(rb"<\?xml[^>]*\?>")

# Comments stay in the tree (removing them costs a third of the parse time); readers skip non-element
# nodes. One parser is reused: vmsentry parses on one thread.
_PARSER = None


def _parser() -> etree.XMLParser:
    global _PARSER
    if _PARSER is None:
        from lxml import etree

        _PARSER = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
        )
    return _PARSER


def parse_xml_documents(data: bytes) -> list[etree._Element]:
    """Parse one XML document, or several concatenated ones (virt-install --print-xml writes one per
    install phase). Returns the root elements in order.

    A document that declares entities is refused outright: libvirt never writes one, and it is how
    entity-expansion ("billion laughs") and external-entity (XXE) attacks arrive.
    """
    from lxml import etree

    if looks_binary(data):
        raise BadInput("binary data, not an XML document")
    match = _ENTITY_DECL.search(data)
    if match:
        raise BadInput(
            f"line {line_of_offset(data, match.start())}: XML entity declarations are refused "
            "(entity expansion / external entity attack surface); nothing was expanded"
        )
    stripped = data.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:]
    if not stripped:
        raise BadInput("empty file")
    if not stripped.startswith(b"<"):
        data = _blank_preamble(data)
    try:
        return [etree.fromstring(data, _parser())]
    except etree.XMLSyntaxError as exc:
        first_error = exc
    # Several documents one after another: drop their XML declarations (keeping line numbers) and
    # parse them as children of one wrapper element on the first line.
    if _DOCTYPE.search(data) or b"Extra content at the end" not in str(first_error).encode():
        raise BadInput(_xml_error_text(first_error)) from None
    body = _XML_DECL.sub(lambda m: b" " * (m.end() - m.start()), data)
    try:
        wrapper = etree.fromstring(b"<vmsentry-documents>" + body + b"</vmsentry-documents>", _parser())
    except etree.XMLSyntaxError as exc:
        raise BadInput(_xml_error_text(exc)) from None
    roots = [child for child in wrapper if isinstance(child.tag, str)]
    if not roots:
        raise BadInput(_xml_error_text(first_error))
    return roots


def _blank_preamble(data: bytes) -> bytes:
    """virt-install --print-xml may print a cloud-config blob before its XML documents: blank out
    everything before the first line that opens an element (keeping line numbers), so the
    documents after it are still read. Text with no such line is left for the parser to reject."""
    match = re.search(rb"^\s*<", data, re.MULTILINE)
    if not match:
        return data
    return re.sub(rb"[^\n]", b" ", data[: match.start()]) + data[match.start() :]


def _xml_error_text(exc: etree.XMLSyntaxError) -> str:
    msg = str(exc.msg if hasattr(exc, "msg") and exc.msg else exc)
    line = getattr(exc, "lineno", None) or (exc.position[0] if getattr(exc, "position", None) else None)
    # lxml repeats the position at the end of its message: keep ours only
    msg = re.sub(r",? line \d+, column \d+\s*$", "", msg).strip()
    return f"line {line}: malformed XML: {msg}" if line else f"malformed XML: {msg}"


def element_locator(elem: etree._Element, doc_index: int = 0) -> str:
    """'line N, /domain/devices/interface[2]' - the line for a person, the XPath for a tool."""
    parent = elem.getparent()
    if parent is None:  # a document's root: no tree walk needed
        path = f"/{elem.tag}"
    else:
        path = elem.getroottree().getpath(elem)
    if path.startswith("/vmsentry-documents/"):
        # /vmsentry-documents/domain[2]/devices -> /domain/devices (the document number is said apart)
        path = re.sub(r"^/vmsentry-documents/([^/\[]+)(\[\d+\])?", r"/\1", path)
    prefix = f"document {doc_index + 1}, " if doc_index else ""
    return f"{prefix}line {elem.sourceline}, {path}"
