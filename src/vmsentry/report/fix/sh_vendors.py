"""The shell (and so Ansible) form of the VirtualBox and Proxmox changes: ``vbox_setting`` through
``VBoxManage modifyvm`` / ``setextradata``, ``proxmox_key`` through ``qm set`` and line edits of the
pve-firewall files' ``[OPTIONS]``. Each is checked before it is made, as the rest of the script
(report/fix/sh.py): ``VBoxManage showvminfo VM --machinereadable`` / ``getextradata``, ``qm config VMID``,
the firewall file's current line.

Option names: VBoxManage modifyvm, VirtualBox 7 user manual
(https://www.virtualbox.org/manual/ch08.html#vboxmanage-modifyvm); the ``--machinereadable`` names are
VBoxManageInfo.cpp's (``vrde``, ``vrdemulticon``, ``nicpromiscN``, ``clipboard``, ``draganddrop``,
``teleporterenabled``; NAT localhost-reachable and clipboard file transfers are not shown there, so the
script sets them each run and ``--check`` says it cannot tell). qm: https://pve.proxmox.com/pve-docs/qm.1.html;
firewall files: https://pve.proxmox.com/pve-docs/pve-firewall.8.html (``[OPTIONS]``, ``key: value``).
``VBOXMANAGE`` and ``QM`` override the commands.
"""

from __future__ import annotations

import re
import shlex

from vmsentry.model.fix import Change

FUNCTIONS = r"""
VBOXMANAGE="${VBOXMANAGE:-VBoxManage}"
QM="${QM:-qm}"

# vms_vbox VM OPTION VALUE SHOWN: modifyvm VM OPTION VALUE unless showvminfo --machinereadable has the line
# SHOWN (empty: VirtualBox does not show the setting; it is set each run and --check cannot tell)
vms_vbox() {
  if ! $VBOXMANAGE showvminfo "$1" --machinereadable >"$WORK/vbox.txt" 2>/dev/null; then
    echo "skipped: VirtualBox VM $1 (not registered here)"
    return 0
  fi
  if [ -z "$4" ]; then
    if [ "$CHECK" = 1 ]; then vms_changed "VirtualBox VM $1: $2 $3 (cannot tell: showvminfo does not show it)"; return 0; fi
    $VBOXMANAGE modifyvm "$1" "$2" "$3"
    echo "set: VirtualBox VM $1: $2 $3 (showvminfo does not show it)"
    return 0
  fi
  grep -qxF -- "$4" "$WORK/vbox.txt" && return 0
  [ "$CHECK" = 1 ] || $VBOXMANAGE modifyvm "$1" "$2" "$3"
  vms_changed "VirtualBox VM $1: $2 $3"
  VM_RESTART="$VM_RESTART virtualbox:$1"
}

# vms_vbox_extra VM KEY VALUE: setextradata unless getextradata already says "Value: VALUE"
vms_vbox_extra() {
  if ! vms_got=$($VBOXMANAGE getextradata "$1" "$2" 2>/dev/null); then
    echo "skipped: VirtualBox VM $1 (not registered here)"
    return 0
  fi
  [ "$vms_got" = "Value: $3" ] && return 0
  [ "$CHECK" = 1 ] || $VBOXMANAGE setextradata "$1" "$2" "$3"
  vms_changed "VirtualBox VM $1: extradata $2 = $3"
  VM_RESTART="$VM_RESTART virtualbox:$1"
}

# vms_qm_config VMID: qm config in $WORK/qm.conf; 1 when the VM is not on this node
vms_qm_config() {
  if ! $QM config "$1" >"$WORK/qm.conf" 2>/dev/null; then
    echo "skipped: Proxmox VM $1 (not on this node)"
    return 1
  fi
}

# vms_qm VMID KEY VALUE: qm set VMID --KEY VALUE unless qm config says "KEY: VALUE"
vms_qm() {
  vms_qm_config "$1" || return 0
  grep -qxF -- "$2: $3" "$WORK/qm.conf" && return 0
  [ "$CHECK" = 1 ] || $QM set "$1" "--$2" "$3" >/dev/null
  vms_changed "Proxmox VM $1: $2 $3"
  VM_RESTART="$VM_RESTART proxmox:$1"
}

# vms_qm_delete VMID KEY: qm set VMID --delete KEY when qm config has KEY
vms_qm_delete() {
  vms_qm_config "$1" || return 0
  grep -q "^$2:" "$WORK/qm.conf" || return 0
  [ "$CHECK" = 1 ] || $QM set "$1" --delete "$2" >/dev/null
  vms_changed "Proxmox VM $1: $2 removed"
  VM_RESTART="$VM_RESTART proxmox:$1"
}

# vms_qm_sub VMID KEY NAME VALUE: NAME=VALUE in the comma list of KEY (net0: virtio=...,bridge=vmbr0,firewall=1)
vms_qm_sub() {
  vms_qm_config "$1" || return 0
  vms_cur=$(sed -n "s/^$2: //p" "$WORK/qm.conf")
  if [ -z "$vms_cur" ]; then echo "skipped: Proxmox VM $1 has no $2"; return 0; fi
  printf ',%s,' "$vms_cur" | grep -qF ",$3=$4," && return 0
  vms_new="$(printf '%s' "$vms_cur" | sed -E "s/(^|,)$3=[^,]*//g"),$3=$4"
  [ "$CHECK" = 1 ] || $QM set "$1" "--$2" "$vms_new" >/dev/null
  vms_changed "Proxmox VM $1: $2 $3=$4"
  VM_RESTART="$VM_RESTART proxmox:$1"
}

# vms_pve_option FILE KEY VALUE: "KEY: VALUE" in the [OPTIONS] section of a pve-firewall file (the line
# replaced, else added under [OPTIONS], else an [OPTIONS] section put first); pve-firewall applies it
vms_pve_option() {
  vms_in_options='/^\[/ { s = (toupper($0) ~ /^\[OPTIONS\]/) } s && $0 ~ "^[[:space:]]*" k "[[:space:]]*:"'
  if [ -e "$1" ] && awk -v k="$2" -v v="$3" "$vms_in_options"' { sub(/^[^:]*:[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); if ($0 == v) found = 1 } END { exit !found }' "$1"; then
    return 0
  fi
  if [ "$CHECK" = 0 ]; then
    mkdir -p "$(dirname "$1")"
    [ -e "$1" ] || : >"$1"
    if awk -v k="$2" "$vms_in_options"' { found = 1 } END { exit !found }' "$1"; then
      awk -v k="$2" -v v="$3" "$vms_in_options"' { print k ": " v; next } { print }' "$1" >"$WORK/fw"
    elif grep -qi '^\[OPTIONS\]' "$1"; then
      awk -v k="$2" -v v="$3" '{ print } toupper($0) ~ /^\[OPTIONS\]/ { print ""; print k ": " v }' "$1" >"$WORK/fw"
    else
      { printf '[OPTIONS]\n\n%s: %s\n\n' "$2" "$3"; cat "$1"; } >"$WORK/fw"
    fi
    cat "$WORK/fw" >"$1"
  fi
  vms_changed "$1: [OPTIONS] $2: $3"
}
"""

