/*!
Decodes memscope traces into Arrow tables and answers SQL over them with
DataFusion. The `memscope-analyze` binary is a thin command line over this
library.

# Brief overview

A trace goes through these stages, each with its entry point:

1. [`decode::TraceFile::open`] maps the file and checks its header.
2. [`scan::TraceIndex::build`] decodes every block in parallel (rayon), a
   chunk of blocks at a time, checks it, and keeps what is small: strings,
   call stacks, modules, thread facts, RSS samples, and where each block
   stands in time.
3. [`stream::run`] has [`stacks`] symbolize the call stacks, then decodes
   the blocks again, a chunk at a time in time
   order; [`merge`] merges the threads' events into one time order and
   [`pairing`] pairs each allocation with the event that ended it (what it
   cannot pair becomes the `anomalies` table). The rows of the big tables
   (`events`, `allocations`, `anomalies`) go to a [`tables::TableSink`] in
   record batches as soon as they are final, so memory holds the live
   allocations, not the trace: [`tables::MemorySink`] keeps them for
   queries, [`convert::ParquetSink`] writes them as Parquet row groups.
   For queries, [`reads::plan`] first finds what the SQL reads of the big
   tables, and only those columns and rows are built.
   The other tables (`stacks`, `frames`, `modules`, `rss`, `threads`,
   `trace`) follow from the [`model::TraceData`] the pass returns. Their
   columns are defined in `memscope_schema::tables`.
4. [`query`] registers the tables with a DataFusion session and runs SQL
   files; [`output`] prints or writes the results; [`flamegraph`] draws
   allocations by call stack; [`report`] summarizes a trace, checks budgets
   and diffs two traces.

[`load`] runs stages 1 to 3 into memory, [`stream_trace`] into any sink,
and [`Input::open`] also accepts a directory written by `convert`.

# Example

```no_run
# async fn example() -> Result<(), memscope_analyzer::error::Error> {
use memscope_analyzer::{Input, query};

let input = Input::open("trace.bin".as_ref())?;
let ctx = input.session().await?;
let leaks = query::SqlSource::resolve("queries/leaks.sql", 1)?;
for result in query::run(&ctx, &leaks).await? {
    println!("{}: {} rows", result.name, result.num_rows());
}
# Ok(())
# }
```
*/

pub mod convert;
pub mod decode;
pub mod error;
pub mod flamegraph;
pub mod mapping;
pub mod memory;
pub mod merge;
pub mod model;
pub mod output;
pub mod pairing;
pub mod progress;
pub mod query;
pub mod reads;
pub mod report;
pub mod running_sum;
pub mod scan;
pub mod stacks;
pub mod stream;
pub mod tables;

use std::path::{Path, PathBuf};

/// The DataFusion this crate builds on, for callers that need its types
/// (a [`SessionContext`] from [`Input::session`], record batches).
pub use datafusion;
use datafusion::prelude::SessionContext;

use crate::decode::TraceFile;
use crate::error::Result;
use crate::memory::MemoryLimit;
use crate::model::TraceData;
use crate::reads::Reads;
use crate::scan::TraceIndex;
use crate::tables::{MemorySink, TableData, TableSink};

/// A decoded trace with its tables and what the user should be told about
/// it.
#[derive(Debug)]
pub struct Loaded {
    /// The decoded, paired trace.
    pub data: TraceData,
    /// Its tables.
    pub tables: Vec<TableData>,
    /// Warnings for stderr (an unfinished trace, records skipped, …).
    pub warnings: Vec<String>,
}

/// Decodes the trace at `path` and builds its tables in memory.
///
/// # Errors
///
/// Any [`error::Error`] from opening or decoding the trace.
pub fn load(path: &Path) -> Result<Loaded> {
    let (data, warnings, sink) = stream_trace(path, |_| Ok(MemorySink::new()))?;
    Ok(Loaded { data, tables: sink.finish(), warnings })
}

