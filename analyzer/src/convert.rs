//! `convert`: every table as a zstd Parquet file, with the trace header in
//! the footer's key/value metadata, written row group by row group as the
//! trace is decoded ([`ParquetSink`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use memscope_schema::tables::{ColumnType, TABLES, Table};

use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::output::PendingFile;
use crate::query;
use crate::reads::Reads;
use crate::tables::TableSink;

/// Rows per Parquet row group: large enough for fast scans, small enough
/// for readers that split work by row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Columns that are sorted or nearly so (ids, timestamps) or have few
/// repeats (addresses): delta-encoded, without a dictionary.
const DELTA_COLUMNS: [&str; 7] =
    ["event_id", "ts_ns", "alloc_id", "alloc_ts_ns", "free_ts_ns", "address", "old_address"];

/// Columns with so many distinct values (lifetimes, and ids that are
/// mostly NULL) that a dictionary would outgrow its page and be dropped
/// after every value had been looked up in it: plain, without one.
const PLAIN_COLUMNS: [&str; 3] = ["lifetime_ns", "realloc_from", "realloc_to"];

/// The columns, as (table, column), that get page statistics (a column
/// index): those whose values rise with their table's rows, or nearly.
/// `events` and `anomalies` are in time order; `allocations` in the order
/// blocks ended (`free_ts_ns`, with the blocks still live, NULL, in the
/// last pages), which the order they started (`alloc_id`, `alloc_ts_ns`)
/// loosely follows. A page's minimum and maximum are then narrow, and a
/// filter skips the pages outside them: the leaks query reads only the
/// last pages of `allocations`. On other columns a page spans about the
/// whole range and a filter can rarely skip one, yet `convert` holds the
/// column index in memory until it writes the footer, and a query that
/// loads it decodes all of it. Every column keeps statistics per row group
/// and an offset index. At 1e8 events, leaving the column index out of
/// the other columns made the leaks query over Parquet about 15 % faster.
const PAGE_STATISTICS: [(&str, &str); 8] = [
    ("events", "event_id"),
    ("events", "ts_ns"),
    ("allocations", "alloc_id"),
    ("allocations", "alloc_ts_ns"),
    ("allocations", "free_ts_ns"),
    ("anomalies", "event_id"),
    ("anomalies", "ts_ns"),
    ("rss", "ts_ns"),
];

