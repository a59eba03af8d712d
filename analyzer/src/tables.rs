//! Arrow record batches for every table, against the schemas in
//! `memscope_schema::tables`: the big tables (`events`, `allocations`,
//! `anomalies`) from the rows pairing hands out, batch by batch
//! ([`Batcher`]); the others from a [`TraceData`] ([`small_tables`]).
//! Batches go to a [`TableSink`]: memory ([`MemorySink`]) or Parquet files
//! (`crate::convert::ParquetSink`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array,
    PrimitiveArray, StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::{filter_record_batch, prep_null_mask_filter};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, Int32Type, Int64Type, SchemaRef, UInt64Type,
};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::DataFusionError;
use memscope_schema::format::FileHeader;
use memscope_schema::tables::{self, Table, event_kind};

use crate::decode::kind;
use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::pairing::{Allocation, Anomaly, AnomalyKind, EventRows, NONE_U64};
use crate::reads::{Predicate, Reads, TableRead};
use crate::stacks::{Stacks, TypeSource};
use rustc_hash::FxHashMap;

/// Rows per record batch.
pub const BATCH_ROWS: usize = 64 * 1024;

/// One table's schema and data.
#[derive(Clone, Debug)]
pub struct TableData {
    /// The table's definition.
    pub table: &'static Table,
    /// Its Arrow schema.
    pub schema: SchemaRef,
    /// Its rows, in batches of at most [`BATCH_ROWS`].
    pub batches: Vec<RecordBatch>,
}

impl TableData {
    /// Total number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Where the batches of the tables go as they are made.
pub trait TableSink {
    /// Takes one batch of `table` (of at most [`BATCH_ROWS`] rows), of the
    /// columns and rows that [`TableSink::reads`] reads of it. The batches
    /// of a table come in the table's row order.
    ///
    /// # Errors
    ///
    /// Whatever keeping the batch fails with ([`Error::Io`] for a file).
    fn write(&mut self, table: &'static Table, batch: RecordBatch) -> Result<()>;

    /// What the sink keeps of the big tables; batches of a table it does
    /// not keep need not be built, nor its other columns and rows.
    fn reads(&self) -> &Reads;
}

/// Keeps the batches in memory: of every table, or of what is read of
/// them.
#[derive(Debug)]
pub struct MemorySink {
    batches: HashMap<&'static str, Vec<RecordBatch>>,
    reads: Reads,
    /// Bytes of the batches kept (see [`MemorySink::bytes`]).
    bytes: usize,
    /// The values of the dictionary columns counted in `bytes`, by address.
    dictionaries: HashSet<usize>,
}

impl Default for MemorySink {
    fn default() -> MemorySink {
        MemorySink::new()
    }
}

impl MemorySink {
    /// An empty sink that keeps every table.
    pub fn new() -> MemorySink {
        MemorySink::only(Reads::all())
    }

    /// An empty sink that keeps what `reads` reads of the big tables, and
    /// every small table.
    pub fn only(reads: Reads) -> MemorySink {
        MemorySink { batches: HashMap::new(), reads, bytes: 0, dictionaries: HashSet::new() }
    }

    /// Bytes of the batches kept so far: of each column, the part of its
    /// buffers it spans (batches cut from one bigger batch share its
    /// buffers); of each dictionary column's values, which batches share
    /// until the dictionary grows, once per distinct copy.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The batches kept so far, table by table, each table's in order.
    pub fn drain(&mut self) -> Vec<(&'static Table, RecordBatch)> {
        self.bytes = 0;
        self.dictionaries.clear();
        let mut out = Vec::new();
        for table in tables::TABLES {
            for batch in self.batches.remove(table.name).unwrap_or_default() {
                out.push((table, batch));
            }
        }
        out
    }

