//! What SQL reads of the big tables (`events`, `allocations`,
//! `anomalies`): which of their columns, and, when every read of a table
//! filters its rows, which rows. A query straight from a trace then builds
//! only those: the leaks query reads 6 of the 20 columns of `allocations`,
//! and only the rows where `free_ts_ns IS NULL`.
//!
//! Found by planning the statements in order in a session whose tables
//! have the real schemas and no rows ([`plan`]), and reading the table
//! scans of the optimized plans: the columns each scan projects and the
//! filters DataFusion pushes into it. The filters stay in the real plan
//! too, so building only the rows they keep changes no answer.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, internal_err};
use datafusion::datasource::TableType;
use datafusion::datasource::source_as_provider;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::utils::{conjunction, disjunction, split_conjunction};
use datafusion::logical_expr::{
    DdlStatement, Expr, LogicalPlan, Statement, TableProviderFilterPushDown, Volatility, WriteOp,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use memscope_schema::tables::{TABLES, Table};

use crate::error::{Error, Result};
use crate::query::{SqlSource, new_session};
use crate::tables::is_big;

/// What is read of one big table.
#[derive(Clone)]
pub struct TableRead {
    /// The table.
    pub table: &'static Table,
    /// Indices of the columns read, into `table.columns`, ascending; never
    /// empty (a read of no column, such as `COUNT(*)`, gets the first).
    pub columns: Vec<usize>,
    /// The rows read: those for which this is true (over the table's
    /// unqualified column names); `None` for every row.
    pub filter: Option<Expr>,
}

impl TableRead {
    /// Every column and row of `table`.
    pub fn all(table: &'static Table) -> TableRead {
        TableRead { table, columns: (0..table.columns.len()).collect(), filter: None }
    }

    /// Whether this reads every column and row.
    pub fn is_all(&self) -> bool {
        self.filter.is_none() && self.columns.len() == self.table.columns.len()
    }

    /// The schema of the columns read: the table's, column metadata
    /// included, without the others.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(
            self.table.schema().project(&self.columns).expect("indices of the table's columns"),
        )
    }

    /// Whether the filter keeps only rows where `column` is NULL: whether
    /// `column IS NULL` is one of the conjuncts its rows must all pass.
    pub fn keeps_only_null(&self, column: &str) -> bool {
        self.filter.as_ref().is_some_and(|f| {
            split_conjunction(f).into_iter().any(|c| {
                matches!(c, Expr::IsNull(e) if matches!(e.as_ref(), Expr::Column(c) if c.name == column))
            })
        })
    }

    /// The filter, planned to run on batches of the columns it reads;
    /// `None` when every row is read.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when DataFusion cannot plan the filter (a bug: it
    /// planned it once already).
    pub fn predicate(&self) -> Result<Option<Predicate>> {
        let Some(filter) = &self.filter else {
            return Ok(None);
        };
        let mut columns: Vec<usize> = filter
            .column_refs()
            .iter()
            .filter_map(|c| self.table.columns.iter().position(|t| t.name == c.name))
            .collect();
        columns.sort_unstable();
        columns.dedup();
        let context = || format!("planning the filter of {}", self.table.name);
        let schema = Arc::new(
            self.table.schema().project(&columns).map_err(|e| Error::engine(context(), e))?,
        );
        let df_schema =
            DFSchema::try_from(schema.clone()).map_err(|e| Error::engine(context(), e))?;
        let expr = SessionContext::new()
            .create_physical_expr(filter.clone(), &df_schema)
            .map_err(|e| Error::engine(context(), e))?;
        Ok(Some(Predicate { columns, schema, expr }))
    }
}

/// A [`TableRead`]'s filter, planned.
#[derive(Debug)]
pub struct Predicate {
    /// The columns it reads: indices into the table's columns, ascending.
    pub columns: Vec<usize>,
    /// The schema of those columns.
    pub schema: SchemaRef,
    /// The filter over a batch of those columns (a boolean array; NULL
    /// where it is neither true nor false).
    pub expr: Arc<dyn PhysicalExpr>,
}

impl std::fmt::Debug for TableRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let columns: Vec<&str> = self.columns.iter().map(|&i| self.table.columns[i].name).collect();
        f.debug_struct("TableRead")
            .field("table", &self.table.name)
            .field("columns", &columns)
            .field("filter", &self.filter.as_ref().map(ToString::to_string))
            .finish()
    }
}

