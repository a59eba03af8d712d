//! The `memscope-analyze` command line: outputs, `convert`, `tables`, and
//! bad input, each with its message and exit code.

mod common;

use std::path::Path;

use common::*;
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
use datafusion::parquet::file::serialized_reader::ReadOptionsBuilder;
use memscope_analyzer::memory::MemoryLimit;
use memscope_analyzer::query::SqlSource;
use memscope_analyzer::reads::{self, Reads};
use memscope_analyzer::{Input, Source};
use memscope_schema::format::{FORMAT_MAJOR, FORMAT_MINOR};
use memscope_schema::tables::TABLES;

fn small_trace(dir: &Path) -> std::path::PathBuf {
    write_trace(dir, "small.trace", |w| {
        w.push(1, 1, &memscope_schema::Record::String { id: 1, bytes: b"app::Buf" });
        w.push(1, 1, &alloc(10, 0x1000, 100));
        w.push(1, 1, &tag(11, 0x1000, 1, 0));
        w.push(1, 1, &alloc(20, 0x2000, 50));
        w.push(1, 1, &free(30, 0x2000));
    })
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn prints_an_aligned_table_by_default() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let out = analyze(&[t.to_str().unwrap(), "--sql", &query_file("leaks.sql")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("| type_name | thread_id | thread_name | leaked_count | leaked_bytes |"),
        "{text}"
    );
    assert!(
        text.contains("| app::Buf  | 1         |             | 1            | 100          |"),
        "{text}"
    );
}

#[test]
fn csv_json_and_several_queries() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let t = t.to_str().unwrap();
    let out = analyze(&[
        t,
        "--sql",
        "SELECT size, free_ts_ns FROM allocations ORDER BY size",
        "--format",
        "csv",
    ]);
    assert_eq!(stdout(&out), "size,free_ts_ns\n50,30\n100,\n");
    let out = analyze(&[
        t,
        "--sql",
        "SELECT size FROM allocations WHERE size > 1000",
        "--format",
        "json",
    ]);
    assert_eq!(stdout(&out), "[]\n");
    // Several results in a table: each titled.
    let out = analyze(&[t, "--sql", "SELECT 1 AS one", "--sql", "leaks"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("-- query1 (1 rows)\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("\n-- leaks (1 rows)\n"));
    // Several results as CSV need a directory.
    let out = analyze(&[t, "--sql", "SELECT 1", "--sql", "SELECT 2", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("need --output DIR"), "{}", stderr(&out));
    let outdir = dir.path().join("results");
    let out = analyze(&[
        t,
        "--sql",
        "SELECT 1 AS a",
        "--sql",
        "leaks",
        "--format",
        "csv",
        "-o",
        outdir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(outdir.join("query1.csv")).unwrap(), "a\n1\n");
    assert!(
        std::fs::read_to_string(outdir.join("leaks.csv"))
            .unwrap()
            .starts_with("type_name,thread_id")
    );
}

#[test]
fn results_with_the_same_name_get_distinct_files() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    for sub in ["a", "b"] {
        std::fs::create_dir(dir.path().join(sub)).unwrap();
        std::fs::write(
            dir.path().join(sub).join("report.sql"),
            format!("SELECT '{sub}' AS source"),
        )
        .unwrap();
    }
    let outdir = dir.path().join("out");
    let a = dir.path().join("a/report.sql");
    let b = dir.path().join("b/report.sql");
    let out = analyze(&[
        t.to_str().unwrap(),
        "--sql",
        a.to_str().unwrap(),
        "--sql",
        b.to_str().unwrap(),
        "--format",
        "csv",
        "-o",
        outdir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(outdir.join("report.csv")).unwrap(), "source\na\n");
    assert_eq!(std::fs::read_to_string(outdir.join("report-2.csv")).unwrap(), "source\nb\n");
}

#[test]
fn a_file_with_several_statements_runs_them_in_order() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let sql = dir.path().join("two.sql");
    std::fs::write(&sql, "-- a view, then a query\nCREATE VIEW big AS SELECT * FROM allocations WHERE size > 60;\nSELECT count(*) AS n FROM big;\n")
        .unwrap();
    let out = analyze(&[t.to_str().unwrap(), "--sql", sql.to_str().unwrap(), "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "n\n1\n");
}

#[test]
fn output_files_are_never_overwritten_without_force() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let t = t.to_str().unwrap();
    let target = dir.path().join("out.csv");
    std::fs::write(&target, "precious").unwrap();
    let out =
        analyze(&[t, "--sql", "SELECT 1 AS a", "--format", "csv", "-o", target.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(73));
    assert!(
        stderr(&out).contains("already exists (use --force to replace it)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    let out = analyze(&[
        t,
        "--sql",
        "SELECT 1 AS a",
        "--format",
        "csv",
        "-o",
        target.to_str().unwrap(),
        "--force",
    ]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "a\n1\n");
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn parquet_needs_an_output_path() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let out = analyze(&[t.to_str().unwrap(), "--sql", "leaks", "--format", "parquet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--format parquet needs --output"), "{}", stderr(&out));
}

#[test]
fn convert_writes_parquet_that_answers_like_the_trace() {
    let dir = temp_dir();
    let t = reference_like(dir.path());
    let ds = dir.path().join("dataset");
    let out = analyze(&["convert", t.to_str().unwrap(), "-o", ds.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for table in TABLES {
        let path = ds.join(format!("{}.parquet", table.name));
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let meta = reader.metadata().file_metadata();
        let kv = meta.key_value_metadata().expect("footer metadata");
        let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
        assert_eq!(get("memscope.table").as_deref(), Some(table.name));
        assert_eq!(get("memscope.format_version"), Some(format!("{FORMAT_MAJOR}.{FORMAT_MINOR}")));
        assert_eq!(get("memscope.pid").as_deref(), Some("4242"));
        assert!(get("ARROW:schema").is_some(), "the Arrow schema is in the footer");
        let columns: Vec<&str> = meta.schema_descr().columns().iter().map(|c| c.name()).collect();
        assert_eq!(columns, table.columns.iter().map(|c| c.name).collect::<Vec<_>>());
    }
    // Page statistics (a column index) only where pages can be skipped:
    // on the ids and times that rise with the rows, not on sizes or
    // addresses. Every column keeps its row groups' statistics and can
    // still be read page by page (offset index).
    for (table, expected) in [
        ("allocations", &["alloc_id", "alloc_ts_ns", "free_ts_ns"][..]),
        ("events", &["event_id", "ts_ns"][..]),
    ] {
        let path = ds.join(format!("{table}.parquet"));
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let reader =
            SerializedFileReader::new_with_options(std::fs::File::open(&path).unwrap(), options)
                .unwrap();
        let meta = reader.metadata();
        let names: Vec<&str> =
            meta.file_metadata().schema_descr().columns().iter().map(|c| c.name()).collect();
        let indexed: Vec<&str> = names
            .iter()
            .zip(&meta.column_index().expect("a page index")[0])
            .filter(|(_, index)| !matches!(index, ColumnIndexMetaData::NONE))
            .map(|(name, _)| *name)
            .collect();
        assert_eq!(indexed, expected, "{table}");
        assert!(meta.row_group(0).columns().iter().all(|c| c.statistics().is_some()), "{table}");
        let offsets = &meta.offset_index().expect("an offset index")[0];
        assert_eq!(offsets.len(), names.len(), "{table}");
        assert!(offsets.iter().all(|o| !o.page_locations().is_empty()), "{table}");
    }
    for q in ["leaks.sql", "type_hotspots.sql", "lifetime_histogram.sql", "fragmentation.sql"] {
        assert_eq!(
            lines(&ds, &query_file(q)),
            lines(&t, &query_file(q)),
            "{q} differs between trace and Parquet"
        );
    }
    assert_eq!(
        lines(
            &ds,
            "SELECT arrow_typeof(a.type_name), arrow_typeof(a.address), arrow_typeof(e.ts_ns) \
             FROM allocations a JOIN events e ON e.alloc_id = a.alloc_id LIMIT 1"
        ),
        ["Dictionary(Int32, Utf8)|UInt64|Int64"]
    );
    // Converting again refuses to overwrite, and --force replaces.
    let out = analyze(&["convert", t.to_str().unwrap(), "-o", ds.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(73));
    let out = analyze(&["convert", t.to_str().unwrap(), "-o", ds.to_str().unwrap(), "--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The directory stands in for the trace on the command line.
    let out = analyze(&[ds.to_str().unwrap(), "--sql", "leaks", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A trace with leaks, frees, reallocations and tags on two threads.
fn reference_like(dir: &Path) -> std::path::PathBuf {
    write_trace(dir, "ref.trace", |w| {
        w.push(1, 1, &memscope_schema::Record::ThreadName { q: 0, name: b"main" });
        w.push(1, 1, &memscope_schema::Record::String { id: 1, bytes: b"app::A" });
        w.push(2, 2, &memscope_schema::Record::String { id: 2, bytes: b"app::B" });
        for i in 0..500u64 {
            let a = 0x10000 + i * 0x100;
            w.push(1, 1, &alloc(i * 10, a, 16 + i % 64));
            w.push(1, 1, &tag(i * 10, a, 1 + (i % 2) as u32, 0));
            if !i.is_multiple_of(3) {
                w.push(2, 2, &realloc(i * 10 + 5, a, a + 0x1_0000_0000, 100));
                w.push(2, 2, &free(i * 10 + 7 + i % 13, a + 0x1_0000_0000));
            }
        }
    })
}

#[test]
fn tables_lists_every_column() {
    let out = analyze(&["tables", "--format", "csv"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for t in TABLES {
        for c in t.columns {
            assert!(
                text.contains(&format!("{},{},", t.name, c.name)),
                "{}.{} missing",
                t.name,
                c.name
            );
        }
    }
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let out = analyze(&["tables", t.to_str().unwrap(), "--format", "csv"]);
    assert!(stdout(&out).contains("allocations,2,alloc_id,UInt64,false,"), "{}", stdout(&out));
}

#[test]
fn readme_documents_every_column() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for t in TABLES {
        assert!(
            readme.contains(&format!("### `{}`", t.name)),
            "README has no section for table {}",
            t.name
        );
        for c in t.columns {
            assert!(
                readme.contains(&format!("| `{}` |", c.name)),
                "README does not document {}.{}",
                t.name,
                c.name
            );
        }
    }
}

#[test]
fn missing_inputs() {
    let dir = temp_dir();
    let missing = dir.path().join("nope.trace");
    let out = analyze(&[missing.to_str().unwrap(), "--sql", "leaks"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        stderr(&out).contains(&format!("{}: no such file or directory", missing.display())),
        "{}",
        stderr(&out)
    );

    let t = small_trace(dir.path());
    let out = analyze(&[t.to_str().unwrap(), "--sql", "queries/no_such_query.sql"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(
        stderr(&out).contains("queries/no_such_query.sql: no such file or directory"),
        "{}",
        stderr(&out)
    );

    let out = analyze(&[t.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "--sql is required");
}

#[test]
fn sql_errors_name_the_file_and_line() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let sql = dir.path().join("broken.sql");
    std::fs::write(
        &sql,
        "-- first statement is fine\nSELECT 1;\n\nSELECT no_such_column\nFROM allocations;\n",
    )
    .unwrap();
    let out = analyze(&[t.to_str().unwrap(), "--sql", sql.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains(&format!("{}:4:", sql.display())), "{err}");
    assert!(err.contains("no_such_column"), "{err}");

    std::fs::write(&sql, "SELECT 1;\nSELEC oops FROM allocations;\n").unwrap();
    let out = analyze(&[t.to_str().unwrap(), "--sql", sql.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&format!("{}:2:", sql.display())), "{}", stderr(&out));

    let out = analyze(&[t.to_str().unwrap(), "--sql", "SELECT * FROM nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--sql #1, line 1: "), "{}", stderr(&out));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));
}

#[test]
fn unfinished_trace_warns_but_succeeds() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "crashed.trace", |w| {
        w.header_mut().flags = 0;
        w.push(1, 1, &alloc(10, 0x100, 8));
    });
    let out = analyze(&[t.to_str().unwrap(), "--sql", "leaks", "--format", "csv"]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("trace not finished: 1 events recovered"), "{}", stderr(&out));
    let out = analyze(&[t.to_str().unwrap(), "--sql", "leaks", "-q"]);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

#[test]
fn ctrl_c_stops_a_long_query_and_leaves_no_file() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .args([t.to_str().unwrap(), "--sql", "SELECT count(*) AS n FROM range(100000000000)", "-o"])
        .arg(out_dir.join("n.csv"))
        .args(["--format", "csv"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: kill(2) on our own child's pid, which has not been reaped.
    let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(sent, 0);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("memscope-analyze: interrupted"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&out_dir).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn progress_shows_on_a_terminal_only() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let bin = env!("CARGO_BIN_EXE_memscope-analyze");
    let command = format!("{bin} {} --sql leaks", t.display());
    // `script` (util-linux, in every Debian) runs the command on a pseudo
    // terminal and copies what it printed there.
    let on_tty = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("running script(1)");
    assert!(on_tty.status.success(), "{}", String::from_utf8_lossy(&on_tty.stderr));
    let screen = String::from_utf8_lossy(&on_tty.stdout);
    assert!(screen.contains(&format!("decoding {}", t.display())), "{screen}");
    assert!(screen.contains("running built-in query leaks.sql"), "{screen}");
    assert!(screen.contains("| app::Buf "), "the result follows: {screen}");

    let piped = analyze(&[t.to_str().unwrap(), "--sql", "leaks"]);
    assert!(piped.status.success());
    assert_eq!(stderr(&piped), "", "nothing on stderr when it is not a terminal");
}

#[test]
fn timing_names_each_query_with_its_rows() {
    let dir = temp_dir();
    let t = small_trace(dir.path());
    let out = analyze(&[t.to_str().unwrap(), "--sql", "leaks", "--sql", "SELECT 1", "--timing"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    let shape =
        regex::Regex::new(r"^memscope-analyze: timing: (leaks|query2): \d+\.\d ms \(1 rows\)$")
            .unwrap();
    assert!(lines.iter().all(|l| shape.is_match(l)), "{err}");
    assert!(lines[0].contains(": leaks: ") && lines[1].contains(": query2: "), "{err}");
}

/// A trace of 2 threads and about `events` events, with addresses reused
/// across threads, reallocations, tags and leaks.
fn busy_trace(dir: &Path, events: u64) -> std::path::PathBuf {
    write_trace(dir, "busy.trace", |w| {
        w.push(1, 1, &memscope_schema::Record::String { id: 1, bytes: b"app::Node" });
        let mut q = 0;
        for i in 0..events / 4 {
            let t = 1 + (i % 2) as u32;
            let leaked = i % 1000 == 0;
            let address = if leaked { 0x4000_0000 + i * 64 } else { 0x10_0000 + (i % 5000) * 64 };
            q += 7;
            w.push(t, t, &alloc(q, address, 16 + i % 40));
            if i % 3 == 0 {
                w.push(t, t, &tag(q + 1, address, 1, 0));
            }
            if i % 11 == 0 {
                let moved = 0x90_0000 + (i % 5000) * 128;
                w.push(t, t, &realloc(q + 2, address, moved, 100));
                w.push(t, t, &free(q + 3, moved));
            } else if !leaked {
                w.push(t, t, &free(q + 3, address));
            }
            if i % 997 == 5 {
                // Never allocated in the trace: an anomaly.
                w.push(t, t, &free(q + 4, 0x7000_0000 + i));
            }
        }
    })
}

#[test]
fn a_trace_over_the_memory_limit_is_queried_from_disk_with_the_same_answers() {
    let dir = temp_dir();
    let t = busy_trace(dir.path(), 800_000);
    let t = t.to_str().unwrap();
    let spill = dir.path().join("tmp");
    std::fs::create_dir(&spill).unwrap();
    // What the leaks and lifetime queries read fits in memory whatever
    // the limit; the third reads every column of `events` but `event_id`,
    // which does not fit in 64 MiB; the last every column of `allocations`
    // but `address`.
    let queries = [
        "leaks",
        "lifetime_histogram",
        "SELECT kind, count(*) AS n, sum(size) AS bytes, sum(align) AS align, min(ts_ns) AS first, \
         count(DISTINCT thread_id) AS threads, sum(address % 4096) AS a, \
         sum(old_address % 4096) AS o, count(alloc_id) AS ids FROM events GROUP BY kind ORDER BY kind",
        "SELECT kind, count(*) AS n FROM anomalies GROUP BY kind ORDER BY kind",
        "SELECT type_source, count(*) AS n, sum(size) AS bytes, sum(align) AS align, \
         count(free_ts_ns) AS freed, sum(lifetime_ns) AS life, count(DISTINCT alloc_thread_id) AS t, \
         count(free_thread_id) AS f, count(type_name) AS ty, count(var_name) AS v, \
         count(realloc_from) AS rf, count(realloc_to) AS rt, sum(CAST(zeroed AS INT)) AS z, \
         sum(weight) AS w, count(stack_id) AS s, count(call_site) AS cs, \
         count(call_site_file) AS csf, sum(call_site_line) AS csl, min(alloc_ts_ns) AS first, \
         max(alloc_id) AS last FROM allocations GROUP BY type_source ORDER BY type_source",
    ];
    for sql in queries {
        let in_memory = analyze(&[t, "--sql", sql, "--format", "csv"]);
        assert!(in_memory.status.success(), "{}", stderr(&in_memory));
        let on_disk = std::process::Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
            .args([t, "--sql", sql, "--format", "csv", "--memory-limit", "64MiB"])
            .env("TMPDIR", &spill)
            .output()
            .unwrap();
        assert!(on_disk.status.success(), "{}", stderr(&on_disk));
        assert_eq!(stderr(&on_disk), "", "quiet when stderr is not a terminal");
        assert_eq!(stdout(&on_disk), stdout(&in_memory), "{sql}");
        assert!(stdout(&in_memory).lines().count() > 1, "{sql}: {}", stdout(&in_memory));
        let left: Vec<_> = std::fs::read_dir(&spill).unwrap().collect();
        assert!(left.is_empty(), "temporary files are removed: {left:?}");
    }
    // About 500 000 events, 220 000 of them allocations: either big table
    // whole takes more than two fifths of 64 MiB, so it is written to
    // $TMPDIR; what the leaks query reads of them is kept in memory.
    let limit = MemoryLimit::parse("64MiB").unwrap();
    let reads_of = |sql: &str| {
        let source = SqlSource::resolve(sql, 1).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(reads::plan(&[source])).expect("plans")
    };
    let spilled = [Reads::all(), reads_of(queries[2])];
    for reads in spilled {
        let input = Input::open_within(Path::new(t), limit, reads.clone()).unwrap();
        assert!(matches!(input.source(), Source::Spilled { .. }), "{reads:?}");
    }
    for sql in ["leaks", "lifetime_histogram", "SELECT * FROM threads"] {
        let input = Input::open_within(Path::new(t), limit, reads_of(sql)).unwrap();
        assert!(matches!(input.source(), Source::Trace(_)), "{sql}");
    }
    let whole = Input::open(Path::new(t)).unwrap();
    assert!(matches!(whole.source(), Source::Trace(_)));

    let out = analyze(&[t, "--sql", "leaks", "--memory-limit", "1MiB"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--memory-limit \"1MiB\": give a size such as 2GiB"),
        "{}",
        stderr(&out)
    );
}

/// Building only what the SQL reads of the big tables (`reads::plan`)
/// gives the answers of the whole tables, whatever the SQL: filters joined
/// by OR across reads, views, tables made by the script, joins,
/// subqueries, NULLs, limits.
#[test]
fn reading_only_what_the_sql_reads_gives_the_same_answers() {
    let dir = temp_dir();
    let t = busy_trace(dir.path(), 200_000);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answer = |input: &Input, source: &SqlSource| {
        runtime.block_on(async {
            let ctx = input.session().await.unwrap();
            let results = memscope_analyzer::query::run(&ctx, source).await.unwrap();
            results
                .iter()
                .map(|r| {
                    datafusion::arrow::util::pretty::pretty_format_batches(&r.batches)
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
    };
    let whole = Input::open(&t).unwrap();
    let mut sqls: Vec<String> = memscope_analyzer::query::BUILTIN_QUERIES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    sqls.extend(
        [
            "SELECT COUNT(*) AS n FROM allocations",
            "SELECT alloc_id, size FROM allocations WHERE size > 100 OR type_name IS NOT NULL \
             ORDER BY alloc_id LIMIT 20",
            "SELECT COUNT(*) AS n, SUM(size) AS bytes FROM allocations WHERE NOT (free_ts_ns IS NULL) \
             AND lifetime_ns BETWEEN 1 AND 100000",
            "CREATE VIEW big AS SELECT * FROM allocations WHERE size >= 512; \
             SELECT (SELECT COUNT(*) FROM big) AS big, \
                    (SELECT COUNT(*) FROM allocations WHERE alloc_thread_id = 2) AS second",
            "CREATE TABLE leaked AS SELECT alloc_id, size FROM allocations WHERE free_ts_ns IS NULL; \
             SELECT COUNT(*) AS n, SUM(size) AS bytes FROM leaked",
            "SELECT e.kind, COUNT(*) AS n, SUM(a.size) AS bytes FROM events e \
             JOIN allocations a ON a.alloc_id = e.alloc_id \
             WHERE e.kind = 'deallocation' AND a.free_ts_ns IS NOT NULL GROUP BY e.kind",
            "SELECT COUNT(*) AS n FROM allocations WHERE size > (SELECT AVG(size) FROM allocations)",
            "SELECT kind, COUNT(*) AS n FROM anomalies WHERE address > 0 GROUP BY kind ORDER BY kind",
            "SELECT event_id, ts_ns, size FROM events WHERE size IS NULL OR size = 0 \
             ORDER BY event_id LIMIT 10",
            "SELECT COUNT(*) AS n FROM allocations WHERE CASE WHEN size > 64 THEN type_name \
             ELSE var_name END IS NULL",
            // Columns that plans drop are still there to plan against.
            "WITH a AS (SELECT alloc_id, size, type_name FROM allocations) \
             SELECT COUNT(alloc_id) AS n FROM a",
            "SELECT n FROM (SELECT COUNT(*) AS n, SUM(size) AS b FROM allocations)",
            "CREATE VIEW v AS SELECT size, weight FROM allocations; SELECT SUM(size) AS s FROM v",
            "CREATE VIEW w AS SELECT * FROM events; SELECT COUNT(*) AS n FROM allocations",
            "SELECT (SELECT COUNT(*) FROM (SELECT * FROM events LIMIT 0)) AS none, \
             (SELECT COUNT(*) FROM anomalies WHERE false) AS no, COUNT(*) AS n FROM allocations",
            // What cannot be told builds everything.
            "SELECT COUNT(*) AS big FROM allocations WHERE size > 4096; \
             PREPARE p AS SELECT COUNT(*) AS n FROM allocations; EXECUTE p",
            // A table of the script under one of our names is not ours.
            "CREATE OR REPLACE TABLE anomalies AS SELECT * FROM allocations WHERE size > 8; \
             SELECT COUNT(weight) AS n, SUM(address % 7) AS a FROM anomalies",
            "SELECT COUNT(*) AS n FROM allocations WHERE alloc_ts_ns < to_unixtime(now())",
            "SELECT COUNT(*) AS big FROM allocations WHERE size > 4096; \
             CREATE TABLE IF NOT EXISTS allocations AS SELECT 1 AS x; \
             SELECT COUNT(*) AS n FROM allocations",
        ]
        .map(String::from),
    );
    for (i, sql) in sqls.iter().enumerate() {
        let source = SqlSource::resolve(sql, i + 1).unwrap();
        let reads =
            runtime.block_on(reads::plan(std::slice::from_ref(&source))).unwrap_or_else(Reads::all);
        let cut = Input::open_within(&t, MemoryLimit::default(), reads.clone()).unwrap();
        let expected = answer(&whole, &source);
        assert!(expected.iter().any(|a| a.lines().count() >= 4), "{sql}: {expected:?}");
        assert_eq!(answer(&cut, &source), expected, "{sql}\n{reads:?}");
    }
}

/// The first pass counts each block's events without keeping them, and
/// its counts and the block's other records are what a full decode gives.
#[test]
fn counting_a_block_agrees_with_decoding_it() {
    use memscope_analyzer::decode::{BlockEvents, TraceFile, kind};
    let dir = temp_dir();
    let path = busy_trace(dir.path(), 40_000);
    let trace = TraceFile::open(&path).unwrap();
    let layout = trace.layout();
    let mut blocks = 0;
    for i in 0..layout.count {
        let range = layout.block(i);
        let offset = range.start as u64;
        let bytes = &trace.bytes()[range];
        let full = BlockEvents::decode(bytes, offset).unwrap();
        let counted = BlockEvents::decode_counting(bytes, offset).unwrap();
        let (Some(full), Some((block, counts))) = (full, counted) else {
            panic!("block {i}: one decode found it unused");
        };
        assert!(block.is_empty() && block.tags.is_empty());
        assert_eq!(
            (block.thread_id, block.seq, &block.strings),
            (full.thread_id, full.seq, &full.strings)
        );
        assert_eq!(counts.events, full.len() as u64);
        assert_eq!(counts.first_q, full.q.first().copied());
        assert_eq!(counts.max_q, full.q.iter().copied().max().unwrap_or(0));
        let allocating = |k: &&u8| **k == kind::ALLOCATION || **k == kind::REALLOCATION;
        assert_eq!(counts.allocations, full.kind.iter().filter(allocating).count() as u64);
        assert_eq!(counts.tags, full.tags.len() as u64);
        assert_eq!(counts.allocated_bytes, full.allocated_bytes());
        blocks += 1;
    }
    assert!(blocks > 1, "the trace spans several blocks");
}