    /// The tables it keeps, in the order of [`tables::TABLES`]; a table that
    /// got no batch has one empty batch.
    pub fn finish(mut self) -> Vec<TableData> {
        let kept: Vec<&'static Table> =
            tables::TABLES.iter().copied().filter(|t| self.reads.wants(t.name)).collect();
        kept.into_iter()
            .map(|table| {
                let schema = match self.reads.get(table.name) {
                    Some(read) => read.schema(),
                    None => Arc::new(table.schema()),
                };
                let mut batches = self.batches.remove(table.name).unwrap_or_default();
                if batches.is_empty() {
                    batches.push(RecordBatch::new_empty(schema.clone()));
                }
                TableData { table, schema, batches }
            })
            .collect()
    }
}

impl TableSink for MemorySink {
    fn write(&mut self, table: &'static Table, batch: RecordBatch) -> Result<()> {
        if self.reads.wants(table.name) {
            for column in batch.columns() {
                self.bytes += match column.as_any_dictionary_opt() {
                    Some(d) => {
                        // The values' address tells them apart: they are
                        // alive as long as a batch kept here holds them.
                        let values = Arc::as_ptr(d.values()).cast::<u8>() as usize;
                        let first = self.dictionaries.insert(values);
                        slice_bytes(d.keys())
                            + if first { d.values().get_array_memory_size() } else { 0 }
                    }
                    None => slice_bytes(column.as_ref()),
                };
            }
            self.batches.entry(table.name).or_default().push(batch);
        }
        Ok(())
    }

    fn reads(&self) -> &Reads {
        &self.reads
    }
}

/// Bytes of the buffers that `array` spans.
fn slice_bytes(array: &dyn Array) -> usize {
    array.to_data().get_slice_memory_size().unwrap_or_else(|_| array.get_array_memory_size())
}

/// Whether `table` is one of the big tables, whose rows pairing hands out
/// (`events`, `allocations`, `anomalies`); the others are small.
pub fn is_big(table: &str) -> bool {
    matches!(table, "events" | "allocations" | "anomalies")
}

/// Builds `table`'s batch from its columns.
///
/// # Errors
///
/// [`Error::Engine`] if a column does not match its schema (a bug).
fn batch(table: &'static Table, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(table.schema()), columns)
        .map_err(|e| Error::engine(format!("building table {}", table.name), e))
}

/// Every table but the big three, built from `data`, with its one batch.
///
/// # Errors
///
/// [`Error::Engine`] if a column does not match its schema (a bug).
pub fn small_tables(data: &TraceData) -> Result<Vec<(&'static Table, RecordBatch)>> {
    let mut out = Vec::new();
    for table in tables::TABLES {
        let columns = match table.name {
            "events" | "allocations" | "anomalies" => continue,
            "threads" => threads(data),
            "trace" => trace(data),
            "rss" => rss(data),
            "stacks" => stacks(data),
            "frames" => frames(data),
            "modules" => modules(data),
            other => unreachable!("table {other} has no builder"),
        };
        out.push((table, batch(table, columns)?));
    }
    Ok(out)
}

/// The table named `name`.
fn table(name: &str) -> &'static Table {
    tables::TABLES.iter().find(|t| t.name == name).expect("a table of the schema")
}

/// A dictionary of texts that grows as keys are asked for, with its values
/// as an Arrow array (rebuilt only when it grew).
#[derive(Debug, Default)]
struct Dictionary {
    key_of: HashMap<String, i32>,
    values: Vec<String>,
    array: Option<Arc<StringArray>>,
}

impl Dictionary {
    fn key(&mut self, text: &str) -> i32 {
        if let Some(&k) = self.key_of.get(text) {
            return k;
        }
        self.values.push(text.to_owned());
        self.array = None;
        let k = self.values.len() as i32 - 1;
        self.key_of.insert(text.to_owned(), k);
        k
    }