/// Decodes the trace at `path` in two passes ([`scan`], then [`stream`]),
/// handing its tables' batches to the sink that `make_sink` makes from the
/// first pass's index once that pass has checked the whole trace; returns what the trace is apart
/// from its big tables, the warnings for the user, and the sink.
///
/// # Errors
///
/// Any [`error::Error`] from opening or decoding the trace, or from making
/// or writing to the sink.
pub fn stream_trace<S: TableSink + Send>(
    path: &Path,
    make_sink: impl FnOnce(&TraceIndex) -> Result<S>,
) -> Result<(TraceData, Vec<String>, S)> {
    let file = TraceFile::open(path)?;
    let decode_error = |source| error::Error::Decode { path: path.to_path_buf(), source };
    progress::bytes(format!("decoding {}", path.display()), file.bytes().len() as u64);
    let release = |range| file.release(range);
    let index =
        TraceIndex::build_releasing(file.bytes(), file.layout(), &release).map_err(decode_error)?;
    let mut sink = make_sink(&index)?;
    let options = stream::Options { release: &release, ..stream::Options::default() };
    let data =
        stream::run(file.header().clone(), file.bytes(), file.layout(), index, &mut sink, options);
    // A file cut while it was read decodes as garbage: say that first.
    let grew = file.check_unchanged()?;
    let data = data.map_err(|e| match e {
        stream::StreamError::Decode(source) => decode_error(source),
        stream::StreamError::Changed(offset) => error::Error::Changed {
            path: path.to_path_buf(),
            detail: format!(
                "the block at byte offset {offset} changed between the analyzer's two reads; read it again once nothing writes to it"
            ),
        },
        stream::StreamError::Sink(e) => e,
    })?;
    let mut warnings = warnings(&data);
    let partial = file.layout().partial_bytes;
    if partial > 0 {
        warnings.push(format!(
            "the file ends {partial} bytes into a block, which was not read (a copy of a trace still being written?)"
        ));
    }
    warnings.extend(grew);
    Ok((data, warnings, sink))
}

fn warnings(data: &TraceData) -> Vec<String> {
    let mut w = Vec::new();
    let h = &data.header;
    if !h.is_finished() {
        w.push(format!(
            "trace not finished: {} events recovered (the program was killed, crashed or is still running)",
            data.event_count
        ));
    }
    if h.recording_failed() {
        w.push("recording stopped early because the trace file could not grow (disk full?); later events are missing".into());
    }
    if let Some((_, totals)) = data.end {
        let decoded = data.event_count;
        if decoded < totals.events {
            w.push(format!(
                "the end marker counts {} events but only {decoded} were decoded; {} are missing",
                totals.events,
                totals.events - decoded
            ));
        }
        if totals.dropped > 0 {
            w.push(format!(
                "{} events were dropped by the recorder (the trace file could not grow)",
                totals.dropped
            ));
        }
    }
    if data.skipped_records > 0 {
        w.push(format!(
            "{} records of kinds this analyzer does not know were skipped (trace format {}.{} is newer)",
            data.skipped_records, h.major, h.minor
        ));
    }
    let st = &data.stacks;
    for m in st.modules.iter().filter(|m| m.symbols == stacks::SymbolSource::Missing) {
        if let Some(file) = &m.rejected_file {
            let which = if *file == m.path { String::new() } else { format!(" (for {})", m.path) };
            w.push(format!(
                "{file}{which} has another build id than when it was recorded (rebuilt since?): not used to name its stack frames, which show as module+offset"
            ));
        }
    }
    let missing: Vec<&str> = st
        .modules
        .iter()
        .filter(|m| m.symbols == stacks::SymbolSource::Missing && m.rejected_file.is_none())
        .map(|m| m.path.as_str())
        .collect();
    if !missing.is_empty() {
        let frames = st
            .frames
            .iter()
            .filter(|f| {
                f.module_id.is_some_and(|m| {
                    st.modules[m as usize].symbols == stacks::SymbolSource::Missing
                })
            })
            .count();
        let more = if missing.len() > 3 {
            format!(" and {} more", missing.len() - 3)
        } else {
            String::new()
        };
        w.push(format!(
            "{frames} stack frames show as module+offset: their module files are not at their recorded paths or cannot be read ({}{more}); MEMSCOPE_SYMBOL_PATH can point to copies",
            missing[..missing.len().min(3)].join(", ")
        ));
    }
    let blocks_in_file =
        data.file_bytes.saturating_sub(h.header_len.into()) / u64::from(h.block_len);
    if h.is_finished() && h.blocks_used != blocks_in_file {
        w.push(format!(
            "the header counts {} blocks but the file holds {blocks_in_file}: the trace was changed or cut after it was finished, and events may be missing",
            h.blocks_used
        ));
    }
    let r = &data.time_reversals;
    if r.events > 0 {
        w.push(format!(
            "{} events in {} threads are stamped earlier than the event before them in their thread (by up to {} ns): they keep their order in the file and that event's time",
            r.events, r.threads, r.largest_ns
        ));
    }
    if data.undefined_stack_refs > 0 {
        w.push(format!(
            "{} allocations refer to a stack id that their thread never defines: they show without a stack",
            data.undefined_stack_refs
        ));
    }
    if data.undefined_string_refs > 0 {
        w.push(format!(
            "{} type tags name a string id that the trace never defines: the name shows as <unknown string ID>",
            data.undefined_string_refs
        ));
    }
    if data.anomalies.overlapping_allocations > 0 {
        w.push(format!(
            "{} allocations were at an address that was still allocated (a deallocation is missing from the trace)",
            data.anomalies.overlapping_allocations
        ));
    }
    w
}

