"""Reads a memscope dataset in pandas, polars and DuckDB and plots it.

A dataset is the directory that `memscope-analyze convert TRACE -o DIR`
writes: one zstd Parquet file per table. This script is meant to be read
and copied into a notebook, cell by cell; it also runs as a script, and the
test suite runs it (analyzer/tests/notebooks.rs):

    python examples/notebook.py DATASET_DIR [--plots OUT_DIR]

It prints the peak of live bytes computed three ways (pandas, polars,
DuckDB), the top leaks by type, and writes memory_over_time.png and
lifetime_histogram.png.

Reading the tables right:
- Addresses (`address`, `old_address`) are UInt64 and never NULL, so even
  pandas' default reader keeps them exact (a nullable UInt64 column would
  become float64 and round pointers above 2**53). Nullable id columns
  (`alloc_id` of events, `realloc_from`) do become float64 in default
  pandas; pass `dtype_backend="pyarrow"` to keep them integers.
- Times are Int64 nanoseconds since the trace started, in columns named
  `*_ns`; the wall-clock start is `trace.start_unix_ns` and the footer key
  `memscope.start_unix_ns`.
- Under sampling, each allocation row stands for `weight` allocations: sum
  `size * weight`, not `size`.
- DuckDB 2 relations have no `fetchone()`: use `fetchall()`, `.df()`,
  `.pl()` or `.to_arrow_table()`.
"""

import argparse
import sys
from pathlib import Path

import duckdb
import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import pandas as pd
import polars as pl


def load_pandas(dataset: Path) -> pd.DataFrame:
    """The allocations table in pandas, with Arrow-backed columns."""
    return pd.read_parquet(dataset / "allocations.parquet", dtype_backend="pyarrow")


def live_bytes_pandas(allocations: pd.DataFrame) -> pd.DataFrame:
    """Live bytes after every allocation and deallocation: (ts_ns, live_bytes)."""
    weighted = allocations["size"].astype("float64") * allocations["weight"]
    starts = pd.DataFrame({"ts_ns": allocations["alloc_ts_ns"], "delta": weighted})
    freed = allocations["free_ts_ns"].notna()
    ends = pd.DataFrame(
        {"ts_ns": allocations.loc[freed, "free_ts_ns"], "delta": -weighted[freed]}
    )
    steps = pd.concat([starts, ends]).groupby("ts_ns", sort=True)["delta"].sum()
    return pd.DataFrame({"ts_ns": steps.index, "live_bytes": steps.cumsum().to_numpy()})


def peak_polars(dataset: Path) -> float:
    """The peak of live bytes, computed with polars' lazy API."""
    a = pl.scan_parquet(dataset / "allocations.parquet")
    weighted = pl.col("size").cast(pl.Float64) * pl.col("weight")
    starts = a.select(pl.col("alloc_ts_ns").alias("ts_ns"), weighted.alias("delta"))
    ends = a.filter(pl.col("free_ts_ns").is_not_null()).select(
        pl.col("free_ts_ns").alias("ts_ns"), (-weighted).alias("delta")
    )
    return (
        pl.concat([starts, ends])
        .group_by("ts_ns")
        .agg(pl.col("delta").sum())
        .sort("ts_ns")
        .select(pl.col("delta").cum_sum().max())
        .collect()
        .item()
    )


def peak_duckdb(dataset: Path) -> float:
    """The peak of live bytes, computed in DuckDB SQL over the Parquet file."""
    path = str(dataset / "allocations.parquet").replace("'", "''")
    return duckdb.sql(
        f"""
        WITH a AS (SELECT * FROM read_parquet('{path}')),
        steps AS (
            SELECT alloc_ts_ns AS ts_ns, size * weight AS delta FROM a
            UNION ALL
            SELECT free_ts_ns, -(size * weight) FROM a WHERE free_ts_ns IS NOT NULL
        ),
        by_time AS (SELECT ts_ns, SUM(delta) AS delta FROM steps GROUP BY ts_ns)
        SELECT MAX(live) FROM (SELECT SUM(delta) OVER (ORDER BY ts_ns) AS live FROM by_time)
        """
    ).fetchall()[0][0]


def top_leaks_duckdb(dataset: Path, limit: int = 5) -> list:
    """Leaked bytes by type, largest first: [(type_name, count, bytes)]."""
    path = str(dataset / "allocations.parquet").replace("'", "''")
    return duckdb.sql(
        f"""
        SELECT COALESCE(type_name, '(unknown)') AS type_name,
               COUNT(*) AS leaked_allocations,
               SUM(size * weight) AS leaked_bytes
        FROM read_parquet('{path}')
        WHERE free_ts_ns IS NULL
        GROUP BY 1 ORDER BY leaked_bytes DESC, type_name LIMIT {limit}
        """
    ).fetchall()


def lifetime_histogram_polars(dataset: Path) -> pl.DataFrame:
    """Freed allocations by lifetime, in power-of-two buckets of nanoseconds."""
    return (
        pl.read_parquet(dataset / "allocations.parquet")
        .filter(pl.col("lifetime_ns").is_not_null())
        .with_columns(
            pl.col("lifetime_ns").clip(lower_bound=1).log(2).floor().cast(pl.Int64).alias("log2_ns")
        )
        .group_by("log2_ns")
        .agg(pl.len().alias("allocations"))
        .sort("log2_ns")
    )


def plot(live: pd.DataFrame, lifetimes: pl.DataFrame, out: Path) -> list:
    """Writes the two plots as PNG files in `out` and returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.step(live["ts_ns"].astype("float64") / 1e6, live["live_bytes"], where="post")
    ax.set_xlabel("time since start (ms)")
    ax.set_ylabel("live bytes")
    ax.set_title("Memory over time")
    memory = out / "memory_over_time.png"
    fig.tight_layout()
    fig.savefig(memory, dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.bar([f"2^{b}" for b in lifetimes["log2_ns"]], lifetimes["allocations"])
    ax.set_xlabel("lifetime (ns)")
    ax.set_ylabel("allocations")
    ax.set_title("Lifetime histogram")
    ax.tick_params(axis="x", labelrotation=90)
    histogram = out / "lifetime_histogram.png"
    fig.tight_layout()
    fig.savefig(histogram, dpi=100)
    plt.close(fig)
    return [memory, histogram]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="directory written by `memscope-analyze convert`")
    parser.add_argument("--plots", type=Path, default=None, help="where to write the PNG plots (default: the dataset)")
    args = parser.parse_args()

    allocations = load_pandas(args.dataset)
    live = live_bytes_pandas(allocations)
    peaks = {
        "pandas": float(live["live_bytes"].max()) if len(live) else 0.0,
        "polars": float(peak_polars(args.dataset) or 0.0),
        "duckdb": float(peak_duckdb(args.dataset) or 0.0),
    }
    for reader, peak in peaks.items():
        print(f"peak_bytes ({reader}): {peak:.0f}")
    if len({round(p) for p in peaks.values()}) != 1:
        print(f"error: the readers disagree on the peak: {peaks}", file=sys.stderr)
        return 1

    print("top leaks by type (DuckDB):")
    for type_name, count, leaked in top_leaks_duckdb(args.dataset):
        print(f"  {type_name}: {count} allocations, {leaked:.0f} bytes")

    for path in plot(live, lifetime_histogram_polars(args.dataset), args.plots or args.dataset):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
