//! The second pass over a trace: decodes its blocks again, a chunk at a
//! time in merge order, merges their events into one time order, pairs
//! them, and hands the rows of the big tables to a [`TableSink`] in
//! batches as they become final.
//!
//! Memory holds the [`TraceIndex`] of the first pass, a few chunks of
//! decoded blocks and events, the live allocations and what pairing keeps
//! per address (see [`crate::pairing`]), and the batches not yet handed
//! on: never the whole trace. One case holds more: the merge emits only
//! events earlier than the next chunk's first time, so blocks whose
//! (repaired) times do not advance, such as those of a thread whose clock
//! jumped back once and stayed behind, wait in the merge until time moves
//! past them.

use datafusion::arrow::record_batch::RecordBatch;
use memscope_schema::format::FileHeader;
use memscope_schema::reader::BlockLayout;
use memscope_schema::tables::TABLES;
use memscope_schema::{DecodeError, TimeScale};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::decode::{BlockEvents, kind};
use crate::error::Result;
use crate::merge::{Events, Merger};
use crate::model::{Thread, TraceData};
use crate::pairing::{EventRows, Pairer, REORDER_LOOKAHEAD, Rows, Wanted};
use crate::scan::{BlockSummary, TraceIndex};
use crate::stacks::Stacks;
use crate::tables::{BATCH_ROWS, Batcher, TableSink, small_tables};

/// Why the second pass stopped.
#[derive(Debug)]
pub enum StreamError {
    /// A block no longer decodes (the file changed after the first pass).
    Decode(DecodeError),
    /// The block at this byte offset belongs to another thread or place
    /// than in the first pass (the file changed in between).
    Changed(u64),
    /// The sink failed, or a batch could not be built.
    Sink(crate::error::Error),
}

impl From<crate::error::Error> for StreamError {
    fn from(e: crate::error::Error) -> StreamError {
        StreamError::Sink(e)
    }
}

/// Blocks the second pass decodes at once: with blocks of 64 KiB, about
/// 80 000 events. Each of the four stages holds a chunk and each of the
/// three channels between them one more, so this sets most of the pass's
/// working memory (some tens of megabytes).
pub const CHUNK_BLOCKS: usize = 16;

/// How the second pass reads: [`Options::default`] decodes
/// [`CHUNK_BLOCKS`] blocks at once, pairs in
/// [`default_pairing_partitions`] partitions and gives nothing back.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Blocks decoded at once (at least one): the tables are the same
    /// whatever that number; memory grows with it.
    pub chunk_blocks: usize,
    /// Partitions of pairing (see [`Pairer::partitioned`]): the tables
    /// are the same whatever that number.
    pub pairing_partitions: usize,
    /// Called with the byte range of each block once decoded, so that the
    /// caller can give its memory back (see
    /// [`crate::mapping::GuardedMap::release`]).
    pub release: &'a (dyn Fn(Range<usize>) + Sync),
}

/// Partitions of pairing by default: one fewer than the rayon pool's
/// threads, at least one. Decoding, merging and building batches keep
/// about one core busy beside pairing; on two cores, two partitions made
/// the leaks query slower (each partition keeps its own maps, and the
/// rows of all are merged), though pairing alone was faster.
pub fn default_pairing_partitions() -> usize {
    rayon::current_num_threads().saturating_sub(1).max(1)
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            chunk_blocks: CHUNK_BLOCKS,
            pairing_partitions: default_pairing_partitions(),
            release: &|_| {},
        }
    }
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("chunk_blocks", &self.chunk_blocks)
            .field("pairing_partitions", &self.pairing_partitions)
            .finish_non_exhaustive()
    }
}