/// What the analyzer reads: a trace file, or a directory of Parquet tables
/// written by `convert`, with the memory limit it is read within.
#[derive(Debug)]
pub struct Input {
    source: Source,
    limit: MemoryLimit,
}

/// Where an [`Input`]'s tables are.
#[derive(Debug)]
pub enum Source {
    /// A decoded trace, its tables in memory.
    Trace(Box<Loaded>),
    /// A decoded trace whose tables outgrew [`MemoryLimit::tables_bytes`],
    /// written as a dataset into a temporary directory (deleted when
    /// dropped).
    Spilled {
        /// The temporary dataset.
        dir: tempfile::TempDir,
        /// Warnings for stderr.
        warnings: Vec<String>,
        /// Keeps `dir` where an interrupted run deletes it (dropped after
        /// it).
        _guard: output::Partial,
    },
    /// A directory of tables.
    Dataset(PathBuf),
    /// A directory of runs (`run=ID/`), each a directory of tables.
    Runs(PathBuf),
}

/// The sink of a trace read for queries: memory while the batches fit in
/// [`MemoryLimit::tables_bytes`], then a temporary dataset that those
/// batches and all later ones go to.
enum QuerySink {
    Memory(MemorySink, MemoryLimit),
    Spill(convert::ParquetSink, tempfile::TempDir, output::Partial),
}

impl QuerySink {
    /// Moves the batches kept in memory to a new dataset in a temporary
    /// directory (under `$TMPDIR`), which takes every batch from then on.
    fn spill(&mut self) -> Result<()> {
        let QuerySink::Memory(memory, limit) = self else {
            return Ok(());
        };
        let tmp = std::env::temp_dir();
        let dir = tempfile::Builder::new()
            .prefix("memscope-")
            .tempdir_in(&tmp)
            .map_err(|e| error::Error::io(&tmp, e))?;
        let guard = output::register_partial_dir(dir.path());
        progress::stage(format!(
            "the tables read do not fit in --memory-limit {}: writing them to {}",
            report::units::bytes(limit.bytes as f64),
            dir.path().display()
        ));
        let mut sink = convert::ParquetSink::create_for(dir.path(), false, memory.reads().clone())?;
        for (table, batch) in memory.drain() {
            sink.write(table, batch)?;
        }
        *self = QuerySink::Spill(sink, dir, guard);
        Ok(())
    }
}

impl TableSink for QuerySink {
    fn write(
        &mut self,
        table: &'static memscope_schema::tables::Table,
        batch: datafusion::arrow::record_batch::RecordBatch,
    ) -> Result<()> {
        match self {
            QuerySink::Memory(s, limit) => {
                s.write(table, batch)?;
                if s.bytes() as u64 > limit.tables_bytes() {
                    self.spill()?;
                }
                Ok(())
            }
            QuerySink::Spill(s, ..) => s.write(table, batch),
        }
    }

    fn reads(&self) -> &Reads {
        match self {
            QuerySink::Memory(s, _) => s.reads(),
            QuerySink::Spill(s, ..) => s.reads(),
        }
    }
}

