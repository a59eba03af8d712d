#!/usr/bin/env bash
# Runs every test of the workspace, after installing what the tests need
# beyond cargo:
# - Chromium, which opens the HTML report in workload/tests/report.rs
#   (Debian's `chromium` package, through apt, when it is not on PATH and we
#   may install packages);
# - pyarrow, pandas, polars, DuckDB and matplotlib, which read our Parquet
#   in analyzer/tests/notebooks.rs (from PyPI, into target/py-venv).
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

if command -v python3 >/dev/null; then
    venv=target/py-venv
    if [ ! -x "$venv/bin/python" ]; then
        echo "== creating $venv (for the notebook reader tests)"
        python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/python-requirements.txt
    export MEMSCOPE_PYTHON="$PWD/$venv/bin/python"
    # From here on, a missing package is a failure, not a skip.
    export MEMSCOPE_REQUIRE_PYTHON=1
else
    echo "warning: python3 is missing; the notebook reader tests will say they skipped" >&2
fi

if [ $# -eq 0 ]; then set -- --workspace; fi
cargo test "$@"