/// Footer metadata describing the trace: `memscope.*` keys.
pub fn header_metadata(data: &TraceData, table: &str) -> Vec<KeyValue> {
    let h = &data.header;
    [
        ("memscope.table", table.to_string()),
        ("memscope.format_version", format!("{}.{}", h.major, h.minor)),
        ("memscope.clock_source", h.clock.name().to_string()),
        ("memscope.start_unix_ns", h.start_unix_ns.to_string()),
        ("memscope.duration_ns", data.duration_ns().to_string()),
        ("memscope.pid", h.pid.to_string()),
        ("memscope.program", h.program.clone()),
        ("memscope.command_line", h.args.join(" ")),
        ("memscope.finished", h.is_finished().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| KeyValue::new(k.to_string(), v))
    .collect()
}

/// Writer settings for one table.
fn properties(table: &Table) -> WriterProperties {
    let mut b = WriterProperties::builder()
        // Level 1: at 1e7 events, 5 % less time for `convert` than level 3,
        // for files 0.6 % larger.
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("1 is a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for c in table.columns {
        let path = ColumnPath::from(c.name);
        if !PAGE_STATISTICS.contains(&(table.name, c.name)) {
            b = b.set_column_statistics_enabled(path.clone(), EnabledStatistics::Chunk);
        }
        if DELTA_COLUMNS.contains(&c.name) && matches!(c.ty, ColumnType::UInt64 | ColumnType::Int64)
        {
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
        } else if PLAIN_COLUMNS.contains(&c.name) {
            b = b.set_column_dictionary_enabled(path, false);
        }
    }
    b.build()
}

/// Where `convert -o dir [--run run]` writes its tables: `dir`, or
/// `dir/run=RUN` for a run of a dataset partitioned by run.
///
/// # Errors
///
/// [`Error::Usage`] for a run ID that is not a plain name, and for mixing
/// the two layouts in one directory (a run into a dataset of one trace, or
/// one trace into a dataset of runs), which readers could not tell apart.
pub fn output_dir(dir: &Path, run: Option<&str>) -> Result<PathBuf> {
    match run {
        Some(id) => {
            let plain = !id.is_empty()
                && id != "."
                && id != ".."
                && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if !plain {
                return Err(Error::Usage(format!(
                    "--run {id:?}: a run ID is made of letters, digits, '.', '_' and '-'"
                )));
            }
            if !query::dataset_tables(dir).is_empty() {
                return Err(Error::Usage(format!(
                    "{}: holds the tables of one trace, not runs; convert runs into another directory",
                    dir.display()
                )));
            }
            Ok(dir.join(format!("run={id}")))
        }
        None => {
            if !query::dataset_runs(dir).is_empty() {
                return Err(Error::Usage(format!(
                    "{}: holds runs (run=ID/); add this trace with --run ID",
                    dir.display()
                )));
            }
            Ok(dir.to_path_buf())
        }
    }
}

/// Writes every table to `dir/<table>.parquet` as its batches come, a row
/// group at a time: memory holds at most one row group per table, and
/// [`QUEUED_BATCHES`] batches on their way to it. Each
/// table is encoded and compressed on a thread of its own, so that the big
/// tables are written in parallel with each other and with the building
/// of their batches. The files appear when [`ParquetSink::finish`] has
/// written every table (each is a temporary file beside its output until
/// then); dropped unfinished, the sink deletes its temporary files, and the
/// directory when it made it.
pub struct ParquetSink {
    dir: PathBuf,
    /// The directory, when the sink made it.
    made_dir: Option<PathBuf>,
    writers: Vec<TableWriter>,
    /// What is written of the big tables.
    reads: Reads,
}

/// One table's file being written.
struct TableWriter {
    table: &'static Table,
    /// Declared before `pending`, so that it is dropped (its thread ends)
    /// before the temporary file is deleted.
    writing: WritingThread,
    pending: PendingFile,
    rows: u64,
}

type FileWriter = ArrowWriter<BufWriter<File>>;

/// Batches waiting for a table's writing thread: with the row group it
/// holds, the most memory a table takes.
pub const QUEUED_BATCHES: usize = 2;

/// The thread that encodes and writes one table's batches.
struct WritingThread {
    /// Batches to the thread; `None` once closed.
    batches: Option<SyncSender<RecordBatch>>,
    /// The thread, which returns the writer once the batches end.
    thread: Option<JoinHandle<std::result::Result<FileWriter, ParquetError>>>,
}

impl WritingThread {
    /// Starts writing with `writer` on a thread named after `table`.
    fn start(table: &str, mut writer: FileWriter) -> std::io::Result<WritingThread> {
        let (batches, queue) = sync_channel::<RecordBatch>(QUEUED_BATCHES);
        let thread =
            std::thread::Builder::new().name(format!("write {table}")).spawn(move || {
                for batch in queue {
                    writer.write(&batch)?;
                }
                Ok(writer)
            })?;
        Ok(WritingThread { batches: Some(batches), thread: Some(thread) })
    }

    /// Hands `batch` to the thread; false when the thread has stopped (it
    /// failed: [`WritingThread::close`] says why).
    fn send(&self, batch: RecordBatch) -> bool {
        self.batches.as_ref().is_some_and(|b| b.send(batch).is_ok())
    }

    /// Stops taking batches and waits for the thread to write those it
    /// has; returns the writer, or why it failed.
    fn close(&mut self) -> std::result::Result<FileWriter, ParquetError> {
        self.batches = None;
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
            None => Err(ParquetError::General("the file was closed before".into())),
        }
    }
}