impl Input {
    /// Opens `path` within the default [`MemoryLimit`]: a directory is read
    /// as a `convert` dataset, a file as a trace.
    ///
    /// # Errors
    ///
    /// As [`Input::open_within`].
    pub fn open(path: &Path) -> Result<Input> {
        Input::open_within(path, MemoryLimit::default(), Reads::all())
    }

    /// Opens `path` within `limit`: a directory is read as a `convert`
    /// dataset, a file as a trace. Of a trace's big tables (`events`,
    /// `allocations`, `anomalies`) only what `reads` reads is built (see
    /// [`reads::plan`]); when that outgrows [`MemoryLimit::tables_bytes`],
    /// it is written as Parquet into a temporary directory (under
    /// `$TMPDIR`) and read from there.
    ///
    /// # Errors
    ///
    /// Any error of [`stream_trace`]; [`error::Error::NotATrace`] for a
    /// directory without tables; [`error::Error::Io`] when the temporary
    /// directory cannot be made.
    pub fn open_within(path: &Path, limit: MemoryLimit, reads: Reads) -> Result<Input> {
        let source = if path.is_dir() {
            if !query::dataset_tables(path).is_empty() {
                Source::Dataset(path.to_path_buf())
            } else if !query::dataset_runs(path).is_empty() {
                Source::Runs(path.to_path_buf())
            } else {
                return Err(error::Error::NotATrace {
                    path: path.to_path_buf(),
                    reason: "is a directory without memscope tables (expected a trace file or a directory written by `convert`)".into(),
                });
            }
        } else {
            let (data, warnings, sink) =
                stream_trace(path, |_| Ok(QuerySink::Memory(MemorySink::only(reads), limit)))?;
            match sink {
                QuerySink::Memory(s, _) => {
                    Source::Trace(Box::new(Loaded { data, tables: s.finish(), warnings }))
                }
                QuerySink::Spill(s, dir, guard) => {
                    s.finish(&data)?;
                    Source::Spilled { dir, warnings, _guard: guard }
                }
            }
        };
        Ok(Input { source, limit })
    }

    /// Where the input's tables are.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Warnings about the input.
    pub fn warnings(&self) -> &[String] {
        match &self.source {
            Source::Trace(l) => &l.warnings,
            Source::Spilled { warnings, .. } => warnings,
            Source::Dataset(_) | Source::Runs(_) => &[],
        }
    }

    /// Checks that the input is one run, for commands whose figures would
    /// be meaningless summed over several runs (`report`, `diff`,
    /// `flamegraph`).
    ///
    /// # Errors
    ///
    /// [`error::Error::Usage`] for a dataset of several runs, naming them.
    pub fn require_one_run(&self, command: &str) -> Result<()> {
        let Source::Runs(dir) = &self.source else {
            return Ok(());
        };
        let runs: Vec<String> = query::dataset_runs(dir).into_iter().map(|(id, _)| id).collect();
        if runs.len() <= 1 {
            return Ok(());
        }
        let shown = runs.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        let more =
            if runs.len() > 5 { format!(" and {} more", runs.len() - 5) } else { String::new() };
        Err(error::Error::Usage(format!(
            "{}: holds {} runs ({shown}{more}); `{command}` reads one: give one run's directory, such as {}",
            dir.display(),
            runs.len(),
            dir.join(format!("run={}", runs[0])).display()
        )))
    }

    /// A DataFusion session with the input's tables registered, whose
    /// operators spill to disk beyond [`MemoryLimit::query_bytes`].
    ///
    /// # Errors
    ///
    /// [`error::Error::Engine`] when a table cannot be registered or read.
    pub async fn session(&self) -> Result<SessionContext> {
        let ctx = query::new_session_with(self.limit.runtime()?);
        match &self.source {
            Source::Trace(l) => {
                query::register_tables(&ctx, &l.tables)?;
                reads::show_whole_tables(&ctx).await?;
            }
            Source::Spilled { dir, .. } => {
                query::register_dataset(&ctx, dir.path()).await?;
                reads::show_whole_tables(&ctx).await?;
            }
            Source::Dataset(dir) => query::register_dataset(&ctx, dir).await?,
            Source::Runs(dir) => query::register_runs(&ctx, dir).await?,
        }
        Ok(ctx)
    }
}