/// Runs the second pass over the trace `bytes` (laid out as `layout`,
/// indexed by the first pass as `index`), handing every table's batches to
/// `sink`, and returns what the trace is apart from those tables.
///
/// # Errors
///
/// [`StreamError::Decode`] when a block no longer decodes,
/// [`StreamError::Changed`] when a block belongs elsewhere than in the
/// first pass, [`StreamError::Sink`] when the sink fails.
pub fn run(
    header: FileHeader,
    bytes: &[u8],
    layout: &BlockLayout,
    index: TraceIndex,
    sink: &mut (dyn TableSink + Send),
    options: Options<'_>,
) -> std::result::Result<TraceData, StreamError> {
    let Options { chunk_blocks, pairing_partitions, release } = options;
    let scale = TimeScale::new(&header);
    crate::progress::stage(format!("symbolizing {} stacks", index.stacks.len()));
    let stacks = Stacks::symbolize(index.stacks, index.modules);
    let strings = index.strings;
    crate::progress::bytes(
        format!("merging and pairing {} events", index.events),
        index.blocks.len() as u64 * layout.block_len,
    );
    let chunks: Vec<_> = index.blocks.chunks(chunk_blocks.max(1)).collect();
    let stack_ids = &index.stack_ids;
    // Four stages on four threads, a chunk at a time: decoding (on the
    // rayon pool), merging (here), pairing (its partitions on the rayon
    // pool when there are several), and building batches for the sink.
    // Each hands its output to the next through a channel of one chunk, so
    // that memory stays bounded and both cores work.
    let batcher = Batcher::new(&header, &strings, &stacks, sink.reads())?;
    let skip_events = !batcher.builds("events");
    // Rows the query's filter would drop need not be made: the leaks
    // query reads only allocations whose `free_ts_ns IS NULL`.
    let allocations_wanted = match sink.reads().get("allocations") {
        _ if !batcher.builds("allocations") => Wanted::None,
        Some(read) if read.keeps_only_null("free_ts_ns") => Wanted::Leaked,
        _ => Wanted::All,
    };
    let tags = index.tags > 0;
    let stage_sink = &mut *sink;
    let (merged, paired, sunk) = std::thread::scope(|scope| {
        let (events_tx, events_rx) = sync_channel::<(Events, bool)>(1);
        let (rows_tx, rows_rx) = sync_channel::<Rows>(1);
        let pairing = scope.spawn(move || {
            let mut pairer = Pairer::partitioned(tags, pairing_partitions);
            for (events, last) in events_rx {
                let mut rows = Rows { skip_events, allocations_wanted, ..Rows::default() };
                let n = pairer.pair(&events, last, &mut rows);
                // The events it left come again at the front of the next
                // chunk (see `merge_chunks`).
                let waiting = if last { 0 } else { events.len().min(REORDER_LOOKAHEAD) };
                debug_assert_eq!(n, events.len() - waiting);
                if last {
                    pairer.finish(&mut rows);
                }
                if rows_tx.send(rows).is_err() {
                    break;
                }
            }
            pairer
        });
        let sinking = scope.spawn(move || -> Result<()> {
            let mut batcher = batcher;
            for mut rows in rows_rx {
                flush(&mut rows, &mut batcher, stage_sink)?;
            }
            Ok(())
        });
        let reader = BlockReader { bytes, layout, stack_ids, release };
        let merged = merge_chunks(&chunks, &reader, scale, &strings, &events_tx);
        drop(events_tx);
        let paired = pairing.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let sunk = sinking.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        (merged, paired, sunk)
    });
    // The sink's failure first: it stops the stages before it.
    sunk?;
    let Merged { merger, undefined_stack_refs, undefined_string_refs } =
        merged.map_err(|e| match e {
            Reread::Decode(e) => StreamError::Decode(e),
            Reread::Changed(offset) => StreamError::Changed(offset),
        })?;
    let pairer = paired;

    let threads = index
        .threads
        .into_iter()
        .map(|t| {
            let (allocations, allocated_bytes) =
                pairer.per_thread.get(&t.thread_id).copied().unwrap_or_default();
            Thread {
                thread_id: t.thread_id,
                os_tid: t.os_tid,
                name: t.name.map(|(_, n)| n),
                start_ts_ns: scale.to_ns(t.start_q),
                exit_ts_ns: t.exit_q.map(|q| scale.to_ns(q)),
                allocations,
                allocated_bytes,
            }
        })
        .collect();
    let data = TraceData {
        header,
        event_count: index.events,
        allocation_count: pairer.allocations,
        anomalies: pairer.anomalies,
        threads,
        strings,
        end: index.end.map(|(q, totals)| (scale.to_ns(q), totals)),
        last_ts_ns: if index.last_q == 0 { 0 } else { scale.to_ns(index.last_q) },
        skipped_records: index.skipped_records,
        time_reversals: merger.time_reversals,
        undefined_stack_refs,
        undefined_string_refs,
        file_bytes: bytes.len() as u64,
        rss: index.rss.into_iter().map(|(q, b)| (scale.to_ns(q), b)).collect(),
        stacks,
    };
    for (table, batch) in small_tables(&data)? {
        sink.write(table, batch)?;
    }
    Ok(data)
}

