//! `report` and `diff` through the binary, on a synthetic trace whose every
//! figure is known: each budget form, each output format (JSON against its
//! schema, JUnit parsed, Markdown as a snapshot), exit codes, budgets files
//! and baselines.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use memscope_schema::{Record, Totals, TraceWriter};

/// One thread "main"; times in ns:
///
/// | t   | event                              | live bytes |
/// |-----|------------------------------------|-----------:|
/// | 100 | A = 1000 B at 0x1000, `app::Foo`   | 1000 |
/// | 200 | B = 3000 B at 0x2000               | 4000 (peak) |
/// | 250 | free B (before the next allocation: temporary) | 1000 |
/// | 300 | C = 500 B at 0x3000                | 1500 |
/// | 400 | C reallocated to D = 800 B at 0x4000 | 1800 |
/// | 500 | free A (lifetime 400 ns)           | 800 |
/// | 600 | E = 64 B at 0x5000, `app::Bar`     | 864 |
///
/// D and E leak: 864 bytes in 2 allocations. 5 allocations of 5364 bytes,
/// 1 reallocation.
fn synthetic(w: &mut TraceWriter, e_size: u64) {
    let main = |w: &mut TraceWriter, r: Record<'_>| w.push(1, 100, &r);
    main(w, Record::ThreadName { q: 0, name: b"main" });
    for (id, s) in [(1, "app::Foo"), (2, "foo"), (3, "app::Bar"), (4, "bar")] {
        main(w, Record::String { id, bytes: s.as_bytes() });
    }
    main(w, alloc(100, 0x1000, 1000));
    main(w, tag(100, 0x1000, 1, 2));
    main(w, alloc(200, 0x2000, 3000));
    main(w, free(250, 0x2000));
    main(w, alloc(300, 0x3000, 500));
    main(w, realloc(400, 0x3000, 0x4000, 800));
    main(w, free(500, 0x1000));
    main(w, alloc(600, 0x5000, e_size));
    main(w, tag(600, 0x5000, 3, 4));
    let totals =
        Totals { events: 7, allocations: 4, deallocations: 2, reallocations: 1, dropped: 0 };
    main(w, Record::End { q: 1000, totals });
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = temp_dir();
        write_trace(dir.path(), "synthetic.trace", |w| synthetic(w, 64));
        // The baseline: E was 32 bytes.
        write_trace(dir.path(), "base.trace", |w| synthetic(w, 32));
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary in the fixture's directory (so that paths in
    /// reports are the short relative ones).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("running memscope-analyze")
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["report", "synthetic.trace", "--format", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out))
        })
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn totals_are_exact() {
    let f = Fixture::new();
    let r = f.json(&[]);
    let t = &r["totals"];
    assert_eq!(t["allocations"], 5);
    assert_eq!(t["allocated_bytes"], 5364);
    assert_eq!(t["reallocations"], 1);
    assert_eq!(t["peak_bytes"], 4000);
    assert_eq!(t["peak_ts_ns"], 200);
    assert_eq!(t["leaked_allocations"], 2);
    assert_eq!(t["leaked_bytes"], 864);
    // B only: C ended by a reallocation, A lived past B's allocation.
    assert_eq!(t["temporary_allocations"], 1);
    assert_eq!(r["trace"]["duration_ns"], 1000);
    assert_eq!(r["trace"]["finished"], true);
    let types: Vec<(&str, u64)> = r["top_leaks_by_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap(), g["leaked_bytes"].as_u64().unwrap()))
        .collect();
    assert_eq!(types, [("(unknown)", 800), ("app::Bar", 64)]);
    let hot: Vec<(&str, u64, u64)> = r["hotspots_by_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap(),
                g["bytes"].as_u64().unwrap(),
                g["peak_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hot, [("(unknown)", 4300, 3000), ("app::Foo", 1000, 1000), ("app::Bar", 64, 0)]);
    assert_eq!(r["top_leaks_by_type"][1]["leaked_address"], "0x5000");
    // Sizes: 64 in [64,128), 500 and 800 in [256,1024)... by log2 bucket.
    let sizes: Vec<(u64, u64)> = r["size_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| (b["lower"].as_u64().unwrap(), b["allocations"].as_u64().unwrap()))
        .collect();
    assert_eq!(sizes, [(64, 1), (256, 1), (512, 2), (2048, 1)]);
    let peak = r["memory_over_time"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["live_bytes"].as_u64().unwrap())
        .max();
    assert_eq!(peak, Some(4000));
    let last = r["memory_over_time"].as_array().unwrap().last().unwrap()["live_bytes"].as_u64();
    assert_eq!(last, Some(864));
}

#[test]
fn files_named_like_built_in_queries_do_not_change_the_report() {
    let f = Fixture::new();
    let before = f.json(&[]);
    // The report runs its own queries, whatever `--sql NAME` would find.
    for name in ["fragmentation", "lifetime_histogram"] {
        std::fs::write(f.path(name), "SELECT 1 AS x FROM events").unwrap();
    }
    assert_eq!(f.json(&[]), before);
}

#[test]
fn temporary_is_parameterised() {
    let f = Fixture::new();
    // Within 100 ns: B (50 ns); C lived 100 ns but was reallocated.
    assert_eq!(f.json(&["--temporary", "100ns"])["totals"]["temporary_allocations"], 1);
    // Within 0.5 µs: A (400 ns) too.
    assert_eq!(f.json(&["--temporary", "0.5us"])["totals"]["temporary_allocations"], 2);
    let bad = f.run(&["report", "synthetic.trace", "--temporary", "soon"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("--temporary \"soon\": expected `next` or a duration"),
        "{}",
        stderr(&bad)
    );
}

/// (budget, fails?) on the synthetic trace.
const BUDGETS: [(&str, bool); 14] = [
    ("leaked_bytes > 0", true),
    ("leaked_bytes > 864", false),
    ("leaked_bytes >= 864B", true),
    ("peak_bytes > 3.9KB", true),
    ("peak_bytes > 4KiB", false),
    ("allocations != 5", false),
    ("temporary_allocations > 0", true),
    ("duration_ns > 1us", false),
    ("duration_ns >= 1000ns", true),
    ("leaked_bytes[type = \"app::Bar\"] > 63", true),
    ("leaked_bytes[type ~ \"^app::\"] > 64", false),
    ("leaked_allocations[type !~ \"Bar\"] == 1", true),
    ("allocated_bytes[thread = \"main\", type != \"app::Foo\"] > 4364", false),
    ("peak_bytes[type = \"app::Foo\"] / 2 + 1 > 500", true),
];

#[test]
fn every_budget_form() {
    let f = Fixture::new();
    for (budget, fails) in BUDGETS {
        let out = f.run(&["report", "synthetic.trace", "--format", "json", "--fail-on", budget]);
        let code = if fails { 1 } else { 0 };
        assert_eq!(out.status.code(), Some(code), "{budget}: {}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["budgets"][0]["failed"], fails, "{budget}");
        if fails {
            let err = stderr(&out);
            let lines: Vec<&str> = err.lines().map(str::trim).collect();
            assert_eq!(
                lines.len(),
                2,
                "{budget}: one line per failed budget, then the count: {lines:?}"
            );
            assert!(lines[0].starts_with("memscope-analyze: budget FAILED: "), "{lines:?}");
            assert_eq!(lines[1], "memscope-analyze: error: 1 of 1 budgets failed");
        } else {
            assert_eq!(stderr(&out), "", "{budget}");
        }
    }
}

#[test]
fn failed_budget_line_names_metric_actual_limit_and_top_contributor() {
    let f = Fixture::new();
    let out = f.run(&[
        "report",
        "synthetic.trace",
        "-q",
        "--fail-on",
        "leaked_bytes > 100",
        "--fail-on",
        "peak_bytes > 1MiB",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let r = f.json(&["--fail-on", "leaked_bytes > 100", "--fail-on", "peak_bytes > 1MiB"]);
    assert_eq!(
        r["budgets"][0]["message"],
        "FAILED: leaked_bytes 864 B > 100 B; top: (unknown) 864 B"
    );
    assert_eq!(r["budgets"][0]["actual"], 864.0);
    assert_eq!(r["budgets"][0]["limit"], 100.0);
    assert_eq!(r["budgets"][1]["message"], "ok: peak_bytes 3.91 KiB > 1.00 MiB");
    // --quiet keeps stderr to the final count; --exit-zero makes it a report.
    assert_eq!(stderr(&out).trim(), "memscope-analyze: error: 1 of 2 budgets failed");
    let zero =
        f.run(&["report", "synthetic.trace", "--exit-zero", "--fail-on", "leaked_bytes > 100"]);
    assert_eq!(zero.status.code(), Some(0), "{}", stderr(&zero));
    assert!(stderr(&zero).contains("budget FAILED: leaked_bytes 864 B > 100 B"));
}

#[test]
fn type_filter_top_contributor_is_a_call_site_or_type() {
    let f = Fixture::new();
    let r = f.json(&["--fail-on", "allocated_bytes[type ~ \"app\"] > 0"]);
    let b = &r["budgets"][0];
    assert_eq!(b["actual"], 1064.0);
    // No stacks in a synthetic trace: every call site is unknown.
    assert_eq!(b["top_contributor"]["name"], "(unknown)");
    assert_eq!(b["top_contributor"]["value"], 1064.0);
}

#[test]
fn baseline_budgets_and_comparison() {
    let f = Fixture::new();
    let args = [
        "--baseline",
        "base.trace",
        "--fail-on",
        "leaked_bytes > baseline.leaked_bytes * 1.02",
        "--fail-on",
        "peak_bytes > baseline.peak_bytes * 110%",
    ];
    let r = f.json(&args);
    assert_eq!(r["budgets"][0]["failed"], true);
    assert_eq!(r["budgets"][0]["limit"].as_f64().unwrap().round(), (832.0f64 * 1.02).round());
    assert_eq!(r["budgets"][1]["failed"], false);
    assert_eq!(r["baseline"]["path"], "base.trace");
    assert_eq!(r["baseline"]["totals"]["leaked_bytes"], 832);
    let change = &r["baseline"]["changes"][0];
    assert_eq!(change["name"], "(unknown)");
    assert_eq!(change["base_leaked_bytes"], 832);
    assert_eq!(change["new_leaked_bytes"], 864);
    // A baseline budget without a baseline is a usage error, before decoding.
    let out = f.run(&["report", "missing.trace", "--fail-on", "peak_bytes > baseline.peak_bytes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("reads the baseline: give one with --baseline"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn anomalies_are_data_in_a_table_and_a_report_line() {
    let f = Fixture::new();
    let t = write_trace(f.dir.path(), "anomalies.trace", |w| {
        let main = |w: &mut TraceWriter, r: Record<'_>| w.push(1, 100, &r);
        main(w, alloc(10, 0x1000, 16));
        main(w, free(20, 0x1000));
        main(w, free(30, 0x1000)); // double deallocation of alloc 0
        main(w, free(40, 0x9000)); // never allocated
        main(w, realloc(50, 0x7000, 0x7100, 8)); // reallocation of an unknown address
        main(w, alloc(60, 0x2000, 32));
        main(w, alloc(70, 0x2000, 32)); // the first block's deallocation is missing
        main(w, tag(80, 0x5000, 0, 0)); // tags nothing
        main(w, alloc(90, 0x1000, 16)); // the address is live again: no longer double freed
        main(w, free(95, 0x1000));
    });
    let got = lines(
        &t,
        "SELECT event_id, ts_ns, thread_id, kind, address, alloc_id FROM anomalies ORDER BY event_id",
    );
    assert_eq!(
        got,
        [
            "2|30|1|double_deallocation|4096|0",
            "3|40|1|unknown_deallocation|36864|",
            "4|50|1|unknown_reallocation|28672|",
            "6|70|1|overlapping_allocation|8192|5",
            "7|80|1|unmatched_tag|20480|",
        ]
    );
    let out = f.run(&["report", "anomalies.trace", "--format", "json"]);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts: Vec<(&str, u64)> = r["totals"]["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["kind"].as_str().unwrap(), a["count"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        counts,
        [
            ("double_deallocation", 1),
            ("overlapping_allocation", 1),
            ("unknown_deallocation", 1),
            ("unknown_reallocation", 1),
            ("unmatched_tag", 1)
        ]
    );
    let text = stdout(&f.run(&["report", "anomalies.trace"]));
    assert!(
        text.contains("anomalies              1 double_deallocation, 1 overlapping_allocation"),
        "{text}"
    );
}

#[test]
fn ratios_and_divisions_by_zero() {
    let f = Fixture::new();
    let r = f.json(&[
        "--fail-on",
        "leaked_bytes / allocated_bytes > 10%",
        "--fail-on",
        "leaked_bytes[type = \"nothing\"] / allocations[type = \"nothing\"] > 1",
    ]);
    let ratio = &r["budgets"][0];
    assert_eq!(ratio["unit"], "ratio");
    assert_eq!(ratio["failed"], true, "864 / 5364 = 0.161");
    assert_eq!(
        ratio["message"],
        "FAILED: leaked_bytes / allocated_bytes 0.1611 > 0.1000; top: (unknown) 864 B"
    );
    // 0 / 0 cannot pass.
    let nan = &r["budgets"][1];
    assert_eq!(nan["failed"], true);
    assert_eq!(nan["actual"], serde_json::Value::Null);
    assert!(nan["message"].as_str().unwrap().contains("cannot be compared"), "{nan}");
}

#[test]
fn bad_budgets_are_usage_errors() {
    let f = Fixture::new();
    for (budget, message) in [
        ("peak_bytes >", "expected a number, a metric or '(' at the end"),
        ("peak > 1", "unknown metric \"peak\""),
        ("peak_bytes > 1 parsecs", "unknown unit \"parsecs\""),
        ("leaked_bytes[call_site ~ \"[\"] > 0", "bad regular expression"),
    ] {
        let out = f.run(&["report", "synthetic.trace", "--fail-on", budget]);
        assert_eq!(out.status.code(), Some(2), "{budget}");
        assert!(stderr(&out).contains(message), "{budget}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn budgets_file() {
    let f = Fixture::new();
    std::fs::write(
        f.path("memscope.toml"),
        "[report]\ntemporary = \"0.5us\"\ntop = 1\n\n[[budget]]\nname = \"no leaks\"\nfail_on = \"leaked_bytes > 0\"\n\n[[budget]]\nfail_on = \"peak_bytes > 64MiB\"\n",
    )
    .unwrap();
    let r = f.json(&["--budgets", "memscope.toml", "--fail-on", "allocations > 10"]);
    let names: Vec<&str> =
        r["budgets"].as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["no leaks", "peak_bytes > 64MiB", "allocations > 10"]);
    assert_eq!(r["budgets"][0]["failed"], true);
    assert_eq!(r["totals"]["temporary_allocations"], 2, "[report] temporary applies");
    assert_eq!(r["top_leaks_by_type"].as_array().unwrap().len(), 1, "[report] top applies");
    // Errors name the file and line.
    std::fs::write(f.path("bad.toml"), "[[budget]]\nfail_on = \"leaked_bytes > 0\"\nfial_on = 3\n")
        .unwrap();
    let out = f.run(&["report", "synthetic.trace", "--budgets", "bad.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad.toml:3:1: unknown field `fial_on`"), "{}", stderr(&out));
    std::fs::write(f.path("bad2.toml"), "[[budget]]\nfail_on = \"leaked_bytes >> 0\"\n").unwrap();
    let out = f.run(&["report", "synthetic.trace", "--budgets", "bad2.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bad2.toml: budget \"leaked_bytes >> 0\""), "{}", stderr(&out));
    let out = f.run(&["report", "synthetic.trace", "--budgets", "nope.toml"]);
    assert_eq!(out.status.code(), Some(66), "{}", stderr(&out));
}

#[test]
fn json_matches_its_schema() {
    let f = Fixture::new();
    let schema: serde_json::Value =
        serde_json::from_str(memscope_analyzer::report::JSON_SCHEMA).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema is valid JSON Schema");
    let mut report = f.json(&["--baseline", "base.trace", "--fail-on", "leaked_bytes > 0"]);
    let errors: Vec<String> =
        validator.iter_errors(&report).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(report["version"], memscope_analyzer::report::JSON_VERSION);
    // The schema can fail: addresses must be hex strings.
    report["top_leaks_by_type"][0]["leaked_address"] = serde_json::json!(20480);
    assert!(!validator.is_valid(&report));
}

#[test]
fn junit_has_one_case_per_budget() {
    let f = Fixture::new();
    let out = f.run(&[
        "report",
        "synthetic.trace",
        "--format",
        "junit",
        "--fail-on",
        "leaked_bytes > 0",
        "--fail-on",
        "peak_bytes > 1MiB",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let xml = stdout(&out);
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("tests"), Some("2"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases[0].attribute("name"), Some("leaked_bytes > 0"));
    assert_eq!(cases[0].attribute("classname"), Some("memscope.budgets"));
    let failure = cases[0].children().find(|n| n.has_tag_name("failure")).unwrap();
    assert_eq!(
        failure.attribute("message"),
        Some("FAILED: leaked_bytes 864 B > 0 B; top: (unknown) 864 B")
    );
    assert!(cases[1].children().all(|n| !n.has_tag_name("failure")));
}

#[test]
fn markdown_snapshot() {
    let f = Fixture::new();
    let out = f.run(&[
        "report",
        "synthetic.trace",
        "--format",
        "markdown",
        "--exit-zero",
        "--baseline",
        "base.trace",
        "--fail-on",
        "leaked_bytes > 0",
        "--fail-on",
        "peak_bytes > 64MiB",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn text_and_html() {
    let f = Fixture::new();
    let text = f.run(&["report", "synthetic.trace"]);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let text = stdout(&text);
    for want in [
        "Overview",
        "peak live",
        "3.91 KiB at 200 ns",
        "864 B in 2 allocations",
        "Top leaks by type",
        "app::Bar",
        "Lifetimes",
        "Fragmentation",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let out = f.run(&["report", "synthetic.trace", "--format", "html", "-o", "report.html"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let html = std::fs::read_to_string(f.path("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("Content-Security-Policy"));
    assert!(html.matches("<svg").count() >= 4, "charts are inline SVG");
    for bad in ["<script", "src=\"http", "href=\"http", "@import", "url("] {
        assert!(!html.contains(bad), "the report must not fetch anything: found {bad:?}");
    }
    // Never overwritten without --force.
    let again = f.run(&["report", "synthetic.trace", "--format", "html", "-o", "report.html"]);
    assert_eq!(again.status.code(), Some(73), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(f.path("report.html")).unwrap(), html);
}

#[test]
fn diff_command() {
    let f = Fixture::new();
    let out = f.run(&["diff", "base.trace", "synthetic.trace", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = stdout(&out);
    let lines: Vec<&str> = csv.lines().collect();
    assert!(
        lines[0].starts_with(
            "by,name,leaked_bytes_change,peak_bytes_change,bytes_change,allocations_change"
        ),
        "{csv}"
    );
    // E grew from 32 to 64 bytes: app::Bar +32 leaked and allocated.
    assert!(lines.contains(&"type,app::Bar,32,0,32,0,32,64,0,0,32,64,1,1"), "{csv}");
    assert!(
        lines.contains(&"call_site,(unknown),32,0,32,0,832,864,4000,4000,5332,5364,5,5"),
        "{csv}"
    );
    assert_eq!(lines.len(), 3, "unchanged groups are left out: {csv}");
    let missing = f.run(&["diff", "base.trace", "nope.trace"]);
    assert_eq!(missing.status.code(), Some(66));
}

#[test]
fn report_of_a_dataset_equals_report_of_its_trace() {
    let f = Fixture::new();
    let out = f.run(&["convert", "synthetic.trace", "-o", "dataset"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut a = f.json(&[]);
    let out = f.run(&["report", "dataset", "--format", "json"]);
    let mut b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    a["trace"]["path"] = serde_json::Value::Null;
    b["trace"]["path"] = serde_json::Value::Null;
    assert_eq!(a, b);
}