# modifyvm option -> (the showvminfo --machinereadable name, how it shows the value); None: not shown
_SHOWN = {
    "--vrde": "vrde",
    "--vrde-multi-con": "vrdemulticon",
    "--clipboard-mode": "clipboard",
    "--drag-and-drop": "draganddrop",
    "--teleporter": "teleporterenabled",
}
_NUMBERED = {"--nic-promisc": "nicpromisc"}  # option N -> name N


def q(text: object) -> str:
    return shlex.quote(str(text))


def shown_line(option: str, value: str) -> str:
    """The ``--machinereadable`` line showing ``option`` set to ``value`` ("" when it is not shown)."""
    name = _SHOWN.get(option)
    match = re.fullmatch(r"(--[a-z-]+?)(\d+)", option)
    if name is None and match and match.group(1) in _NUMBERED:
        name = _NUMBERED[match.group(1)] + match.group(2)
    return f'{name}="{value}"' if name else ""


def vbox_lines(change: Change) -> list[str]:
    vm = change.target
    if change.detail.get("via") == "setextradata":
        return [f"vms_vbox_extra {q(vm)} {q(change.key)} {q(change.after)}"]
    return [f"vms_vbox {q(vm)} {q(change.key)} {q(change.after)} {q(shown_line(change.key, str(change.after)))}"]


def pve_path(read: str) -> str:
    """Where a firewall file read by the scan lives on a Proxmox node (under ``$ROOT``)."""
    read = str(read)
    if "/etc/pve/" in read:
        return "/etc/pve/" + read.split("/etc/pve/", 1)[1]
    name = read.rsplit("/", 1)[-1]
    if name.endswith("cluster.fw"):
        return "/etc/pve/firewall/cluster.fw"
    if name.endswith("host.fw"):
        return "/etc/pve/local/host.fw"  # the link to this node's nodes/NODE/host.fw
    vmid = re.search(r"(\d+)\.fw$", name)
    return f"/etc/pve/firewall/{vmid.group(1)}.fw" if vmid else f"/etc/pve/firewall/{name}"


def proxmox_lines(change: Change) -> list[str]:
    d = change.detail
    if d.get("scope") == "fw":
        return [
            f'vms_pve_option "$ROOT"{q(pve_path(d.get("file") or change.target))} {q(change.key)} {q(change.after)}'
        ]
    vmid = str(d.get("vmid") or change.target.rsplit(":", 1)[-1])
    if not vmid.isdigit():  # a file not named VMID.conf: qm needs the number
        return [f"echo {q(f'skipped: Proxmox VM {vmid} {change.key} (no numeric VMID in the input; use the patch)')}"]
    if change.after is None:
        return [f"vms_qm_delete {q(vmid)} {q(change.key)}"]
    if d.get("suboption"):
        return [f"vms_qm_sub {q(vmid)} {q(change.key)} {q(d['suboption'])} {q(change.after)}"]
    return [f"vms_qm {q(vmid)} {q(change.key)} {q(change.after)}"]


LINES = {"vbox_setting": vbox_lines, "proxmox_key": proxmox_lines}