    fn column(&mut self, keys: Int32Array) -> DictionaryArray<Int32Type> {
        let values = self
            .array
            .get_or_insert_with(|| Arc::new(StringArray::from_iter_values(&self.values)))
            .clone();
        DictionaryArray::try_new(keys, values).expect("keys index the values")
    }
}

/// Builds the batches of `events`, `allocations` and `anomalies` from the
/// rows pairing hands out, of the columns and rows read of each (see
/// [`Reads`]). Dictionary columns share one dictionary per column across
/// batches, made from the trace's strings and stacks.
pub struct Batcher<'a> {
    header: &'a FileHeader,
    strings: &'a HashMap<u32, String>,
    types: Dictionary,
    type_of_string: FxHashMap<u32, i32>,
    /// By stack id: the key of its frame type in `types`.
    type_of_stack: Vec<Option<i32>>,
    vars: Dictionary,
    var_of_string: FxHashMap<u32, i32>,
    /// By stack id: the keys of its call site's function and file, and
    /// its line.
    call_site: Vec<(Option<i32>, Option<i32>, Option<u32>)>,
    call_site_names: Dictionary,
    call_site_files: Dictionary,
    /// What is built of each big table; a table without one is not built.
    cuts: Vec<Arc<Cut>>,
}

/// What is built of one big table: its columns read, and its rows read.
struct Cut {
    read: TableRead,
    /// The schema of the columns read.
    schema: SchemaRef,
    /// The filter of the rows read.
    predicate: Option<Predicate>,
}

impl Cut {
    fn new(read: &TableRead) -> Result<Cut> {
        Ok(Cut { read: read.clone(), schema: read.schema(), predicate: read.predicate()? })
    }

    fn name(&self) -> &'static str {
        self.read.table.name
    }

    /// Which of `n` rows the filter keeps, given a builder of a column
    /// (by index into the table's columns) for all of them: `None` for
    /// every row.
    fn keep(
        &self,
        n: usize,
        mut column: impl FnMut(usize) -> ArrayRef,
    ) -> Result<Option<BooleanArray>> {
        let Some(Predicate { columns, schema, expr }) = &self.predicate else {
            return Ok(None);
        };
        let failed = |e| Error::engine(format!("filtering table {}", self.name()), e);
        let columns = columns.iter().map(|&i| column(i)).collect();
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::engine(format!("building table {}", self.name()), e))?;
        let value = expr.evaluate(&batch).map_err(failed)?.into_array(n).map_err(failed)?;
        let keep = value.as_boolean_opt().ok_or_else(|| {
            Error::engine(
                format!("filtering table {}", self.name()),
                DataFusionError::Internal(format!("a filter of type {}", value.data_type())),
            )
        })?;
        // NULL is not true: the row is not kept.
        Ok(Some(if keep.null_count() > 0 { prep_null_mask_filter(keep) } else { keep.clone() }))
    }

    /// The batch of the columns read, given a builder of a column for
    /// `n` rows.
    fn project(&self, n: usize, mut column: impl FnMut(usize) -> ArrayRef) -> Result<RecordBatch> {
        let columns = self.read.columns.iter().map(|&i| column(i)).collect();
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| Error::engine(format!("building table {}", self.name()), e))
    }

    /// The rows of `batch` that `keep` keeps.
    fn filter(&self, batch: RecordBatch, keep: Option<&BooleanArray>) -> Result<RecordBatch> {
        match keep {
            Some(keep) if keep.true_count() < batch.num_rows() => filter_record_batch(&batch, keep)
                .map_err(|e| Error::engine(format!("filtering table {}", self.name()), e)),
            _ => Ok(batch),
        }
    }
}

impl std::fmt::Debug for Batcher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built: Vec<&str> = self.cuts.iter().map(|c| c.name()).collect();
        f.debug_struct("Batcher").field("tables", &built).finish_non_exhaustive()
    }
}

