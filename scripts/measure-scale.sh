#!/usr/bin/env bash
# The README's scale table: for each size, a synthetic trace in the
# recorder's format (4 threads, the allocbench mix of benches/src/lib.rs)
# is written, then timed through the leaks query straight from the trace
# and through `convert` to Parquet, each as a whole process. Prints one
# Markdown row per size: events, trace and Parquet bytes, wall seconds,
# events per second and the peak RSS of each command.
#
# Usage: scripts/measure-scale.sh [--memory-limit SIZE] [EVENTS ...]
#        (default: 1e6 1e7 1e8 events, the analyzer's default limit of 2GiB)
# Needs free disk of about 30 bytes per event under target/scale, and as
# much again under $TMPDIR when the leaks query's tables do not fit in the
# memory limit (they are then written there as Parquet and read back).
set -euo pipefail
cd "$(dirname "$0")/.."

limit=()
if [ "${1:-}" = "--memory-limit" ]; then
    limit=(--memory-limit "$2")
    shift 2
fi
sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then sizes=(1000000 10000000 100000000); fi
dir=target/scale
mkdir -p "$dir"
cargo build --release -q -p memscope-analyzer -p memscope-benches --bin memscope-analyze --bin memscope-synth
bin=target/release

# Runs a command; prints "WALL_SECONDS PEAK_RSS_BYTES" of it (a child
# process, so its own peak, from getrusage).
measure() {
    python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
run = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.monotonic() - start
if run.returncode != 0:
    sys.exit(f"{' '.join(sys.argv[1:])} failed ({run.returncode}): {run.stderr}")
print(f"{wall:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}")
PY
}

echo "| events | trace | Parquet | leaks: wall | leaks: events/s | leaks: peak RSS | convert: wall | convert: events/s | convert: peak RSS |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in "${sizes[@]}"; do
    trace="$dir/$n.trace"
    out="$dir/$n.parquet"
    [ -f "$trace" ] || "$bin/memscope-synth" "$n" 4 "$trace"
    events=$("$bin/memscope-analyze" "$trace" --sql "SELECT events FROM trace" --format csv | tail -1)
    read -r leaks_wall leaks_rss < <(measure "$bin/memscope-analyze" "$trace" --sql queries/leaks.sql --format csv "${limit[@]}")
    rm -rf "$out"
    read -r conv_wall conv_rss < <(measure "$bin/memscope-analyze" convert "$trace" -o "$out" --quiet "${limit[@]}")
    python3 - "$events" "$(stat -c %s "$trace")" "$(du -sb "$out" | cut -f1)" \
        "$leaks_wall" "$leaks_rss" "$conv_wall" "$conv_rss" <<'PY'
import sys
events, trace, parquet = map(int, sys.argv[1:4])
lw, lr, cw, cr = float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
mb = lambda b: f"{b / 1e6:,.0f} MB" if b >= 1e7 else f"{b / 1e6:,.1f} MB"
rate = lambda s: f"{events / s / 1e6:.1f} M" if s > 0 else "-"
print(f"| {events:,} | {mb(trace)} | {mb(parquet)} | {lw:.2f} s | {rate(lw)} | {mb(lr)} | {cw:.2f} s | {rate(cw)} | {mb(cr)} |")
PY
done
