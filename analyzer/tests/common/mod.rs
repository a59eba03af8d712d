//! Helpers shared by the analyzer's tests: synthetic traces on disk, the
//! `memscope-analyze` binary, and query results as plain values.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use datafusion::arrow::array::Array;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use memscope_analyzer::query::{self, SqlSource};
use memscope_analyzer::{Input, load};
use memscope_schema::{Record, TraceWriter};

/// The workspace root (for `queries/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Path of a file in `queries/`.
pub fn query_file(name: &str) -> String {
    root().join("queries").join(name).to_string_lossy().into_owned()
}

/// A temporary directory, removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("memscope-analyzer-test").tempdir().unwrap()
}

/// Writes a synthetic trace built by `build` to `dir/name`.
pub fn write_trace(dir: &Path, name: &str, build: impl FnOnce(&mut TraceWriter)) -> PathBuf {
    let mut w = TraceWriter::synthetic();
    build(&mut w);
    let path = dir.join(name);
    std::fs::write(&path, w.finish()).unwrap();
    path
}

/// Shorthands for records on a synthetic clock in nanoseconds.
pub fn alloc(q: u64, address: u64, size: u64) -> Record<'static> {
    Record::Alloc { q, address, size, align: 8, zeroed: false }
}
/// See [`alloc`].
pub fn free(q: u64, address: u64) -> Record<'static> {
    Record::Free { q, address }
}
/// See [`alloc`].
pub fn realloc(q: u64, old_address: u64, address: u64, size: u64) -> Record<'static> {
    Record::Realloc { q, old_address, address, size, align: 8 }
}
/// See [`alloc`].
pub fn tag(q: u64, address: u64, type_name: u32, var_name: u32) -> Record<'static> {
    Record::Tag { q, address, type_name, var_name }
}

/// Runs the `memscope-analyze` binary.
pub fn analyze(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .args(args)
        .output()
        .expect("running memscope-analyze")
}

/// The rows of every result of `sql` (a file, built-in name or SQL text)
/// over the trace or dataset at `input`, each value formatted as text
/// ("" for NULL).
pub fn rows(input: &Path, sql: &str) -> Vec<Vec<String>> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let input = Input::open(input).unwrap();
        let ctx = input.session().await.unwrap();
        let source = SqlSource::resolve(sql, 1).unwrap();
        let results = query::run(&ctx, &source).await.unwrap();
        let mut out = Vec::new();
        for r in results {
            for b in &r.batches {
                let options = FormatOptions::default();
                let formatters: Vec<_> = b
                    .columns()
                    .iter()
                    .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                    .collect();
                for row in 0..b.num_rows() {
                    out.push(
                        formatters
                            .iter()
                            .zip(b.columns())
                            .map(|(f, c)| {
                                if c.is_null(row) {
                                    String::new()
                                } else {
                                    f.value(row).to_string()
                                }
                            })
                            .collect(),
                    );
                }
            }
        }
        out
    })
}

/// `rows` with each row joined by `|`, for compact comparisons.
pub fn lines(input: &Path, sql: &str) -> Vec<String> {
    rows(input, sql).into_iter().map(|r| r.join("|")).collect()
}

/// Loads a trace with the library.
pub fn loaded(path: &Path) -> memscope_analyzer::Loaded {
    load(path).unwrap()
}
