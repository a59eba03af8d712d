"""Times memscope's standard queries over a `convert` dataset against DuckDB
over the same Parquet files, side by side, in one run.

    target/py-venv/bin/python scripts/compare-duckdb.py DATASET_DIR [--runs N]

For each of the built-in queries leaks, lifetime_histogram and
type_hotspots (the files in queries/, run unchanged by both engines), it
prints the best of N wall times of planning and running the query:
memscope's from `memscope-analyze DIR --sql NAME --timing` (the release
binary, built first; the time excludes process start and table
registration) and DuckDB's from its Python API in this process, after
views named like our tables were created over the same files. Both use
every core. The row counts of the two answers must match.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["leaks", "lifetime_histogram", "type_hotspots"]


def memscope_ms(binary: Path, dataset: Path, query: str) -> tuple[float, int]:
    out = subprocess.run(
        [binary, dataset, "--sql", query, "--timing", "--quiet", "--format", "csv"],
        check=True,
        capture_output=True,
        text=True,
    )
    m = re.search(r"timing: \S+: ([0-9.]+) ms \((\d+) rows\)", out.stderr)
    if not m:
        sys.exit(f"no timing line from memscope-analyze: {out.stderr}")
    return float(m.group(1)), int(m.group(2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "memscope-analyzer", "--bin", "memscope-analyze"],
        check=True,
        cwd=ROOT,
    )
    binary = ROOT / "target/release/memscope-analyze"

    con = duckdb.connect()
    for table in sorted(args.dataset.glob("*.parquet")):
        path = str(table).replace("'", "''")
        con.execute(f"CREATE VIEW {table.stem} AS SELECT * FROM read_parquet('{path}')")

    print(f"dataset: {args.dataset} (best of {args.runs})")
    print("| query | rows | memscope | DuckDB | memscope / DuckDB |")
    print("|---|---:|---:|---:|---:|")
    for name in QUERIES:
        sql = (ROOT / "queries" / f"{name}.sql").read_text()
        ours, ours_rows = min(memscope_ms(binary, args.dataset, name) for _ in range(args.runs))
        theirs = float("inf")
        for _ in range(args.runs):
            start = time.perf_counter()
            rows = con.sql(sql).fetchall()
            theirs = min(theirs, (time.perf_counter() - start) * 1e3)
        if len(rows) != ours_rows:
            print(f"error: {name}: memscope returned {ours_rows} rows, DuckDB {len(rows)}", file=sys.stderr)
            return 1
        print(f"| {name} | {ours_rows} | {ours:.0f} ms | {theirs:.0f} ms | {ours / theirs:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
