//! Batch reports and memory budgets: the summary a person reads first,
//! budgets that fail a CI job, and comparisons with a baseline.
//!
//! [`Report::compute`] reads everything with SQL over the tables of a
//! trace or a `convert` dataset; [`render`] writes it as text, Markdown,
//! JSON ([`JSON_SCHEMA`]), JUnit XML or a self-contained HTML page.

pub mod budget;
mod charts;
pub mod diff;
mod html;
pub mod metrics;
pub mod render;
pub mod units;

use std::collections::BTreeMap;
use std::path::Path;

use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::prelude::{DataFrame, SessionContext};
use serde::{Deserialize, Serialize};

use self::budget::{Budget, Column, Metric, MetricRef, Unit};
use self::metrics::Temporary;
use crate::error::{Error, Result};
use crate::query::{self, Rows};

/// The JSON Schema of `report --format json` (version [`JSON_VERSION`]).
pub const JSON_SCHEMA: &str = include_str!("../../../schemas/report.schema.json");

/// Version of the JSON report's layout: a new major number removes or
/// changes a field, a new minor one adds fields.
pub const JSON_VERSION: &str = "1.0";

/// Number of moments in [`Report::memory_over_time`].
const TIMELINE_POINTS: i64 = 400;

/// What a report computes, besides the trace.
#[derive(Clone, Debug)]
pub struct Options {
    /// Rows in each top-N list.
    pub top: usize,
    /// When an allocation counts as temporary.
    pub temporary: Temporary,
    /// Budgets to evaluate.
    pub budgets: Vec<Budget>,
}

/// The report of one trace (and, with a baseline, how it compares).
///
/// Byte and count figures are weighted sums, so they estimate the true
/// values when the trace is sampled (`trace.sampled`). Times are in
/// nanoseconds since the trace origin; durations in nanoseconds.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Always `memscope-report`.
    pub kind: &'static str,
    /// [`JSON_VERSION`].
    pub version: &'static str,
    /// What was traced.
    pub trace: TraceInfo,
    /// Whole-trace figures.
    pub totals: Totals,
    /// Call sites with the most leaked bytes, largest first.
    pub top_leaks_by_call_site: Vec<Group>,
    /// Types with the most leaked bytes, largest first.
    pub top_leaks_by_type: Vec<Group>,
    /// Call sites that allocated the most bytes, largest first.
    pub hotspots_by_call_site: Vec<Group>,
    /// Types that allocated the most bytes, largest first.
    pub hotspots_by_type: Vec<Group>,
    /// Freed allocations by lifetime, log2 buckets.
    pub lifetime_histogram: Vec<Bucket>,
    /// All allocations by requested size, log2 buckets.
    pub size_histogram: Vec<Bucket>,
    /// Live bytes and RSS over time.
    pub memory_over_time: Vec<TimePoint>,
    /// Fragmentation at the peak and at the end.
    pub fragmentation: Vec<Fragmentation>,
    /// The baseline's figures, when one was given.
    pub baseline: Option<Baseline>,
    /// The budgets and whether they passed, in the order given.
    pub budgets: Vec<BudgetResult>,
}

/// Facts about the traced program, from the `trace` table.
#[derive(Clone, Debug, Serialize)]
pub struct TraceInfo {
    /// The file or dataset the report was made from.
    pub path: String,
    /// Program path.
    pub program: String,
    /// Command line.
    pub command_line: String,
    /// Process id.
    pub pid: u64,
    /// Wall-clock start, RFC 3339.
    pub start_time: String,
    /// Length of the trace, in ns.
    pub duration_ns: i64,
    /// Events recorded.
    pub events: u64,
    /// Threads seen.
    pub threads: u64,
    /// Whether the program finished normally (else it crashed or is still
    /// running).
    pub finished: bool,
    /// Whether the trace is sampled (then figures are estimates).
    pub sampled: bool,
    /// Mean bytes between samples; 0 when every allocation was recorded.
    pub sample_rate_bytes: u64,
}

