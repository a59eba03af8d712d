#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need
# beyond cargo: Chromium, which opens the HTML report in
# workload/tests/report.rs (Debian's `chromium` package, through apt, when
# it is not on PATH and we may install packages).
#
# Usage: scripts/test.sh [cargo test options, e.g. -p memscope-analyzer]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
    sudo=""
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo="sudo"; fi
    if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
        echo "== installing chromium (for the HTML report test)"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
    else
        echo "warning: chromium is missing and cannot be installed here (not root, no sudo); the HTML report test will say it skipped" >&2
    fi
fi
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    # From here on, a missing browser is a failure, not a skip.
    export MEMSCOPE_REQUIRE_BROWSER=1
fi

if [ $# -eq 0 ]; then set -- --workspace; fi
cargo test "$@"
