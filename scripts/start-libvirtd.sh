#!/usr/bin/env bash
# Bring up a real libvirtd (Debian 12's monolithic daemon) as root on a machine WITHOUT systemd, the way
# the lab notes (§2.3) found to work, and wait until `virsh -c qemu:///system version` answers.
#
# Idempotent:
#   * if a libvirtd already answers on qemu:///system (ours from an earlier run, or a systemd-managed one on
#     a normal host) nothing is changed at all;
#   * otherwise it creates the directories libvirt-daemon-system would have made, the `libvirt-qemu` user
#     (the compiled-in default QEMU user must resolve even when qemu.conf says root), makes sure
#     /etc/libvirt/qemu.conf has  user = "root", group = "root", security_driver = "none"  and starts
#     `virtlogd -d` and `libvirtd -d -p /run/libvirtd.pid`.
#
# qemu.conf policy: a missing file is created with just those three keys.  An existing file is never
# replaced: it is copied once to qemu.conf.vmsentry-orig, an active line setting one of the three keys to
# another value is commented out ("#vmsentry# ..."), and the missing keys are appended in a marked block.
# Every other setting is left as it was.
#
# Exit codes: 0 libvirtd answers; 1 it could not be started (the end of its log is printed); 3 not root or
# libvirt not installed (run scripts/setup.sh).
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # libvirtd, virtlogd, useradd live in sbin

URI=qemu:///system
LIBVIRTD_PID=/run/libvirtd.pid
VIRTLOGD_PID=/run/virtlogd.pid
QEMU_CONF=/etc/libvirt/qemu.conf
LOGFILE=/var/log/libvirt/libvirtd.log
TIMEOUT=${VMSENTRY_LIBVIRTD_TIMEOUT:-30}

T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "start-libvirtd: $*"; }
die() { local rc=$1; shift; echo "start-libvirtd: $*" >&2; exit "$rc"; }

answers() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }
# pid_alive PIDFILE NAME: the pid file names a live process called NAME
pid_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

[ "$(id -u)" = 0 ] || die 3 "must run as root (libvirtd is started as a system daemon)"
for b in libvirtd virtlogd virsh; do
  command -v "$b" >/dev/null || die 3 "$b not found: run scripts/setup.sh first"
done

if answers; then
  say "libvirtd already answers on $URI; nothing changed ($(since "$T0") s)"
  exit 0
fi

# --- 1. directories and the libvirt-qemu user (what libvirt-daemon-system would have done) ---------------
mkdir -p /var/log/libvirt/qemu /var/lib/libvirt/qemu /var/lib/libvirt/dnsmasq /var/cache/libvirt \
         /run/libvirt /etc/libvirt
if ! getent passwd libvirt-qemu >/dev/null; then
  if getent group libvirt-qemu >/dev/null; then
    useradd -r -g libvirt-qemu -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  else
    useradd -r -U -M -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  fi
  say "created system user libvirt-qemu"
fi

# --- 2. qemu.conf: user/group root, no security driver (no AppArmor/SELinux here) -----------------------
declare -A WANT=([user]='"root"' [group]='"root"' [security_driver]='"none"')
if [ ! -e "$QEMU_CONF" ]; then
  {
    echo "# Written by vmsentry scripts/start-libvirtd.sh (no libvirt-daemon-system on this machine)."
    for k in user group security_driver; do echo "$k = ${WANT[$k]}"; done
  } >"$QEMU_CONF"
  say "wrote $QEMU_CONF"
else
  append=()
  for k in user group security_driver; do
    # already set (last active assignment wins in libvirt's parser) to the wanted value?
    cur=$(sed -nE "s/^[[:space:]]*$k[[:space:]]*=[[:space:]]*(.*[^[:space:]])[[:space:]]*\$/\1/p" "$QEMU_CONF" | tail -n1)
    [ "$cur" = "${WANT[$k]}" ] && continue
    [ -e "$QEMU_CONF.vmsentry-orig" ] || cp -p "$QEMU_CONF" "$QEMU_CONF.vmsentry-orig"
    if [ -n "$cur" ]; then
      sed -i -E "s/^([[:space:]]*$k[[:space:]]*=.*)\$/#vmsentry# \1/" "$QEMU_CONF"
    fi
    append+=("$k = ${WANT[$k]}")
  done
  if [ ${#append[@]} -gt 0 ]; then
    { echo "# --- added by vmsentry scripts/start-libvirtd.sh (original: $QEMU_CONF.vmsentry-orig) ---"
      printf '%s\n' "${append[@]}"; } >>"$QEMU_CONF"
    say "set ${append[*]} in $QEMU_CONF (original kept as $QEMU_CONF.vmsentry-orig)"
  fi
fi

# --- 3. daemons ----------------------------------------------------------------------------------------
if ! pid_alive "$VIRTLOGD_PID" virtlogd; then
  virtlogd -d -p "$VIRTLOGD_PID"
fi
if pid_alive "$LIBVIRTD_PID" libvirtd; then
  say "libvirtd (pid $(cat "$LIBVIRTD_PID")) is running but does not answer yet; waiting"
else
  : >>"$LOGFILE"
  log_start=$(wc -c <"$LOGFILE")
  # -d forks; the parent exits only once the daemon reports that its drivers initialised (or failed)
  if ! libvirtd -d -p "$LIBVIRTD_PID"; then
    echo "start-libvirtd: libvirtd failed to start; end of $LOGFILE:" >&2
    tail -c +"$(( log_start + 1 ))" "$LOGFILE" 2>/dev/null | tail -n 30 >&2 || true
    exit 1
  fi
fi

deadline=$(( $(date +%s) + TIMEOUT ))
until answers; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "start-libvirtd: libvirtd did not answer on $URI within ${TIMEOUT} s; end of $LOGFILE:" >&2
    tail -c +"$(( ${log_start:-0} + 1 ))" "$LOGFILE" 2>/dev/null | grep -v ': info : ' | tail -n 30 >&2 || true
    exit 1
  fi
  if ! pid_alive "$LIBVIRTD_PID" libvirtd; then
    echo "start-libvirtd: libvirtd exited during start-up; end of $LOGFILE:" >&2
    tail -c +"$(( ${log_start:-0} + 1 ))" "$LOGFILE" 2>/dev/null | tail -n 30 >&2 || true
    exit 1
  fi
  sleep 0.2
done
say "libvirtd (pid $(cat "$LIBVIRTD_PID")) answers on $URI after $(since "$T0") s: $(virsh -c "$URI" version 2>/dev/null | sed -n 's/^Running hypervisor: *//p')"
