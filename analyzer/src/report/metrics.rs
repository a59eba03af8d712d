//! The values of budget metrics, each one SQL query over the tables, and
//! the call site or type that contributes most to one.

use std::fmt;
use std::str::FromStr;

use datafusion::prelude::SessionContext;

use super::budget::{Column, Metric, MetricRef};
use crate::error::{Error, Result};
use crate::query::Rows;

/// When an allocation counts as temporary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Temporary {
    /// heaptrack's definition: freed before its thread's next allocation
    /// started (per thread, since threads allocate concurrently). A thread's
    /// last allocation has no next one and is never temporary.
    #[default]
    NextAllocation,
    /// Freed within this many nanoseconds of its allocation.
    Within(i64),
}

impl FromStr for Temporary {
    type Err = String;

    /// `next`, or a duration such as `500ns`, `10us`, `1ms` or `2s` (a bare
    /// number is nanoseconds).
    fn from_str(s: &str) -> Result<Temporary, String> {
        let s = s.trim();
        if s == "next" {
            return Ok(Temporary::NextAllocation);
        }
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let factor = match unit.trim() {
            "" | "ns" => 1.0,
            "us" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            _ => return Err(format!("{s:?}: expected `next` or a duration such as 10us, 1ms")),
        };
        let n: f64 = number
            .parse()
            .map_err(|_| format!("{s:?}: expected `next` or a duration such as 10us, 1ms"))?;
        Ok(Temporary::Within((n * factor).round() as i64))
    }
}

impl fmt::Display for Temporary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Temporary::NextAllocation => {
                f.write_str("freed before its thread's next allocation, not by a reallocation")
            }
            Temporary::Within(ns) => {
                write!(f, "freed within {ns} ns of its allocation, not by a reallocation")
            }
        }
    }
}

/// The FROM clause and WHERE predicate selecting the allocations `m`
/// counts: `allocations a`, joined with `threads t` when a condition needs
/// the thread's name.
fn selection(m: &MetricRef) -> (String, String) {
    let mut from = "allocations a".to_string();
    if m.filter.iter().any(|c| c.column == Column::Thread) {
        from.push_str(" LEFT JOIN threads t ON t.thread_id = a.alloc_thread_id");
    }
    let mut conditions: Vec<String> = m.filter.iter().map(|c| c.sql()).collect();
    match m.metric {
        Metric::LeakedAllocations | Metric::LeakedBytes => {
            conditions.push("a.free_ts_ns IS NULL".into());
        }
        Metric::TemporaryAllocations => {
            conditions.push("a.free_ts_ns IS NOT NULL AND a.realloc_to IS NULL".into());
        }
        _ => {}
    }
    let predicate = if conditions.is_empty() { "TRUE".into() } else { conditions.join(" AND ") };
    (from, predicate)
}

