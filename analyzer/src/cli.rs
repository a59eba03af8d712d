//! The command line: arguments, and one function per command.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use memscope_analyzer::error::Error;
use memscope_analyzer::flamegraph::{self, Metric};
use memscope_analyzer::memory::MemoryLimit;
use memscope_analyzer::output::{self, Destination, Format};
use memscope_analyzer::query::{self, QueryResult, SqlSource};
use memscope_analyzer::reads::{self, Reads};
use memscope_analyzer::report::budget::{Budget, BudgetsFile};
use memscope_analyzer::report::metrics::Temporary;
use memscope_analyzer::report::render::{Format as ReportFormat, render};
use memscope_analyzer::report::{self, Report, diff};
use memscope_analyzer::{Input, convert, progress, stream_trace};
use memscope_schema::tables::TABLES;

/// Answers SQL over memscope heap traces: what leaked, what is hot, how
/// fragmented the heap is.
///
/// With a trace and `--sql`, runs the queries (the same as the `query`
/// command). A directory written by `convert` can stand in for a trace
/// everywhere.
#[derive(Debug, Parser)]
#[command(
    name = "memscope-analyze",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
#[command(
    after_help = "Built-in queries (usable as --sql NAME): leaks, leaks_by_call_site, call_site_hotspots, fragmentation, type_hotspots, lifetime_histogram.\n\
Environment: MEMSCOPE_SYMBOL_PATH=DIR[:DIR...] directories searched for module files (by build id, then by name) when symbolizing call stacks.\n\
Exit codes: 0 ok, 1 a budget failed (report), 2 usage or SQL error, 65 bad trace, 66 missing input, 70 internal error, 73 output exists, 74 I/O error."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    query: QueryArgs,
    /// Memory the analyzer may use, such as 2GiB or 512MiB. A trace whose
    /// tables do not fit is written as Parquet under $TMPDIR and queried
    /// from there; queries spill to $TMPDIR beyond their share.
    #[arg(long, global = true, value_name = "SIZE", default_value = "2GiB", value_parser = parse_memory_limit)]
    memory_limit: MemoryLimit,
}

fn parse_memory_limit(text: &str) -> std::result::Result<MemoryLimit, String> {
    MemoryLimit::parse(text).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run SQL over a trace's tables and print the results.
    Query(QueryArgs),
    /// Write every table of a trace as a zstd Parquet file into a directory.
    Convert(ConvertArgs),
    /// List the tables and their columns, with types, units and meanings.
    Tables(TablesArgs),
    /// Draw an interactive SVG flamegraph of allocations by call stack, or
    /// write its collapsed stacks with --folded.
    Flamegraph(FlamegraphArgs),
    /// Summarize a trace for people and CI: totals, peak, leaks, hotspots,
    /// histograms, memory over time, fragmentation; check memory budgets
    /// (exit code 1 when one fails).
    Report(ReportArgs),
    /// What grew or shrank from BASE to NEW, by call site and by type,
    /// largest change first.
    Diff(DiffArgs),
}

