#!/usr/bin/env bash
# bench/gateway: the same mock backend (answers at once) hit directly and through
# `steward gateway`, with the same load generator (wrk, Debian), in one run.
# Prints requests/s and latency percentiles; the difference is the gateway's overhead.
# Usage: bench/gateway/run.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; conns=${2:-32}
command -v wrk >/dev/null || { echo "install wrk first: apt-get install -y wrk" >&2; exit 1; }
cargo build -q --release --locked -p steward-gateway --example mock_backend
cargo build -q --release --locked
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bport=$(free_port); gport=$(free_port)
target/release/examples/mock_backend "$bport" &
printf '[gateway]\nlisten = "127.0.0.1:%s"\n[[gateway.routes]]\nmodel = "chat"\nbackends = [{ url = "http://127.0.0.1:%s" }]\n' "$gport" "$bport" > "$work/steward.toml"
STEWARD_LOG=warn target/release/steward gateway -f "$work/steward.toml" &
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$gport/health" && break; sleep 0.1; done
run() { wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/gateway/post.lua "$1" | awk -v who="$2" '
  /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
  END {printf "| %s | %s | %s | %s |\n", who, rps, p50, p99}'; }
echo "| path | requests/s | p50 | p99 |"
echo "|---|---|---|---|"
run "http://127.0.0.1:$bport" "direct to the mock backend"
run "http://127.0.0.1:$gport" "through steward gateway"