/// SQL giving `m`'s value as column `v` (one row), or, with `group`, the
/// value per group as columns `key` and `v`, largest first.
fn sql(m: &MetricRef, temporary: Temporary, group: Option<Column>) -> String {
    let (from, predicate) = selection(m);
    let (key, group_by) = match group {
        Some(c) => (format!("{} AS key, ", c.sql()), " GROUP BY key ORDER BY v DESC, key LIMIT 1"),
        None => (String::new(), ""),
    };
    let sum = |expr: &str| {
        format!(
            "SELECT {key}CAST(coalesce(SUM({expr}), 0) AS DOUBLE) AS v FROM {from} WHERE {predicate}{group_by}"
        )
    };
    match m.metric {
        Metric::Allocations | Metric::LeakedAllocations => sum("a.weight"),
        Metric::AllocatedBytes | Metric::LeakedBytes => sum("a.size * a.weight"),
        Metric::TemporaryAllocations => {
            let (from, predicate) = (from.clone(), predicate.clone());
            let extra = match temporary {
                Temporary::NextAllocation => "a.free_ts_ns < n.next_ts_ns".to_string(),
                Temporary::Within(ns) => format!("a.lifetime_ns <= {ns}"),
            };
            format!(
                "WITH n AS (
                    SELECT alloc_id, LEAD(alloc_ts_ns) OVER (
                        PARTITION BY alloc_thread_id ORDER BY alloc_ts_ns, alloc_id) AS next_ts_ns
                    FROM allocations)
                SELECT {key}CAST(coalesce(SUM(a.weight), 0) AS DOUBLE) AS v
                FROM {from} JOIN n ON n.alloc_id = a.alloc_id
                WHERE {predicate} AND {extra}{group_by}"
            )
        }
        Metric::PeakBytes => {
            // Live bytes after every event, deallocations first at equal
            // timestamps; the peak is the first moment of the largest value.
            let peak = format!(
                "sel AS (SELECT a.alloc_ts_ns, a.free_ts_ns, a.size * a.weight AS b{} FROM {from} WHERE {predicate}),
                d AS (SELECT alloc_ts_ns AS ts, 1 AS ord, b AS delta FROM sel
                      UNION ALL SELECT free_ts_ns, 0, -b FROM sel WHERE free_ts_ns IS NOT NULL),
                r AS (SELECT ts, SUM(delta) OVER (ORDER BY ts, ord ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live FROM d),
                peak AS (SELECT ts, live FROM r ORDER BY live DESC, ts LIMIT 1)",
                if group.is_some() { format!(", {}", key.trim_end_matches(", ")) } else { String::new() }
            );
            match group {
                None => format!("WITH {peak} SELECT CAST(coalesce(MAX(live), 0) AS DOUBLE) AS v FROM peak"),
                Some(_) => format!(
                    "WITH {peak} SELECT sel.key, CAST(SUM(sel.b) AS DOUBLE) AS v FROM sel CROSS JOIN peak
                     WHERE sel.alloc_ts_ns <= peak.ts AND (sel.free_ts_ns IS NULL OR sel.free_ts_ns > peak.ts)
                     GROUP BY sel.key ORDER BY v DESC, sel.key LIMIT 1"
                ),
            }
        }
        Metric::PeakRssBytes => "SELECT CAST(MAX(rss_bytes) AS DOUBLE) AS v FROM rss".into(),
        Metric::DurationNs => "SELECT CAST(MAX(duration_ns) AS DOUBLE) AS v FROM trace".into(),
    }
}

/// The value of `m` (its `baseline` flag is ignored: `ctx` says which
/// trace).
///
/// # Errors
///
/// [`Error::Sql`] when a query fails; [`Error::Usage`] for
/// `peak_rss_bytes` on a trace without RSS samples.
pub async fn value(ctx: &SessionContext, m: &MetricRef, temporary: Temporary) -> Result<f64> {
    let rows = Rows::fetch(ctx, &format!("metric {m}"), &sql(m, temporary, None)).await?;
    match rows.f64("v")?.first().copied().flatten() {
        Some(v) => Ok(v),
        None if m.metric == Metric::PeakRssBytes => Err(Error::Usage(format!(
            "{m}: the trace has no RSS samples (the recorder samples RSS unless MEMSCOPE_RSS_INTERVAL_MS=0)"
        ))),
        None => Ok(0.0),
    }
}

/// The call site (or, with `by = Column::Type`, the type) contributing
/// most to `m`, with its part of `m` (in `m`'s unit); `None` for metrics not made of allocations
/// or when nothing contributes.
///
/// # Errors
///
/// [`Error::Sql`] when the query fails.
pub async fn top_contributor(
    ctx: &SessionContext,
    m: &MetricRef,
    temporary: Temporary,
    by: Column,
) -> Result<Option<(String, f64)>> {
    if !m.metric.filterable() {
        return Ok(None);
    }
    let rows =
        Rows::fetch(ctx, &format!("top contributor to {m}"), &sql(m, temporary, Some(by))).await?;
    let keys = rows.string("key")?;
    let values = rows.f64("v")?;
    Ok(keys.into_iter().zip(values).find_map(|(k, v)| Some((k?, v?))).filter(|(_, v)| *v > 0.0))
}
