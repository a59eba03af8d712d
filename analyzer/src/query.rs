//! SQL over the tables: the DataFusion session, where SQL text comes from
//! (a file, a built-in query or the command line), and running it
//! statement by statement with errors that name the file and line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Float64Type, Int64Type, Schema, SchemaRef, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Spanned;
use memscope_schema::tables::{TABLES, Table};

use crate::error::{Error, Result};
use crate::running_sum::RunningSumRule;
use crate::tables::TableData;

/// The SQL files in `queries/`, built into the binary so that
/// `--sql leaks` works from any directory: (name, text).
pub const BUILTIN_QUERIES: [(&str, &str); 6] = [
    ("leaks", include_str!("../../queries/leaks.sql")),
    ("fragmentation", include_str!("../../queries/fragmentation.sql")),
    ("type_hotspots", include_str!("../../queries/type_hotspots.sql")),
    ("lifetime_histogram", include_str!("../../queries/lifetime_histogram.sql")),
    ("leaks_by_call_site", include_str!("../../queries/leaks_by_call_site.sql")),
    ("call_site_hotspots", include_str!("../../queries/call_site_hotspots.sql")),
];

/// Where a piece of SQL came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk.
    File(PathBuf),
    /// A built-in query, by name.
    Builtin(&'static str),
    /// The `n`-th `--sql` argument (from 1), given as SQL text.
    Inline(usize),
}

/// SQL text and what to call its results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlSource {
    /// Name of the results (file stem, built-in name or `queryN`).
    pub name: String,
    /// Where the text came from.
    pub origin: Origin,
    /// The SQL: one or more statements separated by `;`.
    pub text: String,
}

impl SqlSource {
    /// The built-in query `name` (see [`BUILTIN_QUERIES`]), whatever files
    /// the working directory holds: for the analyzer's own use of its
    /// queries (the report), which a file named like one must not replace.
    ///
    /// # Panics
    ///
    /// When no built-in query is named `name` (a bug).
    pub fn builtin(name: &str) -> SqlSource {
        Self::find_builtin(name).unwrap_or_else(|| panic!("no built-in query {name}"))
    }

    /// The built-in query `name`, if there is one.
    fn find_builtin(name: &str) -> Option<SqlSource> {
        let &(name, text) = BUILTIN_QUERIES.iter().find(|(n, _)| *n == name)?;
        Some(SqlSource {
            name: name.to_string(),
            origin: Origin::Builtin(name),
            text: text.to_string(),
        })
    }

