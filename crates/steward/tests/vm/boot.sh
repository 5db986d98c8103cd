#!/usr/bin/env bash
# Boots Debian's kernel (cgroup v2, nothing else running) in QEMU with INIT as its /init,
# and prints the serial console. The steward VM tests' harness: like ../shared/tools/vm-run,
# but INIT is the real /init (PID 1), so that steward itself can be the machine's init.
# Usage: boot.sh [-m MiB] [-t SECONDS] INIT [FILE...]
#   INIT: a script; `. /lib/vm-mounts.sh` mounts /proc, /sys, /dev, /tmp and cgroup2.
#   Each FILE is copied to /bin/<its name> (stripped), with the shared libraries it needs.
# Needs: qemu-system-x86, linux-image-amd64, busybox-static (scripts/test installs them).
# Exit status: qemu's (a timeout is 124); the console says the rest.
set -euo pipefail
mem=1024; secs=180
while getopts "m:t:" o; do case $o in m) mem=$OPTARG;; t) secs=$OPTARG;; *) exit 2;; esac; done
shift $((OPTIND-1)); init=${1:?usage: boot.sh [-m MiB] [-t SECONDS] INIT [FILE...]}; shift
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || { echo "boot.sh: no kernel in /boot: apt-get install linux-image-amd64" >&2; exit 3; }
busybox=$(command -v busybox || echo /bin/busybox)
[ -x "$busybox" ] || { echo "boot.sh: no busybox: apt-get install busybox-static" >&2; exit 3; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
r=$w/root; mkdir -p $r/{bin,sbin,proc,sys,dev,tmp,run,etc,lib,lib64,usr/lib}
cp "$busybox" $r/bin/busybox
for c in $($r/bin/busybox --list); do [ -e $r/bin/$c ] || ln -s busybox $r/bin/$c; done
for f in "$@"; do
  cp -L "$f" $r/bin/; strip $r/bin/"$(basename "$f")" 2>/dev/null || true
  for l in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do mkdir -p $r$(dirname $l); cp -L $l $r$l; done
done
cat > $r/lib/vm-mounts.sh <<'MOUNTS'
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
mount -t cgroup2 none /sys/fs/cgroup
export PATH=/bin:/sbin
MOUNTS
cp "$init" $r/init; chmod +x $r/init
(cd $r && find . | cpio -o -H newc 2>/dev/null | gzip -1) > $w/initrd.gz
timeout "$secs" qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -m "$mem" -smp 2 -kernel "$kernel" \
  -initrd $w/initrd.gz -append "console=ttyS0 panic=-1 loglevel=3" -nographic -no-reboot </dev/null 2>&1 | tr -d '\r'