/// Whole-trace figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    /// Allocations, reallocations included.
    pub allocations: u64,
    /// Bytes they requested.
    pub allocated_bytes: u64,
    /// Allocations started by a reallocation.
    pub reallocations: u64,
    /// The most bytes live at one moment.
    pub peak_bytes: u64,
    /// When that was first reached, in ns since the origin.
    pub peak_ts_ns: i64,
    /// Allocations never freed.
    pub leaked_allocations: u64,
    /// Bytes never freed.
    pub leaked_bytes: u64,
    /// Temporary allocations (see `temporary_definition`).
    pub temporary_allocations: u64,
    /// What "temporary" means here.
    pub temporary_definition: String,
    /// The largest RSS sample, in bytes; `None` without samples.
    pub peak_rss_bytes: Option<u64>,
    /// The last RSS sample, in bytes; `None` without samples.
    pub end_rss_bytes: Option<u64>,
    /// Events of the `anomalies` table by kind (double deallocations,
    /// deallocations of unknown addresses, …); empty when there are none.
    pub anomalies: Vec<AnomalyCount>,
}

/// How many anomalies of one kind the trace holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AnomalyCount {
    /// `anomalies.kind`.
    pub kind: String,
    /// Rows of that kind.
    pub count: u64,
}

/// One call site or type and what it allocated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Group {
    /// The call site (function) or type; `(unknown)` when not known.
    pub name: String,
    /// `file:line` of the call site, from its first allocation, when known.
    pub location: Option<String>,
    /// Allocations.
    pub allocations: u64,
    /// Bytes allocated.
    pub bytes: u64,
    /// Allocations never freed.
    pub leaked_allocations: u64,
    /// Bytes never freed.
    pub leaked_bytes: u64,
    /// Bytes live at the trace's peak.
    pub peak_bytes: u64,
    /// Address of one leaked block (the lowest), as `0x…` hex; `None`
    /// without leaks.
    pub leaked_address: Option<String>,
}

/// A histogram bucket: `[lower, upper)` in ns or bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Bucket {
    /// Smallest value in the bucket (inclusive).
    pub lower: u64,
    /// End of the bucket (exclusive).
    pub upper: u64,
    /// Allocations in it.
    pub allocations: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Memory at one moment of [`Report::memory_over_time`].
#[derive(Clone, Debug, Serialize)]
pub struct TimePoint {
    /// Start of the interval, in ns since the origin.
    pub ts_ns: i64,
    /// The most bytes live during the interval.
    pub live_bytes: u64,
    /// The largest RSS sample in the interval, or the last before it.
    pub rss_bytes: Option<u64>,
}

/// Heap fragmentation at one moment (see `queries/fragmentation.sql`).
#[derive(Clone, Debug, Serialize)]
pub struct Fragmentation {
    /// `peak` or `end`.
    pub at: String,
    /// The moment, in ns since the origin.
    pub at_ns: i64,
    /// Blocks live then.
    pub live_blocks: u64,
    /// Their bytes.
    pub live_bytes: u64,
    /// Bytes in gaps between live blocks.
    pub free_bytes: u64,
    /// The largest such gap.
    pub largest_gap_bytes: u64,
    /// `1 - largest_gap_bytes / free_bytes`; `None` without free space.
    pub fragmentation: Option<f64>,
}

/// The baseline a report compares with.
#[derive(Clone, Debug, Serialize)]
pub struct Baseline {
    /// Its path.
    pub path: String,
    /// Its whole-trace figures.
    pub totals: Totals,
    /// What changed most, by call site and by type, largest first.
    pub changes: Vec<diff::Change>,
}

/// The outcome of one budget.
#[derive(Clone, Debug, Serialize)]
pub struct BudgetResult {
    /// Its name (the expression unless a budgets file named it).
    pub name: String,
    /// The expression.
    pub expression: String,
    /// The metric it limits.
    pub metric: String,
    /// Whether the budget failed (its expression held).
    pub failed: bool,
    /// Value of the left side; `None` when it is not a finite number.
    pub actual: Option<f64>,
    /// Value of the right side, the limit; `None` when it is not a finite
    /// number.
    pub limit: Option<f64>,
    /// Unit of both: `bytes`, `ns`, `count` or `ratio`.
    pub unit: &'static str,
    /// One short line: metric, actual, limit and top contributor.
    pub message: String,
    /// What contributes most to the budget's metric (see [`Contributor`]);
    /// only for a failed budget.
    pub top_contributor: Option<Contributor>,
}

