//! `convert`: every table as a zstd Parquet file, with the trace header in
//! the footer's key/value metadata, written row group by row group as the
//! trace is decoded ([`ParquetSink`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use memscope_schema::tables::{ColumnType, TABLES, Table};

use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::output::PendingFile;
use crate::query;
use crate::tables::TableSink;

/// Rows per Parquet row group: large enough for fast scans, small enough
/// for readers that split work by row group.
pub const ROW_GROUP_ROWS: usize = 1 << 20;

/// Columns that are sorted or nearly so (ids, timestamps) or have few
/// repeats (addresses): delta-encoded, without a dictionary.
const DELTA_COLUMNS: [&str; 7] =
    ["event_id", "ts_ns", "alloc_id", "alloc_ts_ns", "free_ts_ns", "address", "old_address"];

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
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
    for c in table.columns {
        if DELTA_COLUMNS.contains(&c.name) && matches!(c.ty, ColumnType::UInt64 | ColumnType::Int64)
        {
            let path = ColumnPath::from(c.name);
            b = b
                .set_column_dictionary_enabled(path.clone(), false)
                .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
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
/// group at a time: memory holds at most one row group per table. Each
/// file appears whole, when [`ParquetSink::finish`] has written every
/// table; until then it is a temporary file beside it.
pub struct ParquetSink {
    dir: PathBuf,
    writers: Vec<TableWriter>,
}

/// One table's file being written.
struct TableWriter {
    table: &'static Table,
    pending: PendingFile,
    writer: ArrowWriter<BufWriter<File>>,
    rows: u64,
}

impl ParquetSink {
    /// Starts writing a dataset into `dir` (made if missing).
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when a table's file exists and not `force`
    /// (checked for every table before anything is written);
    /// [`Error::Io`], [`Error::Engine`].
    pub fn create(dir: &Path, force: bool) -> Result<ParquetSink> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = |t: &Table| dir.join(format!("{}.parquet", t.name));
        if !force && let Some(p) = TABLES.iter().map(|t| path(t)).find(|p| p.exists()) {
            return Err(Error::OutputExists { path: p });
        }
        let mut writers = Vec::new();
        for table in TABLES {
            let path = path(table);
            let mut pending = PendingFile::create(&path, force)?;
            let file = pending.file().try_clone().map_err(|e| Error::io(&path, e))?;
            let schema = std::sync::Arc::new(table.schema());
            let writer =
                ArrowWriter::try_new(BufWriter::new(file), schema, Some(properties(table)))
                    .map_err(|e| Error::engine(format!("writing {}", path.display()), e))?;
            writers.push(TableWriter { table, pending, writer, rows: 0 });
        }
        Ok(ParquetSink { dir: dir.to_path_buf(), writers })
    }

    /// Finishes every file, with `data`'s header in its footer, and makes
    /// them the outputs. Returns each file's path and row count.
    ///
    /// # Errors
    ///
    /// [`Error::Io`], [`Error::Engine`], [`Error::OutputExists`] when
    /// another process made an output meanwhile.
    pub fn finish(self, data: &TraceData) -> Result<Vec<(PathBuf, u64)>> {
        let mut done = Vec::new();
        for mut w in self.writers {
            let path = w.pending.path().to_path_buf();
            crate::progress::stage(format!("finishing {} ({} rows)", path.display(), w.rows));
            let failed = |e| Error::engine(format!("writing {}", path.display()), e);
            for kv in header_metadata(data, w.table.name) {
                w.writer.append_key_value_metadata(kv);
            }
            let buffered = w.writer.into_inner().map_err(failed)?;
            let file = buffered.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
            file.sync_all().map_err(|e| Error::io(&path, e))?;
            w.pending.commit()?;
            done.push((path, w.rows));
        }
        Ok(done)
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl TableSink for ParquetSink {
    fn write(&mut self, table: &'static Table, batch: RecordBatch) -> Result<()> {
        let w = self
            .writers
            .iter_mut()
            .find(|w| w.table.name == table.name)
            .expect("a writer for every table");
        w.rows += batch.num_rows() as u64;
        w.writer
            .write(&batch)
            .map_err(|e| Error::engine(format!("writing {}", w.pending.path().display()), e))
    }
}
