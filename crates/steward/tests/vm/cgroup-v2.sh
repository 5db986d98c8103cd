#!/bin/sh
# steward on a real cgroup v2 kernel, not as PID 1: in the root group beside other
# processes, in a delegated subtree (as systemd's Delegate=yes gives it) with services that
# OOM, share an OOM group, have limits and leave a daemon behind, and in a group it shares
# with another process (EBUSY). Each check prints `RESULT name ok|FAIL detail`.
. /lib/vm-mounts.sh
cd /tmp
echo VM-START
check() { name=$1; shift; if out=$("$@" 2>&1); then echo "RESULT $name ok"; else echo "RESULT $name FAIL: $* $out"; fi; }
waitfor() { t=$(($1 * 10)); shift; while [ $t -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; usleep 100000; t=$((t - 1)); done; return 1; }
conf() { printf 'state_dir = "/tmp/%s"\nreserve_memory = "128MiB"\n' "$1"; cat; }
up() { steward ps -f "$1" >/dev/null 2>&1; }
no_groups() { [ -z "$(find "$1" -mindepth 1 -type d)" ]; }
# start CONFIG [GROUP]: steward up on CONFIG (moved into GROUP first), answering.
start() { sh -c "[ -z '$2' ] || echo \$\$ > /sys/fs/cgroup/$2/cgroup.procs; exec steward up -f $1" > "$1.log" 2>&1 & agent=$!; waitfor 30 up "$1"; }
# stop CONFIG: steward down, and wait until the agent has gone (its groups with it).
stop() { steward down -f "$1" > /dev/null 2>&1; wait $agent; }
sleep 1000 & neighbour=$!

# 1. The root group, with this shell and a neighbour in it: steward moves only itself.
conf root <<'T' > /tmp/root.toml
[services.web]
command = "exec sleep 1000"
shell = true
memory = "32MiB"
T
start /tmp/root.toml
check root-uses-v2 sh -c 'steward ps -f /tmp/root.toml | grep -q "cgroup v2"'
check root-moved-only-itself sh -c "grep -qx $$ /sys/fs/cgroup/cgroup.procs && grep -qx $neighbour /sys/fs/cgroup/cgroup.procs"
stop /tmp/root.toml
check root-no-debris sh -c '! ls -d /sys/fs/cgroup/steward-* 2>/dev/null'

# 2. A delegated subtree: steward alone in /deleg, controllers delegated to it.
echo "+memory +pids +cpuset" > /sys/fs/cgroup/cgroup.subtree_control
mkdir /sys/fs/cgroup/deleg
conf deleg <<'T' > /tmp/deleg.toml
[services.hog]
command = 'a=0123456789abcdef; while true; do a="$a$a"; done'
shell = true
memory = "64MiB"
restart = "never"

[services.group]
command = "sh -c 'a=0123456789abcdef; sleep 1; while true; do a=\"$a$a\"; done' & echo $! > /tmp/worker.pid; exec sleep 1000"
shell = true
memory = "64MiB"
restart = "never"

[services.limits]
command = "exec sleep 1000"
shell = true
memory = "64MiB"
memory_swap = "96MiB"
pids_max = 50
cpus = "1"

[services.daemon]
# A daemon that left the process group and ignores SIGTERM: only a kill of the whole
# group (cgroup.kill) ends it.
command = "setsid sh -c 'trap \"\" TERM; exec sleep 1001' & exec sleep 1000"
shell = true
stop_timeout = "1s"
T
start /tmp/deleg.toml deleg
check deleg-uses-v2 sh -c 'steward ps -f /tmp/deleg.toml | grep -q "cgroup v2"'
waitfor 30 sh -c 'steward ps -f /tmp/deleg.toml | grep "^ hog" | grep -q failed'
check oom-kill-limit-and-peak sh -c 'steward ps -f /tmp/deleg.toml | grep "^ hog" | grep "OOM-killed by the kernel in its cgroup: peak" | grep -q "against a limit of 64.00 MiB"'
check oom-kill-explained-by-the-kernel sh -c 'steward ps -f /tmp/deleg.toml | grep "^hog: failed: cgroup-oom: kernel: Memory cgroup out of memory"'
waitfor 30 sh -c 'steward ps -f /tmp/deleg.toml | grep "^ group" | grep -q failed'
check oom-group-kills-the-whole-service sh -c 'steward ps -f /tmp/deleg.toml | grep "^ group" | grep -q OOM-killed && [ ! -d /proc/$(cat /tmp/worker.pid) ]'
lim=$(ls -d /sys/fs/cgroup/deleg/steward-*/limits)
check swap-max-read-back sh -c "[ \$(cat $lim/memory.swap.max) = 33554432 ]"
check pids-max-read-back sh -c "[ \$(cat $lim/pids.max) = 50 ]"
check cpuset-read-back sh -c "[ \$(cat $lim/cpuset.cpus) = 1 ]"
check oom-group-set sh -c "[ \$(cat $lim/memory.oom.group) = 1 ]"
check daemon-running sh -c 'ps | grep -q "[s]leep 1001"'
stop /tmp/deleg.toml
check daemon-gone-after-down sh -c '! ps | grep -q "[s]leep 1001"'
check deleg-no-debris no_groups /sys/fs/cgroup/deleg
check deleg-controllers-given-back sh -c '[ -z "$(cat /sys/fs/cgroup/deleg/cgroup.subtree_control)" ]'

# 3. A group shared with another process: EBUSY, soft limits said, nothing of others moved.
mkdir /sys/fs/cgroup/shared
echo $neighbour > /sys/fs/cgroup/shared/cgroup.procs
conf shared <<'T' > /tmp/shared.toml
[services.web]
command = "exec sleep 1000"
shell = true
memory = "32MiB"
T
start /tmp/shared.toml shared
check ebusy-falls-back-to-soft-limits sh -c 'steward ps -f /tmp/shared.toml | grep -q "EBUSY"'
check ebusy-neighbour-not-moved sh -c "grep -qx $neighbour /sys/fs/cgroup/shared/cgroup.procs"
stop /tmp/shared.toml
check ebusy-no-debris no_groups /sys/fs/cgroup/shared
echo RESULTS-DONE
poweroff -f
