"""Text edits of the non-libvirt definition files for ``vmsentry fix --format patch``: a VMware ``.vmx``, a
VirtualBox ``.vbox``, a Proxmox ``VMID.conf`` and a Proxmox firewall file (``*.fw``). Each editor takes the
file's text and the changes aimed at it and returns the new text, touching only the lines it must (so the
diff shows exactly the fix) and leaving text that already has the wanted value alone (a second run makes
no diff). ``EDITORS`` maps a change to its editor; the patch renderer diffs old and new text.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable

from vmsentry.model.fix import Change

# ------------------------------------------------------------------ .vmx: key = "value" lines
_VMX_LINE = re.compile(r'^(\s*)([^=#\s][^=]*?)(\s*=\s*)"?(.*?)"?\s*$')


def _vmx_quote(value: str) -> str:
    return '"' + str(value).replace("|", "|7C").replace('"', "|22") + '"'


def edit_vmx(text: str, changes: Iterable[Change]) -> str:
    """Set, add or remove .vmx keys. Keys compare case-insensitively (VMware reads them so); a value
    already as wanted (compared case-insensitively for TRUE/FALSE) is left as written."""
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    for change in changes:
        wanted = None if change.after is None else str(change.after)
        found = False
        for n, line in enumerate(lines):
            match = _VMX_LINE.match(line.rstrip("\r\n"))
            if not match or match.group(2).strip().lower() != change.key.lower():
                continue
            if found or wanted is None:
                lines[n] = ""  # remove the key (or a duplicate the file repeats: the last would win)
                continue
            found = True
            if match.group(4).lower() != wanted.lower():
                lines[n] = f"{match.group(1)}{match.group(2)}{match.group(3)}{_vmx_quote(wanted)}{newline}"
        if wanted is not None and not found:
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += newline
            lines.append(f"{change.key} = {_vmx_quote(wanted)}{newline}")
    return "".join(lines)


# ------------------------------------------------------------------ .vbox: one attribute of one element
def _tag_span(text: str, start: int) -> int:
    """The index just past the '>' that ends the start tag opened at ``start`` (quotes respected)."""
    quote = None
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == ">":
            return i + 1
    return len(text)


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def edit_vbox(text: str, changes: Iterable[Change]) -> str:
    """Set one attribute on the element that starts on the change's line (the collector's locator)."""
    for change in changes:
        d = change.detail
        if not d.get("line") or not d.get("element") or not d.get("attribute"):
            continue
        offsets = [m.start() for m in re.finditer(r"^", text, re.M)]
        if d["line"] > len(offsets):
            continue
        begin = text.find(f"<{d['element']}", offsets[d["line"] - 1])
        if begin < 0:
            continue
        end = _tag_span(text, begin)
        tag = text[begin:end]
        attr = re.compile(r"(\s" + re.escape(d["attribute"]) + r"\s*=\s*)([\"'])(.*?)\2", re.S)
        value = _xml_escape(str(d["value"]))
        match = attr.search(tag)
        if match:
            if match.group(3) == value:
                continue
            tag = tag[: match.start(3)] + value + tag[match.end(3) :]
        else:
            close = len(tag) - (2 if tag.endswith("/>") else 1)
            tag = f'{tag[:close].rstrip()} {d["attribute"]}="{value}"{tag[close:]}'
        text = text[:begin] + tag + text[end:]
    return text


# ------------------------------------------------------------------ Proxmox VMID.conf: "key: value" lines
_SNAPSHOT = re.compile(r"^\[")  # the current config ends where the first [snapshot] section starts


def _set_suboption(value: str, name: str, wanted: str) -> str:
    parts = [p for p in value.split(",") if p]
    for i, part in enumerate(parts):
        if part.split("=", 1)[0] == name:
            parts[i] = f"{name}={wanted}"
            return ",".join(parts)
    return ",".join([*parts, f"{name}={wanted}"])


def edit_proxmox_conf(text: str, changes: Iterable[Change]) -> str:
    lines = text.splitlines(keepends=True)
    end = next((n for n, line in enumerate(lines) if _SNAPSHOT.match(line)), len(lines))
    for change in changes:
        sub = change.detail.get("suboption")
        for n in range(end):
            key, sep, value = lines[n].rstrip("\r\n").partition(":")
            if not sep or key.strip() != change.key:
                continue
            newline = lines[n][len(lines[n].rstrip("\r\n")) :] or "\n"
            if change.after is None:
                lines[n] = ""
            elif sub:
                lines[n] = f"{key}: {_set_suboption(value.strip(), sub, str(change.after))}{newline}"
            else:
                lines[n] = f"{key}: {change.after}{newline}"
            break
        else:
            if change.after is not None and not sub:
                lines.insert(end, f"{change.key}: {change.after}\n")
                end += 1
    return "".join(lines)


# ------------------------------------------------------------------ Proxmox *.fw: [OPTIONS] "key: value"
def edit_proxmox_fw(text: str, changes: Iterable[Change]) -> str:
    lines = text.splitlines(keepends=True)
    for change in changes:
        section = f"[{change.detail.get('section', 'OPTIONS')}]"
        start = next((n for n, line in enumerate(lines) if line.strip().upper() == section), None)
        if start is None:
            lines[0:0] = [f"{section}\n", "\n"]
            start = 0
        stop = next((n for n in range(start + 1, len(lines)) if lines[n].lstrip().startswith("[")), len(lines))
        for n in range(start + 1, stop):
            key, sep, value = lines[n].strip().partition(":")
            if sep and key.strip() == change.key:
                if change.after is None:
                    lines[n] = ""
                elif value.strip() != str(change.after):
                    lines[n] = f"{change.key}: {change.after}\n"
                break
        else:
            if change.after is not None:
                lines.insert(start + 1, f"{change.key}: {change.after}\n")
    return "".join(lines)


def editor_for(change: Change) -> tuple[str | None, Callable[[str, list[Change]], str] | None]:
    """(the file the change edits, its editor), or (None, None) when the change has no file form."""
    if change.kind == "vmx_key":
        return change.target, edit_vmx
    if change.kind == "vbox_setting" and change.detail.get("file"):
        return change.detail["file"], edit_vbox
    if change.kind == "proxmox_key" and change.detail.get("file"):
        scope = change.detail.get("scope")
        return change.detail["file"], edit_proxmox_fw if scope == "fw" else edit_proxmox_conf
    return None, None


def collect(changes_by_file: dict[str, list[Change]], change: Change) -> bool:
    """File the change under the file it edits (True), or say it is not one of these formats (False)."""
    path, editor = editor_for(change)
    if path is None:
        return False
    changes_by_file.setdefault(path, []).append(change)
    return True


def diffs(changes_by_file: dict[str, list[Change]], base: str) -> list[str]:
    """Unified diff lines of every file, paths relative to ``base``. The bytes are kept as written: CRLF
    line ends and a .vmx in another encoding (surrogate escapes) come back out unchanged."""
    out: list[str] = []
    for path in sorted(changes_by_file):
        changes = changes_by_file[path]
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as handle:
            text = handle.read()
        new = editor_for(changes[0])[1](text, changes)
        name = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
        out += difflib.unified_diff(text.splitlines(True), new.splitlines(True), f"a/{name}", f"b/{name}")
    return out