impl Drop for WritingThread {
    fn drop(&mut self) {
        // Its failure, or its panic, goes with the unfinished file.
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl ParquetSink {
    /// Starts writing a dataset of every table into `dir` (made if
    /// missing).
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when a table's file exists and not `force`
    /// (checked for every table before anything is written);
    /// [`Error::Io`], [`Error::Engine`].
    pub fn create(dir: &Path, force: bool) -> Result<ParquetSink> {
        ParquetSink::create_for(dir, force, Reads::all())
    }

    /// Like [`ParquetSink::create`], writing only what `reads` reads of the
    /// big tables (`events`, `allocations`, `anomalies`), and every small
    /// table.
    ///
    /// # Errors
    ///
    /// As [`ParquetSink::create`].
    pub fn create_for(dir: &Path, force: bool, reads: Reads) -> Result<ParquetSink> {
        let made_dir = (!dir.exists()).then(|| dir.to_path_buf());
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = |t: &Table| dir.join(format!("{}.parquet", t.name));
        let kept: Vec<&'static Table> =
            TABLES.iter().copied().filter(|t| reads.wants(t.name)).collect();
        if !force && let Some(p) = kept.iter().map(|t| path(t)).find(|p| p.exists()) {
            return Err(Error::OutputExists { path: p });
        }
        let mut sink = ParquetSink { dir: dir.to_path_buf(), made_dir, writers: Vec::new(), reads };
        for table in kept {
            let path = path(table);
            let mut pending = PendingFile::create(&path, force)?;
            let file = pending.file().try_clone().map_err(|e| Error::io(&path, e))?;
            let schema = match sink.reads.get(table.name) {
                Some(read) => read.schema(),
                None => std::sync::Arc::new(table.schema()),
            };
            let writer =
                ArrowWriter::try_new(BufWriter::new(file), schema, Some(properties(table)))
                    .map_err(|e| Error::engine(format!("writing {}", path.display()), e))?;
            let writing =
                WritingThread::start(table.name, writer).map_err(|e| Error::io(&path, e))?;
            sink.writers.push(TableWriter { table, writing, pending, rows: 0 });
        }
        Ok(sink)
    }

    /// Finishes every file, with `data`'s header in its footer, and then
    /// makes them the outputs. Returns each file's path and row count.
    ///
    /// # Errors
    ///
    /// [`Error::Io`], [`Error::Engine`], [`Error::OutputExists`] when
    /// another process made an output meanwhile.
    pub fn finish(mut self, data: &TraceData) -> Result<Vec<(PathBuf, u64)>> {
        let mut finished = Vec::new();
        for mut w in std::mem::take(&mut self.writers) {
            let path = w.pending.path().to_path_buf();
            crate::progress::stage(format!("finishing {} ({} rows)", path.display(), w.rows));
            let failed = |e| Error::engine(format!("writing {}", path.display()), e);
            let mut writer = w.writing.close().map_err(failed)?;
            for kv in header_metadata(data, w.table.name) {
                writer.append_key_value_metadata(kv);
            }
            let buffered = writer.into_inner().map_err(failed)?;
            let file = buffered.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            finished.push((w.pending, path, w.rows));
        }
        let mut done = Vec::new();
        for (pending, path, rows) in finished {
            pending.commit()?;
            done.push((path, rows));
        }
        self.made_dir = None;
        Ok(done)
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ParquetSink {
    fn drop(&mut self) {
        // The temporary files first (each writer deletes its own), then
        // the directory when the sink made it and it is empty.
        self.writers.clear();
        if let Some(dir) = &self.made_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl TableSink for ParquetSink {
    fn write(&mut self, table: &'static Table, batch: RecordBatch) -> Result<()> {
        let Some(w) = self.writers.iter_mut().find(|w| w.table.name == table.name) else {
            return Ok(());
        };
        w.rows += batch.num_rows() as u64;
        if w.writing.send(batch) {
            return Ok(());
        }
        let failed = w.writing.close().err().unwrap_or_else(|| {
            ParquetError::General("the writing thread stopped without an error".into())
        });
        Err(Error::engine(format!("writing {}", w.pending.path().display()), failed))
    }

    fn reads(&self) -> &Reads {
        &self.reads
    }
}
