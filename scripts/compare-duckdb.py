"""Times memscope's standard queries over a `convert` dataset against DuckDB
over the same Parquet files, side by side, in one run.

    target/py-venv/bin/python scripts/compare-duckdb.py DATASET_DIR [--runs N] [--query NAME]... [--trace TRACE]

For each of the built-in queries leaks, lifetime_histogram and
type_hotspots (the files in queries/, run unchanged by both engines), it
prints the best of N wall times of planning and running the query, the
two engines taking turns:
memscope's from `memscope-analyze DIR --sql NAME --timing` (the release
binary, built first; the time excludes process start and table
registration) and DuckDB's from its Python API in this process, after
views named like our tables were created over the same files. Both use
every core. The row counts of the two answers must match. `--query NAME`
(repeatable) times only the queries named.

With `--trace TRACE` (the trace DATASET_DIR was converted from), it also
times `memscope-analyze convert TRACE` (the whole process: decoding,
pairing and Parquet encoding) against DuckDB writing the same rows of the
two big tables, `events` and `allocations`, as zstd Parquet (level 1,
row groups of 2^20 rows, as `convert` writes them) from tables it already
holds in memory: encoding alone, the part of `convert` no decoder or
pairing can shorten.
"""

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from turns import alternate

ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["leaks", "lifetime_histogram", "type_hotspots"]
# The tables whose encoding `convert` spends its time on.
BIG_TABLES = ["events", "allocations"]


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
    parser.add_argument(
        "--query", action="append", choices=QUERIES, help="time only this query (repeatable)"
    )
    parser.add_argument("--trace", type=Path, help="also compare `convert` of this trace")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

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
    for name in args.query or QUERIES:
        sql = (ROOT / "queries" / f"{name}.sql").read_text()
        ours_ms, theirs_ms, rows = [], [], {}

        def ours():
            ms, rows["memscope"] = memscope_ms(binary, args.dataset, name)
            ours_ms.append(ms)

        def theirs():
            start = time.perf_counter()
            rows["DuckDB"] = len(con.sql(sql).fetchall())
            theirs_ms.append((time.perf_counter() - start) * 1e3)

        alternate(args.runs, ours, theirs)
        if rows["memscope"] != rows["DuckDB"]:
            counts = f"memscope returned {rows['memscope']} rows, DuckDB {rows['DuckDB']}"
            print(f"error: {name}: {counts}", file=sys.stderr)
            return 1
        a, b = min(ours_ms), min(theirs_ms)
        print(f"| {name} | {rows['memscope']} | {a:.0f} ms | {b:.0f} ms | {a / b:.2f} |")
    if args.trace:
        compare_convert(binary, args.trace, con, args.runs)
    return 0


def compare_convert(binary: Path, trace: Path, con: duckdb.DuckDBPyConnection, runs: int) -> None:
    """Prints the best of `runs` wall times (taking turns) of converting
    `trace` with memscope and of DuckDB encoding the dataset's `events` and
    `allocations` (the views of `con`) from memory, in events per second
    of the trace."""
    events = con.sql("SELECT count(*) FROM events").fetchall()[0][0]
    con.execute("CREATE TABLE mem_events AS SELECT * FROM events")
    con.execute("CREATE TABLE mem_allocations AS SELECT * FROM allocations")
    scratch = Path(tempfile.mkdtemp(prefix="memscope-compare-"))
    try:
        out = scratch / "memscope"
        ours_s, theirs_s = [], []

        def ours():
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            run = subprocess.run(
                [binary, "convert", trace, "-o", out, "--quiet"], capture_output=True, text=True
            )
            if run.returncode != 0:
                sys.exit(f"memscope-analyze convert failed ({run.returncode}): {run.stderr}")
            ours_s.append(time.perf_counter() - start)

        def theirs():
            start = time.perf_counter()
            for table in BIG_TABLES:
                path = str(scratch / f"duckdb-{table}.parquet").replace("'", "''")
                con.execute(
                    f"COPY mem_{table} TO '{path}' (FORMAT parquet, COMPRESSION zstd, "
                    "COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 1048576)"
                )
            theirs_s.append(time.perf_counter() - start)

        alternate(runs, ours, theirs)
        ours_bytes = sum((out / f"{t}.parquet").stat().st_size for t in BIG_TABLES)
        theirs_bytes = sum((scratch / f"duckdb-{t}.parquet").stat().st_size for t in BIG_TABLES)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(f"convert: {trace}, {events:,} events (best of {runs})")
    print("| work | wall | events/s | events + allocations files |")
    print("|---|---:|---:|---:|")
    for work, wall, size in [
        ("memscope convert: decode, pair, encode every table", min(ours_s), ours_bytes),
        ("DuckDB: encode events and allocations from memory", min(theirs_s), theirs_bytes),
    ]:
        print(f"| {work} | {wall:.2f} s | {events / wall / 1e6:.1f} M | {size / 1e6:,.0f} MB |")


if __name__ == "__main__":
    sys.exit(main())
