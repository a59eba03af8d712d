//! The command line: arguments, and one function per command.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use memscope_analyzer::error::Error;
use memscope_analyzer::flamegraph::{self, Metric};
use memscope_analyzer::output::{self, Destination, Format};
use memscope_analyzer::query::{self, QueryResult, SqlSource};
use memscope_analyzer::{Input, convert, load};
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
Exit codes: 0 ok, 2 usage or SQL error, 65 bad trace, 66 missing input, 70 internal error, 73 output exists, 74 I/O error."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    query: QueryArgs,
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
    /// Do not print warnings about the trace.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ConvertArgs {
    /// Trace file.
    trace: PathBuf,
    /// Output directory; gets one `<table>.parquet` per table.
    #[arg(long, short = 'o', value_name = "DIR")]
    output: PathBuf,
    /// Replace Parquet files that exist.
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
    match cli.command {
        Some(Command::Query(args)) => run_query(args).await,
        Some(Command::Convert(args)) => run_convert(args),
        Some(Command::Tables(args)) => run_tables(args).await,
        Some(Command::Flamegraph(args)) => run_flamegraph(args).await,
        None => run_query(cli.query).await,
    }
}

fn warn(warnings: &[String], quiet: bool) {
    if !quiet {
        for w in warnings {
            eprintln!("memscope-analyze: warning: {w}");
        }
    }
}

async fn run_query(args: QueryArgs) -> Result<()> {
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
    let input = Input::open(&trace)?;
    warn(input.warnings(), args.quiet);
    let ctx = input.session().await?;
    let mut results = Vec::new();
    for source in &sources {
        results.extend(query::run(&ctx, source).await?);
    }
    let dest = Destination::choose(args.output.as_deref(), args.format, results.len())?;
    output::write_results(&results, args.format, &dest, args.force)?;
    Ok(())
}

fn run_convert(args: ConvertArgs) -> Result<()> {
    if args.trace.is_dir() {
        return Err(Error::Usage(format!(
            "{}: convert needs a trace file, not a directory",
            args.trace.display()
        ))
        .into());
    }
    let loaded = load(&args.trace)?;
    warn(&loaded.warnings, args.quiet);
    let paths = convert::write_dataset(&loaded.data, &loaded.tables, &args.output, args.force)?;
    for (path, t) in paths.iter().zip(&loaded.tables) {
        eprintln!("wrote {} ({} rows)", path.display(), t.num_rows());
    }
    Ok(())
}

async fn run_flamegraph(args: FlamegraphArgs) -> Result<()> {
    let input = Input::open(&args.trace)?;
    warn(input.warnings(), args.quiet);
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
    eprintln!("wrote {} ({} stacks)", args.output.display(), lines.len());
    Ok(())
}

async fn run_tables(args: TablesArgs) -> Result<()> {
    let rows = match &args.trace {
        Some(path) => Some(row_counts(path).await?),
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

/// Rows of each table of a trace or dataset.
async fn row_counts(path: &Path) -> Result<Vec<(&'static str, u64)>> {
    let input = Input::open(path)?;
    warn(input.warnings(), false);
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
