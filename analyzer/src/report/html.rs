//! The HTML report: one self-contained file. Styles and charts are inline,
//! the flamegraph is a `data:` image, there is no script, and a Content
//! Security Policy forbids every fetch, so the page looks the same offline,
//! as a CI artifact or attached to a ticket.

use base64::Engine;

use super::budget::Unit;
use super::render::{Cell, Section, verdict};
use super::units::{bytes, count, nanoseconds};
use super::{Report, charts};

/// Only inline styles and `data:` images; no scripts, fonts, frames or
/// connections.
pub(crate) const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

const STYLE: &str = "
body { font: 14px/1.45 system-ui, -apple-system, 'Segoe UI', sans-serif; color: #1a202c; margin: 0; background: #f7fafc; }
main { max-width: 1000px; margin: 0 auto; padding: 20px 28px 60px; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #e2e8f0; padding-bottom: 4px; }
.path { color: #4a5568; font-family: ui-monospace, monospace; word-break: break-all; margin: 0; }
.verdict { display: inline-block; margin: 10px 0 0; padding: 4px 10px; border-radius: 4px; font-weight: 600; }
.verdict.ok { background: #c6f6d5; color: #22543d; }
.verdict.failed { background: #fed7d7; color: #822727; }
.verdict.none { background: #e2e8f0; color: #2d3748; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 10px; margin-top: 16px; }
.card { background: white; border: 1px solid #e2e8f0; border-radius: 6px; padding: 10px 12px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { color: #4a5568; font-size: 12px; }
.chart { background: white; border: 1px solid #e2e8f0; border-radius: 6px; padding: 6px; overflow-x: auto; }
.chart svg, .chart img { display: block; max-width: 100%; height: auto; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
table { border-collapse: collapse; background: white; width: 100%; font-size: 13px; }
th, td { border: 1px solid #e2e8f0; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #edf2f7; font-weight: 600; }
td.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code { font-family: ui-monospace, monospace; font-size: 12px; word-break: break-all; }
.note { color: #4a5568; margin: 0 0 8px; }
.failed-row td:first-child { color: #9b2c2c; font-weight: 600; }
footer { color: #718096; font-size: 12px; margin-top: 40px; }
";

/// `s` with HTML's special characters escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn chart(svg: Result<String, String>) -> String {
    match svg {
        // plotters writes an XML declaration-free <svg> element.
        Ok(svg) => format!("<div class=\"chart\">{svg}</div>"),
        Err(why) => format!("<p class=\"note\">({})</p>", escape(&why)),
    }
}

fn table(s: &Section) -> String {
    let mut out = String::new();
    out.push_str(&format!("<h2>{}</h2>\n", escape(&s.title)));
    if let Some(note) = &s.note {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
    }
    if s.rows.is_empty() {
        out.push_str("<p class=\"note\">(none)</p>\n");
        return out;
    }
    out.push_str("<table>\n");
    if s.headers.iter().any(|h| !h.is_empty()) {
        out.push_str("<tr>");
        for h in &s.headers {
            out.push_str(&format!("<th>{}</th>", escape(h)));
        }
        out.push_str("</tr>\n");
    }
    for row in &s.rows {
        let failed = matches!(row.first(), Some(Cell::Text(t)) if t == "FAILED");
        out.push_str(if failed { "<tr class=\"failed-row\">" } else { "<tr>" });
        for (i, cell) in row.iter().enumerate() {
            let class =
                if s.numeric.get(i).copied().unwrap_or(false) { " class=\"n\"" } else { "" };
            match cell {
                Cell::Text(t) => out.push_str(&format!("<td{class}>{}</td>", escape(t))),
                Cell::Code(t) if t.is_empty() => out.push_str("<td></td>"),
                Cell::Code(t) => {
                    out.push_str(&format!("<td{class}><code>{}</code></td>", escape(t)))
                }
            }
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    out
}

/// The whole page.
pub(crate) fn page(r: &Report, sections: &[Section], flamegraph: Option<&[u8]>) -> String {
    let t = &r.totals;
    let (verdict_class, verdict_text) = if r.budgets.is_empty() {
        ("none", "no budgets".to_string())
    } else if r.failed() {
        ("failed", verdict(r))
    } else {
        ("ok", verdict(r))
    };
    let card = |v: String, k: &str| {
        format!(
            "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
            escape(&v),
            escape(k)
        )
    };
    let mut cards = vec![
        card(bytes(t.peak_bytes as f64), "peak live heap"),
        card(
            bytes(t.leaked_bytes as f64),
            &format!("leaked in {} allocations", count(t.leaked_allocations as f64)),
        ),
        card(
            count(t.allocations as f64),
            &format!("allocations, {}", bytes(t.allocated_bytes as f64)),
        ),
        card(count(t.temporary_allocations as f64), "temporary allocations"),
        card(nanoseconds(r.trace.duration_ns as f64), "duration"),
    ];
    if let Some(rss) = t.peak_rss_bytes {
        cards.push(card(bytes(rss as f64), "peak RSS"));
    }
    let mut body = String::new();
    body.push_str(&format!(
        "<header><h1>memscope report</h1><p class=\"path\">{}</p><p class=\"path\">{}</p>\
         <p class=\"verdict {verdict_class}\">{}</p></header>\n<div class=\"cards\">{}</div>\n",
        escape(&r.trace.path),
        escape(&r.trace.command_line),
        escape(&verdict_text),
        cards.join("")
    ));
    for b in r.budgets.iter().filter(|b| b.failed) {
        body.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&b.message)));
    }
    body.push_str("<h2>Memory over time</h2>\n");
    body.push_str(&chart(charts::memory_over_time(
        &r.memory_over_time,
        (t.peak_ts_ns, t.peak_bytes),
    )));
    let bars = |groups: &[super::Group], leaked: bool| -> Vec<(String, u64)> {
        groups
            .iter()
            .map(|g| (g.name.clone(), if leaked { g.leaked_bytes } else { g.bytes }))
            .collect()
    };
    body.push_str("<h2>Leaked bytes by call site</h2>\n");
    body.push_str(&chart(charts::top_bars(&bars(&r.top_leaks_by_call_site, true), true)));
    body.push_str("<h2>Allocated bytes by call site</h2>\n");
    body.push_str(&chart(charts::top_bars(&bars(&r.hotspots_by_call_site, false), false)));
    body.push_str("<h2>Lifetimes and sizes</h2>\n<div class=\"pair\">");
    body.push_str(&chart(charts::histogram(
        &r.lifetime_histogram,
        Unit::Nanoseconds,
        "lifetime (log2 buckets)",
    )));
    body.push_str(&chart(charts::histogram(
        &r.size_histogram,
        Unit::Bytes,
        "requested size (log2 buckets)",
    )));
    body.push_str("</div>\n");
    if let Some(svg) = flamegraph {
        body.push_str("<h2>Allocated bytes by call stack</h2>\n");
        body.push_str(&format!(
            "<div class=\"chart\"><img alt=\"flamegraph of allocated bytes by call stack\" src=\"data:image/svg+xml;base64,{}\"></div>\n",
            base64::engine::general_purpose::STANDARD.encode(svg)
        ));
    }
    for s in sections {
        body.push_str(&table(s));
    }
    body.push_str(&format!(
        "<footer>memscope-analyze {} · report format {}</footer>\n",
        env!("CARGO_PKG_VERSION"),
        super::JSON_VERSION
    ));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CONTENT_SECURITY_POLICY}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>memscope report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body><main>\n{body}</main></body>\n</html>\n",
        escape(&r.trace.path)
    )
}
