"""``vmsentry fix --format sh``: an idempotent POSIX shell script for a Linux/KVM host and its libvirt
definitions. Every change is checked before it is made; a second run prints "nothing to change".

- sysctls: set in /proc/sys (this kernel, this network namespace) and persisted in
  ``$ROOT/etc/sysctl.d/90-vmsentry.conf``;
- qemu.conf / libvirtd.conf keys: the ``key = value`` line replaced or appended in ``$ROOT/etc/libvirt/...``;
  the service is restarted at the end only when one of its files changed (and only when ROOT is empty);
- libvirt definitions: ``virsh dumpxml --inactive | xmlstarlet ed | virsh define``; the VM or network
  takes the change at its next start, which the script lists.

``ROOT=/some/copy sh fix.sh`` applies the file changes to a copy of the host's files (tests, reviews).
``sh fix.sh --check`` changes nothing: it prints each item that would change ("would change: ...") and
exits 1 when something would, 0 when the host already complies.
"""

from __future__ import annotations

import shlex
from collections import defaultdict

from vmsentry.model.fix import Change, Fix, FixPlan
from vmsentry.report.fix import Secrets, conf_value, sh_vendors

PRELUDE = r"""#!/bin/sh
# ROOT=/path applies the file changes under that folder (a copy of the host's /etc); sysctls always act on
# the running kernel (this network namespace). Services restart only when ROOT is empty and a file changed.
# --check: change nothing, print what would change, exit 1 when something would (0: nothing to change).
set -eu
ROOT="${ROOT:-}"
VIRSH="${VIRSH:-virsh}"
CHECK=0
case "${1:-}" in
  --check) CHECK=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
CHANGED=0
FAILED=0
RESTART=""
VM_RESTART=""
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
umask 077

vms_changed() {
  CHANGED=$((CHANGED + 1))
  if [ "$CHECK" = 1 ]; then echo "would change: $*"; else echo "changed: $*"; fi
}

# vms_line FILE KEY_REGEX LINE: the line setting KEY is LINE (replaced in place, or appended); DID=1 when written
vms_line() {
  DID=0
  [ -e "$1" ] && grep -qxF -- "$3" "$1" && return 0
  DID=1
  if [ "$CHECK" = 1 ]; then
    vms_changed "$1: $(printf '%s' "$3" | sed -E 's/(password[^=]*=).*/\1 (secret)/')"
    return 0
  fi
  if [ -L "$1" ]; then  # (never write through a link this script did not make)
    echo "skipped: $1 is a symbolic link: set it in the file it points to" >&2
    FAILED=$((FAILED + 1))
    DID=0
    return 0
  fi
  mkdir -p "$(dirname "$1")"
  [ -e "$1" ] || : >"$1"
  # The new file is written beside the old one (same mode) and renamed over it: never half a file. Every
  # line setting KEY is replaced; a value that opens a list ("[") without closing it on that line goes on
  # until the line that closes it (cgroup_device_acl, namespaces in qemu.conf), and those lines go too.
  rm -f "$1.vmsentry-new"  # (a link left there would be followed by cp)
  cp -p "$1" "$1.vmsentry-new"
  VMS_KEY="$2" VMS_LINE="$3" awk '
    BEGIN { key = ENVIRON["VMS_KEY"]; line = ENVIRON["VMS_LINE"]; pat = "^[[:space:]]*" key "[[:space:]]*=" }
    skip { if (index($0, "]")) skip = 0; next }
    $0 ~ pat {
      if (!done) print line
      done = 1
      rest = $0; sub(/#.*/, "", rest)
      if (index(rest, "[") && !index(rest, "]")) skip = 1
      next
    }
    { print }
    END { if (!done) print line }
  ' "$1" >"$1.vmsentry-new"
  mv -f "$1.vmsentry-new" "$1"
  vms_changed "$1: $(printf '%s' "$3" | sed -E 's/(password[^=]*=).*/\1 (secret)/')"
}

# vms_sysctl NAME VALUE
vms_sysctl() {
  vms_p="/proc/sys/$(printf '%s' "$1" | tr . /)"
  if [ ! -e "$vms_p" ]; then
    echo "skipped: sysctl $1 (not on this kernel or interface absent)"
  elif [ "$(cat "$vms_p")" != "$2" ]; then
    [ "$CHECK" = 1 ] || printf '%s\n' "$2" >"$vms_p"
    vms_changed "sysctl $1 = $2"
  fi
  vms_line "$ROOT/etc/sysctl.d/90-vmsentry.conf" "$(printf '%s' "$1" | sed 's/\./\\./g')" "$1 = $2"
}

# vms_bridges: the Linux bridges present now (a sysctl key with {bridge} is set on each)
vms_bridges() {
  for vms_b in /sys/class/net/*/bridge; do
    [ -d "$vms_b" ] && basename "$(dirname "$vms_b")"
  done
  return 0
}

# vms_conf FILE KEY LINE SERVICE
vms_conf() {
  vms_line "$1" "$2" "$3"
  [ "$DID" = 0 ] || RESTART="$RESTART $4"
}

# vms_conf_secret FILE KEY LINE SERVICE: written only when KEY is not set at all (a password already there stays)
vms_conf_secret() {
  if [ -e "$1" ] && grep -Eq "^[[:space:]]*$2[[:space:]]*=" "$1"; then return 0; fi
  vms_conf "$@"
}

# vms_xml_open domain|network NAME: the inactive definition in $WORK/def.xml; 1 when it is not defined here
vms_xml_open() {
  XKIND=$1 XNAME=$2 XDID=0
  if [ "$1" = network ]; then vms_dump="net-dumpxml"; else vms_dump="dumpxml"; fi
  if ! $VIRSH $vms_dump --inactive "$2" >"$WORK/def.xml" 2>/dev/null; then
    echo "skipped: $1 $2 (not defined on this host)"
    return 1
  fi
}

# vms_xml_edit WHAT NEEDED_XPATH XMLSTARLET_ED_ARGS...: the edit when NEEDED_XPATH is true of the definition
vms_xml_edit() {
  vms_what=$1 vms_need=$2
  shift 2
  [ "$(xmlstarlet sel -t -v "boolean($vms_need)" "$WORK/def.xml")" = true ] || return 0
  xmlstarlet ed "$@" "$WORK/def.xml" >"$WORK/new.xml"
  mv "$WORK/new.xml" "$WORK/def.xml"
  XDID=1
  vms_changed "$XKIND $XNAME: $vms_what"
}

vms_xml_close() {
  [ "$XDID" = 1 ] && [ "$CHECK" = 0 ] || return 0
  if [ "$XKIND" = network ]; then $VIRSH net-define "$WORK/def.xml" >/dev/null; else $VIRSH define "$WORK/def.xml" >/dev/null; fi
  VM_RESTART="$VM_RESTART $XKIND:$XNAME"
}
"""

