//! Arrow record batches for every table, against the schemas in
//! `memscope_schema::tables`: the big tables (`events`, `allocations`,
//! `anomalies`) from the rows pairing hands out, batch by batch
//! ([`Batcher`]); the others from a [`TraceData`] ([`small_tables`]).
//! Batches go to a [`TableSink`]: memory ([`MemorySink`]) or Parquet files
//! (`crate::convert::ParquetSink`).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, PrimitiveArray,
    StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, Int32Type, Int64Type, SchemaRef, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use memscope_schema::format::FileHeader;
use memscope_schema::tables::{self, Table, event_kind};

use crate::decode::kind;
use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::pairing::{Allocation, Anomaly, AnomalyKind, EventRows, NONE_U64};
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
    /// Takes one batch of `table` (of at most [`BATCH_ROWS`] rows). The
    /// batches of a table come in the table's row order.
    ///
    /// # Errors
    ///
    /// Whatever keeping the batch fails with ([`Error::Io`] for a file).
    fn write(&mut self, table: &'static Table, batch: RecordBatch) -> Result<()>;

    /// Whether the sink keeps `table` at all; batches of a table it does not
    /// keep need not be built.
    fn wants(&self, table: &str) -> bool {
        let _ = table;
        true
    }
}

/// Keeps the batches in memory: of every table, or of some.
#[derive(Debug, Default)]
pub struct MemorySink {
    batches: HashMap<&'static str, Vec<RecordBatch>>,
    only: Option<Vec<&'static str>>,
}

impl MemorySink {
    /// An empty sink that keeps every table.
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// An empty sink that keeps only the big tables (`events`,
    /// `allocations`, `anomalies`) among `tables`, and every small one.
    pub fn only(tables: &[&'static str]) -> MemorySink {
        MemorySink { only: Some(tables.to_vec()), ..MemorySink::default() }
    }

    /// The tables it keeps, in the order of [`tables::TABLES`]; a table that
    /// got no batch has one empty batch.
    pub fn finish(mut self) -> Vec<TableData> {
        let kept: Vec<&'static Table> =
            tables::TABLES.iter().copied().filter(|t| self.wants(t.name)).collect();
        kept.into_iter()
            .map(|table| {
                let schema = Arc::new(table.schema());
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
        if self.wants(table.name) {
            self.batches.entry(table.name).or_default().push(batch);
        }
        Ok(())
    }

    fn wants(&self, table: &str) -> bool {
        !is_big(table) || self.only.as_ref().is_none_or(|only| only.contains(&table))
    }
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
/// rows pairing hands out. Dictionary columns share one dictionary per
/// column across batches, made from the trace's strings and stacks.
#[derive(Debug)]
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
}

impl<'a> Batcher<'a> {
    /// A batcher for a trace with this header, strings and stacks.
    pub fn new(
        header: &'a FileHeader,
        strings: &'a HashMap<u32, String>,
        stacks: &'a Stacks,
    ) -> Batcher<'a> {
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
        };
        for id in 1..=stacks.stacks.len() as u32 {
            let t = stacks.type_of(id).map(|t| b.types.key(t));
            b.type_of_stack.push(t);
            let site = stacks.call_site_of(id);
            let name = site.map(|f| b.call_site_names.key(&f.name));
            let file = site.and_then(|f| f.file.as_deref()).map(|f| b.call_site_files.key(f));
            b.call_site.push((name, file, site.and_then(|f| f.line)));
        }
        b
    }

    /// The text of string `id`; `<unknown string ID>` when the trace does
    /// not define it (a trace cut before it was written).
    fn text(strings: &HashMap<u32, String>, id: u32) -> String {
        strings.get(&id).cloned().unwrap_or_else(|| format!("<unknown string {id}>"))
    }

    /// The `events` batch of `rows`.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if a column does not match its schema (a bug).
    pub fn events(&mut self, rows: EventRows) -> Result<RecordBatch> {
        let n = rows.len();
        let has_size: Vec<bool> = rows
            .kind
            .iter()
            .zip(&rows.size)
            .map(|(&k, &s)| k != kind::TAG && s != NONE_U64)
            .collect();
        let has_align: Vec<bool> =
            rows.kind.iter().map(|&k| k == kind::ALLOCATION || k == kind::REALLOCATION).collect();
        let kinds = Int32Array::from_iter_values(rows.kind.iter().map(|&k| i32::from(k)));
        let kind_values = Arc::new(StringArray::from_iter_values(event_kind::ALL));
        let first = rows.first_event_id;
        batch(
            table("events"),
            vec![
                Arc::new(UInt64Array::from_iter_values(first..first + n as u64)),
                Arc::new(Int64Array::from(rows.ts_ns)),
                Arc::new(UInt32Array::from(rows.thread_id)),
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(kinds, kind_values)
                        .expect("kind codes index the kind names"),
                ),
                Arc::new(UInt64Array::from(rows.address)),
                Arc::new(nullable::<UInt64Type>(rows.size, has_size)),
                Arc::new(nullable::<UInt64Type>(rows.align, has_align)),
                Arc::new(UInt64Array::from(rows.old_address)),
                Arc::new(sentinel_u64(rows.alloc_id)),
            ],
        )
    }