/// What is read of the big tables; a big table without a [`TableRead`] is
/// not read at all. The small tables are always read whole.
#[derive(Clone, Debug)]
pub struct Reads {
    reads: Vec<TableRead>,
}

impl Reads {
    /// Every column and row of every big table.
    pub fn all() -> Reads {
        Reads {
            reads: TABLES.iter().copied().filter(|t| is_big(t.name)).map(TableRead::all).collect(),
        }
    }

    /// These reads, but none of big table `table`: it is not built, and a
    /// query that scans it fails (see [`PartialTable`]).
    pub fn without(mut self, table: &str) -> Reads {
        debug_assert!(is_big(table), "{table} is not a big table");
        self.reads.retain(|r| r.table.name != table);
        self
    }

    /// What is read of big table `table`; `None` when it is not read (or is
    /// not a big table).
    pub fn get(&self, table: &str) -> Option<&TableRead> {
        self.reads.iter().find(|r| r.table.name == table)
    }

    /// Whether `table` is read: every small table is.
    pub fn wants(&self, table: &str) -> bool {
        !is_big(table) || self.get(table).is_some()
    }
}

/// A table of the right schema and no rows, into whose scans DataFusion
/// pushes every filter it can ([`TableProviderFilterPushDown::Inexact`]:
/// the filters also stay above the scan).
#[derive(Debug)]
struct Shape {
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Shape {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = match projection {
            Some(p) => Arc::new(self.schema.project(p)?),
            None => self.schema.clone(),
        };
        Ok(Arc::new(EmptyExec::new(schema)))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// A big table of which only some columns were built, or none: it shows
/// the table's whole schema, so that SQL plans as it did when [`plan`]
/// found what it reads, and reads the built columns from `inner`. A scan of
/// a column that was not built is an error, never a column of NULLs (the
/// SQL read it after all: a bug).
#[derive(Debug)]
pub struct PartialTable {
    table: &'static Table,
    schema: SchemaRef,
    /// The built columns; `None` when the table was not built at all.
    inner: Option<Arc<dyn TableProvider>>,
    /// For each of the table's columns, its index in `inner`.
    built: Vec<Option<usize>>,
}

impl PartialTable {
    /// `table` with the columns of `inner` (by name), or with none.
    pub fn new(table: &'static Table, inner: Option<Arc<dyn TableProvider>>) -> PartialTable {
        let built = table
            .columns
            .iter()
            .map(|c| inner.as_ref().and_then(|i| i.schema().index_of(c.name).ok()))
            .collect();
        PartialTable { table, schema: Arc::new(table.schema()), inner, built }
    }
}

#[async_trait]
impl TableProvider for PartialTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let name = self.table.name;
        let Some(inner) = &self.inner else {
            return internal_err!(
                "table {name} was read but not built: the SQL reads more than it seemed to"
            );
        };
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.built.len()).collect(),
        };
        let mut columns = Vec::with_capacity(wanted.len());
        for i in wanted {
            match self.built.get(i).copied().flatten() {
                Some(b) => columns.push(b),
                None => {
                    let column = self.table.columns.get(i).map_or("?", |c| c.name);
                    return internal_err!(
                        "column {column} of table {name} was read but not built: the SQL reads more than it seemed to"
                    );
                }
            }
        }
        inner.scan(state, Some(&columns), filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        match &self.inner {
            Some(inner) => inner.supports_filters_pushdown(filters),
            None => Ok(vec![TableProviderFilterPushDown::Unsupported; filters.len()]),
        }
    }
}

/// Gives each big table registered in `ctx` with only some of its columns
/// (as a query straight from a trace builds them) the table's whole schema
/// ([`PartialTable`]), and registers those not built at all, so that every
/// statement plans as it did in [`plan`].
///
/// # Errors
///
/// [`Error::Engine`] when DataFusion refuses a table.
pub async fn show_whole_tables(ctx: &SessionContext) -> Result<()> {
    for table in TABLES.iter().copied().filter(|t| is_big(t.name)) {
        let failed = |e| Error::engine(format!("registering table {}", table.name), e);
        let inner = if ctx.table_exist(table.name).map_err(failed)? {
            let inner = ctx.table_provider(table.name).await.map_err(failed)?;
            if inner.schema().fields().len() == table.columns.len() {
                continue;
            }
            ctx.deregister_table(table.name).map_err(failed)?;
            Some(inner)
        } else {
            None
        };
        ctx.register_table(table.name, Arc::new(PartialTable::new(table, inner)))
            .map_err(failed)?;
    }
    Ok(())
}

