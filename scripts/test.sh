#!/usr/bin/env bash
# Set up everything and run ALL tests (unit + the real-libvirtd integration tests).  Run as root:
#     sudo scripts/test.sh [PYTEST-ARGS...]
# 1. scripts/setup.sh            Debian packages + .venv with vmsentry[libvirt,test]
# 2. scripts/start-libvirtd.sh   a real libvirtd without systemd (stopped again at the end if this
#                                script started it; VMSENTRY_KEEP_LIBVIRTD=1 keeps it running)
# 3. .venv/bin/python -m pytest tests/ [PYTEST-ARGS...]
# Exit code: pytest's, except that 5 (no tests collected) becomes 1: a run that tested nothing fails.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # libvirtd, virtlogd, useradd live in sbin
cd "$(dirname "$0")/.."
T0=$(date +%s.%N)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

if [ "$(id -u)" != 0 ]; then
  echo "test: must run as root (apt packages, libvirtd, a NAT network and a QEMU guest): sudo $0" >&2
  exit 3
fi

bash scripts/setup.sh

started_here=0
timeout 10 virsh -c qemu:///system version >/dev/null 2>&1 || started_here=1
# A libvirtd that will not start does not stop the run: the unit tests still run and report, the
# integration tests fail with the reason, and this script exits non-zero in any case.
libvirtd_rc=0
bash scripts/start-libvirtd.sh || libvirtd_rc=$?
if [ "$started_here" = 1 ] && [ "${VMSENTRY_KEEP_LIBVIRTD:-0}" != 1 ]; then
  trap 'bash scripts/stop-libvirtd.sh || true' EXIT
fi

echo "test: .venv/bin/python -m pytest tests/ $*"
T1=$(date +%s.%N)
rc=0
.venv/bin/python -m pytest tests/ "$@" </dev/null || rc=$?
if [ "$rc" = 5 ]; then
  echo "test: FAILED: pytest collected no tests (exit 5)" >&2
  rc=1
fi
if [ "$libvirtd_rc" != 0 ] && [ "$rc" = 0 ]; then
  echo "test: FAILED: scripts/start-libvirtd.sh exited $libvirtd_rc" >&2
  rc=1
fi
echo "test: pytest exit $rc after $(since "$T1") s; total $(since "$T0") s"
exit "$rc"