EPILOGUE = r"""
for vms_service in $(printf '%s\n' $RESTART | sort -u); do
  if [ "$CHECK" = 1 ]; then
    echo "would restart: $vms_service"
  elif [ -z "$ROOT" ]; then
    systemctl try-restart "$vms_service" 2>/dev/null || service "$vms_service" restart
    echo "restarted: $vms_service"
  else
    echo "would restart: $vms_service (ROOT=$ROOT)"
  fi
done
for vms_object in $VM_RESTART; do
  echo "takes effect at the next start: $vms_object"
done
if [ "$FAILED" != 0 ]; then
  echo "vmsentry fix: $FAILED item(s) could not be changed (see above), $CHANGED change(s)" >&2
  exit 2
elif [ "$CHANGED" = 0 ]; then
  echo "vmsentry fix: nothing to change"
elif [ "$CHECK" = 1 ]; then
  echo "vmsentry fix: $CHANGED change(s) would be made"
  exit 1
else
  echo "vmsentry fix: $CHANGED change(s) made"
fi
"""


def q(text: object) -> str:
    return shlex.quote(str(text))


def ere(key: str) -> str:
    """A config key as an ERE (keys are words; a sysctl's dots are literal)."""
    return key.replace(".", "\\.")


def conf_line(change: Change, secrets: Secrets) -> str:
    value = secrets.value(change.secret, change.target) if change.secret else change.after
    return f"{change.key} = {conf_value(value)}"


BRIDGE = "{bridge}"  # in a template's sysctl key: every bridge present when the script runs


def host_lines(fix: Fix, change: Change, secrets: Secrets) -> list[str]:
    if change.kind == "sysctl" and BRIDGE in change.key:
        head, tail = change.key.split(BRIDGE, 1)
        return [
            "for vms_bridge in $(vms_bridges); do",
            f'  vms_sysctl {q(head)}"$vms_bridge"{q(tail)} {q(change.after)}',
            "done",
        ]
    if change.kind == "sysctl":
        return [f"vms_sysctl {q(change.key)} {q(change.after)}"]
    if change.kind in sh_vendors.LINES:
        return sh_vendors.LINES[change.kind](change)
    if change.kind == "file_line":  # a line that must be present (a module to load at boot)
        return [f'vms_line "$ROOT"{q(change.target)} {q(ere(change.key))} {q(change.after)}']
    if change.kind == "config_key":
        function = "vms_conf_secret" if change.secret else "vms_conf"
        path = '"$ROOT"' + q(change.target)
        return [
            f"{function} {path} {q(ere(change.key))} {q(conf_line(change, secrets))} {q(fix.service or 'libvirtd')}"
        ]
    return []


