#!/usr/bin/env bash
# steward under a real systemd: a Debian root file system (mmdebstrap, minbase with
# systemd) with steward and deploy/systemd/steward.service installed, booted in QEMU (the
# whole root as the initramfs, systemd as its PID 1). A oneshot unit then checks, and says
# on the console as `RESULT name ok|FAIL`:
#   - `systemctl start steward` returns only once steward has sent READY=1, that is after
#     its service's health check passed;
#   - with Delegate=yes, steward's services get cgroup v2 limits;
#   - `systemctl reload steward` reloads (a service added to the config starts);
#   - `systemctl stop steward` leaves no process and no group;
#   - `journalctl -u steward` shows steward's lines.
# Usage: crates/steward/tests/vm/systemd.sh [STEWARD]   (default: target/release/steward)
# Needs: mmdebstrap, qemu-system-x86, linux-image-amd64, and Debian's mirror (it downloads
# about 60 MB). Takes about 40 s here (the root file system about 25 s). Run by
# crates/steward/tests/vm.rs in the suite; exit status 0 when every check passed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../../.." && pwd)
steward=$(realpath "${1:-$repo/target/release/steward}")
command -v mmdebstrap >/dev/null || { echo "install mmdebstrap first: apt-get install -y mmdebstrap" >&2; exit 3; }
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1)
[ -n "$kernel" ] || { echo "install a kernel first: apt-get install -y linux-image-amd64" >&2; exit 3; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
mmdebstrap --quiet --variant=minbase --include=systemd,systemd-sysv,procps,util-linux \
  bookworm "$w/root.tar" http://deb.debian.org/debian
r=$w/root; mkdir -p $r; tar -C $r -xf $w/root.tar
install -m 755 "$steward" $r/usr/local/bin/steward; strip $r/usr/local/bin/steward 2>/dev/null || true
install -m 644 "$repo/deploy/systemd/steward.service" $r/etc/systemd/system/
mkdir -p $r/etc/steward $r/var/lib/steward-test
cat > $r/etc/steward/steward.toml <<'T'
reserve_memory = "256MiB"

[services.web]
# Healthy 3 s after it starts.
command = "sleep 3; touch /var/lib/steward-test/ready; exec sleep 7777"
shell = true
memory = "64MiB"
health = { exec = ["test", "-f", "/var/lib/steward-test/ready"], interval = "1s", start_interval = "200ms" }
T
cat > $r/usr/local/bin/steward-check.sh <<'CHECK'
#!/bin/sh
say() { echo "RESULT $*" > /dev/console; }
check() { name=$1; shift; if out=$("$@" 2>&1); then say "$name ok"; else say "$name FAIL: $out"; fi; }
waitfor() { t=$(($1 * 10)); shift; while [ $t -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; t=$((t - 1)); done; return 1; }
ps_() { steward ps -f /etc/steward/steward.toml --state-dir /var/lib/steward; }
systemctl start steward
check start-waits-for-ready test -f /var/lib/steward-test/ready
check delegate-gives-cgroup-v2 sh -c 'steward ps -f /etc/steward/steward.toml --state-dir /var/lib/steward | grep -q "cgroup v2"'
check memory-max-applied sh -c '[ "$(cat /sys/fs/cgroup/system.slice/steward.service/steward-*/web/memory.max)" = 67108864 ]'
printf '\n[services.extra]\ncommand = "exec sleep 8888"\nshell = true\n' >> /etc/steward/steward.toml
systemctl reload steward
check reload-starts-a-new-service waitfor 20 sh -c 'steward ps -f /etc/steward/steward.toml --state-dir /var/lib/steward | grep "^ extra" | grep -q running'
systemctl stop steward
check stop-leaves-no-process sh -c '! pgrep -f "sleep (7777|8888)"'
check stop-leaves-no-group sh -c '[ -z "$(find /sys/fs/cgroup/system.slice/steward.service -mindepth 1 -type d 2>/dev/null)" ]'
check journal-has-stewards-lines sh -c 'journalctl -u steward --no-pager | grep -q "web: started"'
echo RESULTS-DONE > /dev/console
systemctl poweroff
CHECK
chmod 755 $r/usr/local/bin/steward-check.sh
cat > $r/etc/systemd/system/steward-check.service <<'UNIT'
[Unit]
Description=steward under systemd: the checks
After=basic.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/steward-check.sh
[Install]
WantedBy=multi-user.target
UNIT
mkdir -p $r/etc/systemd/system/multi-user.target.wants
ln -sf /etc/systemd/system/steward-check.service $r/etc/systemd/system/multi-user.target.wants/
ln -sf /lib/systemd/systemd $r/init
(cd $r && find . | cpio -o -H newc 2>/dev/null | gzip -1) > $w/initrd.gz
timeout 600 qemu-system-x86_64 -accel "${VM_ACCEL:-tcg}" -m 2048 -smp 2 -kernel "$kernel" -initrd $w/initrd.gz \
  -append "console=ttyS0 panic=-1 loglevel=3 systemd.show_status=0" -nographic -no-reboot </dev/null 2>&1 \
  | tr -d "\r" | tee $w/console | grep -E "RESULT|Kernel panic" || true
grep -q RESULTS-DONE $w/console && ! grep -q "RESULT .* FAIL" $w/console \
  && [ "$(grep -c "RESULT .* ok" $w/console)" = 7 ]
