//! A [`Report`] as text, Markdown, JSON, JUnit XML or HTML.
//!
//! Text, Markdown and HTML share one list of [`Section`]s, so they say the
//! same things in the same order.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::budget::Unit;
use super::units::{self, bytes, change, count, nanoseconds};
use super::{Bucket, Group, Report};
use crate::error::{Error, Result};

/// Output format of `report`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain text for a terminal or a log.
    Text,
    /// GitHub-flavoured Markdown, fit for `$GITHUB_STEP_SUMMARY`.
    Markdown,
    /// JSON, as described by `schemas/report.schema.json`.
    Json,
    /// One self-contained HTML file with SVG charts.
    Html,
    /// JUnit XML: one test case per budget.
    Junit,
}

/// A cell of a section's table.
#[derive(Clone, Debug)]
pub(crate) enum Cell {
    /// Prose or a number.
    Text(String),
    /// A name from the program (a call site, a type): shown as code.
    Code(String),
}

impl Cell {
    fn text(&self) -> &str {
        match self {
            Cell::Text(s) | Cell::Code(s) => s,
        }
    }
}

/// A titled table of the report.
#[derive(Clone, Debug)]
pub(crate) struct Section {
    pub title: String,
    /// A sentence under the title (a definition), if any.
    pub note: Option<String>,
    pub headers: Vec<&'static str>,
    /// Whether each column holds numbers (right-aligned).
    pub numeric: Vec<bool>,
    pub rows: Vec<Vec<Cell>>,
}

/// Renders `report` in `format`; `flamegraph` is an SVG to include in HTML.
///
/// # Errors
///
/// [`Error::Engine`] only if JSON or XML serialization fails, which the
/// types make impossible in practice.
pub fn render(report: &Report, format: Format, flamegraph: Option<&[u8]>) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Text => text(report).into_bytes(),
        Format::Markdown => markdown(report).into_bytes(),
        Format::Json => {
            let mut out = serde_json::to_vec_pretty(report).map_err(|e| {
                Error::engine(
                    "writing the JSON report",
                    datafusion::error::DataFusionError::External(Box::new(e)),
                )
            })?;
            out.push(b'\n');
            out
        }
        Format::Junit => junit(report)?.into_bytes(),
        Format::Html => super::html::page(report, &sections(report), flamegraph).into_bytes(),
    })
}

/// One-line verdict: `no budgets`, `all 3 budgets passed` or
/// `1 of 3 budgets failed`.
pub fn verdict(report: &Report) -> String {
    let failed = report.budgets.iter().filter(|b| b.failed).count();
    match (report.budgets.len(), failed) {
        (0, _) => "no budgets".to_string(),
        (n, 0) => format!("all {n} budgets passed"),
        (n, f) => format!("{f} of {n} budgets failed"),
    }
}

/// Rows of a top-N list; `location` adds the call site's `file:line`.
fn group_rows(groups: &[Group], leaks: bool, location: bool) -> Vec<Vec<Cell>> {
    groups
        .iter()
        .map(|g| {
            let mut row = vec![Cell::Code(g.name.clone())];
            if leaks {
                row.push(Cell::Text(count(g.leaked_allocations as f64)));
                row.push(Cell::Text(bytes(g.leaked_bytes as f64)));
                row.push(Cell::Text(g.leaked_address.clone().unwrap_or_default()));
            } else {
                row.push(Cell::Text(count(g.allocations as f64)));
                row.push(Cell::Text(bytes(g.bytes as f64)));
                row.push(Cell::Text(bytes(g.peak_bytes as f64)));
                row.push(Cell::Text(bytes(g.leaked_bytes as f64)));
            }
            if location {
                row.push(Cell::Code(g.location.clone().unwrap_or_default()));
            }
            row
        })
        .collect()
}