def xml_edit_args(change: Change, secrets: Secrets) -> tuple[str, str, list[str]]:
    """(what, the XPath that is true when the edit is needed, xmlstarlet ed arguments)."""
    element, key, op = change.locator, change.key, change.detail.get("op")
    if op == "remove":
        return f"remove {element}", f"count({element}) > 0", ["-d", element]
    if op == "set":
        if change.secret:
            value = secrets.value(change.secret, f"{change.target}{element}")
            need = f"count({element}) > 0 and count({element}[@{key}]) = 0"
            return f"{key} set on {element} (secret)", need, ["-i", element, "-t", "attr", "-n", key, "-v", value]
        value = str(change.after)
        need = f"count({element}) > 0 and count({element}[@{key}='{value}']) = 0"
        args = ["-d", f"{element}/@{key}", "-i", element, "-t", "attr", "-n", key, "-v", value]
        return f"{element}/@{key} = {value}", need, args
    attrs = change.detail.get("attrs") or {}
    children = change.detail.get("children") or []
    wanted = f"{element}/{key}" + "".join(f"[@{a}='{v}']" for a, v in attrs.items())
    for name, child_attrs in children:
        wanted += f"[{name}" + "".join(f"[@{a}='{v}']" for a, v in child_attrs.items()) + "]"
    need = f"count({element}) > 0 and count({wanted}) = 0"
    new = f"{element}/{key}"
    args = ["-d", new, "-s", element, "-t", "elem", "-n", key]
    for a, v in attrs.items():
        args += ["-i", new, "-t", "attr", "-n", a, "-v", str(v)]
    for name, child_attrs in children:
        args += ["-s", new, "-t", "elem", "-n", name]
        for a, v in child_attrs.items():
            args += ["-i", f"{new}/{name}[last()]", "-t", "attr", "-n", a, "-v", str(v)]
    return f"<{key}> in {element}", need, args


def xml_block(target: str, changes: list[Change], secrets: Secrets) -> list[str]:
    kind, _, name = target.partition(":")
    lines = [f"if vms_xml_open {kind} {q(name)}; then"]
    for change in changes:
        what, need, args = xml_edit_args(change, secrets)
        lines.append(f"  vms_xml_edit {q(what)} {q(need)} " + " ".join(q(a) for a in args))
    lines += ["  vms_xml_close", "fi"]
    return lines


def edit_identity(change: Change) -> tuple:
    """Two findings may ask for the same edit (a console's address for VMS-VM-001 and -002): made once."""
    return (change.locator, change.key, change.detail.get("op"), repr(change.after), change.secret)


def comment(text: str) -> str:
    return "# " + " ".join(str(text).split())


def body(plan: FixPlan, secrets: Secrets) -> list[str]:
    """The script's steps: host changes in plan order, then one block per libvirt object."""
    lines: list[str] = []
    xml: dict[str, dict[tuple, Change]] = defaultdict(dict)
    for fix in plan.fixes:
        lines.append("")
        if fix.title:  # a template item: the rule, its title and where the setting comes from
            lines.append(comment(f"{fix.rule_id}: {fix.title}"))
            lines.append(comment(f"source: {fix.source}"))
            lines.append(comment(f"changes: {fix.summary}"))
        else:
            lines.append(comment(f"{fix.rule_id} {fix.asset}: {fix.summary}"))
        lines.append(comment(f"could break: {fix.breaks}; restart: {fix.restart}"))
        for change in fix.changes:
            if change.kind == "xml_edit":
                xml[change.target].setdefault(edit_identity(change), change)
            else:
                lines += host_lines(fix, change, secrets)
        if any(c.kind == "xml_edit" for c in fix.changes):
            lines.append(comment("edited with the definition below"))
    for target, changes in xml.items():
        lines.append("")
        lines += xml_block(target, list(changes.values()), secrets)
    return lines


def header(plan: FixPlan) -> list[str]:
    if plan.template:
        what = f"host baseline template {plan.template}: {len(plan.fixes)} item(s), generated {plan.generated}"
    else:
        what = f"{len(plan.fixes)} fix(es), generated {plan.generated} from {', '.join(plan.inputs)}"
    lines = [comment(f"vmsentry fix: {what}")]
    if plan.unfixable:
        title = "not in this template" if plan.template else "not fixed here"
        lines.append(comment(f"{title} ({len(plan.unfixable)}):"))
        lines += [comment(f"  {u.rule_id} {u.asset}: {u.reason}") for u in plan.unfixable]
    return lines


def render(plan: FixPlan, secrets: Secrets, base: str = ".") -> str:
    lines = (PRELUDE + sh_vendors.FUNCTIONS).rstrip("\n").split("\n")
    lines[1:1] = header(plan)
    return "\n".join(lines + body(plan, secrets)) + "\n" + EPILOGUE
