#!/usr/bin/env bash
# Records the bundled workload (a multi-threaded text indexer that leaks a
# known amount on purpose) into a memscope trace, then asks the trace
# "what leaked?" with queries/leaks.sql.
#
# Usage: scripts/demo.sh [workload options, e.g. --docs 20000 --threads 8]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet -p memscope-workload -p memscope-analyzer
mkdir -p target/demo
trace=target/demo/workload.trace
rm -f "$trace"

echo "== recording: memscope-workload --trace $trace $*"
target/debug/memscope-workload --trace "$trace" "$@"
echo
echo "== analyzing: memscope-analyze $trace --sql queries/leaks.sql"
target/debug/memscope-analyze "$trace" --sql queries/leaks.sql
