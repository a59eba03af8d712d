//! Arrow record batches for every table, built from a [`TraceData`] against
//! the schemas in `memscope_schema::tables`.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, PrimitiveArray,
    StringArray, TimestampNanosecondArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, Int32Type, Int64Type, SchemaRef, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use memscope_schema::tables::{self, Table, event_kind};

use crate::decode::kind;
use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::pairing::{AnomalyKind, NONE_U64};
use crate::stacks::TypeSource;
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

/// Builds every table of [`tables::TABLES`] from `data`.
///
/// # Errors
///
/// [`Error::Engine`] if a column does not match its schema (a bug).
pub fn build(data: &TraceData) -> Result<Vec<TableData>> {
    let mut dict = StringDict::new(&data.strings);
    let mut out = Vec::new();
    for table in tables::TABLES {
        let columns = match table.name {
            "events" => events(data),
            "allocations" => allocations(data, &mut dict),
            "threads" => threads(data),
            "trace" => trace(data),
            "rss" => rss(data),
            "stacks" => stacks(data),
            "frames" => frames(data),
            "modules" => modules(data),
            "anomalies" => anomalies(data),
            other => unreachable!("table {other} has no builder"),
        };
        out.push(batch(table, columns)?);
    }
    Ok(out)
}

fn batch(table: &'static Table, columns: Vec<ArrayRef>) -> Result<TableData> {
    let schema = Arc::new(table.schema());
    let whole = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::engine(format!("building table {}", table.name), e))?;
    let rows = whole.num_rows();
    let batches = if rows == 0 {
        vec![whole]
    } else {
        (0..rows)
            .step_by(BATCH_ROWS)
            .map(|start| whole.slice(start, BATCH_ROWS.min(rows - start)))
            .collect()
    };
    Ok(TableData { table, schema, batches })
}

fn events(data: &TraceData) -> Vec<ArrayRef> {
    let e = &data.events;
    let n = e.len();
    let has_size: Vec<bool> = (0..n)
        .map(|i| match e.kind[i] {
            kind::TAG => false,
            kind::DEALLOCATION => data.event_alloc_id[i] != NONE_U64,
            _ => true,
        })
        .collect();
    let has_align: Vec<bool> =
        e.kind.iter().map(|&k| k == kind::ALLOCATION || k == kind::REALLOCATION).collect();
    let kinds = Int32Array::from_iter_values(e.kind.iter().map(|&k| i32::from(k)));
    let kind_values = Arc::new(StringArray::from_iter_values(event_kind::ALL));
    vec![
        Arc::new(UInt64Array::from_iter_values(0..n as u64)),
        Arc::new(Int64Array::from(e.ts_ns.clone())),
        Arc::new(UInt32Array::from(e.thread_id.clone())),
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(kinds, kind_values)
                .expect("kind codes index the kind names"),
        ),
        Arc::new(UInt64Array::from(e.address.clone())),
        Arc::new(nullable::<UInt64Type>(e.size.clone(), has_size)),
        Arc::new(nullable::<UInt64Type>(e.align.clone(), has_align)),
        Arc::new(UInt64Array::from(e.old_address.clone())),
        Arc::new(sentinel_u64(&data.event_alloc_id)),
    ]
}

fn allocations(data: &TraceData, dict: &mut StringDict) -> Vec<ArrayRef> {
    let a = &data.allocations;
    let st = &data.stacks;
    let freed = a.freed.clone();
    let lifetime: Vec<i64> =
        a.free_ts_ns.iter().zip(&a.alloc_ts_ns).map(|(&f, &s)| f.saturating_sub(s)).collect();
    let free_ts = a.free_ts_ns.clone();
    vec![
        Arc::new(UInt64Array::from(a.alloc_id.clone())),
        Arc::new(UInt64Array::from(a.address.clone())),
        Arc::new(UInt64Array::from(a.size.clone())),
        Arc::new(UInt64Array::from(a.align.clone())),
        Arc::new(Int64Array::from(a.alloc_ts_ns.clone())),
        Arc::new(nullable::<Int64Type>(free_ts, freed.clone())),
        Arc::new(nullable::<Int64Type>(lifetime, freed.clone())),
        Arc::new(UInt32Array::from(a.alloc_thread_id.clone())),
        Arc::new(nullable::<UInt32Type>(a.free_thread_id.clone(), freed)),
        Arc::new(type_names(data, dict)),
        Arc::new(dict.column(&a.var_id)),
        Arc::new(sentinel_u64(&a.realloc_from)),
        Arc::new(sentinel_u64(&a.realloc_to)),
        Arc::new(BooleanArray::from(a.zeroed.clone())),
        Arc::new(Float64Array::from_iter_values(
            a.size.iter().map(|&s| 1.0 / data.header.sample_probability(s)),
        )),
        Arc::new(nullable::<UInt32Type>(
            a.stack_id.clone(),
            a.stack_id.iter().map(|&s| s != 0).collect(),
        )),
        Arc::new(dict_by(a.stack_id.iter().map(|&s| Some(s)), |s| {
            st.call_site_of(s).map(|f| f.name.clone())
        })),
        Arc::new(dict_by(a.stack_id.iter().map(|&s| Some(s)), |s| {
            st.call_site_of(s).and_then(|f| f.file.clone())
        })),
        Arc::new(UInt32Array::from_iter(
            a.stack_id.iter().map(|&s| st.call_site_of(s).and_then(|f| f.line)),
        )),
        Arc::new(type_sources(data)),
    ]
}