fn histogram_rows(buckets: &[Bucket], unit: Unit) -> Vec<Vec<Cell>> {
    let total: u64 = buckets.iter().map(|b| b.allocations).sum::<u64>().max(1);
    buckets
        .iter()
        .map(|b| {
            let share = b.allocations as f64 / total as f64;
            vec![
                Cell::Text(format!(
                    "{} – {}",
                    units::format(b.lower as f64, unit),
                    units::format(b.upper as f64, unit)
                )),
                Cell::Text(count(b.allocations as f64)),
                Cell::Text(bytes(b.bytes as f64)),
                Cell::Text(format!("{:.1}%", share * 100.0)),
            ]
        })
        .collect()
}

/// The report's tables, in reading order.
pub(crate) fn sections(r: &Report) -> Vec<Section> {
    let t = &r.totals;
    let kv = |k: &str, v: String| vec![Cell::Text(k.to_string()), Cell::Text(v)];
    let mut overview = vec![
        kv("program", r.trace.command_line.clone()),
        kv("duration", nanoseconds(r.trace.duration_ns as f64)),
        kv("events", count(r.trace.events as f64)),
        kv("threads", count(r.trace.threads as f64)),
        kv(
            "allocations",
            format!(
                "{} ({} allocated)",
                count(t.allocations as f64),
                bytes(t.allocated_bytes as f64)
            ),
        ),
        kv("reallocations", count(t.reallocations as f64)),
        kv(
            "peak live",
            format!("{} at {}", bytes(t.peak_bytes as f64), nanoseconds(t.peak_ts_ns as f64)),
        ),
        kv(
            "leaked",
            format!(
                "{} in {} allocations",
                bytes(t.leaked_bytes as f64),
                count(t.leaked_allocations as f64)
            ),
        ),
        kv("temporary allocations", count(t.temporary_allocations as f64)),
    ];
    if let Some(peak) = t.peak_rss_bytes {
        overview.push(kv(
            "RSS",
            format!(
                "peak {}, end {}",
                bytes(peak as f64),
                t.end_rss_bytes.map_or("?".into(), |e| bytes(e as f64))
            ),
        ));
    }
    if !t.anomalies.is_empty() {
        let parts: Vec<String> =
            t.anomalies.iter().map(|a| format!("{} {}", count(a.count as f64), a.kind)).collect();
        overview.push(kv("anomalies", format!("{} (see the anomalies table)", parts.join(", "))));
    }
    if !r.trace.finished {
        overview.push(kv(
            "warning",
            "the program did not finish: it crashed, was killed or is still running".into(),
        ));
    }
    if r.trace.sampled {
        overview.push(kv(
            "sampled",
            format!(
                "one sample per {} on average: figures are estimates",
                bytes(r.trace.sample_rate_bytes as f64)
            ),
        ));
    }
    let mut out = vec![Section {
        title: "Overview".into(),
        note: Some(format!(
            "Temporary: {}. Peak live: the most requested bytes live at one moment.",
            t.temporary_definition
        )),
        headers: vec!["", ""],
        numeric: vec![false, false],
        rows: overview,
    }];
    if !r.budgets.is_empty() {
        out.push(Section {
            title: format!("Budgets: {}", verdict(r)),
            note: None,
            headers: vec!["", "budget", "actual", "limit", "top contributor"],
            numeric: vec![false, false, true, true, false],
            rows: r
                .budgets
                .iter()
                .map(|b| {
                    let unit = units::parse(b.unit);
                    let value = |v: Option<f64>| v.map_or("–".into(), |v| units::format(v, unit));
                    vec![
                        Cell::Text(if b.failed { "FAILED" } else { "ok" }.into()),
                        Cell::Code(b.name.clone()),
                        Cell::Text(value(b.actual)),
                        Cell::Text(value(b.limit)),
                        Cell::Code(b.top_contributor.as_ref().map_or(String::new(), |c| {
                            format!("{} ({})", c.name, units::format(c.value, units::parse(c.unit)))
                        })),
                    ]
                })
                .collect(),
        });
    }
    if let Some(base) = &r.baseline {
        let (b, n) = (&base.totals, t);
        let row = |k: &str, old: u64, new: u64, unit: Unit| {
            vec![
                Cell::Text(k.to_string()),
                Cell::Text(units::format(old as f64, unit)),
                Cell::Text(units::format(new as f64, unit)),
                Cell::Text(change(new as f64 - old as f64, unit)),
            ]
        };
        out.push(Section {
            title: "Against the baseline".into(),
            note: Some(format!("Baseline: {}.", base.path)),
            headers: vec!["", "baseline", "this trace", "change"],
            numeric: vec![false, true, true, true],
            rows: vec![
                row("allocations", b.allocations, n.allocations, Unit::Count),
                row("allocated", b.allocated_bytes, n.allocated_bytes, Unit::Bytes),
                row("peak live", b.peak_bytes, n.peak_bytes, Unit::Bytes),
                row("leaked", b.leaked_bytes, n.leaked_bytes, Unit::Bytes),
                row("temporary", b.temporary_allocations, n.temporary_allocations, Unit::Count),
            ],
        });
        out.push(Section {
            title: "Largest changes".into(),
            note: Some("By call site and by type; this trace minus the baseline.".into()),
            headers: vec!["by", "name", "leaked", "peak", "allocated", "allocations"],
            numeric: vec![false, false, true, true, true, true],
            rows: base
                .changes
                .iter()
                .map(|c| {
                    vec![
                        Cell::Text(c.by.to_string()),
                        Cell::Code(c.name.clone()),
                        Cell::Text(change(c.leaked_bytes_change() as f64, Unit::Bytes)),
                        Cell::Text(change(c.peak_bytes_change() as f64, Unit::Bytes)),
                        Cell::Text(change(c.bytes_change() as f64, Unit::Bytes)),
                        Cell::Text(change(c.allocations_change() as f64, Unit::Count)),
                    ]
                })
                .collect(),
        });
    }

    out.push(Section {
        title: "Top leaks by call site".into(),
        note: None,
        headers: vec!["call site", "leaked allocations", "leaked", "a leaked block", "location"],
        numeric: vec![false, true, true, false, false],
        rows: group_rows(&r.top_leaks_by_call_site, true, true),
    });
    out.push(Section {
        title: "Top leaks by type".into(),
        note: None,
        headers: vec!["type", "leaked allocations", "leaked", "a leaked block"],
        numeric: vec![false, true, true, false],
        rows: group_rows(&r.top_leaks_by_type, true, false),
    });

    out.push(Section {
        title: "Hotspots by call site".into(),
        note: None,
        headers: vec![
            "call site",
            "allocations",
            "allocated",
            "live at peak",
            "leaked",
            "location",
        ],
        numeric: vec![false, true, true, true, true, false],
        rows: group_rows(&r.hotspots_by_call_site, false, true),
    });
    out.push(Section {
        title: "Hotspots by type".into(),
        note: None,
        headers: vec!["type", "allocations", "allocated", "live at peak", "leaked"],
        numeric: vec![false, true, true, true, true],
        rows: group_rows(&r.hotspots_by_type, false, false),
    });
    out.push(Section {
        title: "Lifetimes".into(),
        note: Some(
            "Freed allocations by time from allocation to deallocation or reallocation.".into(),
        ),
        headers: vec!["lifetime", "allocations", "bytes", "share"],
        numeric: vec![false, true, true, true],
        rows: histogram_rows(&r.lifetime_histogram, Unit::Nanoseconds),
    });
    out.push(Section {
        title: "Sizes".into(),
        note: Some("All allocations by requested size.".into()),
        headers: vec!["size", "allocations", "bytes", "share"],
        numeric: vec![false, true, true, true],
        rows: histogram_rows(&r.size_histogram, Unit::Bytes),
    });
    out.push(Section {
        title: "Fragmentation".into(),
        note: Some(
            "1 − largest gap / free bytes between live blocks (queries/fragmentation.sql): 0 is one hole, near 1 many small ones. Not meaningful for a sampled trace."
                .into(),
        ),
        headers: vec!["at", "time", "live blocks", "live", "free between", "largest gap", "fragmentation"],
        numeric: vec![false, true, true, true, true, true, true],
        rows: r
            .fragmentation
            .iter()
            .map(|f| {
                vec![
                    Cell::Text(f.at.clone()),
                    Cell::Text(nanoseconds(f.at_ns as f64)),
                    Cell::Text(count(f.live_blocks as f64)),
                    Cell::Text(bytes(f.live_bytes as f64)),
                    Cell::Text(bytes(f.free_bytes as f64)),
                    Cell::Text(bytes(f.largest_gap_bytes as f64)),
                    Cell::Text(f.fragmentation.map_or("–".into(), |v| format!("{v:.3}"))),
                ]
            })
            .collect(),
    });
    out
}