/// Where the first stage reads blocks from.
#[derive(Clone, Copy)]
struct BlockReader<'a> {
    bytes: &'a [u8],
    layout: &'a BlockLayout,
    /// Trace-wide stack id of each (thread id, thread's own stack id).
    stack_ids: &'a FxHashMap<(u32, u32), u32>,
    /// Called with each block's range once decoded.
    release: &'a (dyn Fn(Range<usize>) + Sync),
}

/// Why a block could not be read again.
enum Reread {
    Decode(DecodeError),
    Changed(u64),
}

/// What the decoding and merging stage found.
struct Merged {
    merger: Merger,
    undefined_stack_refs: u64,
    undefined_string_refs: u64,
}

/// A chunk's blocks, decoded, each with its count of undefined stack refs.
type DecodedChunk = std::result::Result<Vec<(BlockEvents, u64)>, Reread>;

/// The first stage: decodes `chunks` of blocks (in parallel, on a thread
/// of its own, one chunk ahead), merges their events and sends them on
/// with whether they are the last, until done or the next stage stops.
fn merge_chunks(
    chunks: &[&[BlockSummary]],
    reader: &BlockReader<'_>,
    scale: TimeScale,
    strings: &HashMap<u32, String>,
    out: &SyncSender<(Events, bool)>,
) -> std::result::Result<Merged, Reread> {
    std::thread::scope(|scope| {
        // Decoding the next chunk while this one merges: the merge is one
        // thread's work, and would otherwise wait for every decode.
        let (decoded_tx, decoded_rx) = sync_channel::<DecodedChunk>(1);
        scope.spawn(move || {
            for chunk in chunks {
                let decoded = decode_chunk(chunk, reader);
                let failed = decoded.is_err();
                // The merge stopped: nothing more is wanted.
                if decoded_tx.send(decoded).is_err() || failed {
                    break;
                }
            }
        });
        merge_decoded(chunks, decoded_rx, scale, strings, out)
    })
}

/// Merges the decoded chunks of `chunks` as they come from `decoded`.
fn merge_decoded(
    chunks: &[&[BlockSummary]],
    decoded: Receiver<DecodedChunk>,
    scale: TimeScale,
    strings: &HashMap<u32, String>,
    out: &SyncSender<(Events, bool)>,
) -> std::result::Result<Merged, Reread> {
    let mut merger = Merger::new(scale);
    let mut undefined_stack_refs = 0;
    let mut undefined_string_refs = 0;
    let mut carried = Events::default();
    for (c, blocks) in decoded.into_iter().enumerate() {
        for (b, undefined) in blocks? {
            undefined_stack_refs += undefined;
            merger.push(b);
        }
        // Later blocks hold nothing earlier than the next one's first time.
        let bound = chunks.get(c + 1).map(|next| next[0].first_q);
        // Pairing leaves the last events of a chunk unpaired, to look
        // ahead of the others: they start the next chunk. Copying those few
        // here saves the pairing stage from copying every chunk after
        // them.
        let mut events = std::mem::take(&mut carried);
        let carried_len = events.len();
        merger.drain(bound, &mut events);
        undefined_string_refs += events.kind[carried_len..]
            .iter()
            .zip(&events.tag[carried_len..])
            .filter(|&(&k, &(type_id, var_id))| {
                k == kind::TAG
                    && [type_id, var_id].iter().any(|id| *id != 0 && !strings.contains_key(id))
            })
            .count() as u64;
        if bound.is_some() {
            carried = events.tail(REORDER_LOOKAHEAD);
        }
        if out.send((events, bound.is_none())).is_err() {
            break;
        }
    }
    // A trace without blocks still ends.
    if chunks.is_empty() {
        let _ = out.send((Events::default(), true));
    }
    Ok(Merged { merger, undefined_stack_refs, undefined_string_refs })
}

