//! The first pass over a trace: every block is decoded (in parallel, a
//! chunk of blocks at a time) and checked, and what is small is kept:
//! strings, stacks, modules, thread facts, RSS samples and, for each block,
//! a summary that fixes its place in the time-order merge. The events
//! themselves are counted, not kept; the second pass ([`crate::stream`])
//! decodes them, chunk by chunk, so that memory never holds a whole trace.

use std::collections::HashMap;
use std::ops::Range;

use memscope_schema::reader::BlockLayout;
use memscope_schema::{DecodeError, DecodeErrorKind, Totals};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::decode::{BlockEvents, EventCounts, ModuleRecord};

/// Blocks decoded at once by either pass: enough to keep both cores busy,
/// few enough that their events take some tens of megabytes.
pub const CHUNK_BLOCKS: usize = 64;

/// Where one block stands in its thread's stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockSummary {
    /// Index of the block in the file.
    pub index: u64,
    /// The block's thread.
    pub thread_id: u32,
    /// The block's place among its thread's blocks.
    pub seq: u32,
    /// Quantized time of its first event once its thread's timestamps are
    /// made non-decreasing (see [`crate::model::TimeReversals`]): no event
    /// of this block or of a later block of its thread is earlier.
    pub first_q: u64,
    /// Number of events.
    pub events: u64,
}

/// What the first pass keeps of a trace.
#[derive(Debug, Default)]
pub struct TraceIndex {
    /// Blocks that hold a thread's data, in merge order: by repaired first
    /// time, then thread, then sequence (each thread's blocks in sequence).
    pub blocks: Vec<BlockSummary>,
    /// String definitions by id.
    pub strings: HashMap<u32, String>,
    /// Distinct call stacks (return addresses, innermost first); the
    /// trace-wide id of a stack is its index plus one.
    pub stacks: Vec<Vec<u64>>,
    /// Trace-wide stack id of each (thread id, thread's own stack id).
    pub stack_ids: FxHashMap<(u32, u32), u32>,
    /// Module map records.
    pub modules: Vec<ModuleRecord>,
    /// Per thread, in thread id order: (thread id, OS thread id, quantized
    /// time of its first block, last name with its time, exit time).
    pub threads: Vec<ThreadFacts>,
    /// The end marker: quantized time and totals.
    pub end: Option<(u64, Totals)>,
    /// Resident-set-size samples: (quantized time, bytes), in time order.
    pub rss: Vec<(u64, u64)>,
    /// Extended records of unknown subkinds that were skipped.
    pub skipped_records: u64,
    /// Events in the trace.
    pub events: u64,
    /// Allocations and reallocations among them (rows of `allocations`).
    pub allocations: u64,
    /// Tags among them.
    pub tags: u64,
    /// The latest quantized time of any event, exit or end marker (0 when
    /// there is none).
    pub last_q: u64,
}

/// What one thread's blocks say about the thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadFacts {
    /// Recorder thread id.
    pub thread_id: u32,
    /// OS thread id.
    pub os_tid: u32,
    /// Quantized time base of its first block.
    pub start_q: u64,
    /// Its last recorded name, with the name's quantized time.
    pub name: Option<(u64, String)>,
    /// Quantized time of its exit record.
    pub exit_q: Option<u64>,
}

/// A block as the first pass keeps it.
struct Scanned {
    index: u64,
    offset: u64,
    thread_id: u32,
    os_tid: u32,
    seq: u32,
    base_q: u64,
    /// First event's time and the largest event time, unrepaired.
    first_q: Option<u64>,
    max_q: u64,
    events: u64,
    allocations: u64,
    tags: u64,
    allocated_bytes: u64,
    block: BlockEvents,
}

impl TraceIndex {
    /// Decodes and checks every used block of the trace `bytes` laid out
    /// as `layout`, keeping what [`TraceIndex`] holds.
    ///
    /// # Errors
    ///
    /// The malformed block or record with the lowest offset, or
    /// [`DecodeErrorKind::TooManyBytes`] at the first block where the
    /// sizes allocated so far add up to more than `i64::MAX` bytes.
    pub fn build(bytes: &[u8], layout: &BlockLayout) -> Result<TraceIndex, DecodeError> {
        TraceIndex::build_releasing(bytes, layout, &|_| {})
    }