    /// Resolves the `n`-th (from 1) `--sql` argument: an existing file; else
    /// a built-in query name (`leaks`, `queries/leaks.sql`, …); else, if it
    /// looks like a file name (ends in `.sql`), an error; else SQL text.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for a missing `.sql` file, [`Error::Io`] for an
    /// unreadable one.
    pub fn resolve(arg: &str, n: usize) -> Result<SqlSource> {
        let path = Path::new(arg);
        if path.is_file() {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let name = path
                .file_stem()
                .map_or_else(|| format!("query{n}"), |s| s.to_string_lossy().into_owned());
            return Ok(SqlSource { name, origin: Origin::File(path.to_path_buf()), text });
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(arg);
        let in_queries_dir =
            path.parent().is_none_or(|p| p.as_os_str().is_empty() || p.ends_with("queries"));
        if let Some(source) = Self::find_builtin(stem).filter(|_| in_queries_dir) {
            return Ok(source);
        }
        if arg.trim_end().ends_with(".sql") || path.is_dir() {
            return Err(Error::NotFound { path: path.to_path_buf() });
        }
        Ok(SqlSource {
            name: format!("query{n}"),
            origin: Origin::Inline(n),
            text: arg.to_string(),
        })
    }

    /// How errors name a line of this source: `path:LINE`,
    /// `builtin leaks.sql:LINE` or `--sql #N, line LINE`.
    pub fn at_line(&self, line: u64) -> String {
        match &self.origin {
            Origin::File(p) => format!("{}:{line}", p.display()),
            Origin::Builtin(name) => format!("built-in query {name}.sql:{line}"),
            Origin::Inline(n) => format!("--sql #{n}, line {line}"),
        }
    }
}

/// One result set.
#[derive(Clone, Debug)]
pub struct QueryResult {
    /// Name (see [`SqlSource::name`]; `name#2` for a second result of the
    /// same source).
    pub name: String,
    /// Schema of the rows.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// A DataFusion session configured for memscope: string columns read from
/// Parquet keep their types (no `Utf8View`), SQL spans are collected so
/// errors can name lines, and running-sum windows are computed a column at
/// a time ([`RunningSumRule`]).
pub fn new_session() -> SessionContext {
    new_session_with(Arc::new(RuntimeEnv::default()))
}

/// A session like [`new_session`] on `runtime` (its memory pool and spill
/// files).
pub fn new_session_with(runtime: Arc<RuntimeEnv>) -> SessionContext {
    let state = SessionStateBuilder::new()
        .with_config(session_config())
        .with_runtime_env(runtime)
        .with_default_features()
        .with_physical_optimizer_rule(Arc::new(RunningSumRule))
        .build();
    SessionContext::new_with_state(state)
}

fn session_config() -> SessionConfig {
    let mut config = SessionConfig::new().with_information_schema(true);
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.collect_spans = true;
    config
}

/// Registers in-memory tables, spread over the session's partitions.
///
/// # Errors
///
/// [`Error::Engine`] if DataFusion rejects a table.
pub fn register_tables(ctx: &SessionContext, tables: &[TableData]) -> Result<()> {
    let partitions = ctx.copied_config().target_partitions().max(1);
    for t in tables {
        let mut parts: Vec<Vec<RecordBatch>> =
            vec![Vec::new(); partitions.min(t.batches.len()).max(1)];
        let n = parts.len();
        for (i, b) in t.batches.iter().enumerate() {
            parts[i % n].push(b.clone());
        }
        let provider = MemTable::try_new(t.schema.clone(), parts)
            .map_err(|e| Error::engine(format!("registering table {}", t.table.name), e))?;
        ctx.register_table(t.table.name, Arc::new(provider))
            .map_err(|e| Error::engine(format!("registering table {}", t.table.name), e))?;
    }
    Ok(())
}

/// The Parquet files of a directory written by `convert`, by table name.
pub fn dataset_tables(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    TABLES
        .iter()
        .map(|t| (t.name, dir.join(format!("{}.parquet", t.name))))
        .filter(|(_, p)| p.is_file())
        .collect()
}

/// The runs of a dataset partitioned by run (`convert --run`): each
/// `dir/run=ID` subdirectory that holds tables, as (ID, subdirectory),
/// sorted by ID.
pub fn dataset_runs(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut runs: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.strip_prefix("run=")?.to_string();
            let path = e.path();
            (path.is_dir() && !dataset_tables(&path).is_empty()).then_some((name, path))
        })
        .collect();
    runs.sort();
    runs
}

/// Registers the tables of a dataset partitioned by run: each table spans
/// every run and gains a `run` column (Utf8) holding the run's ID. Tables
/// get their own schema where the files match it (see [`own_schema`]).
///
/// # Errors
///
/// [`Error::Engine`] when a file cannot be read as Parquet.
pub async fn register_runs(ctx: &SessionContext, dir: &Path) -> Result<()> {
    let runs = dataset_runs(dir);
    let root = format!("{}/", dir.to_string_lossy().trim_end_matches('/'));
    for table in TABLES {
        if !runs.iter().any(|(_, r)| r.join(format!("{}.parquet", table.name)).is_file()) {
            continue;
        }
        // Listing the whole dataset, keeping only this table's files
        // (`run=ID/<table>.parquet`); the `run=ID` directories become the
        // `run` column.
        let file_name = format!("/{}.parquet", table.name);
        let files: Vec<PathBuf> = runs
            .iter()
            .map(|(_, r)| r.join(format!("{}.parquet", table.name)))
            .filter(|p| p.is_file())
            .collect();
        let schema = own_schema(table, &files)?;
        let mut options = ParquetReadOptions::default()
            .file_extension(&file_name)
            .table_partition_cols(vec![("run".to_string(), DataType::Utf8)]);
        if let Some(schema) = &schema {
            options = options.schema(schema);
        }
        ctx.register_parquet(table.name, &root, options)
            .await
            .map_err(|e| Error::engine(format!("reading the runs of {}", dir.display()), e))?;
    }
    Ok(())
}