impl<'a> Batcher<'a> {
    /// A batcher for a trace with this header, strings and stacks, that
    /// builds what `reads` reads of the big tables.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when a filter of `reads` does not plan (a bug).
    pub fn new(
        header: &'a FileHeader,
        strings: &'a HashMap<u32, String>,
        stacks: &'a Stacks,
        reads: &Reads,
    ) -> Result<Batcher<'a>> {
        let cuts = tables::TABLES
            .iter()
            .filter_map(|t| reads.get(t.name))
            .map(|r| Cut::new(r).map(Arc::new))
            .collect::<Result<_>>()?;
        let mut b = Batcher {
            header,
            strings,
            types: Dictionary::default(),
            type_of_string: FxHashMap::default(),
            type_of_stack: vec![None],
            vars: Dictionary::default(),
            var_of_string: FxHashMap::default(),
            call_site: vec![(None, None, None)],
            call_site_names: Dictionary::default(),
            call_site_files: Dictionary::default(),
            cuts,
        };
        for id in 1..=stacks.stacks.len() as u32 {
            let t = stacks.type_of(id).map(|t| b.types.key(t));
            b.type_of_stack.push(t);
            let site = stacks.call_site_of(id);
            let name = site.map(|f| b.call_site_names.key(&f.name));
            let file = site.and_then(|f| f.file.as_deref()).map(|f| b.call_site_files.key(f));
            b.call_site.push((name, file, site.and_then(|f| f.line)));
        }
        Ok(b)
    }

    /// Whether big table `table` is built at all.
    pub fn builds(&self, table: &str) -> bool {
        self.cut(table).is_some()
    }

    fn cut(&self, table: &str) -> Option<Arc<Cut>> {
        self.cuts.iter().find(|c| c.name() == table).cloned()
    }

    /// The text of string `id`; `<unknown string ID>` when the trace does
    /// not define it (a trace cut before it was written).
    fn text(strings: &HashMap<u32, String>, id: u32) -> String {
        strings.get(&id).cloned().unwrap_or_else(|| format!("<unknown string {id}>"))
    }

    /// The `events` batch of `rows`, of the columns and rows read; `None`
    /// when the table is not built.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if a column does not match its schema (a bug) or
    /// the filter fails.
    pub fn events(&mut self, rows: EventRows) -> Result<Option<RecordBatch>> {
        let Some(cut) = self.cut("events") else {
            return Ok(None);
        };
        let mut rows = rows;
        let n = rows.len();
        // The filter's columns from copies of their values, the batch's
        // by moving them.
        let keep = cut.keep(n, |i| event_column(i, &mut rows, false))?;
        let batch = cut.project(n, |i| event_column(i, &mut rows, true))?;
        cut.filter(batch, keep.as_ref()).map(Some)
    }

    /// The `allocations` batch of `rows`, of the columns and rows read;
    /// `None` when the table is not built. Only the columns of the filter
    /// are built for every row, the others for the rows it keeps.
    ///
    /// # Errors
    ///
    /// As [`Batcher::events`].
    pub fn allocations(&mut self, rows: &[Allocation]) -> Result<Option<RecordBatch>> {
        let Some(cut) = self.cut("allocations") else {
            return Ok(None);
        };
        let keep = cut.keep(rows.len(), |i| self.allocation_column(i, rows))?;
        let kept: Vec<Allocation>;
        let rows = match &keep {
            Some(keep) if keep.true_count() < rows.len() => {
                kept = rows
                    .iter()
                    .zip(keep.values())
                    .filter(|(_, k)| *k)
                    .map(|(a, _)| a.clone())
                    .collect();
                &kept[..]
            }
            _ => rows,
        };
        cut.project(rows.len(), |i| self.allocation_column(i, rows)).map(Some)
    }

    /// The `anomalies` batch of `rows`, of the columns and rows read;
    /// `None` when the table is not built.
    ///
    /// # Errors
    ///
    /// As [`Batcher::events`].
    pub fn anomalies(&mut self, rows: &[Anomaly]) -> Result<Option<RecordBatch>> {
        let Some(cut) = self.cut("anomalies") else {
            return Ok(None);
        };
        let keep = cut.keep(rows.len(), |i| anomaly_column(i, rows))?;
        let batch = cut.project(rows.len(), |i| anomaly_column(i, rows))?;
        cut.filter(batch, keep.as_ref()).map(Some)
    }

    /// Column `index` of `allocations` for `rows`.
    fn allocation_column(&mut self, index: usize, rows: &[Allocation]) -> ArrayRef {
        let u64s = |f: fn(&Allocation) -> u64| UInt64Array::from_iter_values(rows.iter().map(f));
        let ended = |f: fn(&Allocation, (i64, u32)) -> i64| {
            let freed = rows.iter().map(|a| a.end.is_some()).collect();
            let values = rows.iter().map(|a| a.end.map_or(0, |e| f(a, e))).collect();
            nullable::<Int64Type>(values, freed)
        };
        let site = |a: &Allocation| {
            self.call_site.get(a.stack_id as usize).copied().unwrap_or((None, None, None))
        };
        match table("allocations").columns[index].name {
            "alloc_id" => Arc::new(u64s(|a| a.alloc_id)),
            "address" => Arc::new(u64s(|a| a.address)),
            "size" => Arc::new(u64s(|a| a.size)),
            "align" => Arc::new(u64s(|a| a.align)),
            "alloc_ts_ns" => {
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| a.alloc_ts_ns)))
            }
            "free_ts_ns" => Arc::new(ended(|_, (ts, _)| ts)),
            "lifetime_ns" => Arc::new(ended(|a, (ts, _)| ts.saturating_sub(a.alloc_ts_ns))),
            "alloc_thread_id" => {
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|a| a.alloc_thread_id)))
            }
            "free_thread_id" => {
                Arc::new(UInt32Array::from_iter(rows.iter().map(|a| a.end.map(|(_, t)| t))))
            }
            "type_name" => {
                let mut keys = Vec::with_capacity(rows.len());
                for a in rows {
                    keys.push(match self.type_source(a) {
                        TypeSource::Tag => Some(match self.type_of_string.get(&a.type_id) {
                            Some(&k) => k,
                            None => {
                                let k = self.types.key(&Self::text(self.strings, a.type_id));
                                self.type_of_string.insert(a.type_id, k);
                                k
                            }
                        }),
                        TypeSource::Frame => self.type_of_stack[a.stack_id as usize],
                        TypeSource::Unknown => None,
                    });
                }
                Arc::new(self.types.column(Int32Array::from(keys)))
            }
            "var_name" => {
                let mut keys = Vec::with_capacity(rows.len());
                for a in rows {
                    keys.push((a.var_id != 0).then(|| match self.var_of_string.get(&a.var_id) {
                        Some(&k) => k,
                        None => {
                            let k = self.vars.key(&Self::text(self.strings, a.var_id));
                            self.var_of_string.insert(a.var_id, k);
                            k
                        }
                    }));
                }
                Arc::new(self.vars.column(Int32Array::from(keys)))
            }
            "realloc_from" => Arc::new(sentinel_u64(rows.iter().map(|a| a.realloc_from).collect())),
            "realloc_to" => Arc::new(sentinel_u64(rows.iter().map(|a| a.realloc_to).collect())),
            "zeroed" => Arc::new(BooleanArray::from_iter(rows.iter().map(|a| Some(a.zeroed)))),
            "weight" => {
                let header = self.header;
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|a| 1.0 / header.sample_probability(a.size)),
                ))
            }
            "stack_id" => Arc::new(UInt32Array::from_iter(
                rows.iter().map(|a| (a.stack_id != 0).then_some(a.stack_id)),
            )),
            "call_site" => {
                let keys = Int32Array::from_iter(rows.iter().map(|a| site(a).0));
                Arc::new(self.call_site_names.column(keys))
            }
            "call_site_file" => {
                let keys = Int32Array::from_iter(rows.iter().map(|a| site(a).1));
                Arc::new(self.call_site_files.column(keys))
            }
            "call_site_line" => Arc::new(UInt32Array::from_iter(rows.iter().map(|a| site(a).2))),
            "type_source" => {
                let all = [TypeSource::Tag, TypeSource::Frame, TypeSource::Unknown];
                let keys = Int32Array::from_iter_values(rows.iter().map(|a| {
                    let s = self.type_source(a);
                    all.iter().position(|&t| t == s).expect("every source is listed") as i32
                }));
                let values = Arc::new(StringArray::from_iter_values(all.iter().map(|t| t.name())));
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(keys, values)
                        .expect("keys index the values"),
                )
            }
            other => unreachable!("allocations column {other} has no builder"),
        }
    }

    /// Where the type of allocation `a` comes from.
    fn type_source(&self, a: &Allocation) -> TypeSource {
        if a.type_id != 0 {
            TypeSource::Tag
        } else if self.type_of_stack.get(a.stack_id as usize).copied().flatten().is_some() {
            TypeSource::Frame
        } else {
            TypeSource::Unknown
        }
    }
}