    /// [`TraceIndex::build`], calling `release` with the byte range of each
    /// chunk of blocks once read, so that the caller can give its memory
    /// back (see [`crate::mapping::GuardedMap::release`]).
    ///
    /// # Errors
    ///
    /// As [`TraceIndex::build`].
    pub fn build_releasing(
        bytes: &[u8],
        layout: &BlockLayout,
        release: &(dyn Fn(Range<usize>) + Sync),
    ) -> Result<TraceIndex, DecodeError> {
        let mut index = TraceIndex::default();
        let mut kept: Vec<Scanned> = Vec::new();
        let mut allocated_bytes = 0u64;
        let mut first_error: Option<DecodeError> = None;
        let mut start = 0;
        while start < layout.count {
            let end = (start + CHUNK_BLOCKS as u64).min(layout.count);
            let chunk: Vec<Result<Option<Scanned>, DecodeError>> = (start..end)
                .into_par_iter()
                .map(|i| {
                    let range = layout.block(i);
                    let offset = range.start as u64;
                    let block = BlockEvents::decode_counting(&bytes[range], offset);
                    crate::progress::advance(layout.block_len);
                    block.map(|b| b.map(|(b, counts)| Scanned::of(i, offset, b, counts)))
                })
                .collect();
            for r in chunk {
                match r {
                    Ok(Some(s)) => {
                        // Sums of sizes in SQL are 64-bit: bound them here,
                        // in file order, so the error names the first block
                        // over.
                        allocated_bytes = allocated_bytes.saturating_add(s.allocated_bytes);
                        if allocated_bytes > i64::MAX as u64 && first_error.is_none() {
                            first_error = Some(DecodeError::new(
                                s.offset,
                                DecodeErrorKind::TooManyBytes { limit: i64::MAX as u64 },
                            ));
                        }
                        kept.push(s);
                    }
                    Ok(None) => {}
                    Err(e) if first_error.as_ref().is_none_or(|f| e.offset < f.offset) => {
                        first_error = Some(e)
                    }
                    Err(_) => {}
                }
            }
            release(layout.block(start).start..layout.block(end - 1).end);
            // An error is final: blocks after it need not be read.
            if first_error.is_some() {
                break;
            }
            start = end;
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        kept.sort_unstable_by_key(|s| (s.thread_id, s.seq));
        index.absorb(kept);
        Ok(index)
    }

    /// Takes the metadata of the blocks (sorted by thread, then sequence)
    /// and orders their summaries for the merge.
    fn absorb(&mut self, kept: Vec<Scanned>) {
        let mut ids: FxHashMap<Vec<u64>, u32> = FxHashMap::default();
        let mut carry = 0u64;
        for s in kept {
            let b = s.block;
            if self.threads.last().is_none_or(|t| t.thread_id != s.thread_id) {
                self.threads.push(ThreadFacts {
                    thread_id: s.thread_id,
                    os_tid: s.os_tid,
                    start_q: s.base_q,
                    ..ThreadFacts::default()
                });
                carry = 0;
            }
            let t = self.threads.last_mut().expect("pushed above");
            // The name of the block's latest naming, the last block's that
            // has one.
            if let Some(named) = b.names.into_iter().max_by_key(|(q, _)| *q) {
                t.name = Some(named);
            }
            if let Some(q) = b.exit_q {
                t.exit_q = Some(q);
                self.last_q = self.last_q.max(q);
            }
            if let Some((q, totals)) = b.end {
                self.end = Some((q, totals));
                self.last_q = self.last_q.max(q);
            }
            // Repaired times, as the merge will see them: each event takes
            // the latest time before it in its thread when that is later.
            let first_q = s.first_q.map_or(carry, |q| q.max(carry));
            if s.events > 0 {
                carry = carry.max(s.max_q);
                self.last_q = self.last_q.max(carry);
            }
            self.blocks.push(BlockSummary {
                index: s.index,
                thread_id: s.thread_id,
                seq: s.seq,
                first_q,
                events: s.events,
            });
            self.events += s.events;
            self.allocations += s.allocations;
            self.tags += s.tags;
            self.skipped_records += b.skipped;
            self.strings.extend(b.strings);
            self.rss.extend(b.rss);
            self.modules.extend(b.modules);
            for (local, frames) in b.stacks {
                let next = self.stacks.len() as u32 + 1;
                let id = *ids.entry(frames).or_insert_with_key(|frames| {
                    self.stacks.push(frames.clone());
                    next
                });
                self.stack_ids.insert((s.thread_id, local), id);
            }
        }
        self.rss.sort_unstable();
        self.blocks.sort_by_key(|b| (b.first_q, b.thread_id, b.seq));
    }
}

impl Scanned {
    /// The block at `offset` (the `index`th) as decoded without its events
    /// (see [`BlockEvents::decode_counting`]), and their `counts`.
    fn of(index: u64, offset: u64, b: BlockEvents, counts: EventCounts) -> Scanned {
        Scanned {
            index,
            offset,
            thread_id: b.thread_id,
            os_tid: b.os_tid,
            seq: b.seq,
            base_q: b.base_q,
            first_q: counts.first_q,
            max_q: counts.max_q,
            events: counts.events,
            allocations: counts.allocations,
            tags: counts.tags,
            allocated_bytes: counts.allocated_bytes,
            block: b,
        }
    }
}
