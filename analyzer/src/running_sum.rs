//! Running sums for window queries: `SUM(x) OVER (… ROWS|RANGE BETWEEN
//! UNBOUNDED PRECEDING AND CURRENT ROW)`, added up a column at a time.
//!
//! Live bytes over time are the running sum of +size at each allocation
//! and −size at each deallocation, so every standard query that reports a
//! peak (type and call-site hotspots, fragmentation, report metrics and
//! the report's live-bytes timeline, the peak flame graph) computes one
//! with a window `SUM`. DataFusion evaluates a window aggregate row by
//! row, with an accumulator update and a `ScalarValue` for each row: about
//! 400 ns a row, most of the time of `type_hotspots.sql`.
//! [`RunningSumRule`] replaces such a `BoundedWindowAggExec` by a
//! [`RunningSumExec`], which computes the same columns in one pass over
//! each batch, when every window expression of the node is a running sum
//! it computes exactly as DataFusion would:
//!
//! * the built-in `sum`, not `DISTINCT`, without `FILTER`, of an `Int64`,
//!   `UInt64` or `Float64` argument (the types `SUM` coerces its argument
//!   to). Integers wrap on overflow. Floats are added as DataFusion's
//!   accumulator adds them, so that the results are bit-identical: one
//!   row at a time in `ROWS` frames; in `RANGE` frames a group of peers
//!   (rows with equal `ORDER BY` values) at a time, summed by arrow's
//!   `sum` kernel. A row before the partition's first non-NULL value gets
//!   NULL;
//! * the frame `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`, or
//!   `RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW` with an `ORDER BY`
//!   (the default frame of `SUM(x) OVER (ORDER BY …)`), where peers share
//!   the sum through the last of them (DataFusion orders a `RANGE` frame
//!   without `ORDER BY` by a constant: each partition is then one group
//!   of peers, held until it ends, as DataFusion holds it);
//! * input sorted on the partition keys (`InputOrderMode::Sorted`), so that
//!   each partition's rows are adjacent, in window order;
//! * partition and (for `RANGE`) order keys of types whose equality
//!   arrow's kernels compare directly (numbers, strings, binary, booleans,
//!   temporal types and dictionaries of those).
//!
//! Every other window node is left to DataFusion.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, make_comparator};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::kernels::partition::partition;
use datafusion::arrow::compute::{SortOptions, concat_batches};
use datafusion::arrow::datatypes::{
    ArrowNativeTypeOp, ArrowNumericType, DataType, Float64Type, Int64Type, SchemaRef, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, internal_datafusion_err};
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::sum::Sum;
use datafusion::logical_expr::{WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, WindowExpr};
use datafusion::physical_expr::{OrderingRequirements, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan,
    InputDistributionRequirements, InputOrderMode, PlanProperties, ReplaceChildrenOptions,
    SendableRecordBatchStream,
};
use futures::StreamExt;

/// The physical optimizer rule that puts a [`RunningSumExec`] in place of
/// each `BoundedWindowAggExec` it can stand for (see the module docs).
/// It runs after DataFusion's own rules, which have settled the sorts and
/// partitioning the window node asks for.
#[derive(Debug, Default)]
pub struct RunningSumRule;