/// Where each allocation's type comes from: its tag, else its stack.
fn type_source(data: &TraceData, row: usize) -> TypeSource {
    let a = &data.allocations;
    if a.type_id[row] != 0 {
        TypeSource::Tag
    } else if data.stacks.type_of(a.stack_id[row]).is_some() {
        TypeSource::Frame
    } else {
        TypeSource::Unknown
    }
}

fn type_names(data: &TraceData, dict: &mut StringDict) -> DictionaryArray<Int32Type> {
    let a = &data.allocations;
    let keys = (0..a.len()).map(|row| match type_source(data, row) {
        TypeSource::Tag => Some((true, a.type_id[row])),
        TypeSource::Frame => Some((false, a.stack_id[row])),
        TypeSource::Unknown => None,
    });
    dict_by(keys, |(tag, id)| {
        if tag { Some(dict.text(id)) } else { data.stacks.type_of(id).map(str::to_owned) }
    })
}

fn type_sources(data: &TraceData) -> DictionaryArray<Int32Type> {
    let all = [TypeSource::Tag, TypeSource::Frame, TypeSource::Unknown];
    let keys = Int32Array::from_iter_values((0..data.allocations.len()).map(|row| {
        let s = type_source(data, row);
        all.iter().position(|&t| t == s).expect("every source is listed") as i32
    }));
    let values = Arc::new(StringArray::from_iter_values(all.iter().map(|t| t.name())));
    DictionaryArray::try_new(keys, values).expect("keys index the values")
}

/// A dictionary column from row keys: `text` names a key once (NULL when
/// it returns `None`), and equal texts share one dictionary value.
fn dict_by<K: std::hash::Hash + Eq + Copy>(
    keys: impl Iterator<Item = Option<K>>,
    mut text: impl FnMut(K) -> Option<String>,
) -> DictionaryArray<Int32Type> {
    let mut key_of: FxHashMap<K, Option<i32>> = FxHashMap::default();
    let mut key_of_text: HashMap<String, i32> = HashMap::new();
    let mut values: Vec<String> = Vec::new();
    let keys: Int32Array = keys
        .map(|k| {
            let k = k?;
            *key_of.entry(k).or_insert_with(|| {
                let t = text(k)?;
                Some(*key_of_text.entry(t.clone()).or_insert_with(|| {
                    values.push(t);
                    values.len() as i32 - 1
                }))
            })
        })
        .collect();
    DictionaryArray::try_new(keys, Arc::new(StringArray::from(values)))
        .expect("keys index the values")
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

fn anomalies(data: &TraceData) -> Vec<ArrayRef> {
    let rows = &data.anomaly_rows;
    let e = &data.events;
    let codes = Int32Array::from_iter_values(
        rows.iter().map(|a| AnomalyKind::ALL.iter().position(|&k| k == a.kind).unwrap_or(0) as i32),
    );
    let names = Arc::new(StringArray::from_iter_values(AnomalyKind::ALL.iter().map(|k| k.name())));
    vec![
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| a.event as u64))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|a| e.ts_ns[a.event]))),
        Arc::new(UInt32Array::from_iter_values(rows.iter().map(|a| e.thread_id[a.event]))),
        Arc::new(
            DictionaryArray::<Int32Type>::try_new(codes, names)
                .expect("anomaly codes index the kind names"),
        ),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|a| match a.kind {
            AnomalyKind::UnknownReallocation => e.old_address[a.event],
            _ => e.address[a.event],
        }))),
        Arc::new(UInt64Array::from_iter(
            rows.iter().map(|a| (a.alloc_id != NONE_U64).then_some(a.alloc_id)),
        )),
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
        Arc::new(UInt64Array::from(vec![data.events.len() as u64])),
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
fn sentinel_u64(values: &[u64]) -> UInt64Array {
    nullable(values.to_vec(), values.iter().map(|&v| v != NONE_U64).collect())
}

/// Maps string ids to keys of one dictionary per column, merging ids that
/// share a text.
struct StringDict<'a> {
    strings: &'a HashMap<u32, String>,
}

impl<'a> StringDict<'a> {
    fn new(strings: &'a HashMap<u32, String>) -> StringDict<'a> {
        StringDict { strings }
    }

    /// The text of string `id` (see [`StringDict::column`]).
    fn text(&self, id: u32) -> String {
        self.strings.get(&id).cloned().unwrap_or_else(|| format!("<unknown string {id}>"))
    }

    /// A dictionary column for string ids (0 = NULL). Ids without a
    /// definition (a trace cut before it was written) read
    /// `<unknown string N>`.
    fn column(&mut self, ids: &[u32]) -> DictionaryArray<Int32Type> {
        let mut key_of_id: HashMap<u32, i32> = HashMap::new();
        let mut key_of_text: HashMap<String, i32> = HashMap::new();
        let mut values: Vec<String> = Vec::new();
        let keys: Int32Array = ids
            .iter()
            .map(|&id| {
                if id == 0 {
                    return None;
                }
                Some(*key_of_id.entry(id).or_insert_with(|| {
                    let text = self
                        .strings
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("<unknown string {id}>"));
                    *key_of_text.entry(text.clone()).or_insert_with(|| {
                        values.push(text);
                        values.len() as i32 - 1
                    })
                }))
            })
            .collect();
        DictionaryArray::try_new(keys, Arc::new(StringArray::from(values)))
            .expect("keys index the values")
    }
}
