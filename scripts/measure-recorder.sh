#!/usr/bin/env bash
# Measures the recorder's overhead: the allocbench workload under System,
# memscope's TrackingAllocator<System> and dhat-rs, 1 and 2 threads, small
# and default size mixes. Prints a markdown table (see README "Recorder
# overhead"). Options go to the driver: --runs N --dhat-runs N --allocs N.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p memscope-allocbench --bins
exec target/release/overhead "$@"
