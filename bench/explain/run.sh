#!/usr/bin/env bash
# bench/explain: explain's throughput on 200 MB of mixed logs, against a naive one-regex
# scan in the same run. Prints a table for the README.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -q --locked -p steward-explain --bench throughput -- "${1:-200}"