/// The scans of one big table found so far: for each, its columns and its
/// filters (`None`: every row).
#[derive(Default)]
struct Scans {
    columns: Vec<usize>,
    filters: Vec<Option<Expr>>,
}

/// What the statements of `sources`, run in order, read of the big tables,
/// when that can be told: `None` when a statement does not plan, writes
/// into one of the analyzer's tables, describes one, is a prepared
/// statement (`PREPARE`, `EXECUTE`), creates a table that exists (without
/// `OR REPLACE` or `IF NOT EXISTS`), or reads anything but the analyzer's
/// tables by name (`information_schema`, say), so that every table must be
/// there whole.
///
/// Statements that define something (`CREATE VIEW`, `SET`, `CREATE
/// EXTERNAL TABLE`) run, on tables without rows; `CREATE TABLE … AS`
/// makes an empty table of its schema without running its query.
pub async fn plan(sources: &[SqlSource]) -> Option<Reads> {
    let ctx = new_session();
    for table in TABLES {
        ctx.register_table(table.name, Arc::new(Shape { schema: Arc::new(table.schema()) }))
            .ok()?;
    }
    let mut scans: Vec<(&'static Table, Scans)> =
        TABLES.iter().copied().filter(|t| is_big(t.name)).map(|t| (t, Scans::default())).collect();
    for source in sources {
        for statement in DFParser::parse_sql(&source.text).ok()? {
            let plan = ctx.state().statement_to_plan(statement).await.ok()?;
            match &plan {
                // What a prepared statement reads shows when it runs, with
                // its parameters.
                LogicalPlan::DescribeTable(_)
                | LogicalPlan::Statement(Statement::Prepare(_) | Statement::Execute(_)) => {
                    return None;
                }
                LogicalPlan::Dml(dml)
                    if dml.op != WriteOp::Ctas
                        && TABLES.iter().any(|t| t.name == dml.table_name.table()) =>
                {
                    return None;
                }
                LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) => {
                    let optimized = ctx.state().optimize(&create.input).ok()?;
                    record(&optimized, reads_the_clock(&create.input), &mut scans)?;
                    // As DataFusion does: a table that exists stays with
                    // IF NOT EXISTS, is replaced with OR REPLACE, and is
                    // an error otherwise (which the real run reports).
                    if !create.or_replace && ctx.table_exist(create.name.clone()).ok()? {
                        if create.if_not_exists {
                            continue;
                        }
                        return None;
                    }
                    let schema = Arc::new(create.input.schema().as_arrow().clone());
                    let empty = MemTable::try_new(schema, vec![Vec::new()]).ok()?;
                    ctx.deregister_table(create.name.clone()).ok()?;
                    ctx.register_table(create.name.clone(), Arc::new(empty)).ok()?;
                }
                LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => {
                    ctx.execute_logical_plan(plan).await.ok()?;
                }
                _ => {
                    let optimized = ctx.state().optimize(&plan).ok()?;
                    record(&optimized, reads_the_clock(&plan), &mut scans)?;
                }
            }
        }
    }
    let reads = scans
        .into_iter()
        .filter(|(_, s)| !s.filters.is_empty())
        .map(|(table, s)| {
            let filter = s.filters.into_iter().collect::<Option<Vec<Expr>>>().and_then(disjunction);
            let mut columns = s.columns;
            if let Some(f) = &filter {
                columns.extend(
                    f.column_refs()
                        .iter()
                        .filter_map(|c| table.columns.iter().position(|t| t.name == c.name)),
                );
            }
            columns.sort_unstable();
            columns.dedup();
            if columns.is_empty() {
                columns.push(0);
            }
            TableRead { table, columns, filter }
        })
        .collect();
    Some(Reads { reads })
}

