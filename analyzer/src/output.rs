//! Writing results: aligned tables, CSV, JSON and Parquet, to stdout or to
//! files that appear whole (written under a temporary name, then renamed)
//! and never replace an existing file unless asked.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use datafusion::arrow::csv;
use datafusion::arrow::json;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches_with_schema;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::query::QueryResult;

/// Output formats of query results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects, one per row.
    Json,
    /// Parquet (zstd); needs `--output`.
    Parquet,
}

impl Format {
    /// File extension for this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Table => "txt",
            Format::Csv => "csv",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }
}

/// Where results go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// One file (exactly one result).
    File(PathBuf),
    /// A directory: one file per result, named after it.
    Dir(PathBuf),
}

impl Destination {
    /// Chooses where `count` results in `format` go, given `--output`:
    /// stdout without it; with it, a file for one result, a directory for
    /// several (or when the path is an existing directory).
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for Parquet without `--output`, or for several CSV or
    /// JSON results on stdout (which could not be told apart).
    pub fn choose(output: Option<&Path>, format: Format, count: usize) -> Result<Destination> {
        match output {
            None if format == Format::Parquet => Err(Error::Usage(
                "--format parquet needs --output FILE (or DIR for several queries)".into(),
            )),
            None if count > 1 && matches!(format, Format::Csv | Format::Json) => {
                Err(Error::Usage(format!(
                    "{count} result sets in --format {} need --output DIR (one file per result)",
                    format.extension()
                )))
            }
            None => Ok(Destination::Stdout),
            Some(p) if count > 1 || p.is_dir() => Ok(Destination::Dir(p.to_path_buf())),
            Some(p) => Ok(Destination::File(p.to_path_buf())),
        }
    }
}

/// Writes `results` in `format` to `dest`. Files are replaced only when
/// `force` is set.
///
/// # Errors
///
/// [`Error::OutputExists`], [`Error::Io`], or [`Error::Engine`] when a
/// result cannot be encoded.
pub fn write_results(
    results: &[QueryResult],
    format: Format,
    dest: &Destination,
    force: bool,
) -> Result<()> {
    match dest {
        Destination::Stdout => {
            crate::progress::clear();
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for (i, r) in results.iter().enumerate() {
                if results.len() > 1 {
                    if i > 0 {
                        writeln!(out).map_err(stdout_error)?;
                    }
                    writeln!(out, "-- {} ({} rows)", r.name, r.num_rows()).map_err(stdout_error)?;
                }
                let bytes = encode(r, format)?;
                out.write_all(&bytes).map_err(stdout_error)?;
            }
            out.flush().map_err(stdout_error)
        }
        Destination::File(path) => {
            let bytes =
                results.iter().map(|r| encode(r, format)).collect::<Result<Vec<_>>>()?.concat();
            write_file(path, &bytes, force)
        }
        Destination::Dir(dir) => {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            for (r, name) in results.iter().zip(file_names(results)) {
                let path = dir.join(format!("{name}.{}", format.extension()));
                write_file(&path, &encode(r, format)?, force)?;
            }
            Ok(())
        }
    }
}

/// File names for results: the result's name with characters other than
/// letters, digits, `_` and `-` replaced by `_`, and `-2`, `-3`, … added to
/// names already taken (two files both called `report.sql`, say).
fn file_names(results: &[QueryResult]) -> Vec<String> {
    let mut taken = std::collections::HashSet::new();
    results
        .iter()
        .map(|r| {
            let base: String = r
                .name
                .chars()
                .map(|c| if c.is_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
                .collect();
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        })
        .collect()
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::Io { path: PathBuf::from("<stdout>"), source: e }
}

/// One result in `format`, as bytes.
fn encode(r: &QueryResult, format: Format) -> Result<Vec<u8>> {
    let err = |e: datafusion::arrow::error::ArrowError| {
        Error::engine(format!("writing result {}", r.name), e)
    };
    let mut buf = Vec::new();
    match format {
        Format::Table => {
            let table =
                pretty_format_batches_with_schema(r.schema.clone(), &r.batches).map_err(err)?;
            writeln!(buf, "{table}").expect("writing to a Vec cannot fail");
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new().with_header(true).build(&mut buf);
            if r.batches.is_empty() {
                w.write(&RecordBatch::new_empty(r.schema.clone())).map_err(err)?;
            }
            for b in &r.batches {
                w.write(b).map_err(err)?;
            }
        }
        Format::Json => {
            let mut w = json::ArrayWriter::new(&mut buf);
            for b in &r.batches {
                w.write(b).map_err(err)?;
            }
            w.finish().map_err(err)?;
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            buf.push(b'\n');
        }
        Format::Parquet => {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(
                    ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
                ))
                .build();
            let mut w = ArrowWriter::try_new(&mut buf, r.schema.clone(), Some(props))
                .map_err(|e| Error::engine(format!("writing result {}", r.name), e))?;
            for b in &r.batches {
                w.write(b).map_err(|e| Error::engine(format!("writing result {}", r.name), e))?;
            }
            w.close().map_err(|e| Error::engine(format!("writing result {}", r.name), e))?;
        }
    }
    Ok(buf)
}