#[derive(Debug, Args)]
#[command(
    after_help = "Budgets: EXPR fails when true, e.g. 'leaked_bytes > 0', 'peak_bytes > 64MiB', \
'peak_bytes > baseline.peak_bytes * 1.10', 'leaked_bytes[call_site ~ \"my_crate::cache\"] > 1KiB'. \
Metrics: allocations, allocated_bytes, peak_bytes, leaked_allocations, leaked_bytes, \
temporary_allocations, peak_rss_bytes, duration_ns. Filters: [call_site|type|thread|file ~|!~|=|!= \"text\", ...]. \
Units: B KB MB GB KiB MiB GiB ns us ms s %.\n\
Exit codes: 0 report written and no budget failed, 1 a budget failed, 2 usage error or bad budget, \
65 bad trace, 66 missing input, 73 output exists, 74 I/O error."
)]
struct ReportArgs {
    /// Trace file, or a directory written by `convert`.
    trace: PathBuf,
    /// A trace or `convert` directory to compare with; `baseline.METRIC`
    /// in budgets reads it.
    #[arg(long, value_name = "TRACE_OR_DATASET")]
    baseline: Option<PathBuf>,
    /// A budget: fail (exit code 1) when EXPR holds. Repeatable.
    #[arg(long = "fail-on", value_name = "EXPR")]
    fail_on: Vec<String>,
    /// A TOML file of budgets (`[[budget]] fail_on = "..."`) and report
    /// defaults; its budgets are checked with those of --fail-on.
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    format: ReportFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Exit 0 even when budgets fail (report-only runs).
    #[arg(long)]
    exit_zero: bool,
    /// Rows in each top-N list [default: 10].
    #[arg(long, value_name = "N")]
    top: Option<usize>,
    /// When an allocation is temporary: `next` (freed before its thread's
    /// next allocation, as heaptrack counts) or a lifetime such as `10us`
    /// [default: next].
    #[arg(long, value_name = "next|DURATION")]
    temporary: Option<String>,
    /// Do not print warnings about the trace, nor failed budgets on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The trace or dataset to compare against.
    base: PathBuf,
    /// The trace or dataset to compare.
    new: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Rows to show; 0 shows all.
    #[arg(long, default_value_t = 30)]
    limit: usize,
    /// Write the result to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Do not print warnings about the traces.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct FlamegraphArgs {
    /// Trace file, or a directory written by `convert`.
    trace: PathBuf,
    /// What the widths measure.
    #[arg(long, value_enum, default_value_t = Metric::Bytes)]
    metric: Metric,
    /// Output file: an SVG, or collapsed stacks with --folded.
    #[arg(long, short = 'o', value_name = "PATH")]
    output: PathBuf,
    /// Write collapsed stacks (one `outer;...;inner value` line per stack,
    /// as inferno, flamegraph.pl and speedscope read them) instead of SVG.
    #[arg(long)]
    folded: bool,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// Do not print warnings about the trace.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// Trace file, or a directory written by `convert`.
    #[arg(required = true)]
    trace: Option<PathBuf>,
    /// A SQL file, a built-in query name (leaks, fragmentation,
    /// type_hotspots, lifetime_histogram) or SQL text. Repeatable; a file
    /// may hold several statements separated by `;`.
    #[arg(long = "sql", value_name = "FILE_OR_QUERY", required = true)]
    sql: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Write results to this file (one result) or directory (several)
    /// instead of stdout.
    #[arg(long, short = 'o', value_name = "PATH")]
    output: Option<PathBuf>,
    /// Replace output files that exist.
    #[arg(long)]
    force: bool,
    /// Print how long each --sql took to plan and run (wall time, after
    /// the input was loaded) on stderr.
    #[arg(long)]
    timing: bool,
    /// Do not print warnings about the trace.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Trace file.
    trace: PathBuf,
    /// Output directory; gets one `<table>.parquet` per table (in
    /// `DIR/run=ID/` with `--run`).
    #[arg(long, short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// Add the trace to DIR as run ID, in `DIR/run=ID/` (letters, digits,
    /// `.`, `_`, `-`): SQL over DIR then sees every run, with a `run`
    /// column. Other runs are never touched.
    #[arg(long, value_name = "ID")]
    run: Option<String>,
    /// Replace Parquet files that exist (only this run's, with `--run`).
    #[arg(long)]
    force: bool,
    /// Do not print warnings about the trace.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct TablesArgs {
    /// A trace or `convert` directory, to show row counts too.
    trace: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<()> {
    let limit = cli.memory_limit;
    match cli.command {
        Some(Command::Query(args)) => run_query(args, limit).await,
        Some(Command::Convert(args)) => run_convert(args),
        Some(Command::Tables(args)) => run_tables(args, limit).await,
        Some(Command::Flamegraph(args)) => run_flamegraph(args, limit).await,
        Some(Command::Report(args)) => run_report(args, limit).await,
        Some(Command::Diff(args)) => run_diff(args, limit).await,
        None => run_query(cli.query, limit).await,
    }
}

/// Prints the warnings about the input at `path` on stderr, one per line.
fn warn(path: &Path, warnings: &[String], quiet: bool) {
    progress::clear();
    if !quiet {
        for w in warnings {
            eprintln!("memscope-analyze: warning: {}: {w}", path.display());
        }
    }
}

async fn run_query(args: QueryArgs, limit: MemoryLimit) -> Result<()> {
    if !args.quiet {
        progress::enable();
    }
    let trace = args.trace.expect("clap requires TRACE");
    // Resolve every --sql first so that a typo fails before decoding.
    let sources: Vec<SqlSource> = args
        .sql
        .iter()
        .enumerate()
        .map(|(i, s)| SqlSource::resolve(s, i + 1))
        .collect::<Result<_, _>>()?;
    if args.format == Format::Parquet && args.output.is_none() {
        Destination::choose(None, args.format, 1)?;
    }
    let reads = reads::plan(&sources).await.unwrap_or_else(Reads::all);
    let input = Input::open_within(&trace, limit, reads)?;
    warn(&trace, input.warnings(), args.quiet);
    let ctx = input.session().await?;
    let mut results = Vec::new();
    for source in &sources {
        let start = std::time::Instant::now();
        let ran = query::run(&ctx, source).await?;
        if args.timing {
            progress::clear();
            let rows: usize = ran.iter().flat_map(|r| &r.batches).map(|b| b.num_rows()).sum();
            eprintln!(
                "memscope-analyze: timing: {}: {:.1} ms ({rows} rows)",
                source.name,
                start.elapsed().as_secs_f64() * 1e3
            );
        }
        results.extend(ran);
    }
    let dest = Destination::choose(args.output.as_deref(), args.format, results.len())?;
    output::write_results(&results, args.format, &dest, args.force)?;
    Ok(())
}

fn run_convert(args: ConvertArgs) -> Result<()> {
    if !args.quiet {
        progress::enable();
    }
    if args.trace.is_dir() {
        return Err(Error::Usage(format!(
            "{}: convert needs a trace file, not a directory",
            args.trace.display()
        ))
        .into());
    }
    let output = convert::output_dir(&args.output, args.run.as_deref())?;
    let (data, warnings, sink) =
        stream_trace(&args.trace, |_| convert::ParquetSink::create(&output, args.force))?;
    warn(&args.trace, &warnings, args.quiet);
    for (path, rows) in sink.finish(&data)? {
        progress::clear();
        eprintln!("wrote {} ({rows} rows)", path.display());
    }
    Ok(())
}

async fn run_flamegraph(args: FlamegraphArgs, limit: MemoryLimit) -> Result<()> {
    if !args.quiet {
        progress::enable();
    }
    let input = Input::open_within(&args.trace, limit, fixed_sql_reads())?;
    input.require_one_run("flamegraph")?;
    warn(&args.trace, input.warnings(), args.quiet);
    let ctx = input.session().await?;
    let lines = flamegraph::folded(&ctx, args.metric).await?;
    let bytes = if args.folded {
        lines.iter().flat_map(|l| [l.as_str(), "\n"]).collect::<String>().into_bytes()
    } else {
        let name =
            args.trace.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        flamegraph::svg(
            &lines,
            args.metric,
            &format!("memscope: {} by call stack ({name})", args.metric),
        )?
    };
    output::write_file(&args.output, &bytes, args.force)?;
    progress::clear();
    eprintln!("wrote {} ({} stacks)", args.output.display(), lines.len());
    Ok(())
}

async fn run_report(args: ReportArgs, limit: MemoryLimit) -> Result<()> {
    if !args.quiet {
        progress::enable();
    }
    // Everything the user wrote is checked before the (long) decoding.
    let (file, mut budgets) = match &args.budgets {
        Some(path) => BudgetsFile::load(path)?,
        None => (BudgetsFile::default(), Vec::new()),
    };
    for text in &args.fail_on {
        budgets.push(Budget::parse(text)?);
    }
    if args.baseline.is_none()
        && let Some(b) = budgets.iter().find(|b| b.metrics().iter().any(|m| m.baseline))
    {
        return Err(Error::Usage(format!(
            "budget {:?} reads the baseline: give one with --baseline",
            b.text
        ))
        .into());
    }
    let temporary: Temporary = match args.temporary.as_ref().or(file.report.temporary.as_ref()) {
        Some(t) => t.parse().map_err(|e: String| Error::Usage(format!("--temporary {e}")))?,
        None => Temporary::default(),
    };
    if let Some(out) = &args.output
        && !args.force
        && out.exists()
    {
        return Err(Error::OutputExists { path: out.clone() }.into());
    }
    let options =
        report::Options { top: args.top.or(file.report.top).unwrap_or(10), temporary, budgets };
    let input = Input::open_within(&args.trace, limit, fixed_sql_reads())?;
    input.require_one_run("report")?;
    warn(&args.trace, input.warnings(), args.quiet);
    let ctx = input.session().await?;
    let baseline = match &args.baseline {
        Some(path) => {
            let base = Input::open_within(path, limit, fixed_sql_reads())?;
            base.require_one_run("report --baseline")?;
            warn(path, base.warnings(), args.quiet);
            Some((path.as_path(), base.session().await?))
        }
        None => None,
    };
    progress::stage("computing the report");
    let report =
        Report::compute(&ctx, &args.trace, baseline.as_ref().map(|(p, c)| (*p, c)), &options)
            .await?;
    let flamegraph_svg = if args.format == ReportFormat::Html {
        let lines = flamegraph::folded(&ctx, Metric::Bytes).await?;
        let has_stacks = lines.iter().any(|l| !l.starts_with(flamegraph::NO_STACK));
        if has_stacks {
            Some(flamegraph::svg(&lines, Metric::Bytes, "allocated bytes by call stack")?)
        } else {
            None
        }
    } else {
        None
    };
    let bytes = render(&report, args.format, flamegraph_svg.as_deref())?;
    match &args.output {
        Some(path) => {
            output::write_file(path, &bytes, args.force)?;
            if !args.quiet {
                progress::clear();
                eprintln!("wrote {} ({})", path.display(), report::render::verdict(&report));
            }
        }
        None => {
            progress::clear();
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| Error::io(Path::new("<stdout>"), e))?;
        }
    }
    let failed: Vec<&report::BudgetResult> = report.budgets.iter().filter(|b| b.failed).collect();
    if !args.quiet {
        for b in &failed {
            eprintln!("memscope-analyze: budget {}", b.message);
        }
    }
    if !failed.is_empty() && !args.exit_zero {
        return Err(
            Error::BudgetsFailed { failed: failed.len(), total: report.budgets.len() }.into()
        );
    }
    Ok(())
}

