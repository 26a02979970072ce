#!/usr/bin/env bash
# Build (once) the tiny guest the real-VM tests boot with QEMU/TCG (lab notes §2.5): Debian's kernel
# (apt-get download + dpkg-deb -x, nothing installed) and a busybox initramfs with the virtio/e1000 NIC
# modules and a small /init that the tests drive through the kernel command line:
#
#   vms.ip=ADDR/PREFIX  static address (without it: DHCP with udhcpc)
#   vms.gw=ADDR         ping target (default: the DHCP router)
#   vms.spoof=ADDR      also add ADDR to the NIC and ping the target FROM it (a spoofed source)
#   vms.attack=garp     an ARP spoofer: once ready (and, with vms.trigger=PORT, once a TCP connection to PORT
#                       came in), forged gratuitous ARPs claiming the target's address (the host on libvirt's
#                       network) with the guest's own MAC, one every 0.2 s for vms.attack_for=SECONDS (default
#                       180; busybox arping -U; "GUEST: attack garp ..." on the console, "... done" at the end)
#
# Two loops ping the target (bursts of 3, 0.3 s apart), one from the guest's own address and one from vms.spoof, and
# print "GUEST: legit ok|fail N" / "GUEST: spoof ok|fail N" on the serial console.
#
# Output (idempotent, cached): ${VMSENTRY_GUEST_DIR:-/var/cache/vmsentry/guest}/{vmlinuz,initrd.gz,KIT}
# Re-built only when missing or when KIT_VERSION below changes. Installs busybox-static and cpio with apt if
# they are missing (root). Exit 0 ok (prints the folder), 1 failure, 3 not root while something is missing.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
KIT_VERSION=5
OUT=${VMSENTRY_GUEST_DIR:-/var/cache/vmsentry/guest}
MODULES="e1000 virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net"

say() { echo "build-test-guest: $*" >&2; }
if [ -s "$OUT/vmlinuz" ] && [ -s "$OUT/initrd.gz" ] && [ "$(cat "$OUT/KIT" 2>/dev/null)" = "$KIT_VERSION" ]; then
  echo "$OUT"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then say "must run as root (apt, $OUT)"; exit 3; fi

need=()
for p in busybox-static cpio; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
fi

WORK=$(mktemp -d -t vmsentry-guest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
PKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$PKG" ]; then
  apt-get update -q >/dev/null
  PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$PKG" ] || { say "cannot find the Debian kernel package (apt-cache depends linux-image-amd64)"; exit 1; }
KVER=${PKG#linux-image-}
say "kernel $PKG"
apt-get download -q -o APT::Sandbox::User=root "$PKG" >/dev/null
dpkg-deb -x ./"$PKG"_*.deb kroot
[ -s "kroot/boot/vmlinuz-$KVER" ] || { say "no vmlinuz-$KVER in $PKG"; exit 1; }

mkdir -p ir/bin ir/proc ir/sys ir/dev ir/mods ir/tmp ir/usr/share/udhcpc ir/etc
cp /bin/busybox ir/bin/busybox
ir/bin/busybox --help >/dev/null 2>&1 || { say "/bin/busybox is not busybox-static"; exit 1; }
for m in $MODULES; do
  f=$(find "kroot/lib/modules/$KVER" -name "$m.ko*" | head -n1)
  [ -n "$f" ] || { say "module $m not found in $PKG"; exit 1; }
  case "$f" in
    *.ko.xz) xz -dc "$f" >"ir/mods/$m.ko" ;;
    *.ko.zst) zstd -dqc "$f" >"ir/mods/$m.ko" ;;
    *) cp "$f" "ir/mods/$m.ko" ;;
  esac
