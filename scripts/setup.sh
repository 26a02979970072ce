#!/usr/bin/env bash
# One-shot set-up for a fresh Debian 12 machine (run as root): the Debian packages vmsentry and its
# tests use, then a virtualenv in ./.venv (Debian's /usr/bin/python3) with vmsentry installed in
# editable mode with its `libvirt` and `test` extras.
#
# Idempotent: re-running installs only what is missing; the pip step is skipped while pyproject.toml is
# unchanged and the venv still imports everything.  Quiet: prints one line per step and the output of a
# step only when it fails.  Exit codes: 0 ok, 1 a step failed, 3 not root while something must be installed.
#
# Environment: VMSENTRY_SETUP_FORCE=1 re-runs the pip step even when nothing changed.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"   # libvirtd, virtlogd, useradd live in sbin
cd "$(dirname "$0")/.."
REPO=$(pwd)
T0=$(date +%s.%N)

APT_PACKAGES=(
  # build + runtime of the Python package (libvirt-python has no wheel: it compiles against libvirt-dev)
  python3 python3-venv python3-dev gcc pkg-config libvirt-dev
  # host facts read by `vmsentry scan --host`
  iproute2 iputils-ping nftables iptables procps kmod
  # setpriv (run a command with dropped privileges; util-linux is Essential, listed for clarity)
  util-linux
  # real libvirtd + QEMU/TCG guest for the integration tests (no systemd: see scripts/start-libvirtd.sh).
  # NOT libvirt-daemon-system: it pulls systemd + systemd-sysv, which would replace this machine's init.
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 dnsmasq-base
  # libvirt's stock nwfilters (clean-traffic ...) and the ebtables front-end they use; neither pulls systemd
  libvirt-daemon-config-nwfilter ebtables
  # traffic tools used by tests
  tcpdump
  # the watcher's packaging tests: systemd-analyze (systemd; no init change: systemd-sysv is refused below)
  # and logrotate -d
  systemd logrotate
  # a real syslog receiver for `--syslog` (tests/test_syslog.py starts its own rsyslogd on a private config;
  # the package pulls no systemd: only libestr0, libfastjson4, liblognorm5)
  rsyslog
  # GNU time: benchmarks/watch_memory.py reads each program's own peak RSS through it (see its docstring)
  time
  # `vmsentry detect` live lab (real attack tools run in netns "VMs") and the tools it is compared with
  dsniff nmap tshark arpwatch curl bind9-dnsutils netsniff-ng
  # replaying captures into a lab bridge at full speed (the live ring vs. the file path, bench_watch.py)
  tcpreplay
  # `vmsentry fix --format sh`: the libvirt XML edits (virsh dumpxml | xmlstarlet ed | virsh define)
  xmlstarlet
  # IPv6 neighbour spoofing for the nd_spoof lab tests (parasite6, fake_advertise6: installed as atk6-*)
  thc-ipv6
  # real admin-protocol servers and clients for the lateral-movement captures (tests/traffic_lab/captures.py)
  openssh-server openssh-client hydra samba smbclient python3-impacket
  # ... RDP (xrdp server, FreeRDP client), VNC (TigerVNC server, viewer, vncpasswd), Xvfb as the clients'
  # display, and pywinrm as a real WinRM client (its server in the lab is a stand-in: no Windows here)
  xrdp freerdp2-x11 tigervnc-standalone-server tigervnc-viewer tigervnc-tools xvfb python3-winrm
  # a real PostgreSQL server for the scan store tests (tests/pg_server.py: initdb + pg_ctl in a temporary
  # folder, no systemd; the package's own cluster is not used)
  postgresql
  # headless browser for the `vmsentry paths --format html` tests, `vmsentry report --format pdf` (it prints
  # the HTML) and the report tests' screenshots; pdftotext (poppler-utils) reads the PDFs back in the tests;
  # a CJK font so the MLPS report's Chinese text renders and prints (not as empty boxes)
  chromium poppler-utils fonts-wqy-microhei
  # groff renders docs/man/vmsentry.1 in its test (man-db pulls it in on most machines, not on a minimal one)
  groff-base
  # segmentation policy tests: the TCG test guest kit (scripts/build-test-guest.sh: busybox initramfs) and
  # netcat for poking the namespace lab by hand (arpspoof comes with dsniff above)
  busybox-static cpio netcat-openbsd
  # the behaviour baseline's labelled captures (tests/traffic_lab/behaviour): floods and a DNS tunnel
  hping3 iodine
)

