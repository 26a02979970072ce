"""``vmsentry fix --format patch``: a unified diff of the definition files the scan read (libvirt domain and
network XML, qemu.conf, libvirtd.conf), paths relative to the folder scanned: ``cd COPY && patch -p1``.

XML is edited with lxml and only the lines an edit touches change: the original file and its edited form
are both re-serialised, their line differences applied to the file as written (lxml keeps the line
structure), so a one-attribute fix is a one-line hunk. Changes of a live object (``virsh``) or of the running
kernel (a sysctl) have no file here and are listed at the top.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import defaultdict

from lxml import etree

from vmsentry.model.fix import Change, FixPlan
from vmsentry.report.fix import Secrets, conf_value, patch_formats
from vmsentry.report.fix.sh import edit_identity

QEMU_NS = {"qemu": "http://libvirt.org/schemas/domain/qemu/1.0"}


def _conf_edit(lines: list[str], change: Change, secrets: Secrets, file: str) -> list[str]:
    pattern = re.compile(rf"^\s*{re.escape(change.key)}\s*=")
    present = [i for i, line in enumerate(lines) if pattern.match(line)]
    if change.secret:
        if present:
            return lines
        value = secrets.value(change.secret, change.target)
    else:
        value = change.after
    wanted = f"{change.key} = {conf_value(value)}\n"
    if present:
        return [wanted if i == present[0] else line for i, line in enumerate(lines)]
    if lines and not lines[-1].endswith("\n"):
        lines = [*lines[:-1], lines[-1] + "\n"]
    return [*lines, wanted]


def _indent_of(element: etree._Element) -> str:
    text = element.text or ""
    return text if text.strip() == "" and "\n" in text else "\n" + "  " * (len(list(element.iterancestors())) + 1)


def _append_child(parent: etree._Element, child: etree._Element) -> None:
    children = list(parent)
    if children:
        child.tail = children[-1].tail
        children[-1].tail = _indent_of(parent)
    else:
        child.tail = (parent.text or "\n")[: len(parent.text or "\n") - 2] if parent.text else "\n"
        parent.text = _indent_of(parent)
    parent.append(child)


def _xml_edit(root: etree._Element, change: Change, secrets: Secrets) -> None:
    op = change.detail.get("op")
    elements = root.getroottree().xpath(change.locator, namespaces=QEMU_NS)
    for element in elements:
        if op == "remove":
            parent = element.getparent()
            previous = element.getprevious()
            if previous is not None:
                previous.tail = element.tail
            else:
                parent.text = element.tail if list(parent)[-1] is not element else parent.text
            parent.remove(element)
        elif op == "set":
            if change.secret:
                if change.key not in element.attrib:
                    element.set(change.key, secrets.value(change.secret, f"{change.target}{change.locator}"))
            else:
                element.set(change.key, str(change.after))
        else:
            attrs = {a: str(v) for a, v in (change.detail.get("attrs") or {}).items()}
            for old in element.findall(change.key):
                _xml_edit_remove(old)
            child = etree.Element(change.key, attrs)
            for name, child_attrs in change.detail.get("children") or []:
                etree.SubElement(child, name, {a: str(v) for a, v in child_attrs.items()})
            _append_child(element, child)


def _xml_edit_remove(element: etree._Element) -> None:
    previous = element.getprevious()
    if previous is not None:
        previous.tail = element.tail
    element.getparent().remove(element)


def _xml_file(text: str, changes: list[Change], secrets: Secrets) -> str:
    parser = etree.XMLParser(remove_blank_text=False, resolve_entities=False, no_network=True)
    root = etree.fromstring(text.encode(), parser)
    before = etree.tostring(root, encoding="unicode").splitlines(keepends=True)
    for change in changes:
        _xml_edit(root, change, secrets)
    after = etree.tostring(root, encoding="unicode").splitlines(keepends=True)
    original = text.splitlines(keepends=True)
    offset = len(original) - len(before)  # an XML declaration or a leading comment lxml leaves out
    if offset < 0 or "".join(original[offset:]).strip() == "" and before:
        return "".join(after)
    out = original[:offset]
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        out += original[offset + i1 : offset + i2] if tag == "equal" else after[j1:j2]
    if out and original and original[-1].endswith("\n") and not out[-1].endswith("\n"):
        out[-1] += "\n"
    return "".join(out)


def render(plan: FixPlan, secrets: Secrets, base: str = ".") -> str:
    files: dict[str, dict[tuple, Change]] = defaultdict(dict)
    no_file: list[str] = []
    other: dict[str, list[Change]] = {}  # .vmx, .vbox, Proxmox files (report/fix/patch_formats.py)
    for fix in plan.fixes:
        for change in fix.changes:
            path = change.detail.get("file")
            if path and change.kind in ("xml_edit", "config_key"):
                files[path].setdefault(edit_identity(change) + (change.kind,), change)
            elif not patch_formats.collect(other, change):
                no_file.append(f"{fix.rule_id} {fix.asset}: {change.kind} {change.key} = {change.after}")
    out = [f"vmsentry fix: a patch of {len(files) + len(other)} file(s); apply with: cd {base} && patch -p1 < THIS\n"]
    out += [f"not in a file (use --format sh or ansible): {line}\n" for line in no_file]
    out += [f"not fixed: {u.rule_id} {u.asset}: {u.reason}\n" for u in plan.unfixable]
    for path in sorted(files):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        changes = list(files[path].values())
        if all(c.kind == "config_key" for c in changes):
            lines = text.splitlines(keepends=True)
            for change in changes:
                lines = _conf_edit(lines, change, secrets, path)
            new = "".join(lines)
        else:
            new = _xml_file(text, [c for c in changes if c.kind == "xml_edit"], secrets)
        name = os.path.relpath(os.path.abspath(path), os.path.abspath(base))
        out += difflib.unified_diff(
            text.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{name}", f"b/{name}"
        )
    out += patch_formats.diffs(other, base)
    return "".join(out)