/// What contributes most to a metric: the call site, or the type when the
/// budget's filter already names call sites.
#[derive(Clone, Debug, Serialize)]
pub struct Contributor {
    /// The call site or type.
    pub name: String,
    /// Its part of the metric.
    pub value: f64,
    /// The metric's unit: `bytes`, `ns` or `count`.
    pub unit: &'static str,
}

impl Report {
    /// Computes the report of the tables in `ctx` (`path` names them), with
    /// `baseline` (its path and session) for comparisons and
    /// `baseline.…` budgets.
    ///
    /// # Errors
    ///
    /// [`Error::Sql`] when a table lacks a column the report needs (an old
    /// dataset); [`Error::Usage`] for a `baseline.…` budget without a
    /// baseline, or a budget on RSS without samples.
    pub async fn compute(
        ctx: &SessionContext,
        path: &Path,
        baseline: Option<(&Path, &SessionContext)>,
        options: &Options,
    ) -> Result<Report> {
        let trace = trace_info(ctx, path).await?;
        let this_totals = totals(ctx, options.temporary).await?;
        let by_site = groups(ctx, Column::CallSite).await?;
        let by_type = groups(ctx, Column::Type).await?;
        let top = |groups: &[Group], key: fn(&Group) -> u64| {
            let mut v: Vec<Group> = groups.iter().filter(|g| key(g) > 0).cloned().collect();
            v.sort_by(|a, b| key(b).cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
            v.truncate(options.top);
            v
        };
        let baseline_report = match baseline {
            Some((base_path, base_ctx)) => {
                let base_totals = totals(base_ctx, options.temporary).await?;
                let mut changes = diff::changes(base_ctx, ctx).await?;
                changes.truncate(options.top);
                Some(Baseline {
                    path: base_path.display().to_string(),
                    totals: base_totals,
                    changes,
                })
            }
            None => None,
        };
        let budgets = evaluate(ctx, baseline.map(|b| b.1), options).await?;
        Ok(Report {
            kind: "memscope-report",
            version: JSON_VERSION,
            memory_over_time: timeline(ctx, trace.duration_ns).await?,
            lifetime_histogram: lifetime_histogram(ctx).await?,
            size_histogram: size_histogram(ctx).await?,
            fragmentation: fragmentation(ctx).await?,
            top_leaks_by_call_site: top(&by_site, |g| g.leaked_bytes),
            top_leaks_by_type: top(&by_type, |g| g.leaked_bytes),
            hotspots_by_call_site: top(&by_site, |g| g.bytes),
            hotspots_by_type: top(&by_type, |g| g.bytes),
            trace,
            totals: this_totals,
            baseline: baseline_report,
            budgets,
        })
    }

    /// Whether any budget failed.
    pub fn failed(&self) -> bool {
        self.budgets.iter().any(|b| b.failed)
    }
}

/// Evaluates every budget of `options` on `ctx` (and `baseline`).
async fn evaluate(
    ctx: &SessionContext,
    baseline: Option<&SessionContext>,
    options: &Options,
) -> Result<Vec<BudgetResult>> {
    let mut values: BTreeMap<MetricRef, f64> = BTreeMap::new();
    for budget in &options.budgets {
        for m in budget.metrics() {
            if values.contains_key(m) {
                continue;
            }
            let session = if m.baseline {
                baseline.ok_or_else(|| {
                    Error::Usage(format!(
                        "budget {:?} reads {m}, but no --baseline was given",
                        budget.text
                    ))
                })?
            } else {
                ctx
            };
            values.insert(m.clone(), metrics::value(session, m, options.temporary).await?);
        }
    }
    let mut results = Vec::new();
    for budget in &options.budgets {
        let value = |m: &MetricRef| values.get(m).copied().unwrap_or(f64::NAN);
        let actual = budget.left.eval(&value);
        let limit = budget.right.eval(&value);
        // A side that is not a number (a division by zero) cannot pass.
        let evaluable = actual.is_finite() && limit.is_finite();
        let failed = !evaluable || budget.compare.holds(actual, limit);
        let subject = budget.subject();
        let unit = budget.left.unit().or(budget.right.unit()).unwrap_or(Unit::Count);
        let top_contributor = if failed && evaluable && !subject.baseline {
            let by = if subject.filter.iter().any(|c| c.column == Column::CallSite) {
                Column::Type
            } else {
                Column::CallSite
            };
            metrics::top_contributor(ctx, subject, options.temporary, by).await?.map(
                |(name, value)| Contributor {
                    name,
                    value,
                    unit: units::name(subject.metric.unit()),
                },
            )
        } else {
            None
        };
        let mut message = format!(
            "{}: {} {} {} {}",
            if failed { "FAILED" } else { "ok" },
            budget.left_text,
            units::format(actual, unit),
            budget.compare.symbol(),
            units::format(limit, unit),
        );
        if !evaluable {
            message.push_str(
                " (cannot be compared: a side is not a finite number, e.g. a division by zero)",
            );
        }
        if budget.name != budget.text {
            message = format!("{} ({})", message, budget.name);
        }
        if let Some(c) = &top_contributor {
            let part = units::format(c.value, subject.metric.unit());
            message.push_str(&format!("; top: {} {part}", c.name));
        }
        results.push(BudgetResult {
            name: budget.name.clone(),
            expression: budget.text.clone(),
            metric: subject.to_string(),
            failed,
            actual: evaluable.then_some(actual),
            limit: evaluable.then_some(limit),
            unit: units::name(unit),
            message,
            top_contributor,
        });
    }
    Ok(results)
}

async fn trace_info(ctx: &SessionContext, path: &Path) -> Result<TraceInfo> {
    let rows = Rows::fetch(
        ctx,
        "report trace",
        "SELECT program, command_line, pid, CAST(start_time AS VARCHAR) AS start_time, duration_ns, events,
                threads, finished, sample_rate_bytes FROM trace LIMIT 1",
    )
    .await?;
    let first = |v: Vec<Option<String>>| v.into_iter().next().flatten().unwrap_or_default();
    let number = |v: Vec<Option<u64>>| v.into_iter().next().flatten().unwrap_or_default();
    let sample_rate_bytes = number(rows.u64("sample_rate_bytes")?);
    Ok(TraceInfo {
        path: path.display().to_string(),
        program: first(rows.string("program")?),
        command_line: first(rows.string("command_line")?),
        pid: number(rows.u64("pid")?),
        start_time: first(rows.string("start_time")?),
        duration_ns: rows.i64("duration_ns")?.into_iter().next().flatten().unwrap_or_default(),
        events: number(rows.u64("events")?),
        threads: number(rows.u64("threads")?),
        finished: first(rows.string("finished")?) == "true",
        sampled: sample_rate_bytes > 0,
        sample_rate_bytes,
    })
}

/// Name of the table of live bytes after each moment, made once per
/// session by [`live_bytes`].
const LIVE_TABLE: &str = "memscope_report_live";

/// Makes [`LIVE_TABLE`]: `(ts, live)`, the weighted bytes live after all
/// events at time `ts` (a window over all the events up to `ts`, its
/// peers included). Events at one timestamp count as simultaneous, as if
/// deallocations came first (as `queries/fragmentation.sql` orders them). One window over every allocation and deallocation,
/// shared by the peak, the timeline and the groups' peak contributions.
async fn live_bytes(ctx: &SessionContext) -> Result<()> {
    if ctx.table_exist(LIVE_TABLE).unwrap_or(false) {
        return Ok(());
    }
    let context = "computing the report's live bytes";
    // The window's rows come in time order, and peers share their sum. In
    // one partition the GROUP BY takes them a timestamp at a time as they
    // come; in several, DataFusion deals them out to the partitions and
    // hashes every timestamp again (at 10.9 M events: 4.7 s against 1.9 s).
    // The sorts below the window still read the table's partitions at once.
    let mut state = ctx.state();
    state.config_mut().options_mut().execution.target_partitions = 1;
    let plan = state
        .create_logical_plan(
            "WITH d AS (SELECT alloc_ts_ns AS ts, size * weight AS delta FROM allocations
                        UNION ALL SELECT free_ts_ns, -(size * weight) FROM allocations WHERE free_ts_ns IS NOT NULL),
                  r AS (SELECT ts, SUM(delta) OVER (ORDER BY ts RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS live FROM d)
             SELECT ts, MAX(live) AS live FROM r GROUP BY ts",
        )
        .await
        .map_err(|e| Error::engine(context, e))?;
    let frame = DataFrame::new(state, plan);
    let planned = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(|e| Error::engine(context, e))?;
    // The batches' own schema where there are any: its nullability can be
    // narrower than the plan's.
    let schema = batches.first().map_or(planned, RecordBatch::schema);
    // The aggregate hands its groups out as slices of a few large arrays.
    // A sort over a table of such slices counts each one as its whole
    // array against the memory pool, and ran out of the pool on traces of
    // a few megabytes: each batch is copied into arrays of its own size.
    let batches = batches
        .iter()
        .map(|b| {
            let all = UInt32Array::from_iter_values(0..b.num_rows() as u32);
            take_record_batch(b, &all)
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::engine(context, e))?;
    let table = MemTable::try_new(schema, vec![batches]).map_err(|e| Error::engine(context, e))?;
    ctx.register_table(LIVE_TABLE, Arc::new(table)).map_err(|e| Error::engine(context, e))?;
    Ok(())
}

/// When live bytes first peaked, and the peak (0 and 0 for an empty trace).
async fn peak(ctx: &SessionContext) -> Result<(i64, u64)> {
    live_bytes(ctx).await?;
    let rows = Rows::fetch(
        ctx,
        "report peak",
        &format!("SELECT ts, live FROM {LIVE_TABLE} ORDER BY live DESC, ts LIMIT 1"),
    )
    .await?;
    Ok((
        rows.i64("ts")?.first().copied().flatten().unwrap_or(0),
        round(rows.f64("live")?.first().copied().flatten()),
    ))
}

fn round(v: Option<f64>) -> u64 {
    v.map_or(0, |v| v.round().max(0.0) as u64)
}

async fn totals(ctx: &SessionContext, temporary: Temporary) -> Result<Totals> {
    let rows = Rows::fetch(
        ctx,
        "report totals",
        "SELECT SUM(weight) AS allocations, SUM(size * weight) AS allocated_bytes,
                SUM(CASE WHEN realloc_from IS NOT NULL THEN weight ELSE 0 END) AS reallocations,
                SUM(CASE WHEN free_ts_ns IS NULL THEN weight ELSE 0 END) AS leaked_allocations,
                SUM(CASE WHEN free_ts_ns IS NULL THEN size * weight ELSE 0 END) AS leaked_bytes
         FROM allocations",
    )
    .await?;
    let f = |name: &str| -> Result<u64> { Ok(round(rows.f64(name)?.first().copied().flatten())) };
    let metric = |metric| MetricRef { baseline: false, metric, filter: Vec::new() };
    let (peak_ts_ns, peak_bytes) = peak(ctx).await?;
    let rss = Rows::fetch(
        ctx,
        "report rss",
        "SELECT MAX(rss_bytes) AS peak, last_value(rss_bytes ORDER BY ts_ns) AS last FROM rss",
    )
    .await?;
    Ok(Totals {
        allocations: f("allocations")?,
        allocated_bytes: f("allocated_bytes")?,
        reallocations: f("reallocations")?,
        peak_bytes,
        peak_ts_ns,
        leaked_allocations: f("leaked_allocations")?,
        leaked_bytes: f("leaked_bytes")?,
        temporary_allocations: round(Some(
            metrics::value(ctx, &metric(Metric::TemporaryAllocations), temporary).await?,
        )),
        temporary_definition: temporary.to_string(),
        peak_rss_bytes: rss.u64("peak")?.first().copied().flatten(),
        end_rss_bytes: rss.u64("last")?.first().copied().flatten(),
        anomalies: anomaly_counts(ctx).await?,
    })
}

/// Anomalies by kind; none for a dataset written before the table existed.
async fn anomaly_counts(ctx: &SessionContext) -> Result<Vec<AnomalyCount>> {
    if !ctx.table_exist("anomalies").unwrap_or(false) {
        return Ok(Vec::new());
    }
    let rows = Rows::fetch(
        ctx,
        "report anomalies",
        "SELECT CAST(kind AS VARCHAR) AS kind, COUNT(*) AS n FROM anomalies GROUP BY kind ORDER BY kind",
    )
    .await?;
    Ok(rows
        .string("kind")?
        .into_iter()
        .zip(rows.u64("n")?)
        .map(|(k, n)| AnomalyCount { kind: k.unwrap_or_default(), count: n.unwrap_or(0) })
        .collect())
}

/// Per call site or per type: everything a [`Group`] holds, for all of
/// them (top-N lists and diffs pick from this).
pub(crate) async fn groups(ctx: &SessionContext, by: Column) -> Result<Vec<Group>> {
    let key = by.sql();
    let location = match by {
        Column::CallSite => {
            "first_value(CASE WHEN a.call_site_file IS NOT NULL THEN concat(CAST(a.call_site_file AS VARCHAR), ':', coalesce(CAST(a.call_site_line AS VARCHAR), '?')) END ORDER BY a.alloc_ts_ns, a.alloc_id)"
        }
        _ => "CAST(NULL AS VARCHAR)",
    };
    let (p, _) = peak(ctx).await?;
    let text = format!(
        "SELECT {key} AS name, {location} AS location,
                SUM(a.weight) AS allocations, SUM(a.size * a.weight) AS bytes,
                SUM(CASE WHEN a.free_ts_ns IS NULL THEN a.weight ELSE 0 END) AS leaked_allocations,
                SUM(CASE WHEN a.free_ts_ns IS NULL THEN a.size * a.weight ELSE 0 END) AS leaked_bytes,
                SUM(CASE WHEN a.alloc_ts_ns <= {p} AND (a.free_ts_ns IS NULL OR a.free_ts_ns > {p})
                         THEN a.size * a.weight ELSE 0 END) AS peak_bytes,
                MIN(CASE WHEN a.free_ts_ns IS NULL THEN a.address END) AS leaked_address
         FROM allocations a
         GROUP BY {key}"
    );
    let rows = Rows::fetch(ctx, &format!("report by {}", by.name()), &text).await?;
    let names = rows.string("name")?;
    let locations = rows.string("location")?;
    let allocations = rows.f64("allocations")?;
    let bytes = rows.f64("bytes")?;
    let leaked_allocations = rows.f64("leaked_allocations")?;
    let leaked_bytes = rows.f64("leaked_bytes")?;
    let peak_bytes = rows.f64("peak_bytes")?;
    let leaked_address = rows.u64("leaked_address")?;
    Ok((0..rows.len())
        .map(|i| Group {
            name: names[i].clone().unwrap_or_else(|| "(unknown)".into()),
            location: locations[i].clone(),
            allocations: round(allocations[i]),
            bytes: round(bytes[i]),
            leaked_allocations: round(leaked_allocations[i]),
            leaked_bytes: round(leaked_bytes[i]),
            peak_bytes: round(peak_bytes[i]),
            leaked_address: leaked_address[i].map(|a| format!("{a:#x}")),
        })
        .collect())
}

async fn lifetime_histogram(ctx: &SessionContext) -> Result<Vec<Bucket>> {
    let source = query::SqlSource::builtin("lifetime_histogram");
    let batches = query::run(ctx, &source).await?.pop().map(|r| r.batches).unwrap_or_default();
    let rows = Rows::from_batches("lifetime histogram", batches);
    let status = rows.string("status")?;
    let lower = rows.u64("lower_ns")?;
    let upper = rows.u64("upper_ns")?;
    let allocations = rows.u64("allocations")?;
    let bytes = rows.u64("bytes")?;
    Ok((0..rows.len())
        .filter(|&i| status[i].as_deref() == Some("freed"))
        .map(|i| Bucket {
            lower: lower[i].unwrap_or(0),
            upper: upper[i].unwrap_or(0),
            allocations: allocations[i].unwrap_or(0),
            bytes: bytes[i].unwrap_or(0),
        })
        .collect())
}

async fn size_histogram(ctx: &SessionContext) -> Result<Vec<Bucket>> {
    let rows = Rows::fetch(
        ctx,
        "report size histogram",
        "SELECT bucket, SUM(weight) AS allocations, SUM(size * weight) AS bytes FROM (
             SELECT CASE WHEN size < 2 THEN 0 ELSE CAST(floor(log2(CAST(size AS DOUBLE))) AS BIGINT) END AS bucket,
                    size, weight
             FROM allocations)
         GROUP BY bucket ORDER BY bucket",
    )
    .await?;
    let bucket = rows.i64("bucket")?;
    let allocations = rows.f64("allocations")?;
    let bytes = rows.f64("bytes")?;
    Ok((0..rows.len())
        .map(|i| {
            let b = bucket[i].unwrap_or(0).clamp(0, 63) as u32;
            Bucket {
                lower: if b == 0 { 0 } else { 1u64 << b },
                upper: 1u64.checked_shl(b + 1).unwrap_or(u64::MAX),
                allocations: round(allocations[i]),
                bytes: round(bytes[i]),
            }
        })
        .collect())
}

async fn timeline(ctx: &SessionContext, duration_ns: i64) -> Result<Vec<TimePoint>> {
    let span = duration_ns.max(1).saturating_add(1);
    let n = TIMELINE_POINTS;
    live_bytes(ctx).await?;
    let live = Rows::fetch(
        ctx,
        "report memory over time",
        &format!(
            "SELECT CAST(greatest(ts, 0) AS DOUBLE) * {n} / {span} AS pos, live FROM {LIVE_TABLE} ORDER BY ts"
        ),
    )
    .await?;
    let rss = Rows::fetch(
        ctx,
        "report rss over time",
        &format!(
            "SELECT CAST(greatest(ts_ns, 0) AS DOUBLE) * {n} / {span} AS pos, rss_bytes AS live FROM rss ORDER BY ts_ns"
        ),
    )
    .await?;
    let live = fold(&live, n as usize, Some(0.0))?;
    let rss = fold(&rss, n as usize, None)?;
    Ok((0..n as usize)
        .map(|i| TimePoint {
            ts_ns: (i as i128 * span as i128 / n as i128) as i64,
            live_bytes: round(live[i]),
            rss_bytes: rss[i].map(|v| round(Some(v))),
        })
        .collect())
}

/// Per interval of `n`, the largest value of a step function given as
/// time-ordered `(pos, value)` rows (`pos` in intervals): the value carried
/// in from before the interval counts, and each interval carries its last
/// value forward. `start` is the value before the first row.
fn fold(rows: &Rows, n: usize, start: Option<f64>) -> Result<Vec<Option<f64>>> {
    let mut out = vec![None; n];
    let mut current = start;
    let mut points = rows.f64("pos")?.into_iter().zip(rows.f64("live")?).peekable();
    for (i, slot) in out.iter_mut().enumerate() {
        let mut high = current;
        while let Some(&(pos, v)) = points.peek() {
            let at = pos.map_or(0, |p| (p.max(0.0).floor() as usize).min(n - 1));
            if at > i {
                break;
            }
            points.next();
            if let Some(v) = v {
                high = Some(high.map_or(v, |h: f64| h.max(v)));
                current = Some(v);
            }
        }
        *slot = high;
    }
    Ok(out)
}

async fn fragmentation(ctx: &SessionContext) -> Result<Vec<Fragmentation>> {
    let source = query::SqlSource::builtin("fragmentation");
    let batches = query::run(ctx, &source).await?.pop().map(|r| r.batches).unwrap_or_default();
    let rows = Rows::from_batches("fragmentation", batches);
    let at = rows.string("at")?;
    let at_ns = rows.i64("at_ns")?;
    let live_blocks = rows.u64("live_blocks")?;
    let live_bytes = rows.u64("live_bytes")?;
    let free_bytes = rows.u64("free_bytes")?;
    let largest = rows.u64("largest_gap_bytes")?;
    let fragmentation = rows.f64("fragmentation")?;
    Ok((0..rows.len())
        .map(|i| Fragmentation {
            at: at[i].clone().unwrap_or_default(),
            at_ns: at_ns[i].unwrap_or(0),
            live_blocks: live_blocks[i].unwrap_or(0),
            live_bytes: live_bytes[i].unwrap_or(0),
            free_bytes: free_bytes[i].unwrap_or(0),
            largest_gap_bytes: largest[i].unwrap_or(0),
            fragmentation: fragmentation[i],
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, UInt64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(points: &[(f64, f64)]) -> Rows {
        let schema = Arc::new(Schema::new(vec![
            Field::new("pos", DataType::Float64, false),
            Field::new("live", DataType::Float64, false),
        ]));
        let pos = Float64Array::from_iter_values(points.iter().map(|p| p.0));
        let live = Float64Array::from_iter_values(points.iter().map(|p| p.1));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(pos), Arc::new(live)]).unwrap();
        Rows::from_batches("test", vec![batch])
    }

    #[test]
    fn timeline_keeps_highs_and_carries_the_last_value() {
        // 1 GiB allocated in interval 0 and freed in interval 1; idle after.
        let live = rows(&[(0.2, 1e9), (1.5, 0.0)]);
        assert_eq!(
            fold(&live, 4, Some(0.0)).unwrap(),
            [Some(1e9), Some(1e9), Some(0.0), Some(0.0)]
        );
        // A high inside an interval shows even when it ends lower; the value
        // carried into an interval counts for it.
        let live = rows(&[(0.1, 5.0), (0.2, 50.0), (0.3, 7.0), (2.0, 3.0)]);
        assert_eq!(fold(&live, 3, Some(0.0)).unwrap(), [Some(50.0), Some(7.0), Some(7.0)]);
        // RSS: nothing before its first sample.
        let rss = rows(&[(1.5, 10.0)]);
        assert_eq!(fold(&rss, 3, None).unwrap(), [None, Some(10.0), Some(10.0)]);
    }

    /// The live-bytes table's batches hold arrays of their own size. A
    /// sort counts each batch's arrays against the memory pool; when the
    /// batches were slices of the aggregate's few large arrays, each was
    /// counted as the whole array, and the report's timeline ran out of
    /// the pool on a trace of 23 MB, one run in three.
    #[test]
    fn live_bytes_batches_own_their_arrays() {
        let n = 100_000i64;
        let schema = Arc::new(Schema::new(vec![
            Field::new("alloc_ts_ns", DataType::Int64, false),
            Field::new("free_ts_ns", DataType::Int64, true),
            Field::new("size", DataType::UInt64, false),
            Field::new("weight", DataType::Float64, false),
        ]));
        // Allocations at even times, two in three freed at odd times: about
        // 170 000 distinct times, so many batches of groups.
        let allocations = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| 2 * i))),
                Arc::new(Int64Array::from_iter((0..n).map(|i| (i % 3 != 0).then_some(2 * i + 1)))),
                Arc::new(UInt64Array::from_iter_values((0..n).map(|i| i as u64 % 100 + 1))),
                Arc::new(Float64Array::from_iter_values((0..n).map(|_| 1.0))),
            ],
        )
        .unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let batches = runtime.block_on(async {
            let ctx = SessionContext::new();
            ctx.register_batch("allocations", allocations).unwrap();
            live_bytes(&ctx).await.unwrap();
            let provider = ctx.table_provider(LIVE_TABLE).await.unwrap();
            let table = provider.downcast_ref::<MemTable>().unwrap();
            let mut batches = Vec::new();
            for partition in &table.batches {
                batches.extend(partition.read().await.iter().cloned());
            }
            batches
        });
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows as i64, n + (0..n).filter(|i| i % 3 != 0).count() as i64);
        assert!(batches.len() > 4, "{} batches: nothing shared to count twice", batches.len());
        // `ts` and `live`, 8 bytes each a row, with room for validity
        // bitmaps and the padding of each batch's buffers.
        let counted: usize = batches.iter().map(RecordBatch::get_array_memory_size).sum();
        assert!(counted <= rows * 16 * 3 / 2, "{counted} bytes counted for {rows} rows");
    }
}