/// Column `index` of `events` for `rows`: with `take`, moving its values
/// out of `rows` (so each column is built once), else copying them.
fn event_column(index: usize, rows: &mut EventRows, take: bool) -> ArrayRef {
    fn values<T: Clone>(v: &mut Vec<T>, take: bool) -> Vec<T> {
        if take { std::mem::take(v) } else { v.clone() }
    }
    // `kind` is never moved out: `size` and `align` read it.
    let n = rows.kind.len();
    match table("events").columns[index].name {
        "event_id" => {
            let first = rows.first_event_id;
            Arc::new(UInt64Array::from_iter_values(first..first + n as u64))
        }
        "ts_ns" => Arc::new(Int64Array::from(values(&mut rows.ts_ns, take))),
        "thread_id" => Arc::new(UInt32Array::from(values(&mut rows.thread_id, take))),
        "kind" => {
            let kinds = Int32Array::from_iter_values(rows.kind.iter().map(|&k| i32::from(k)));
            let values = Arc::new(StringArray::from_iter_values(event_kind::ALL));
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(kinds, values)
                    .expect("kind codes index the kind names"),
            )
        }
        "address" => Arc::new(UInt64Array::from(values(&mut rows.address, take))),
        "size" => {
            let has_size = rows
                .kind
                .iter()
                .zip(&rows.size)
                .map(|(&k, &s)| k != kind::TAG && s != NONE_U64)
                .collect();
            Arc::new(nullable::<UInt64Type>(values(&mut rows.size, take), has_size))
        }
        "align" => {
            let has_align = rows
                .kind
                .iter()
                .map(|&k| k == kind::ALLOCATION || k == kind::REALLOCATION)
                .collect();
            Arc::new(nullable::<UInt64Type>(values(&mut rows.align, take), has_align))
        }
        "old_address" => Arc::new(UInt64Array::from(values(&mut rows.old_address, take))),
        "alloc_id" => Arc::new(sentinel_u64(values(&mut rows.alloc_id, take))),
        other => unreachable!("events column {other} has no builder"),
    }
}