impl PhysicalOptimizerRule for RunningSumRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match RunningSumExec::standing_for(&node) {
                Some(exec) => Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "memscope_running_sum"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A window node whose expressions are all running sums (see the module
/// docs): the input's columns, then one column per sum.
///
/// It keeps the `BoundedWindowAggExec` it stands for, which gives it its
/// schema, plan properties and input requirements, so that both nodes
/// promise the rest of the plan the same things.
#[derive(Debug)]
pub struct RunningSumExec {
    /// The DataFusion node this one computes.
    window: Arc<dyn ExecutionPlan>,
    /// The window node's input.
    input: Arc<dyn ExecutionPlan>,
    /// What the sums are grouped and ordered by.
    keys: Keys,
    /// One per window expression, in output column order.
    sums: Vec<SumColumn>,
    metrics: ExecutionPlanMetricsSet,
}

/// The keys of a window node's rows.
#[derive(Debug, Clone)]
struct Keys {
    /// The `PARTITION BY` expressions (none: the whole input is one
    /// partition).
    partition_by: Vec<Arc<dyn PhysicalExpr>>,
    /// The `ORDER BY` expressions, when a sum has a `RANGE` frame and rows
    /// with equal values (peers) share a sum; empty otherwise.
    peers_by: Vec<Arc<dyn PhysicalExpr>>,
}

/// One running sum: the expression summed, its type (that of the output
/// column too), whether peers share a sum (a `RANGE` frame), and the
/// window expression's name, for `EXPLAIN`.
#[derive(Debug, Clone)]
struct SumColumn {
    argument: Arc<dyn PhysicalExpr>,
    data_type: DataType,
    peers: bool,
    name: String,
}

impl RunningSumExec {
    /// The node that can stand for `node`: `None` unless `node` is a
    /// `BoundedWindowAggExec` of running sums over input sorted on its
    /// partition keys.
    pub fn standing_for(node: &Arc<dyn ExecutionPlan>) -> Option<RunningSumExec> {
        let window = node.downcast_ref::<BoundedWindowAggExec>()?;
        if window.input_order_mode != InputOrderMode::Sorted {
            return None;
        }
        let input = Arc::clone(window.input());
        let input_schema = input.schema();
        let first = window.window_expr().first()?;
        let sums = window
            .window_expr()
            .iter()
            .map(|e| running_sum(e.as_ref(), first.as_ref(), &input_schema))
            .collect::<Option<Vec<_>>>()?;
        let peers_by = match sums.iter().any(|s| s.peers) {
            true => first.order_by().iter().map(|o| Arc::clone(&o.expr)).collect(),
            false => Vec::new(),
        };
        let keys = Keys { partition_by: first.partition_by().to_vec(), peers_by };
        for key in keys.partition_by.iter().chain(&keys.peers_by) {
            if !comparable_key(&key.data_type(&input_schema).ok()?) {
                return None;
            }
        }
        Some(RunningSumExec {
            window: Arc::clone(node),
            input,
            keys,
            sums,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

/// The running sum `expr` computes, if it is one this node computes
/// exactly (see the module docs) and is partitioned and ordered as
/// `first`, the node's first window expression.
fn running_sum(
    expr: &dyn WindowExpr,
    first: &dyn WindowExpr,
    input_schema: &SchemaRef,
) -> Option<SumColumn> {
    let plain = expr.as_any().downcast_ref::<PlainAggregateWindowExpr>()?;
    let aggregate = plain.get_aggregate_expr();
    if !aggregate.fun().inner().is::<Sum>() || aggregate.is_distinct() {
        return None;
    }
    // A FILTER clause is not reachable through the public API; the
    // derived `Debug` shows it as the struct's last field.
    if !format!("{plain:?}").ends_with("filter: None }") {
        return None;
    }
    if expr.partition_by() != first.partition_by() || expr.order_by() != first.order_by() {
        return None;
    }
    let frame = expr.get_window_frame();
    let to_here = matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null())
        && frame.end_bound == WindowFrameBound::CurrentRow;
    let peers = match frame.units {
        WindowFrameUnits::Rows => false,
        WindowFrameUnits::Range if !expr.order_by().is_empty() => true,
        _ => return None,
    };
    if !to_here {
        return None;
    }
    let [argument] = <[_; 1]>::try_from(expr.expressions()).ok()?;
    let data_type = argument.data_type(input_schema).ok()?;
    let output = expr.field().ok()?;
    let summable = matches!(data_type, DataType::Int64 | DataType::UInt64 | DataType::Float64);
    if !summable || output.data_type() != &data_type {
        return None;
    }
    Some(SumColumn { argument, data_type, peers, name: expr.name().to_string() })
}

/// Whether keys of type `t` can be split into runs of equal values by
/// arrow's `partition` kernel and compared across batches by
/// `make_comparator`.
fn comparable_key(t: &DataType) -> bool {
    match t {
        DataType::Dictionary(_, values) => comparable_key(values),
        t => {
            t.is_primitive()
                || matches!(
                    t,
                    DataType::Null
                        | DataType::Boolean
                        | DataType::Utf8
                        | DataType::LargeUtf8
                        | DataType::Utf8View
                        | DataType::Binary
                        | DataType::LargeBinary
                        | DataType::BinaryView
                        | DataType::FixedSizeBinary(_)
                )
        }
    }
}

impl DisplayAs for RunningSumExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.sums.iter().map(|s| s.name.as_str()).collect();
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => {
                write!(f, "RunningSumExec: wdw=[{}]", names.join(", "))
            }
            DisplayFormatType::TreeRender => writeln!(f, "select_list={}", names.join(", ")),
        }
    }
}

impl ExecutionPlan for RunningSumExec {
    fn name(&self) -> &'static str {
        "RunningSumExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        self.window.benefits_from_input_partitioning()
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let window = Arc::clone(&self.window).replace_children(children, options)?;
        // The rebuilt window node may no longer qualify (its input is no
        // longer sorted, say): then it runs as DataFusion's own.
        Ok(match RunningSumExec::standing_for(&window) {
            Some(exec) => Arc::new(exec),
            None => window,
        })
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = self.window.schema();
        let sums = RunningSums {
            schema: Arc::clone(&schema),
            keys: self.keys.clone(),
            sums: self.sums.iter().map(|s| (s.clone(), Total::None)).collect(),
            last_key: None,
            held: None,
        };
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        // Each input batch gives an output batch, but for the peers at its
        // end, which wait for the next one; the last input batch is
        // followed by the rows still waiting.
        let output = futures::stream::unfold(
            (input, sums, baseline, false),
            |(mut input, mut sums, baseline, mut ended)| async move {
                loop {
                    if ended {
                        return None;
                    }
                    let next = input.next().await;
                    let out = {
                        let _timer = baseline.elapsed_compute().timer();
                        match next {
                            Some(Ok(batch)) => sums.push(batch),
                            Some(Err(e)) => Err(e),
                            None => {
                                ended = true;
                                sums.finish()
                            }
                        }
                    };
                    match out {
                        Ok(None) => continue,
                        Ok(Some(out)) => {
                            baseline.record_output(out.num_rows());
                            return Some((Ok(out), (input, sums, baseline, ended)));
                        }
                        Err(e) => return Some((Err(e), (input, sums, baseline, true))),
                    }
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, output)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The running total of one sum within the current partition: `None`
/// until the partition's first non-NULL value.
#[derive(Clone, Copy, Debug)]
enum Total {
    None,
    Int64(i64),
    UInt64(u64),
    Float64(f64),
}

/// The state of one output partition's stream.
struct RunningSums {
    schema: SchemaRef,
    keys: Keys,
    /// Each sum, with its total at the last row given out.
    sums: Vec<(SumColumn, Total)>,
    /// The partition key of the last row given out, as one-row arrays
    /// (empty without partition keys); `None` before the first row.
    last_key: Option<Vec<ArrayRef>>,
    /// Input rows not given out yet: the peers at the end of the last
    /// batch, which the next batch may add to (only with peers).
    held: Option<RecordBatch>,
}

impl RunningSums {
    /// Takes the next input batch; returns the rows it completes, with
    /// their sums, if any.
    fn push(&mut self, batch: RecordBatch) -> Result<Option<RecordBatch>> {
        let batch = match self.held.take() {
            Some(held) => concat_batches(&held.schema(), [&held, &batch])?,
            None => batch,
        };
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(None);
        }
        if self.keys.peers_by.is_empty() {
            return self.give_out(&batch, &[]).map(Some);
        }
        let peers = self.peer_groups(&batch)?;
        let cut = peers.last().map_or(0, |r| r.start);
        self.held = Some(batch.slice(cut, rows - cut));
        match cut {
            0 => Ok(None),
            // The groups before the last are those of the rows before it.
            cut => self.give_out(&batch.slice(0, cut), &peers[..peers.len() - 1]).map(Some),
        }
    }

    /// The rows still held at the end of the input, with their sums.
    fn finish(&mut self) -> Result<Option<RecordBatch>> {
        match self.held.take() {
            Some(held) if held.num_rows() > 0 => {
                let peers = self.peer_groups(&held)?;
                self.give_out(&held, &peers).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The runs of rows of `batch` with equal partition and order keys.
    fn peer_groups(&self, batch: &RecordBatch) -> Result<Vec<Range<usize>>> {
        let keys = evaluate(self.keys.partition_by.iter().chain(&self.keys.peers_by), batch)?;
        Ok(partition(&keys)?.ranges())
    }

    /// `batch` with its running sums appended as columns. `peers` are its
    /// groups of peers (see [`RunningSums::peer_groups`]), each whole; empty
    /// when no sum has peers.
    fn give_out(&mut self, batch: &RecordBatch, peers: &[Range<usize>]) -> Result<RecordBatch> {
        let rows = batch.num_rows();
        let keys = evaluate(self.keys.partition_by.iter(), batch)?;
        // Rows where a new partition starts.
        let mut starts: Vec<usize> = match keys.is_empty() {
            true => vec![0],
            false => partition(&keys)?.ranges().into_iter().map(|r| r.start).collect(),
        };
        if self.continues(&keys)? {
            starts.remove(0);
        }
        let mut columns = batch.columns().to_vec();
        for (sum, total) in &mut self.sums {
            let values = sum.argument.evaluate(batch)?.into_array(rows)?;
            let groups = if sum.peers { Some(peers) } else { None };
            let column: ArrayRef = match sum.data_type {
                DataType::Int64 => Arc::new(running::<Int64Type>(&values, &starts, groups, total)?),
                DataType::UInt64 => {
                    Arc::new(running::<UInt64Type>(&values, &starts, groups, total)?)
                }
                DataType::Float64 => {
                    Arc::new(running::<Float64Type>(&values, &starts, groups, total)?)
                }
                ref t => return Err(internal_datafusion_err!("running sum of {t}")),
            };
            columns.push(column);
        }
        self.last_key = Some(keys.iter().map(|k| k.slice(rows - 1, 1)).collect());
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Whether the first row of a batch with partition keys `keys` is in
    /// the partition of the last row given out.
    fn continues(&self, keys: &[ArrayRef]) -> Result<bool> {
        let Some(last) = &self.last_key else {
            return Ok(false);
        };
        for (before, now) in last.iter().zip(keys) {
            let compare = make_comparator(before.as_ref(), now.as_ref(), SortOptions::default())?;
            if compare(0, 0).is_ne() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// `exprs` evaluated on `batch`, as arrays.
fn evaluate<'a>(
    exprs: impl Iterator<Item = &'a Arc<dyn PhysicalExpr>>,
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs.map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// The running sums of `values`, restarting from NULL at each row of
/// `starts` and carrying on from `total` before the first start (and
/// leaving there the total after the last row). With `peers`, the runs of
/// rows that share a sum (each partition start begins one): each adds its
/// rows at once, as arrow's `sum` kernel sums them.
fn running<T>(
    values: &ArrayRef,
    starts: &[usize],
    peers: Option<&[Range<usize>]>,
    total: &mut Total,
) -> Result<PrimitiveArray<T>>
where
    T: ArrowNumericType,
    T::Native: Summed,
{
    let values = values.as_primitive_opt::<T>().ok_or_else(|| {
        internal_datafusion_err!("running sum of {} as {}", values.data_type(), T::DATA_TYPE)
    })?;
    let n = values.len();
    let mut sum: Option<T::Native> = T::Native::from_total(*total);
    let mut out = Vec::with_capacity(n);
    let mut valid = Vec::with_capacity(n);
    let mut next_start = starts.iter().copied().peekable();
    let mut restart = |i: usize, sum: &mut Option<T::Native>| {
        if next_start.peek() == Some(&i) {
            next_start.next();
            *sum = None;
        }
    };
    let add = |sum: &mut Option<T::Native>, v: T::Native| {
        let s = sum.get_or_insert(T::Native::default());
        *s = s.add_wrapping(v);
    };
    match peers {
        None => {
            for i in 0..n {
                restart(i, &mut sum);
                if values.is_valid(i) {
                    add(&mut sum, values.value(i));
                }
                out.push(sum.unwrap_or_default());
                valid.push(sum.is_some());
            }
        }
        Some(groups) => {
            for g in groups {
                restart(g.start, &mut sum);
                let group_sum = match g.len() {
                    1 => values.is_valid(g.start).then(|| values.value(g.start)),
                    len => datafusion::arrow::compute::sum(&values.slice(g.start, len)),
                };
                if let Some(v) = group_sum {
                    add(&mut sum, v);
                }
                out.extend(std::iter::repeat_n(sum.unwrap_or_default(), g.len()));
                valid.extend(std::iter::repeat_n(sum.is_some(), g.len()));
            }
        }
    }
    *total = T::Native::to_total(sum);
    let nulls = NullBuffer::from(valid);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    Ok(PrimitiveArray::<T>::new(ScalarBuffer::from(out), nulls))
}

/// The native types a running sum is kept in, and their [`Total`].
trait Summed: ArrowNativeTypeOp + Default {
    fn from_total(total: Total) -> Option<Self>;
    fn to_total(sum: Option<Self>) -> Total;
}

macro_rules! summed {
    ($native:ty, $variant:ident) => {
        impl Summed for $native {
            fn from_total(total: Total) -> Option<Self> {
                match total {
                    Total::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn to_total(sum: Option<Self>) -> Total {
                sum.map_or(Total::None, Total::$variant)
            }
        }
    };
}

summed!(i64, Int64);
summed!(u64, UInt64);
summed!(f64, Float64);

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Float64Array, Int32Array, Int64Array, StringArray, UInt64Array,
    };
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::catalog::MemTable;
    use datafusion::prelude::SessionContext;
    use memscope_schema::tables::TABLES;
    use proptest::prelude::*;

    /// Window queries over table `t`; `true` where a [`RunningSumExec`]
    /// must compute them. Each window's order is unique within its
    /// partition (`id` breaks ties), so that the answer is defined.
    const QUERIES: [(&str, bool); 14] = [
        (
            "SUM(i) OVER (PARTITION BY s ORDER BY ts, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
            true,
        ),
        (
            "SUM(f) OVER (PARTITION BY s, k ORDER BY ts, id ROWS UNBOUNDED PRECEDING), \
          SUM(u) OVER (PARTITION BY s, k ORDER BY ts, id ROWS UNBOUNDED PRECEDING)",
            true,
        ),
        ("SUM(i) OVER (ORDER BY ts, id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)", true),
        ("SUM(k) OVER (PARTITION BY k ORDER BY id DESC ROWS UNBOUNDED PRECEDING)", true),
        (
            "SUM(f) OVER (PARTITION BY k, s ORDER BY id ROWS UNBOUNDED PRECEDING), \
          LAG(i) OVER (PARTITION BY k, s ORDER BY id)",
            false,
        ),
        (
            "SUM(i) FILTER (WHERE k > 1) OVER (PARTITION BY s ORDER BY id ROWS UNBOUNDED PRECEDING)",
            false,
        ),
        ("SUM(DISTINCT i) OVER (PARTITION BY s ORDER BY id ROWS UNBOUNDED PRECEDING)", false),
        // Peers (equal `ts`) share a sum; `f` is summed in groups.
        ("SUM(i) OVER (PARTITION BY s ORDER BY ts RANGE UNBOUNDED PRECEDING)", true),
        ("SUM(f) OVER (ORDER BY ts), SUM(u) OVER (ORDER BY ts)", true),
        (
            "SUM(f) OVER (PARTITION BY k ORDER BY ts DESC, s \
          RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)",
            true,
        ),
        (
            "SUM(f) OVER (PARTITION BY k ORDER BY ts, id RANGE UNBOUNDED PRECEDING), \
          SUM(i) OVER (PARTITION BY k ORDER BY ts, id ROWS UNBOUNDED PRECEDING)",
            true,
        ),
        (
            "SUM(i) OVER (PARTITION BY s ORDER BY ts RANGE BETWEEN 2 PRECEDING AND CURRENT ROW)",
            false,
        ),
        ("SUM(i) OVER (PARTITION BY s)", false),
        (
            "SUM(i) OVER (PARTITION BY s ORDER BY id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW)",
            false,
        ),
    ];

    /// One row of `t`: partition keys `s` (nullable string) and `k`,
    /// order `ts`, and values to sum: `i` with NULLs and values near
    /// overflow, `u`, and `f` with NULLs.
    type Row = (Option<u8>, i32, i64, Option<i64>, u64, Option<f64>);

    fn row() -> impl Strategy<Value = Row> {
        let big = prop_oneof![Just(i64::MAX - 3), Just(i64::MIN + 3), -1000i64..1000];
        (
            proptest::option::weighted(0.9, 0u8..3),
            0i32..3,
            0i64..20,
            proptest::option::weighted(0.8, big),
            prop_oneof![Just(u64::MAX - 1), 0u64..1000],
            proptest::option::weighted(0.8, -1e3f64..1e3),
        )
    }

    /// `rows` as table `t`, in batches of `chunk` rows over 3 partitions.
    fn table(rows: &[Row], chunk: usize) -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("s", DataType::Utf8, true),
            Field::new("k", DataType::Int32, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("i", DataType::Int64, true),
            Field::new("u", DataType::UInt64, false),
            Field::new("f", DataType::Float64, true),
        ]));
        let mut batches = Vec::new();
        for (c, rows) in rows.chunks(chunk).enumerate() {
            let first = (c * chunk) as i64;
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(first..first + rows.len() as i64)),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.map(|s| format!("s{s}"))))),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.3))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))),
                Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.5))),
            ];
            batches.push(RecordBatch::try_new(Arc::clone(&schema), columns).unwrap());
        }
        MemTable::try_new(schema, vec![batches]).unwrap()
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&batches).unwrap().to_string()
    }

    async fn plan_text(ctx: &SessionContext, sql: &str) -> String {
        answer(ctx, &format!("EXPLAIN {sql}")).await
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Each window query answers the same with and without the rule,
        /// and the rule replaces exactly the running sums it can compute.
        #[test]
        fn running_sums_answer_as_datafusion_does(
            rows in proptest::collection::vec(row(), 0..60),
            chunk in 1usize..9,
        ) {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                let ours = crate::query::new_session();
                let theirs = SessionContext::new();
                for ctx in [&ours, &theirs] {
                    // Small batches, so that partitions span batches.
                    answer(ctx, "SET datafusion.execution.batch_size = 5").await;
                    // One input partition and one target partition: rows
                    // of a peer group otherwise arrive in an order that
                    // varies between runs, and floating-point sums over
                    // them (DataFusion's own too) vary in the last bits.
                    answer(ctx, "SET datafusion.execution.target_partitions = 1").await;
                    ctx.register_table("t", Arc::new(table(&rows, chunk))).unwrap();
                }
                for (window, replaced) in QUERIES {
                    let sql = format!("SELECT id, s, k, {window} AS w FROM t ORDER BY id");
                    let plan = plan_text(&ours, &sql).await;
                    prop_assert_eq!(plan.contains("RunningSumExec"), replaced, "{}", plan);
                    prop_assert!(!plan_text(&theirs, &sql).await.contains("RunningSumExec"));
                    prop_assert_eq!(answer(&ours, &sql).await, answer(&theirs, &sql).await, "{}", sql);
                }
                Ok(())
            })?;
        }
    }

    /// The built-in queries that report a peak compute its running sum
    /// with a [`RunningSumExec`].
    #[test]
    fn peaks_of_the_builtin_queries_are_running_sums() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let ctx = crate::query::new_session();
            for table in TABLES {
                let empty = MemTable::try_new(Arc::new(table.schema()), vec![vec![]]).unwrap();
                ctx.register_table(table.name, Arc::new(empty)).unwrap();
            }
            for name in ["type_hotspots", "call_site_hotspots", "fragmentation"] {
                let (_, sql) =
                    crate::query::BUILTIN_QUERIES.iter().find(|(n, _)| *n == name).unwrap();
                let plan = plan_text(&ctx, sql.trim().trim_end_matches(';')).await;
                assert!(plan.contains("RunningSumExec"), "{name}: {plan}");
            }
        });
    }
}