/// The schema to register `table`'s Parquet `files` with: the table's own
/// from [`TABLES`], column metadata included, cut to the files' columns,
/// when every file has the same columns and each is one of the table's
/// (name, type, nullability), as in a dataset of what a query reads (see
/// [`crate::reads`]); else `None`, to let DataFusion infer one (files of
/// another version, or made by other tools).
///
/// DataFusion drops column metadata from a schema it infers, then casts
/// every column it reads to bridge the difference from the file, which
/// keeps it from skipping row groups by null count: `free_ts_ns IS NULL`,
/// the leaks query's filter, would read every row group.
///
/// # Errors
///
/// [`Error::Engine`] naming the file whose footer cannot be read.
fn own_schema(table: &Table, files: &[PathBuf]) -> Result<Option<Schema>> {
    let own = table.schema();
    let mut columns: Option<Vec<usize>> = None;
    for path in files {
        let context = || format!("reading {}", path.display());
        let file = std::fs::File::open(path).map_err(|e| Error::engine(context(), e))?;
        let footer = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default())
            .map_err(|e| Error::engine(context(), e))?;
        let of_file = footer
            .schema()
            .fields()
            .iter()
            .map(|f| {
                own.fields().iter().position(|o| {
                    o.name() == f.name()
                        && o.data_type() == f.data_type()
                        && o.is_nullable() == f.is_nullable()
                })
            })
            .collect::<Option<Vec<usize>>>();
        match (of_file, &columns) {
            (Some(c), None) => columns = Some(c),
            (Some(c), Some(before)) if c == *before => {}
            _ => return Ok(None),
        }
    }
    match columns {
        Some(c) => Ok(Some(own.project(&c).map_err(|e| Error::engine("projecting a schema", e))?)),
        None => Ok(Some(own)),
    }
}

/// Registers the tables of a directory written by `convert`, with their
/// own schema where the files match it (see [`own_schema`]).
///
/// # Errors
///
/// [`Error::NotATrace`] when the directory holds none of the tables;
/// [`Error::Engine`] when a file cannot be read as Parquet.
pub async fn register_dataset(ctx: &SessionContext, dir: &Path) -> Result<()> {
    let files = dataset_tables(dir);
    if files.is_empty() {
        return Err(Error::NotATrace {
            path: dir.to_path_buf(),
            reason: "is a directory without memscope tables (expected a trace file or a directory written by `convert`)"
                .into(),
        });
    }
    for (name, path) in files {
        let p = path.to_string_lossy().into_owned();
        let table = TABLES.iter().find(|t| t.name == name).expect("a table of the schema");
        let schema = own_schema(table, std::slice::from_ref(&path))?;
        let mut options = ParquetReadOptions::default();
        if let Some(schema) = &schema {
            options = options.schema(schema);
        }
        ctx.register_parquet(name, &p, options)
            .await
            .map_err(|e| Error::engine(format!("reading {}", path.display()), e))?;
    }
    Ok(())
}

/// Runs every statement of `source` in order and returns the result sets
/// of those that produce rows (queries, `EXPLAIN`, `SHOW`); statements such
/// as `CREATE VIEW` or `SET` run for their effect.
///
/// # Errors
///
/// [`Error::Sql`] naming the source and line of the failing statement (the
/// line DataFusion points at when it does, else the statement's first).
pub async fn run(ctx: &SessionContext, source: &SqlSource) -> Result<Vec<QueryResult>> {
    let statements = DFParser::parse_sql(&source.text).map_err(|e| sql_error(source, 1, e))?;
    if statements.is_empty() {
        return Err(Error::Sql {
            origin: source.at_line(1),
            source: Box::new(DataFusionError::Plan("no SQL statement found".into())),
        });
    }
    let mut results = Vec::new();
    for statement in statements {
        let line = statement_line(&statement);
        crate::progress::stage(format!("running {}", source.at_line(line)));
        let state = ctx.state();
        let plan =
            state.statement_to_plan(statement).await.map_err(|e| sql_error(source, line, e))?;
        let df = ctx.execute_logical_plan(plan).await.map_err(|e| sql_error(source, line, e))?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await.map_err(|e| sql_error(source, line, e))?;
        if schema.fields().is_empty() {
            continue;
        }
        let name = if results.is_empty() {
            source.name.clone()
        } else {
            format!("{}#{}", source.name, results.len() + 1)
        };
        results.push(QueryResult { name, schema, batches });
    }
    Ok(results)
}