fn text(r: &Report) -> String {
    let mut out = format!("memscope report: {}\n", r.trace.path);
    for s in sections(r) {
        out.push_str(&format!("\n{}\n", s.title));
        if let Some(note) = &s.note {
            out.push_str(&format!("{note}\n"));
        }
        if s.rows.is_empty() {
            out.push_str("  (none)\n");
            continue;
        }
        let mut table = Table::new();
        table.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
        if s.headers.iter().any(|h| !h.is_empty()) {
            table.set_header(s.headers.clone());
        }
        for row in &s.rows {
            table.add_row(row.iter().map(Cell::text));
        }
        for (i, numeric) in s.numeric.iter().enumerate() {
            if *numeric && let Some(c) = table.column_mut(i) {
                c.set_cell_alignment(CellAlignment::Right);
            }
        }
        out.push_str(&table.to_string());
        out.push('\n');
    }
    out
}

/// Markdown inline code for `s`, safe inside a table cell: `|` escaped,
/// line breaks as spaces, fenced by more backticks than `s` holds in a row.
fn code(s: &str) -> String {
    if s.is_empty() {
        return String::new();
    }
    let s = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    let longest = s.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    if longest > 0 { format!("{fence} {s} {fence}") } else { format!("{fence}{s}{fence}") }
}