/// Column `index` of `anomalies` for `rows`.
fn anomaly_column(index: usize, rows: &[Anomaly]) -> ArrayRef {
    match table("anomalies").columns[index].name {
        "event_id" => Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| a.event))),
        "ts_ns" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| a.ts_ns))),
        "thread_id" => Arc::new(UInt32Array::from_iter_values(rows.iter().map(|a| a.thread_id))),
        "kind" => {
            let codes =
                Int32Array::from_iter_values(rows.iter().map(|a| {
                    AnomalyKind::ALL.iter().position(|&k| k == a.kind).unwrap_or(0) as i32
                }));
            let names =
                Arc::new(StringArray::from_iter_values(AnomalyKind::ALL.iter().map(|k| k.name())));
            Arc::new(
                DictionaryArray::<Int32Type>::try_new(codes, names)
                    .expect("anomaly codes index the kind names"),
            )
        }
        "address" => Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| a.address))),
        "alloc_id" => Arc::new(UInt64Array::from_iter(
            rows.iter().map(|a| (a.alloc_id != NONE_U64).then_some(a.alloc_id)),
        )),
        other => unreachable!("anomalies column {other} has no builder"),
    }
}

fn stacks(data: &TraceData) -> Vec<ArrayRef> {
    let st = &data.stacks;
    let rows = || {
        st.stacks
            .iter()
            .enumerate()
            .flat_map(|(i, s)| s.iter().enumerate().map(move |(d, &f)| (i as u32 + 1, d as u32, f)))
    };
    vec![
        Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.0))),
        Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.1))),
        Arc::new(UInt32Array::from_iter_values(rows().map(|r| r.2))),
    ]
}

