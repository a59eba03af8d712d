//! Datasets partitioned by run: `convert --run ID` adds a trace as
//! `DIR/run=ID/`, SQL over DIR sees every run with a `run` column, and no
//! conversion touches another run.

mod common;

use std::path::Path;

use memscope_analyzer::datafusion::arrow::record_batch::RecordBatch;

use common::{alloc, analyze, free, temp_dir, write_trace};

/// A trace whose program leaked `leaked` bytes in one block and freed one
/// block of 10 bytes.
fn trace(dir: &Path, name: &str, leaked: u64) -> String {
    let path = write_trace(dir, name, |w| {
        w.push(1, 1, &alloc(10, 0x1000, leaked));
        w.push(1, 1, &alloc(20, 0x2000, 10));
        w.push(1, 1, &free(30, 0x2000));
    });
    path.to_str().unwrap().to_string()
}

fn convert(trace: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["convert", trace, "-o", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    analyze(&args)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn sql_compares_runs_and_no_run_is_rewritten() {
    let tmp = temp_dir();
    let runs = tmp.path().join("runs");
    let first = trace(tmp.path(), "first.trace", 100);
    let second = trace(tmp.path(), "second.trace", 250);
    for (t, id) in [(&first, "ci-101"), (&second, "ci-102")] {
        let out = convert(t, &runs, &["--run", id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let leaks = "SELECT run, SUM(size) AS leaked_bytes FROM allocations \
                 WHERE free_ts_ns IS NULL GROUP BY run ORDER BY run";
    let out = analyze(&[runs.to_str().unwrap(), "--sql", leaks, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "run,leaked_bytes\nci-101,100\nci-102,250\n");
    // Every table spans the runs.
    let out = analyze(&[
        runs.to_str().unwrap(),
        "--sql",
        "SELECT run, events FROM trace ORDER BY run",
        "--format",
        "csv",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "run,events\nci-101,3\nci-102,3\n");

    // Converting a run again needs --force and leaves the other run as it
    // was, byte for byte.
    let other = runs.join("run=ci-102/allocations.parquet");
    let before = std::fs::read(&other).unwrap();
    let third = trace(tmp.path(), "third.trace", 7);
    let out = convert(&third, &runs, &["--run", "ci-101"]);
    assert_eq!(out.status.code(), Some(73), "{}", stderr(&out));
    assert!(stderr(&out).contains("run=ci-101/"), "{}", stderr(&out));
    let out = convert(&third, &runs, &["--run", "ci-101", "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&other).unwrap(), before);
    let out = analyze(&[runs.to_str().unwrap(), "--sql", leaks, "--format", "csv"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "run,leaked_bytes\nci-101,7\nci-102,250\n");
}

#[test]
fn reports_read_one_run_and_layouts_do_not_mix() {
    let tmp = temp_dir();
    let runs = tmp.path().join("runs");
    let t = trace(tmp.path(), "t.trace", 100);
    for id in ["a", "b"] {
        assert!(convert(&t, &runs, &["--run", id]).status.success());
    }
    let out = analyze(&["report", runs.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "{}: holds 2 runs (a, b); `report` reads one: give one run's directory, such as {}",
            runs.display(),
            runs.join("run=a").display()
        )),
        "{}",
        stderr(&out)
    );
    let one = runs.join("run=a");
    let out = analyze(&["report", one.to_str().unwrap(), "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = analyze(&["diff", one.to_str().unwrap(), runs.join("run=b").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // One trace's tables and runs never share a directory.
    let out = convert(&t, &runs, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds runs (run=ID/); add this trace with --run ID"));
    let flat = tmp.path().join("flat");
    assert!(convert(&t, &flat, &[]).status.success());
    let out = convert(&t, &flat, &["--run", "c"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("holds the tables of one trace, not runs"));
    for bad in ["", "..", "a/b", "x=y"] {
        let out = convert(&t, &runs, &["--run", bad]);
        assert_eq!(out.status.code(), Some(2), "--run {bad:?}");
        assert!(stderr(&out).contains("a run ID is made of letters"), "{}", stderr(&out));
    }
}

/// Rewrites the Parquet file at `path` with its batches passed through
/// `change`, keeping their Arrow schema (column metadata included), with
/// `rows_per_group` rows per row group (or the writer's default).
fn rewrite_parquet(
    path: &Path,
    rows_per_group: Option<usize>,
    change: impl Fn(RecordBatch) -> RecordBatch,
) {
    use memscope_analyzer::datafusion::parquet::arrow::ArrowWriter;
    use memscope_analyzer::datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use memscope_analyzer::datafusion::parquet::file::properties::WriterProperties;

    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(|b| change(b.unwrap())).collect();
    let mut props = WriterProperties::builder();
    if let Some(rows) = rows_per_group {
        props = props.set_max_row_group_row_count(Some(rows));
    }
    let out = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(out, batches[0].schema(), Some(props.build())).unwrap();
    for b in &batches {
        writer.write(b).unwrap();
    }
    writer.close().unwrap();
}

/// The leaks query's filter, `free_ts_ns IS NULL`, skips the row groups
/// whose null count is 0 (DataFusion used to read every one: it cast the
/// columns of a schema it inferred without their metadata), in a dataset
/// and in one partitioned by run.
#[test]
fn null_counts_skip_row_groups() {
    let tmp = temp_dir();
    let one = tmp.path().join("one");
    let runs = tmp.path().join("runs");
    let t = trace(tmp.path(), "t.trace", 100);
    for (dir, extra) in [(&one, &[][..]), (&runs, &["--run", "r1"][..])] {
        let out = convert(&t, dir, extra);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    rewrite_parquet(&one.join("allocations.parquet"), Some(1), |b| b);
    rewrite_parquet(&runs.join("run=r1/allocations.parquet"), Some(1), |b| b);
    let sql = "EXPLAIN ANALYZE SELECT COUNT(*) FROM allocations WHERE free_ts_ns IS NULL";
    for dir in [&one, &runs] {
        let out = analyze(&[dir.to_str().unwrap(), "--sql", sql, "--format", "csv"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let plan = String::from_utf8_lossy(&out.stdout);
        // One block was freed, one leaked; the leaked one comes last.
        assert!(
            plan.contains("row_groups_pruned_statistics=2 total → 1 matched"),
            "{}: {plan}",
            dir.display()
        );
    }
    // Files of some of the table's columns (as a query's spilled tables
    // are) keep the table's schema for those, and still skip.
    rewrite_parquet(&one.join("allocations.parquet"), Some(1), |b| {
        let keep: Vec<usize> =
            (0..b.num_columns()).filter(|&i| b.schema().field(i).name() != "var_name").collect();
        b.project(&keep).unwrap()
    });
    let out = analyze(&[one.to_str().unwrap(), "--sql", sql, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plan = String::from_utf8_lossy(&out.stdout);
    assert!(plan.contains("row_groups_pruned_statistics=2 total → 1 matched"), "{plan}");
}

/// A table whose file lacks some of the analyzer's columns (here
/// `type_name`, as an older version or another tool may write) is read
/// with the columns of its file: they answer, and a column it lacks is an
/// error that names it, not a column of NULLs.
#[test]
fn files_of_another_schema_are_read_as_they_are() {
    let tmp = temp_dir();
    let dir = tmp.path().join("dataset");
    let t = trace(tmp.path(), "t.trace", 100);
    let out = convert(&t, &dir, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = dir.join("allocations.parquet");
    rewrite_parquet(&path, None, |b| {
        let keep: Vec<usize> =
            (0..b.num_columns()).filter(|&i| b.schema().field(i).name() != "type_name").collect();
        b.project(&keep).unwrap()
    });

    let d = dir.to_str().unwrap();
    let leaks = "SELECT SUM(size) AS leaked_bytes FROM allocations WHERE free_ts_ns IS NULL";
    let out = analyze(&[d, "--sql", leaks, "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "leaked_bytes\n100\n");
    let untyped = "SELECT COUNT(*) FROM allocations WHERE type_name IS NULL";
    let out = analyze(&[d, "--sql", untyped, "--format", "csv"]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr(&out).contains("type_name"), "{}", stderr(&out));
}