/// Decodes the blocks of `chunk` in parallel, in order, with trace-wide
/// stack ids; gives their pages back once read. Of several blocks that
/// fail, the error is the first one's in the chunk, whatever order the
/// threads met them in.
fn decode_chunk(chunk: &[BlockSummary], reader: &BlockReader<'_>) -> DecodedChunk {
    let BlockReader { bytes, layout, stack_ids, release } = *reader;
    let decoded: Vec<std::result::Result<(BlockEvents, u64), Reread>> = chunk
        .par_iter()
        .map(|s| {
            let range = layout.block(s.index);
            let offset = range.start as u64;
            let decoded = BlockEvents::decode(&bytes[range.clone()], offset);
            release(range);
            // The first pass read this block; a recorder still writing
            // may have added events since, which that pass did not
            // count (nor their stacks and strings): leave them out.
            let mut b = match decoded.map_err(Reread::Decode)? {
                Some(b) if (b.thread_id, b.seq) == (s.thread_id, s.seq) => b,
                _ => return Err(Reread::Changed(offset)),
            };
            b.truncate(s.events as usize);
            crate::progress::advance(layout.block_len);
            // Trace-wide stack ids for the thread's own.
            let mut undefined = 0;
            let thread = b.thread_id;
            for id in b.stack.iter_mut().filter(|id| **id != 0) {
                *id = stack_ids.get(&(thread, *id)).copied().unwrap_or_else(|| {
                    undefined += 1;
                    0
                });
            }
            Ok((b, undefined))
        })
        .collect();
    decoded.into_iter().collect()
}

/// Hands every row made final so far to `sink`, in batches of at most
/// [`BATCH_ROWS`] rows.
fn flush(
    rows: &mut Rows,
    batcher: &mut Batcher<'_>,
    sink: &mut (dyn TableSink + Send),
) -> Result<()> {
    let mut put = |name: &str, batch: Option<RecordBatch>| -> Result<()> {
        let Some(batch) = batch else {
            return Ok(());
        };
        let table = TABLES.iter().find(|t| t.name == name).expect("a table of the schema");
        for start in (0..batch.num_rows()).step_by(BATCH_ROWS) {
            sink.write(table, batch.slice(start, BATCH_ROWS.min(batch.num_rows() - start)))?;
        }
        Ok(())
    };
    if !rows.events.is_empty() {
        let first_event_id = rows.events.first_event_id + rows.events.len() as u64;
        let events = std::mem::replace(
            &mut rows.events,
            EventRows { first_event_id, ..EventRows::default() },
        );
        put("events", batcher.events(events)?)?;
    }
    // A batch at a time: the leaked allocations come all at once.
    for part in rows.allocations.chunks(BATCH_ROWS) {
        put("allocations", batcher.allocations(part)?)?;
    }
    rows.allocations.clear();
    for part in rows.anomalies.chunks(BATCH_ROWS) {
        put("anomalies", batcher.anomalies(part)?)?;
    }
    rows.anomalies.clear();
    Ok(())
}