    /// The `allocations` batch of `rows`.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if a column does not match its schema (a bug).
    pub fn allocations(&mut self, rows: &[Allocation]) -> Result<RecordBatch> {
        let u64s = |f: fn(&Allocation) -> u64| UInt64Array::from_iter_values(rows.iter().map(f));
        let freed: Vec<bool> = rows.iter().map(|a| a.end.is_some()).collect();
        let ended = |f: fn(&Allocation, (i64, u32)) -> i64| {
            let values = rows.iter().map(|a| a.end.map_or(0, |e| f(a, e))).collect();
            nullable::<Int64Type>(values, freed.clone())
        };
        let source = |a: &Allocation| {
            if a.type_id != 0 {
                TypeSource::Tag
            } else if self.type_of_stack.get(a.stack_id as usize).copied().flatten().is_some() {
                TypeSource::Frame
            } else {
                TypeSource::Unknown
            }
        };
        let sources: Vec<TypeSource> = rows.iter().map(source).collect();
        let mut type_keys = Vec::with_capacity(rows.len());
        for (a, s) in rows.iter().zip(&sources) {
            type_keys.push(match s {
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
        let mut var_keys = Vec::with_capacity(rows.len());
        for a in rows {
            var_keys.push((a.var_id != 0).then(|| match self.var_of_string.get(&a.var_id) {
                Some(&k) => k,
                None => {
                    let k = self.vars.key(&Self::text(self.strings, a.var_id));
                    self.var_of_string.insert(a.var_id, k);
                    k
                }
            }));
        }
        let site = |a: &Allocation| {
            self.call_site.get(a.stack_id as usize).copied().unwrap_or((None, None, None))
        };
        let names = Int32Array::from_iter(rows.iter().map(|a| site(a).0));
        let files = Int32Array::from_iter(rows.iter().map(|a| site(a).1));
        let lines = UInt32Array::from_iter(rows.iter().map(|a| site(a).2));
        let all = [TypeSource::Tag, TypeSource::Frame, TypeSource::Unknown];
        let source_keys =
            Int32Array::from_iter_values(sources.iter().map(|&s| {
                all.iter().position(|&t| t == s).expect("every source is listed") as i32
            }));
        let source_values = Arc::new(StringArray::from_iter_values(all.iter().map(|t| t.name())));
        let header = self.header;
        batch(
            table("allocations"),
            vec![
                Arc::new(u64s(|a| a.alloc_id)),
                Arc::new(u64s(|a| a.address)),
                Arc::new(u64s(|a| a.size)),
                Arc::new(u64s(|a| a.align)),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| a.alloc_ts_ns))),
                Arc::new(ended(|_, (ts, _)| ts)),
                Arc::new(ended(|a, (ts, _)| ts.saturating_sub(a.alloc_ts_ns))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|a| a.alloc_thread_id))),
                Arc::new(UInt32Array::from_iter(rows.iter().map(|a| a.end.map(|(_, t)| t)))),
                Arc::new(self.types.column(Int32Array::from(type_keys))),
                Arc::new(self.vars.column(Int32Array::from(var_keys))),
                Arc::new(sentinel_u64(rows.iter().map(|a| a.realloc_from).collect())),
                Arc::new(sentinel_u64(rows.iter().map(|a| a.realloc_to).collect())),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|a| Some(a.zeroed)))),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|a| 1.0 / header.sample_probability(a.size)),
                )),
                Arc::new(UInt32Array::from_iter(
                    rows.iter().map(|a| (a.stack_id != 0).then_some(a.stack_id)),
                )),
                Arc::new(self.call_site_names.column(names)),
                Arc::new(self.call_site_files.column(files)),
                Arc::new(lines),
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(source_keys, source_values)
                        .expect("keys index the values"),
                ),
            ],
        )
    }

    /// The `anomalies` batch of `rows`.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] if a column does not match its schema (a bug).
    pub fn anomalies(&mut self, rows: &[Anomaly]) -> Result<RecordBatch> {
        let codes = Int32Array::from_iter_values(
            rows.iter()
                .map(|a| AnomalyKind::ALL.iter().position(|&k| k == a.kind).unwrap_or(0) as i32),
        );
        let names =
            Arc::new(StringArray::from_iter_values(AnomalyKind::ALL.iter().map(|k| k.name())));
        batch(
            table("anomalies"),
            vec![
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| a.event))),
                Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| a.ts_ns))),
                Arc::new(UInt32Array::from_iter_values(rows.iter().map(|a| a.thread_id))),
                Arc::new(
                    DictionaryArray::<Int32Type>::try_new(codes, names)
                        .expect("anomaly codes index the kind names"),
                ),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| a.address))),
                Arc::new(UInt64Array::from_iter(
                    rows.iter().map(|a| (a.alloc_id != NONE_U64).then_some(a.alloc_id)),
                )),
            ],
        )
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