fn frames(data: &TraceData) -> Vec<ArrayRef> {
    let f = &data.stacks.frames;
    vec![
        Arc::new(UInt32Array::from_iter_values(f.iter().map(|f| f.frame_id))),
        Arc::new(UInt64Array::from_iter_values(f.iter().map(|f| f.address))),
        Arc::new(UInt32Array::from_iter(f.iter().map(|f| f.module_id))),
        Arc::new(UInt64Array::from_iter(f.iter().map(|f| f.module_offset))),
        Arc::new(StringArray::from_iter(f.iter().map(|f| f.function.as_deref()))),
        Arc::new(StringArray::from_iter(f.iter().map(|f| f.file.as_deref()))),
        Arc::new(UInt32Array::from_iter(f.iter().map(|f| f.line))),
        Arc::new(BooleanArray::from_iter(f.iter().map(|f| Some(f.inlined)))),
        Arc::new(StringArray::from_iter_values(f.iter().map(|f| f.name.as_str()))),
    ]
}

fn modules(data: &TraceData) -> Vec<ArrayRef> {
    let m = &data.stacks.modules;
    vec![
        Arc::new(UInt32Array::from_iter_values(m.iter().map(|m| m.module_id))),
        Arc::new(StringArray::from_iter_values(m.iter().map(|m| m.path.as_str()))),
        Arc::new(StringArray::from_iter(m.iter().map(|m| m.build_id.as_deref()))),
        Arc::new(UInt64Array::from_iter_values(m.iter().map(|m| m.start))),
        Arc::new(UInt64Array::from_iter_values(m.iter().map(|m| m.end))),
        Arc::new(UInt64Array::from_iter_values(m.iter().map(|m| m.bias))),
        Arc::new(StringArray::from_iter_values(m.iter().map(|m| m.symbols.name()))),
        Arc::new(StringArray::from_iter(m.iter().map(|m| m.symbol_file.as_deref()))),
    ]
}

fn rss(data: &TraceData) -> Vec<ArrayRef> {
    vec![
        Arc::new(Int64Array::from_iter_values(data.rss.iter().map(|r| r.0))),
        Arc::new(UInt64Array::from_iter_values(data.rss.iter().map(|r| r.1))),
    ]
}

fn threads(data: &TraceData) -> Vec<ArrayRef> {
    let t = &data.threads;
    let names: Vec<Option<&str>> = t.iter().map(|t| t.name.as_deref()).collect();
    vec![
        Arc::new(UInt32Array::from_iter_values(t.iter().map(|t| t.thread_id))),
        Arc::new(UInt32Array::from_iter_values(t.iter().map(|t| t.os_tid))),
        Arc::new(names.into_iter().collect::<DictionaryArray<Int32Type>>()),
        Arc::new(Int64Array::from_iter_values(t.iter().map(|t| t.start_ts_ns))),
        Arc::new(Int64Array::from_iter(t.iter().map(|t| t.exit_ts_ns))),
        Arc::new(UInt64Array::from_iter_values(t.iter().map(|t| t.allocations))),
        Arc::new(UInt64Array::from_iter_values(t.iter().map(|t| t.allocated_bytes))),
    ]
}

