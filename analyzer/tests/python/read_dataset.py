"""Checks that every notebook reader gets a memscope dataset back exactly.

Run by analyzer/tests/notebooks.rs:

    python read_dataset.py DATASET_DIR EXPECTED_JSON QUERY_PARQUET

EXPECTED_JSON holds what the Rust test wrote into the trace: the
allocations' addresses, sizes and timestamps in allocation order, the type
names and the program. QUERY_PARQUET is `--format parquet` output of a
query over the dataset. Prints one line per check; exits 1 on the first
mismatch.
"""

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq


def check(name, actual, expected):
    if actual != expected:
        print(f"FAIL {name}: expected {expected!r}, got {actual!r}")
        sys.exit(1)
    print(f"ok   {name}")


def main():
    dataset, expected_path, query_parquet = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    expected = json.loads(expected_path.read_text())
    allocations = dataset / "allocations.parquet"
    addresses = expected["addresses"]

    # pyarrow: types, footer, layout, for every table.
    for table in sorted(dataset.glob("*.parquet")):
        schema = pq.read_schema(table)
        views = [f.name for f in schema if f.type in (pa.string_view(), pa.binary_view())]
        check(f"pyarrow {table.name}: no string_view columns", views, [])
        meta = pq.read_metadata(table)
        keys = set(meta.metadata or {})
        check(f"pyarrow {table.name}: ARROW:schema in the footer", b"ARROW:schema" in keys, True)
        check(f"pyarrow {table.name}: trace header in the footer", b"memscope.format_version" in keys, True)
        if meta.num_row_groups:
            codecs = {meta.row_group(0).column(i).compression for i in range(meta.num_columns)}
            check(f"pyarrow {table.name}: zstd", codecs, {"ZSTD"})
    schema = pq.read_schema(allocations)
    check("pyarrow address type", schema.field("address").type, pa.uint64())
    check("pyarrow alloc_ts_ns type", schema.field("alloc_ts_ns").type, pa.int64())
    footer = pq.read_metadata(allocations).metadata
    check("pyarrow memscope.program", footer[b"memscope.program"].decode(), expected["program"])
    column = list(schema.names).index("alloc_ts_ns")
    encodings = pq.read_metadata(allocations).row_group(0).column(column).encodings
    check("pyarrow alloc_ts_ns is delta-encoded", "DELTA_BINARY_PACKED" in encodings, True)
    table = pq.read_table(allocations).sort_by("alloc_id")
    check("pyarrow addresses", table["address"].to_pylist(), addresses)

    # pandas, default (NumPy) backend: the pointer column must stay uint64.
    df = pd.read_parquet(allocations).sort_values("alloc_id")
    check("pandas default address dtype", str(df["address"].dtype), "uint64")
    check("pandas default addresses", [int(a) for a in df["address"]], addresses)
    check("pandas default alloc_ts_ns dtype", str(df["alloc_ts_ns"].dtype), "int64")
    check("pandas default alloc_ts_ns", [int(t) for t in df["alloc_ts_ns"]], expected["alloc_ts_ns"])
    check("pandas default sizes", [int(s) for s in df["size"]], expected["sizes"])
    names = sorted({n for n in df["type_name"] if isinstance(n, str)})
    check("pandas default type names", names, expected["type_names"])

    # pandas with Arrow-backed columns: nullable integers stay integers.
    df = pd.read_parquet(allocations, dtype_backend="pyarrow").sort_values("alloc_id")
    check("pandas pyarrow address dtype", str(df["address"].dtype), "uint64[pyarrow]")
    check("pandas pyarrow addresses", [int(a) for a in df["address"]], addresses)
    events = pd.read_parquet(dataset / "events.parquet", dtype_backend="pyarrow")
    check("pandas pyarrow events.alloc_id dtype", str(events["alloc_id"].dtype), "uint64[pyarrow]")
    check(
        "pandas pyarrow events: type names compare",
        sorted(events["kind"].astype(str).unique().tolist()),
        sorted(expected["event_kinds"]),
    )

    # polars.
    pf = pl.read_parquet(allocations).sort("alloc_id")
    check("polars address dtype", pf.schema["address"], pl.UInt64)
    check("polars addresses", pf["address"].to_list(), addresses)
    check("polars filter above 2^63", pf.filter(pl.col("address") > 2**63).height, sum(a > 2**63 for a in addresses))
    check("polars footer", pl.read_parquet_metadata(allocations)["memscope.program"], expected["program"])

    # DuckDB.
    path = str(allocations).replace("'", "''")
    rows = duckdb.sql(f"SELECT address FROM read_parquet('{path}') ORDER BY alloc_id").fetchall()
    check("duckdb addresses", [r[0] for r in rows], addresses)
    hex_rows = duckdb.sql(f"SELECT printf('0x%x', address) FROM read_parquet('{path}') ORDER BY alloc_id").fetchall()
    check("duckdb hex addresses", [r[0] for r in hex_rows], [hex(a) for a in addresses])
    kv = duckdb.sql(
        f"SELECT decode(value) FROM parquet_kv_metadata('{path}') WHERE decode(key) = 'memscope.program'"
    ).fetchall()
    check("duckdb footer", [r[0] for r in kv], [expected["program"]])

    # A query's Parquet output (DataFusion reads the dataset with view types).
    schema = pq.read_schema(query_parquet)
    views = [f.name for f in schema if f.type in (pa.string_view(), pa.binary_view())]
    check("query output: no string_view columns", views, [])
    q = pd.read_parquet(query_parquet)
    check("query output: pandas addresses", sorted(int(a) for a in q["address"]), sorted(addresses))
    check(
        "query output: pandas type names compare",
        sorted(q["type_name"].dropna().unique().tolist()),
        expected["type_names"],
    )


if __name__ == "__main__":
    main()
