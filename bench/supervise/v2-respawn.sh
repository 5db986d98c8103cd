#!/usr/bin/env bash
# bench/supervise/v2-respawn.sh: respawn on a real cgroup v2 kernel (Debian's, booted in QEMU by
# ../shared/tools/vm-run), from steward's own events: each exit to the next start of the same
# service, in ms, 30 SIGKILLs over 5 services with a 64 MiB limit and zero backoff.
# Usage: bench/supervise/v2-respawn.sh STEWARD [STEWARD...]   (each a release binary; give two
# builds to compare them in one boot). Under TCG every number is several times a real host's:
# compare builds within one run only.
set -euo pipefail
cd "$(dirname "$0")/../.."
vmrun=${VM_RUN:-../shared/tools/vm-run}
(($#)) || { echo "usage: $0 STEWARD [STEWARD...]" >&2; exit 2; }
w=$(mktemp -d); trap 'rm -rf "$w"' EXIT
names=()
for b in "$@"; do n=steward-$((${#names[@]} + 1)); cp "$b" "$w/$n"; names+=("$n"); done
cat > "$w/script.sh" <<EOF
{ echo 'state_dir = "/tmp/state"'; echo 'reserve_memory = "256MiB"'
  for i in 0 1 2 3 4; do
    printf '[services.p%s]\ncommand = "exec sleep 1000000"\nshell = true\nmemory = "64MiB"\nbackoff = { initial = "0s", max = "0s", jitter = 0.0 }\ncrash_loop = { exits = 100000, window = "1s" }\n' \$i
  done; } > /tmp/s.toml
for bin in ${names[*]}; do
  rm -rf /tmp/state
  STEWARD_LOG=warn \$bin up -f /tmp/s.toml > /tmp/up.log 2>&1 &
  sleep 4
  for k in \$(seq 1 30); do
    pid=\$(cat /sys/fs/cgroup/steward-*/p\$((k % 5))/cgroup.procs 2>/dev/null | head -1)
    [ -n "\$pid" ] && kill -9 \$pid
    usleep 200000
  done
  \$bin down -f /tmp/s.toml > /dev/null 2>&1
  awk -v who=\$bin -f /bin/pair.awk /tmp/state/events.jsonl
done
echo VM-OK
EOF
cat > "$w/pair.awk" <<'EOF'
# Each exit of a service -> the first start of the same service at or after it, in ms.
function secs(ts,   t, p) { split(ts, p, "T"); split(p[2], t, ":"); sub("Z", "", t[3]); return t[1]*3600 + t[2]*60 + t[3] }
function field(name,   r) { if (!match($0, "\"" name "\":\"[^\"]*\"")) return ""; r = substr($0, RSTART, RLENGTH); sub("^\"" name "\":\"", "", r); sub("\"$", "", r); return r }
/"event":"exited"/ { ex[ne] = secs(field("ts")); exs[ne++] = field("service") }
/"event":"started"/ { st[ns] = secs(field("ts")); sts[ns++] = field("service") }
END {
  for (i = 0; i < ne; i++) { best = -1
    for (j = 0; j < ns; j++) if (sts[j] == exs[i] && st[j] >= ex[i] && (best < 0 || st[j] < best)) best = st[j]
    if (best >= 0 && best - ex[i] < 60) d[n++] = (best - ex[i]) * 1000 }
  for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (d[j] < d[i]) { x = d[i]; d[i] = d[j]; d[j] = x }
  printf "%s: %d respawns, exit -> start p50 %.0f ms, p90 %.0f ms\n", who, n, d[int(n * 0.5)], d[int(n * 0.9)] }
EOF
files=(); for n in "${names[@]}"; do files+=("$w/$n"); done
"$vmrun" -t 300 "$w/script.sh" "${files[@]}" "$w/pair.awk" | grep -E "respawns|rror"