fn statement_line(statement: &Statement) -> u64 {
    let line = match statement {
        Statement::Statement(s) => s.span().start.line,
        _ => 0,
    };
    line.max(1)
}

fn sql_error(source: &SqlSource, statement_line: u64, e: DataFusionError) -> Error {
    let line = e
        .diagnostic()
        .and_then(|d| d.span)
        .map(|s| s.start.line)
        .filter(|&l| l > 0)
        .or_else(|| parse_error_line(&e.to_string()))
        .unwrap_or(statement_line);
    Error::Sql { origin: source.at_line(line), source: Box::new(e) }
}

/// The line of a parser message such as "… at Line: 3, Column: 7".
fn parse_error_line(message: &str) -> Option<u64> {
    let rest = &message[message.find("Line: ")? + "Line: ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// The rows of an internal query (a report's or a budget's), read by column
/// name into plain Rust values. Columns are cast, so a `convert` dataset,
/// whose integer and string types may differ from a trace's, reads the same.
#[derive(Debug)]
pub struct Rows {
    what: String,
    batches: Vec<RecordBatch>,
}

impl Rows {
    /// Runs `text` (one statement) and keeps its rows; `what` names the
    /// query in errors ("report totals").
    ///
    /// # Errors
    ///
    /// [`Error::Sql`] when the query fails.
    pub async fn fetch(ctx: &SessionContext, what: &str, text: &str) -> Result<Rows> {
        let source = SqlSource {
            name: what.to_string(),
            origin: Origin::Builtin("report"),
            text: text.to_string(),
        };
        let batches = run(ctx, &source).await?.pop().map(|r| r.batches).unwrap_or_default();
        Ok(Rows { what: what.to_string(), batches })
    }

    /// Rows already computed; `what` names them in errors.
    pub fn from_batches(what: &str, batches: Vec<RecordBatch>) -> Rows {
        Rows { what: what.to_string(), batches }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn cast(&self, name: &str, ty: &DataType) -> Result<Vec<ArrayRef>> {
        self.batches
            .iter()
            .map(|b| {
                let column = b.column_by_name(name).ok_or_else(|| {
                    Error::engine(
                        format!("reading {}", self.what),
                        DataFusionError::Internal(format!("no column {name}")),
                    )
                })?;
                cast(column, ty).map_err(|e| Error::engine(format!("reading {}", self.what), e))
            })
            .collect()
    }

    /// Column `name` cast to the primitive type `T` (NULL as `None`).
    fn primitive<T: ArrowPrimitiveType>(&self, name: &str) -> Result<Vec<Option<T::Native>>> {
        Ok(self
            .cast(name, &T::DATA_TYPE)?
            .iter()
            .flat_map(|a| a.as_primitive::<T>().iter().collect::<Vec<_>>())
            .collect())
    }

    /// Column `name` as signed 64-bit integers (NULL as `None`).
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when there is no such column or it does not cast.
    pub fn i64(&self, name: &str) -> Result<Vec<Option<i64>>> {
        self.primitive::<Int64Type>(name)
    }

    /// Column `name` as unsigned 64-bit integers (NULL as `None`).
    ///
    /// # Errors
    ///
    /// As [`Rows::i64`].
    pub fn u64(&self, name: &str) -> Result<Vec<Option<u64>>> {
        self.primitive::<UInt64Type>(name)
    }

    /// Column `name` as 64-bit floats (NULL as `None`).
    ///
    /// # Errors
    ///
    /// As [`Rows::i64`].
    pub fn f64(&self, name: &str) -> Result<Vec<Option<f64>>> {
        self.primitive::<Float64Type>(name)
    }

    /// Column `name` as strings (NULL as `None`).
    ///
    /// # Errors
    ///
    /// As [`Rows::i64`].
    pub fn string(&self, name: &str) -> Result<Vec<Option<String>>> {
        Ok(self
            .cast(name, &DataType::Utf8)?
            .iter()
            .flat_map(|a| {
                a.as_string::<i32>().iter().map(|v| v.map(str::to_string)).collect::<Vec<_>>()
            })
            .collect())
    }
}
