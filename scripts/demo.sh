#!/usr/bin/env bash
# Records the bundled workload (a multi-threaded text indexer that leaks a
# known amount on purpose) into a memscope trace, then asks the trace
# "what leaked?" with queries/leaks.sql, by type and by call site, and draws
# a flamegraph of the bytes allocated by call stack, and writes an HTML
# report of the whole trace.
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
echo
echo "== analyzing: memscope-analyze $trace --sql queries/leaks_by_call_site.sql"
target/debug/memscope-analyze "$trace" --quiet --sql queries/leaks_by_call_site.sql
echo
echo "== drawing: memscope-analyze flamegraph $trace --metric bytes -o target/demo/flamegraph.svg"
target/debug/memscope-analyze flamegraph "$trace" --quiet --metric bytes -o target/demo/flamegraph.svg --force
echo
echo "== reporting: memscope-analyze report $trace --format html -o target/demo/report.html"
target/debug/memscope-analyze report "$trace" --quiet --format html -o target/demo/report.html --force
echo "wrote target/demo/report.html (open it in a browser)"