# seconds since a `date +%s.%N` stamp (awk: bc may be missing on a fresh machine)
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

LOG=$(mktemp -t vmsentry-setup.XXXXXX)
trap 'rm -f "$LOG"' EXIT
# run_quiet DESCRIPTION CMD... : run CMD with its output in $LOG; on failure print it and stop.
run_quiet() {
  local desc=$1; shift
  local t; t=$(date +%s.%N)
  if ! "$@" >"$LOG" 2>&1; then
    echo "setup: FAILED: $desc ($*)" >&2
    tail -n 60 "$LOG" >&2
    exit 1
  fi
  echo "setup: $desc ($(since "$t") s)"
}

# --- 1. Debian packages --------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install: ${missing[*]}" >&2
    exit 3
  fi
  export DEBIAN_FRONTEND=noninteractive
  # tshark's wireshark-common asks whether non-root users may capture: answer no, without a prompt
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  run_quiet "apt-get update" apt-get update -q
  # Refuse anything that would bring systemd in as init (libvirt-daemon-system does; see lab notes §2.1).
  if apt-get install -s --no-install-recommends "${missing[@]}" 2>/dev/null | grep -qE '^Inst systemd-sysv '; then
    echo "setup: FAILED: installing ${missing[*]} would pull systemd-sysv; refusing" >&2
    exit 1
  fi
  run_quiet "apt-get install ${#missing[@]} package(s): ${missing[*]}" \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages already installed (${#APT_PACKAGES[@]})"
fi

# --- 2. virtualenv with Debian's interpreter -------------------------------------------------------
PY=/usr/bin/python3
if [ ! -x "$PY" ]; then echo "setup: FAILED: $PY missing (package python3)" >&2; exit 1; fi
venv_home=""
[ -f .venv/pyvenv.cfg ] && venv_home=$(sed -n 's/^home *= *//p' .venv/pyvenv.cfg)
if [ -x .venv/bin/python ] && [ "$venv_home" != "/usr/bin" ]; then
  echo "setup: .venv was made by $venv_home/python3, not $PY: re-creating it"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  rm -rf .venv
  run_quiet "create .venv with $PY ($("$PY" --version 2>&1))" "$PY" -m venv .venv
fi

# --- 3. vmsentry (editable) + extras ---------------------------------------------------------------
STAMP=.venv/.vmsentry-setup-stamp
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
have=$(cat "$STAMP" 2>/dev/null || true)
if [ "${VMSENTRY_SETUP_FORCE:-0}" != 1 ] && [ "$want" = "$have" ] \
   && [ -x .venv/bin/vmsentry ] \
   && .venv/bin/python -c 'import vmsentry, libvirt, lxml, yaml, pytest, psycopg' >/dev/null 2>&1; then
  echo "setup: venv up to date (pyproject.toml unchanged)"
else
  export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
  run_quiet "upgrade pip" .venv/bin/python -m pip install -q --upgrade pip
  # libvirt-python builds from source (about 10 s) against libvirt-dev found through pkg-config.
  run_quiet "pip install -e '.[libvirt,test,store]'" .venv/bin/python -m pip install -q -e "$REPO[libvirt,test,store]"
  echo "$want" >"$STAMP"
fi
# Byte-compile the sources as a regular (non-editable) pip install would: with PYTHONDONTWRITEBYTECODE set
# (as on our machines) every run would otherwise recompile each module, about 0.15 s of start-up.
.venv/bin/python -m compileall -q "$REPO/src" >/dev/null || true

version=$(.venv/bin/vmsentry --version 2>/dev/null || .venv/bin/python -c 'import vmsentry; print(getattr(vmsentry, "__version__", "?"))' 2>/dev/null || echo "?")
echo "setup: ok (vmsentry ${version#vmsentry }, $(.venv/bin/python --version)) in $(since "$T0") s"
