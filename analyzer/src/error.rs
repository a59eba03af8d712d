//! The analyzer's error type: every error names the file it is about and,
//! for traces, the byte offset; for SQL, the line.

use std::path::{Path, PathBuf};

use datafusion::error::DataFusionError;
use memscope_schema::DecodeError;

/// Errors of the analyzer library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An input path does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The input is neither a trace nor a directory of tables.
    #[error("{}: {reason}", path.display())]
    NotATrace {
        /// The path given.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The trace is malformed or of an unsupported version.
    #[error("{}: {source}", path.display())]
    Decode {
        /// The trace file.
        path: PathBuf,
        /// What is wrong and where.
        #[source]
        source: DecodeError,
    },
    /// The input changed while it was read, so what was read cannot be
    /// trusted.
    #[error("{}: {detail}", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        detail: String,
    },
    /// A SQL statement failed to parse, plan or run.
    #[error("{origin}: {source}")]
    Sql {
        /// Where the statement came from: `file.sql:LINE` or `--sql #N`.
        origin: String,
        /// DataFusion's message.
        #[source]
        source: Box<DataFusionError>,
    },
    /// Building tables or writing output failed inside Arrow, Parquet or
    /// DataFusion.
    #[error("{context}: {source}")]
    Engine {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<DataFusionError>,
    },
    /// An output file exists and `--force` was not given.
    #[error("{}: already exists (use --force to replace it)", path.display())]
    OutputExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The command line is inconsistent in a way the argument parser cannot
    /// see (for example `--format parquet` without `--output`).
    #[error("{0}")]
    Usage(String),
    /// Budgets of `report` failed (each was already printed on its own
    /// line).
    #[error("{failed} of {total} budgets failed")]
    BudgetsFailed {
        /// How many failed.
        failed: usize,
        /// How many were evaluated.
        total: usize,
    },
}

/// The analyzer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`, turning "not found" into [`Error::NotFound`].
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::NotFound { path: path.to_path_buf() }
        } else {
            Error::Io { path: path.to_path_buf(), source }
        }
    }

    /// An engine error with context.
    pub fn engine(context: impl Into<String>, source: impl Into<DataFusionError>) -> Error {
        Error::Engine { context: context.into(), source: Box::new(source.into()) }
    }

    /// The process exit code for this error (see the README's exit codes):
    /// 1 failed budgets, 2 usage and SQL errors, 65 bad trace data, 66 missing input, 73 an
    /// output that exists, 74 I/O errors, 75 an input that changed while it
    /// was read (try again), 70 internal errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) | Error::Sql { .. } => 2,
            Error::Decode { .. } | Error::NotATrace { .. } => 65,
            Error::NotFound { .. } => 66,
            Error::OutputExists { .. } => 73,
            Error::Io { .. } => 74,
            Error::Changed { .. } => 75,
            Error::Engine { .. } => 70,
            Error::BudgetsFailed { .. } => 1,
        }
    }
}
