//! Flamegraphs of allocations by call stack: collapsed ("folded") stacks
//! computed with SQL over the tables, drawn as an interactive SVG by
//! inferno.
//!
//! Works on a trace and on a `convert` dataset alike, since it reads only
//! the `allocations`, `stacks` and `frames` tables.

use std::collections::BTreeMap;
use std::fmt;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, UInt32Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};
use crate::query::{self, Origin, SqlSource};

/// What a flamegraph's widths measure. Sums are weighted, so they estimate
/// the true values under sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Metric {
    /// Number of allocations (reallocations included).
    Allocations,
    /// Bytes allocated.
    Bytes,
    /// Bytes never freed before the trace ended.
    LeakedBytes,
    /// Bytes live at the moment the heap was largest (the first such
    /// moment), by the stack that allocated them.
    PeakBytes,
}

impl Metric {
    /// The per-allocation expression summed for this metric; `peak_ts` is
    /// the time of the peak.
    fn sql(self) -> &'static str {
        match self {
            Metric::Allocations => "weight",
            Metric::Bytes => "size * weight",
            Metric::LeakedBytes => "CASE WHEN free_ts_ns IS NULL THEN size * weight ELSE 0 END",
            Metric::PeakBytes => {
                "CASE WHEN alloc_ts_ns <= peak.ts AND (free_ts_ns IS NULL OR free_ts_ns > peak.ts) \
                 THEN size * weight ELSE 0 END"
            }
        }
    }

    /// The unit shown in the flamegraph's tooltips.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Allocations => "allocations",
            _ => "bytes",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::Allocations => "allocations",
            Metric::Bytes => "bytes",
            Metric::LeakedBytes => "leaked_bytes",
            Metric::PeakBytes => "peak_bytes",
        })
    }
}

/// Time of the heap's peak: the first time the running sum of allocated
/// minus freed bytes is highest (frees first among events at one time).
const PEAK_CTE: &str = "WITH peak AS (
    SELECT ts FROM (
        SELECT ts, SUM(delta) OVER (ORDER BY ts, delta ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live
        FROM (
            SELECT alloc_ts_ns AS ts, size * weight AS delta FROM allocations
            UNION ALL
            SELECT free_ts_ns AS ts, -(size * weight) AS delta FROM allocations
            WHERE free_ts_ns IS NOT NULL
        )
    )
    ORDER BY live DESC, ts
    LIMIT 1
)";

/// Label of allocations recorded without a stack.
pub const NO_STACK: &str = "[no stack]";

/// The collapsed stacks of `metric`: one line `outer;...;inner value` per
/// stack with a non-zero value, frames outermost first, the recorder's own
/// frames and the allocator shims left out. Lines are sorted.
///
/// # Errors
///
/// [`Error::Sql`] when a table is missing or a query fails.
pub async fn folded(ctx: &SessionContext, metric: Metric) -> Result<Vec<String>> {
    // Only peak_bytes needs the time of the peak, a window over every
    // allocation and deallocation.
    let (with_peak, join_peak) =
        if metric == Metric::PeakBytes { (PEAK_CTE, "CROSS JOIN peak") } else { ("", "") };
    let values_sql = format!(
        "{with_peak}
        SELECT CAST(coalesce(stack_id, 0) AS INT UNSIGNED) AS stack_id,
               CAST(round(SUM({})) AS BIGINT) AS value
        FROM allocations {join_peak} GROUP BY coalesce(stack_id, 0)",
        metric.sql()
    );
    let frames_sql = "SELECT s.stack_id, f.name FROM stacks s JOIN frames f ON s.frame_id = f.frame_id \
                      ORDER BY s.stack_id, s.depth DESC";
    let mut values: Vec<(u32, i64)> = Vec::new();
    for batch in sql(ctx, "flamegraph values", &values_sql).await? {
        let ids = column(&batch, 0, DataType::UInt32)?;
        let ids = ids.as_primitive::<UInt32Type>();
        let sums = column(&batch, 1, DataType::Int64)?;
        let sums = sums.as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            if !sums.is_null(i) && sums.value(i) > 0 {
                values.push((ids.value(i), sums.value(i)));
            }
        }
    }
    let mut names: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for batch in sql(ctx, "flamegraph frames", frames_sql).await? {
        let ids = column(&batch, 0, DataType::UInt32)?;
        let ids = ids.as_primitive::<UInt32Type>();
        let name = column(&batch, 1, DataType::Utf8)?;
        let name = name.as_string::<i32>();
        for i in 0..batch.num_rows() {
            names.entry(ids.value(i)).or_default().push(name.value(i).replace(';', ":"));
        }
    }
    let mut lines: Vec<String> = values
        .into_iter()
        .map(|(id, v)| {
            let path = match names.get(&id) {
                Some(frames) => {
                    // Frames come outermost first; the allocator shim and
                    // the recorder sit innermost: keep what is outside them.
                    let end =
                        frames.iter().position(|f| is_recorder_frame(f)).unwrap_or(frames.len());
                    if end == 0 { NO_STACK.to_string() } else { frames[..end].join(";") }
                }
                None => NO_STACK.to_string(),
            };
            (path, v)
        })
        .fold(BTreeMap::<String, i64>::new(), |mut m, (p, v)| {
            *m.entry(p).or_default() += v;
            m
        })
        .into_iter()
        .map(|(p, v)| format!("{p} {v}"))
        .collect();
    lines.sort();
    Ok(lines)
}

/// Frames of memscope's recorder and of the allocator shims, at the top of
/// every stack: they and what they call are left out of flamegraphs.
fn is_recorder_frame(name: &str) -> bool {
    let n = name.strip_prefix('<').unwrap_or(name);
    n.starts_with("memscope_recorder::")
        || n.starts_with("__rustc::")
        || n.starts_with("__rust_")
        || n.starts_with("__rdl_")
        || n.starts_with("__rg_")
}

/// Draws `lines` (from [`folded`]) as an interactive SVG flamegraph.
///
/// # Errors
///
/// [`Error::Usage`] when there is nothing to draw (no allocation has a
/// non-zero value).
pub fn svg(lines: &[String], metric: Metric, title: &str) -> Result<Vec<u8>> {
    if lines.is_empty() {
        return Err(Error::Usage(format!("nothing to draw: no allocation has {metric} > 0")));
    }
    let mut options = inferno::flamegraph::Options::default();
    options.title = title.to_string();
    options.count_name = metric.unit().to_string();
    options.name_type = "Function:".to_string();
    let mut out = Vec::new();
    inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut out)
        .map_err(|e| Error::Usage(format!("drawing the flamegraph: {e}")))?;
    Ok(out)
}

/// Column `i` of `batch` as `ty` (the tables of a `convert` dataset may
/// come back with other integer or string types).
fn column(batch: &RecordBatch, i: usize, ty: DataType) -> Result<ArrayRef> {
    cast(batch.column(i), &ty).map_err(|e| Error::engine("reading flamegraph rows", e))
}

async fn sql(ctx: &SessionContext, name: &str, text: &str) -> Result<Vec<RecordBatch>> {
    let source = SqlSource {
        name: name.to_string(),
        origin: Origin::Builtin("flamegraph"),
        text: text.to_string(),
    };
    let mut results = query::run(ctx, &source).await?;
    Ok(results.pop().map(|r| r.batches).unwrap_or_default())
}
