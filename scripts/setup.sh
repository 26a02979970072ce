#!/usr/bin/env bash
# One-shot set-up for a fresh Debian 12 machine (run as root): the Debian packages vmsentry and its
# tests use, then a virtualenv in ./.venv with vmsentry installed in editable mode.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  # build + runtime of the Python package (libvirt-python has no wheel: it compiles against libvirt-dev)
  python3 python3-venv python3-dev gcc pkg-config libvirt-dev
  # host facts read by `vmsentry scan --host`
  iproute2 iputils-ping nftables iptables procps kmod
  # real libvirtd + QEMU/TCG guest for the integration tests (no systemd: see lab-notes §2.3)
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 dnsmasq-base
  # traffic tools used by tests
  tcpdump
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then echo "setup: need root to install: ${missing[*]}" >&2; exit 3; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's own interpreter, so the venv matches what a fresh Debian 12 machine has.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e '.[libvirt,test]'
echo "setup: ok ($(.venv/bin/vmsentry --version))"