/// Adds the scans of the big tables in `plan` (subqueries included) to
/// `scans`, as reading every row when `every_row`; `None` when the plan
/// reads a table outside the default schema. Scans of tables the SQL made
/// itself, even under the name of one of ours, are not ours.
fn record(
    plan: &LogicalPlan,
    every_row: bool,
    scans: &mut [(&'static Table, Scans)],
) -> Option<()> {
    let mut foreign = false;
    plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if scan.table_name.schema().is_some_and(|s| s != "public") {
                foreign = true;
                return Ok(TreeNodeRecursion::Stop);
            }
            let ours = source_as_provider(&scan.source).is_ok_and(|p| p.is::<Shape>());
            if let Some((table, s)) =
                scans.iter_mut().find(|(t, _)| ours && t.name == scan.table_name.table())
            {
                match &scan.projection {
                    Some(p) => s.columns.extend(p),
                    None => s.columns.extend(0..table.columns.len()),
                }
                s.filters.push(if every_row { None } else { rows_kept(&scan.filters) });
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .ok()?;
    (!foreign).then_some(())
}

/// Whether `plan` calls a function whose value depends on when it runs
/// (`now()`, `current_date`): planning folds it into a constant, which the
/// real run would fold into another.
fn reads_the_clock(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        for e in node.expressions() {
            let stable = e.exists(|e| {
                Ok(matches!(e, Expr::ScalarFunction(f)
                    if f.func.signature().volatility == Volatility::Stable))
            });
            if stable.unwrap_or(true) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

/// The conjunction of the filters of a scan that can be evaluated on the
/// table's rows alone, with unqualified column names: not volatile (such
/// as `random()`), without subqueries or placeholders. `None` when none
/// is: every row is read.
fn rows_kept(filters: &[Expr]) -> Option<Expr> {
    let kept = filters.iter().filter(|f| {
        !f.is_volatile()
            && !f
                .exists(|e| {
                    Ok(matches!(
                        e,
                        Expr::ScalarSubquery(_)
                            | Expr::Exists(_)
                            | Expr::InSubquery(_)
                            | Expr::Placeholder(_)
                            | Expr::OuterReferenceColumn(..)
                    ))
                })
                .unwrap_or(true)
    });
    let unqualified = kept.filter_map(|f| {
        f.clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(c) => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))
                    }
                    e => Transformed::no(e),
                })
            })
            .ok()
            .map(|t| t.data)
    });
    conjunction(unqualified)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Origin;

    fn reads(sql: &str) -> Option<Reads> {
        let source =
            SqlSource { name: "q".into(), origin: Origin::Inline(1), text: sql.to_string() };
        tokio::runtime::Runtime::new().expect("a runtime").block_on(plan(&[source]))
    }

    fn names(read: &TableRead) -> Vec<&'static str> {
        read.columns.iter().map(|&i| read.table.columns[i].name).collect()
    }

    #[test]
    fn without_a_table_reads_the_others_whole() {
        let r = Reads::all().without("events");
        assert!(r.get("events").is_none());
        assert!(!r.wants("events"));
        for table in ["allocations", "anomalies"] {
            assert!(r.get(table).is_some_and(TableRead::is_all), "{table}");
        }
        assert!(r.wants("threads"));
    }

    #[test]
    fn the_leaks_query_reads_leaked_rows_of_six_columns() {
        let sql = crate::query::BUILTIN_QUERIES[0].1;
        let r = reads(sql).expect("plans");
        let a = r.get("allocations").expect("reads allocations");
        assert_eq!(
            names(a),
            ["size", "alloc_ts_ns", "free_ts_ns", "alloc_thread_id", "type_name", "weight"]
        );
        assert_eq!(
            a.filter.as_ref().map(ToString::to_string).as_deref(),
            Some("free_ts_ns IS NULL")
        );
        assert!(r.get("events").is_none());
        assert!(r.wants("threads"));
    }

    #[test]
    fn a_read_keeps_only_null_rows_when_every_row_must_pass_is_null() {
        let only_leaked = |sql: &str| {
            let r = reads(sql).expect("plans");
            r.get("allocations").expect("reads allocations").keeps_only_null("free_ts_ns")
        };
        assert!(only_leaked(crate::query::BUILTIN_QUERIES[0].1));
        assert!(only_leaked("SELECT size FROM allocations WHERE size > 8 AND free_ts_ns IS NULL"));
        assert!(!only_leaked("SELECT size FROM allocations WHERE size > 8 OR free_ts_ns IS NULL"));
        assert!(!only_leaked("SELECT size FROM allocations WHERE free_ts_ns IS NOT NULL"));
        assert!(!only_leaked("SELECT size FROM allocations WHERE realloc_to IS NULL"));
        assert!(!only_leaked(
            "SELECT size FROM allocations WHERE free_ts_ns IS NULL
             UNION ALL SELECT size FROM allocations WHERE size > 8"
        ));
    }

    #[test]
    fn one_unfiltered_read_reads_every_row() {
        let r = reads(
            "SELECT size FROM allocations WHERE free_ts_ns IS NULL;
             SELECT COUNT(*) FROM allocations",
        )
        .expect("plans");
        let a = r.get("allocations").expect("reads allocations");
        assert!(a.filter.is_none());
        assert_eq!(names(a), ["size", "free_ts_ns"]);
    }

    #[test]
    fn filters_of_several_reads_are_joined_by_or() {
        let r = reads(
            "CREATE VIEW big AS SELECT * FROM allocations WHERE size > 4096;
             SELECT address FROM big UNION ALL SELECT address FROM allocations a WHERE a.alloc_thread_id = 2",
        )
        .expect("plans");
        let a = r.get("allocations").expect("reads allocations");
        assert_eq!(
            a.filter.as_ref().map(ToString::to_string).as_deref(),
            Some("size > UInt64(4096) OR alloc_thread_id = UInt32(2)")
        );
        assert_eq!(names(a), ["address", "size", "alloc_thread_id"]);
    }

    #[test]
    fn volatile_filters_and_subqueries_keep_every_row() {
        for sql in [
            "SELECT size FROM allocations WHERE random() < 0.5",
            "SELECT size FROM allocations WHERE size > (SELECT AVG(size) FROM allocations)",
        ] {
            let r = reads(sql).expect("plans");
            assert!(r.get("allocations").expect("reads allocations").filter.is_none(), "{sql}");
        }
    }

    #[test]
    fn filters_on_the_clock_keep_every_row() {
        let r = reads("SELECT size FROM allocations WHERE alloc_ts_ns < to_unixtime(now())")
            .expect("plans");
        assert!(r.get("allocations").expect("reads allocations").filter.is_none());
    }

    #[test]
    fn tables_of_the_script_under_our_names_are_not_ours() {
        let r = reads(
            "CREATE OR REPLACE TABLE anomalies AS SELECT * FROM allocations WHERE size > 8;
             SELECT weight FROM anomalies WHERE weight > 1",
        )
        .expect("plans");
        assert!(r.get("anomalies").is_none());
        let a = r.get("allocations").expect("reads allocations");
        assert_eq!(a.filter.as_ref().map(ToString::to_string).as_deref(), Some("size > UInt64(8)"));
        assert_eq!(a.columns.len(), a.table.columns.len());
    }

    #[test]
    fn a_table_that_exists_stays_ours() {
        let r = reads(
            "SELECT COUNT(*) FROM allocations WHERE size > 4096;
             CREATE TABLE IF NOT EXISTS allocations AS SELECT 1 AS x;
             SELECT COUNT(*) FROM allocations",
        )
        .expect("plans");
        assert!(r.get("allocations").expect("reads allocations").filter.is_none());
        assert!(reads("CREATE TABLE allocations AS SELECT 1 AS x").is_none());
    }

    #[test]
    fn what_cannot_be_told_reads_everything() {
        for sql in [
            "SELECT * FROM information_schema.columns",
            "DESCRIBE allocations",
            "SELECT nonsense FROM allocations",
            "INSERT INTO anomalies SELECT * FROM anomalies",
            "PREPARE big(BIGINT) AS SELECT size FROM allocations WHERE size > $1; EXECUTE big(10)",
        ] {
            assert!(reads(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn tables_made_in_the_script_are_not_ours() {
        let r = reads(
            "CREATE TABLE leaked AS SELECT alloc_id, size FROM allocations WHERE free_ts_ns IS NULL;
             SELECT SUM(size) FROM leaked",
        )
        .expect("plans");
        let a = r.get("allocations").expect("reads allocations");
        assert_eq!(names(a), ["alloc_id", "size", "free_ts_ns"]);
        assert!(a.filter.is_some());
        let all = reads("SELECT * FROM events").expect("plans");
        assert!(all.get("events").expect("reads events").is_all());
    }
}