done
cat >ir/usr/share/udhcpc/default.script <<'EOS'
#!/bin/busybox sh
case "$1" in
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
               [ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface" ;;
esac
EOS
cat >ir/init <<'EOS'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo "GUEST: init started, kernel $(uname -r)"
for m in e1000 virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net; do
  insmod /mods/$m.ko 2>/dev/null || echo "GUEST: insmod $m failed"
done
arg() { tr ' ' '\n' </proc/cmdline | sed -n "s/^$1=//p" | tail -n1; }
IP=$(arg vms.ip); GW=$(arg vms.gw); SPOOF=$(arg vms.spoof); ATTACK=$(arg vms.attack); TRIGGER=$(arg vms.trigger); ATTACK_FOR=$(arg vms.attack_for)
i=0; IF=""
while [ -z "$IF" ] && [ $i -lt 50 ]; do IF=$(ls /sys/class/net | grep -v '^lo$' | head -n1); i=$((i+1)); sleep 0.1; done
ip link set lo up; ip link set "$IF" up
echo "GUEST: nic $IF mac $(cat /sys/class/net/$IF/address)"
if [ -n "$IP" ]; then
  ip addr add "$IP" dev "$IF"
  [ -n "$GW" ] && ip route add default via "$GW" dev "$IF"
else
  udhcpc -i "$IF" -n -q -t 10 -T 2 -s /usr/share/udhcpc/default.script && echo "GUEST: DHCP OK" || echo "GUEST: DHCP FAILED"
  [ -z "$GW" ] && GW=$(ip route | awk '/default/ {print $3}')
fi
[ -n "$SPOOF" ] && ip addr add "$SPOOF/32" dev "$IF"
echo "GUEST: ready ip=$(ip -o -4 addr show "$IF" | awk '{print $4}' | tr '\n' ' ') gw=$GW spoof=$SPOOF"
pinger() {   # pinger LABEL PING-ARGS...: bursts of 3 pings 0.3 s apart, result on the console
  label=$1; shift; n=0
  while [ $n -lt 4000 ]; do
    if ping -c 3 -i 0.3 -W 1 "$@" >/dev/null 2>&1; then echo "GUEST: $label ok $n"; else echo "GUEST: $label fail $n"; fi
    n=$((n+1)); sleep 0.3
  done
}
garp() {   # forged gratuitous ARPs: "$GW is at my MAC" (arping binds to the address it claims: nonlocal bind)
  if [ -n "$TRIGGER" ]; then
    echo "GUEST: attack waits for a connection on port $TRIGGER"
    nc -l -p "$TRIGGER" </dev/null >/dev/null 2>&1
  fi
  echo 1 >/proc/sys/net/ipv4/ip_nonlocal_bind
  echo "GUEST: attack garp claiming $GW"
  n=0
  while [ $n -lt $(( ${ATTACK_FOR:-180} * 5 )) ]; do arping -U -c 1 -w 1 -I "$IF" "$GW" >/dev/null 2>&1 & sleep 0.2; n=$((n+1)); done
  echo "GUEST: attack garp done"
}
[ "$ATTACK" = garp ] && garp &
pinger legit "$GW" &
[ -n "$SPOOF" ] && pinger spoof -I "$SPOOF" "$GW" &
wait
poweroff -f
EOS
chmod +x ir/init ir/usr/share/udhcpc/default.script
(cd ir && find . | cpio -o -H newc --quiet | gzip -9) >initrd.gz
[ "$(stat -c %s initrd.gz)" -gt 100000 ] || { say "initramfs is suspiciously small (is cpio working?)"; exit 1; }

mkdir -p "$OUT"
cp "kroot/boot/vmlinuz-$KVER" "$OUT/vmlinuz.tmp" && mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
cp initrd.gz "$OUT/initrd.gz.tmp" && mv "$OUT/initrd.gz.tmp" "$OUT/initrd.gz"
echo "$PKG" >"$OUT/KERNEL"
echo "$KIT_VERSION" >"$OUT/KIT"
say "built $OUT (kernel $(stat -c %s "$OUT/vmlinuz") bytes, initrd $(stat -c %s "$OUT/initrd.gz") bytes)"
echo "$OUT"