fn trace(data: &TraceData) -> Vec<ArrayRef> {
    let h = &data.header;
    vec![
        Arc::new(StringArray::from(vec![h.program.clone()])),
        Arc::new(StringArray::from(vec![h.args.join(" ")])),
        Arc::new(UInt32Array::from(vec![h.pid])),
        Arc::new(TimestampNanosecondArray::from(vec![h.start_unix_ns as i64]).with_timezone("UTC")),
        Arc::new(Int64Array::from(vec![data.duration_ns()])),
        Arc::new(BooleanArray::from(vec![h.is_finished()])),
        Arc::new(BooleanArray::from(vec![h.recording_failed()])),
        Arc::new(StringArray::from(vec![format!("{}.{}", h.major, h.minor)])),
        Arc::new(StringArray::from(vec![h.clock.name()])),
        Arc::new(UInt64Array::from(vec![data.event_count])),
        Arc::new(UInt64Array::from(vec![data.threads.len() as u64])),
        Arc::new(UInt64Array::from(vec![data.file_bytes])),
        Arc::new(UInt64Array::from(vec![h.sample_rate])),
    ]
}

/// A primitive array from `values`, NULL where `valid` is false.
fn nullable<T: ArrowPrimitiveType>(values: Vec<T::Native>, valid: Vec<bool>) -> PrimitiveArray<T> {
    let nulls = NullBuffer::from(valid);
    let nulls = (nulls.null_count() > 0).then_some(nulls);
    PrimitiveArray::new(ScalarBuffer::from(values), nulls)
}

/// A `UInt64` array, NULL where the value is [`NONE_U64`].
fn sentinel_u64(values: Vec<u64>) -> UInt64Array {
    let valid = values.iter().map(|&v| v != NONE_U64).collect();
    nullable(values, valid)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `allocations`' `size` and `type_name` of `n` rows, whose
    /// dictionary values are `values`.
    fn sizes(n: usize, values: &Arc<StringArray>) -> RecordBatch {
        let read = TableRead { table: table("allocations"), columns: vec![2, 9], filter: None };
        let keys = Int32Array::from_iter_values((0..n).map(|i| (i % values.len()) as i32));
        let types = DictionaryArray::<Int32Type>::try_new(keys, values.clone()).unwrap();
        let sizes = UInt64Array::from_iter_values(0..n as u64);
        RecordBatch::try_new(read.schema(), vec![Arc::new(sizes), Arc::new(types)]).unwrap()
    }

    #[test]
    fn kept_bytes_count_shared_buffers_once() {
        let values = Arc::new(StringArray::from_iter_values((0..1000).map(|i| format!("T{i}"))));
        let whole = sizes(1 << 16, &values);
        let mut sink = MemorySink::new();
        let allocations = table("allocations");
        sink.write(allocations, whole.slice(0, 1 << 15)).unwrap();
        sink.write(allocations, whole.slice(1 << 15, 1 << 15)).unwrap();
        let once = sink.bytes();
        // Sizes (8 bytes) and keys (4 bytes) of every row, and the
        // dictionary's values once.
        let rows = (1 << 16) * (8 + 4);
        assert!(once >= rows + values.get_array_memory_size(), "{once}");
        assert!(once < rows + 2 * values.get_array_memory_size(), "{once}");
        // A grown dictionary is another copy.
        let grown = Arc::new(StringArray::from_iter_values((0..1001).map(|i| format!("T{i}"))));
        sink.write(allocations, sizes(1, &grown)).unwrap();
        assert!(sink.bytes() >= once + grown.get_array_memory_size());
    }
}