async fn run_diff(args: DiffArgs, limit: MemoryLimit) -> Result<()> {
    if !args.quiet {
        progress::enable();
    }
    if args.format == Format::Parquet && args.output.is_none() {
        Destination::choose(None, args.format, 1)?;
    }
    let base = Input::open_within(&args.base, limit, fixed_sql_reads())?;
    base.require_one_run("diff")?;
    warn(&args.base, base.warnings(), args.quiet);
    let new = Input::open_within(&args.new, limit, fixed_sql_reads())?;
    new.require_one_run("diff")?;
    warn(&args.new, new.warnings(), args.quiet);
    let mut changes = diff::changes(&base.session().await?, &new.session().await?).await?;
    if args.limit > 0 {
        changes.truncate(args.limit);
    }
    let result = diff::to_result(&changes)?;
    let dest = Destination::choose(args.output.as_deref(), args.format, 1)?;
    output::write_results(&[result], args.format, &dest, args.force)?;
    Ok(())
}

async fn run_tables(args: TablesArgs, limit: MemoryLimit) -> Result<()> {
    let rows = match &args.trace {
        Some(path) => Some(row_counts(path, limit).await?),
        None => None,
    };
    let mut table = Vec::new();
    let mut column = Vec::new();
    let mut ty = Vec::new();
    let mut nullable = Vec::new();
    let mut unit = Vec::new();
    let mut doc = Vec::new();
    let mut counts = Vec::new();
    for t in TABLES {
        let n =
            rows.as_ref().and_then(|r| r.iter().find(|(name, _)| *name == t.name).map(|(_, n)| *n));
        for c in t.columns {
            table.push(t.name);
            column.push(c.name);
            ty.push(c.ty.name());
            nullable.push(c.nullable);
            unit.push(c.unit);
            doc.push(c.doc);
            counts.push(n);
        }
    }
    let mut fields = vec![
        Field::new("table", DataType::Utf8, false),
        Field::new("column", DataType::Utf8, false),
        Field::new("type", DataType::Utf8, false),
        Field::new("nullable", DataType::Boolean, false),
        Field::new("unit", DataType::Utf8, true),
        Field::new("description", DataType::Utf8, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(table)),
        Arc::new(StringArray::from(column)),
        Arc::new(StringArray::from(ty)),
        Arc::new(BooleanArray::from(nullable)),
        Arc::new(StringArray::from(unit)),
        Arc::new(StringArray::from(doc)),
    ];
    if rows.is_some() {
        fields.insert(1, Field::new("table_rows", DataType::UInt64, true));
        columns.insert(1, Arc::new(UInt64Array::from(counts)));
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::engine("listing tables", e))?;
    let result = QueryResult { name: "tables".into(), schema, batches: vec![batch] };
    let dest = Destination::choose(None, args.format, 1)?;
    output::write_results(&[result], args.format, &dest, false)?;
    Ok(())
}

/// What `report`, `diff` and `flamegraph` read of a trace's big tables:
/// all but `events`, a row per event, the biggest (of the big tables,
/// their SQL reads `allocations`, and the report `anomalies`). Not built,
/// it is not written to disk either when the tables outgrow their share of
/// `--memory-limit`.
fn fixed_sql_reads() -> Reads {
    Reads::all().without("events")
}

/// Rows of each table of a trace or dataset.
async fn row_counts(path: &Path, limit: MemoryLimit) -> Result<Vec<(&'static str, u64)>> {
    let input = Input::open_within(path, limit, Reads::all())?;
    warn(path, input.warnings(), false);
    let ctx = input.session().await?;
    let mut out = Vec::new();
    for t in TABLES {
        let df = ctx
            .table(t.name)
            .await
            .map_err(|e| Error::engine(format!("reading table {}", t.name), e))?;
        let n =
            df.count().await.map_err(|e| Error::engine(format!("counting table {}", t.name), e))?;
        out.push((t.name, n as u64));
    }
    Ok(out)
}
