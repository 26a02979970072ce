#!/usr/bin/env bash
# Stop the libvirtd + virtlogd that scripts/start-libvirtd.sh started: each is signalled by the pid in its
# pid file (/run/libvirtd.pid, /run/virtlogd.pid), and only if that pid really is a libvirtd / virtlogd.
# Configuration (/etc/libvirt/qemu.conf, the libvirt-qemu user, directories) is left in place.
#
# Guests and networks are NOT touched: QEMU processes and a network's dnsmasq outlive libvirtd (a later
# start re-attaches to them).  The ones still active are listed before the daemon goes.
# Idempotent: nothing running is not an error.  Exit 0 when both are gone, 1 if one would not stop.
set -uo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # libvirtd, virtlogd, useradd live in sbin

URI=qemu:///system
say() { echo "stop-libvirtd: $*"; }

[ "$(id -u)" = 0 ] || { echo "stop-libvirtd: must run as root" >&2; exit 3; }

# stop_by_pidfile PIDFILE NAME
stop_by_pidfile() {
  local pidfile=$1 name=$2 pid i
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -z "$pid" ] || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$name" ]; then
    say "$name not running (no live pid in $pidfile)"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid"
  for i in $(seq 1 100); do           # up to 10 s for a clean shutdown
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || { say "stopped $name (pid $pid)"; rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  say "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    echo "stop-libvirtd: could not stop $name (pid $pid)" >&2
    return 1
  fi
  rm -f "$pidfile"
}

if timeout 10 virsh -c "$URI" version >/dev/null 2>&1; then
  doms=$(timeout 10 virsh -c "$URI" list --name 2>/dev/null | sed '/^$/d' | tr '\n' ' ')
  nets=$(timeout 10 virsh -c "$URI" net-list --name 2>/dev/null | sed '/^$/d' | tr '\n' ' ')
  [ -n "$doms" ] && say "left running (not destroyed): domains: $doms"
  [ -n "$nets" ] && say "left active (not destroyed): networks: $nets"
fi

rc=0
stop_by_pidfile /run/libvirtd.pid libvirtd || rc=1
stop_by_pidfile /run/virtlogd.pid virtlogd || rc=1
exit $rc
