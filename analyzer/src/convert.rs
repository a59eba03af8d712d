//! `convert`: every table as a zstd Parquet file, with the trace header in
//! the footer's key/value metadata.

use std::path::{Path, PathBuf};

use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
use datafusion::parquet::file::metadata::KeyValue;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::schema::types::ColumnPath;
use memscope_schema::tables::ColumnType;

use crate::error::{Error, Result};
use crate::model::TraceData;
use crate::output::write_file_with;
use crate::query;
use crate::tables::TableData;

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
fn properties(table: &TableData, metadata: Vec<KeyValue>) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("3 is a valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(metadata));
    for c in table.table.columns {
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

/// Writes every table to `dir/<table>.parquet` and returns the paths.
/// Existing files are an error unless `force`; each file appears whole.
///
/// # Errors
///
/// [`Error::OutputExists`], [`Error::Io`], [`Error::Engine`].
pub fn write_dataset(
    data: &TraceData,
    tables: &[TableData],
    dir: &Path,
    force: bool,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let paths: Vec<PathBuf> =
        tables.iter().map(|t| dir.join(format!("{}.parquet", t.table.name))).collect();
    if !force && let Some(p) = paths.iter().find(|p| p.exists()) {
        return Err(Error::OutputExists { path: p.clone() });
    }
    for (t, path) in tables.iter().zip(&paths) {
        crate::progress::stage(format!("writing {} ({} rows)", path.display(), t.num_rows()));
        let props = properties(t, header_metadata(data, t.table.name));
        let mut failure = None;
        write_file_with(path, force, |file| {
            let result = (|| {
                let mut w = ArrowWriter::try_new(&mut *file, t.schema.clone(), Some(props))?;
                for b in &t.batches {
                    w.write(b)?;
                }
                w.close().map(|_| ())
            })();
            result.map_err(|e| {
                let io = std::io::Error::other(e.to_string());
                failure = Some(e);
                io
            })
        })
        .map_err(|e| match failure.take() {
            Some(p) => Error::engine(format!("writing {}", path.display()), p),
            None => e,
        })?;
    }
    Ok(paths)
}
