#!/bin/sh
# steward as the machine's real PID 1: this script mounts what an init needs, then
# becomes steward (exec: no shell above it). A judge service checks that orphans are
# reaped and that SIGHUP reaches the services, then runs `steward down`: steward stops
# everything and powers the machine off cleanly.
. /lib/vm-mounts.sh
echo VM-START
mkdir -p /etc
cat > /etc/steward.toml <<'T'
state_dir = "/tmp/state"
reserve_memory = "128MiB"

[services.orphans]
command = "for i in 1 2 3 4 5 6 7 8; do (sleep 0.2 &) ; done; exec sleep 1000"
shell = true

[services.hup]
command = "trap 'echo got-hup > /tmp/hup' HUP; while true; do sleep 0.1; done"
shell = true

[services.judge]
command = '''
# The SIGHUP it sends PID 1 comes back to every service, this one too.
trap '' HUP
say() { echo "RESULT $*" > /dev/console; }
# The orphans (sleep 0.2, parents gone) have ended once none runs; then none may be left
# as a zombie. Polled, within 10 s.
t=100; while [ $t -gt 0 ] && { ps | grep -q "[s]leep 0.2" || grep -q "^State:.*Z" /proc/[0-9]*/status 2>/dev/null; }; do usleep 100000; t=$((t - 1)); done
z=$(grep -l "^State:.*Z" /proc/[0-9]*/status 2>/dev/null | wc -l)
if [ "$z" = 0 ]; then say orphans-reaped ok; else say orphans-reaped FAIL: $z zombies; fi
kill -HUP 1
t=50; while [ $t -gt 0 ] && [ ! -f /tmp/hup ]; do usleep 100000; t=$((t - 1)); done
if [ -f /tmp/hup ]; then say sighup-forwarded ok; else say sighup-forwarded FAIL; fi
echo RESULTS-DONE > /dev/console
steward down -f /etc/steward.toml
exec sleep 1000
'''
shell = true
restart = "never"
T
exec steward up -f /etc/steward.toml