/// Plain text safe inside a Markdown table cell: Markdown's punctuation
/// and HTML's angle brackets escaped, line breaks as spaces.
fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn markdown(r: &Report) -> String {
    let failed = r.failed();
    let mark = if r.budgets.is_empty() {
        ""
    } else if failed {
        "❌ "
    } else {
        "✅ "
    };
    let mut out = format!("## {mark}memscope report: {}\n\n", code(&r.trace.path));
    if !r.budgets.is_empty() {
        out.push_str(&format!("**{}**\n\n", verdict(r)));
        for b in r.budgets.iter().filter(|b| b.failed) {
            out.push_str(&format!("- {}\n", code(&b.message)));
        }
        if failed {
            out.push('\n');
        }
    }
    for s in sections(r) {
        out.push_str(&format!("### {}\n\n", plain(&s.title)));
        if let Some(note) = &s.note {
            out.push_str(&format!("{}\n\n", plain(note)));
        }
        if s.rows.is_empty() {
            out.push_str("(none)\n\n");
            continue;
        }
        let headers: Vec<String> = s.headers.iter().map(|h| plain(h)).collect();
        out.push_str(&format!("| {} |\n", headers.join(" | ")));
        let rule: Vec<&str> = s.numeric.iter().map(|&n| if n { "---:" } else { "---" }).collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &s.rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| match c {
                    Cell::Text(t) => plain(t),
                    Cell::Code(t) => code(t),
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
        out.push('\n');
    }
    out
}

fn junit(r: &Report) -> Result<String> {
    let mut suite = TestSuite::new("memscope budgets");
    for b in &r.budgets {
        let status = if b.failed {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(b.message.clone());
            s.set_type("memscope.budget");
            s
        } else {
            TestCaseStatus::success()
        };
        let mut case = TestCase::new(b.name.clone(), status);
        case.set_classname("memscope.budgets");
        case.set_system_out(format!("{}\n", b.message));
        suite.add_test_case(case);
    }
    let mut report = quick_junit::Report::new(format!("memscope report: {}", r.trace.path));
    report.add_test_suite(suite);
    report.to_string().map_err(|e| {
        Error::engine(
            "writing the JUnit report",
            datafusion::error::DataFusionError::External(Box::new(e)),
        )
    })
}
