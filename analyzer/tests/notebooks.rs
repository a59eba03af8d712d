//! Parquet that notebooks read exactly: a `convert` dataset read back by
//! pyarrow, pandas (both backends), polars and DuckDB, and the notebook
//! example run on it.
//!
//! The Python packages come from `scripts/test.sh`, which installs them in
//! `target/py-venv` and sets `MEMSCOPE_PYTHON` and
//! `MEMSCOPE_REQUIRE_PYTHON`. Without a Python these tests say that they
//! skipped; with `MEMSCOPE_REQUIRE_PYTHON` set, a missing Python fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{alloc, analyze, free, realloc, root, tag, temp_dir, write_trace};
use memscope_schema::Record;

/// Addresses of the allocations, in allocation order: ordinary, just above
/// 2^53 (where float64 starts to round), just below 2^63 and above it.
const ADDRESSES: [u64; 5] =
    [0x1000, (1 << 53) + 1, 0x7fff_ffff_ffff_fff0, 0xffff_ffff_ffff_ff00, 0x2000];
const SIZES: [u64; 5] = [64, 4096, 24, 16, 200];
const TIMES: [u64; 5] = [1_000, 2_000, 3_000, 4_000, 5_500];
const TYPE_NAME: &str = "app::Größe<✓>";

/// The Python with pyarrow, pandas, polars, DuckDB and matplotlib, if any.
fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("MEMSCOPE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/py-venv/bin/python"));
    let works = Command::new(&candidate)
        .args(["-c", "import pyarrow, pandas, polars, duckdb, matplotlib"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("MEMSCOPE_REQUIRE_PYTHON").is_none(),
        "MEMSCOPE_REQUIRE_PYTHON is set but {} cannot import the notebook packages",
        candidate.display()
    );
    eprintln!(
        "skipped: no Python with pyarrow, pandas, polars, duckdb and matplotlib ({}); scripts/test.sh installs them",
        candidate.display()
    );
    None
}

/// A trace with the edge-case addresses, converted to a dataset.
fn dataset(dir: &Path) -> PathBuf {
    let trace = write_trace(dir, "notebook.trace", |w| {
        w.push(1, 11, &Record::String { id: 1, bytes: TYPE_NAME.as_bytes() });
        w.push(1, 11, &alloc(TIMES[0], ADDRESSES[0], SIZES[0]));
        w.push(1, 11, &tag(TIMES[0] + 1, ADDRESSES[0], 1, 0));
        w.push(2, 12, &alloc(TIMES[1], ADDRESSES[1], SIZES[1]));
        w.push(1, 11, &alloc(TIMES[2], ADDRESSES[2], SIZES[2]));
        w.push(2, 12, &alloc(TIMES[3], ADDRESSES[3], SIZES[3]));
        w.push(2, 12, &free(5_000, ADDRESSES[1]));
        w.push(1, 11, &realloc(TIMES[4], ADDRESSES[2], ADDRESSES[4], SIZES[4]));
        w.push(1, 11, &free(6_000, ADDRESSES[4]));
    });
    let out = dir.join("dataset");
    let run = analyze(&["convert", trace.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    out
}

fn run_python(python: &Path, args: &[&str]) -> String {
    let out = Command::new(python).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn every_reader_gets_the_dataset_back_exactly() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let dataset = dataset(dir.path());
    let query = dir.path().join("query.parquet");
    let run = analyze(&[
        dataset.to_str().unwrap(),
        "--sql",
        "SELECT type_name, address FROM allocations",
        "--format",
        "parquet",
        "-o",
        query.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let expected = serde_json::json!({
        "addresses": ADDRESSES,
        "sizes": SIZES,
        "alloc_ts_ns": TIMES,
        "type_names": [TYPE_NAME],
        "event_kinds": ["allocation", "deallocation", "reallocation", "tag"],
        "program": "synthetic",
    });
    let expected_path = dir.path().join("expected.json");
    std::fs::write(&expected_path, expected.to_string()).unwrap();
    let script = root().join("analyzer/tests/python/read_dataset.py");
    let stdout = run_python(
        &python,
        &[
            script.to_str().unwrap(),
            dataset.to_str().unwrap(),
            expected_path.to_str().unwrap(),
            query.to_str().unwrap(),
        ],
    );
    // Every check printed its line: the script did not stop early.
    for check in ["pandas default addresses", "polars filter above 2^63", "duckdb footer"] {
        assert!(stdout.contains(&format!("ok   {check}\n")), "{stdout}");
    }
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn the_notebook_example_runs_on_a_dataset() {
    let Some(python) = python() else { return };
    let dir = temp_dir();
    let dataset = dataset(dir.path());
    let plots = dir.path().join("plots");
    let script = root().join("examples/notebook.py");
    let stdout = run_python(
        &python,
        &[script.to_str().unwrap(), dataset.to_str().unwrap(), "--plots", plots.to_str().unwrap()],
    );
    // Live bytes peak at 4 000 ns, when all four first blocks are live:
    // 64 + 4096 + 24 + 16.
    for reader in ["pandas", "polars", "duckdb"] {
        assert!(stdout.contains(&format!("peak_bytes ({reader}): 4200\n")), "{stdout}");
    }
    // Leaked: the tagged block and the one above 2^63.
    assert!(stdout.contains(&format!("  {TYPE_NAME}: 1 allocations, 64 bytes\n")), "{stdout}");
    assert!(stdout.contains("  (unknown): 1 allocations, 16 bytes\n"), "{stdout}");
    for png in ["memory_over_time.png", "lifetime_histogram.png"] {
        let bytes = std::fs::read(plots.join(png)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"), "{png} is not a PNG");
        assert!(bytes.len() > 5_000, "{png} is nearly empty: {} bytes", bytes.len());
    }
}