/// Writes `bytes` to `path` atomically: into a temporary file in the same
/// directory, then renamed into place. An existing file is an error unless
/// `force`.
///
/// # Errors
///
/// [`Error::OutputExists`] or [`Error::Io`].
pub fn write_file(path: &Path, bytes: &[u8], force: bool) -> Result<()> {
    write_file_with(path, force, |f| f.write_all(bytes))
}

/// Like [`write_file`], with the content produced by `fill`.
///
/// # Errors
///
/// [`Error::OutputExists`] or [`Error::Io`].
pub fn write_file_with(
    path: &Path,
    force: bool,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let mut pending = PendingFile::create(path, force)?;
    fill(pending.file()).map_err(|e| Error::io(path, e))?;
    pending.commit()
}

/// An output file being written: a temporary file beside it that becomes
/// the output only on [`PendingFile::commit`], so that readers never see it
/// half written, and that an interrupted run deletes
/// ([`remove_partial_outputs`]).
#[derive(Debug)]
pub struct PendingFile {
    path: PathBuf,
    force: bool,
    tmp: tempfile::NamedTempFile,
    _partial: Partial,
}

impl PendingFile {
    /// Starts writing `path`.
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when it exists and not `force`;
    /// [`Error::Io`] when the temporary file cannot be made.
    pub fn create(path: &Path, force: bool) -> Result<PendingFile> {
        if !force && path.exists() {
            return Err(Error::OutputExists { path: path.to_path_buf() });
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut builder = tempfile::Builder::new();
        builder.prefix(".memscope-").suffix(".tmp");
        // Temporary files are private (0600); the output is an ordinary
        // file, readable by others as files made with the usual umask are.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o644));
        }
        let tmp = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
        let partial = Partial::register(tmp.path());
        Ok(PendingFile { path: path.to_path_buf(), force, tmp, _partial: partial })
    }

    /// The path it will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary file, to write to.
    pub fn file(&mut self) -> &mut fs::File {
        self.tmp.as_file_mut()
    }

    /// Makes the file the output, replacing an existing one only when
    /// created with `force`.
    ///
    /// # Errors
    ///
    /// [`Error::OutputExists`] when another process made the output
    /// meanwhile; [`Error::Io`].
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        if self.force {
            self.tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
        } else {
            self.tmp.persist_noclobber(&path).map_err(|e| {
                if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::OutputExists { path: path.clone() }
                } else {
                    Error::io(&path, e.error)
                }
            })?;
        }
        Ok(())
    }
}

/// Temporary files being written, for [`remove_partial_outputs`].
static PARTIAL: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A path on the list that [`remove_partial_outputs`] deletes, until
/// dropped.
#[derive(Debug)]
pub struct Partial(PathBuf);

impl Partial {
    fn register(path: &Path) -> Partial {
        PARTIAL.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
        Partial(path.to_path_buf())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let mut partial = PARTIAL.lock().unwrap_or_else(|e| e.into_inner());
        partial.retain(|p| *p != self.0);
    }
}

/// Registers a temporary directory of the analyzer's own (a spilled trace),
/// for [`remove_partial_outputs`] to delete with what it holds, until the
/// returned guard is dropped.
pub fn register_partial_dir(dir: &Path) -> Partial {
    Partial::register(dir)
}

/// Deletes the temporary files of outputs still being written, and the
/// analyzer's temporary directories, so that an interrupted run (Ctrl-C)
/// leaves neither a partial output nor its temporary file; the outputs
/// already complete stay. Returns how many were deleted.
pub fn remove_partial_outputs() -> usize {
    let partial = PARTIAL.lock().unwrap_or_else(|e| e.into_inner());
    partial
        .iter()
        .filter(
            |p| if p.is_dir() { fs::remove_dir_all(p).is_ok() } else { fs::remove_file(p).is_ok() },
        )
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_outputs_are_removed_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.csv");
        let err = write_file_with(&out, false, |f| {
            f.write_all(b"half")?;
            // Interrupted here: the temporary file is removed, and nothing
            // reaches `out`.
            assert_eq!(remove_partial_outputs(), 1);
            Ok(())
        });
        assert!(err.is_err(), "the temporary file was gone when persisting");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
