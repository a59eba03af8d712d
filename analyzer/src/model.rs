//! The decoded trace as columns: events in time order, allocations paired
//! with their ends, threads. What the Arrow tables are built from.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use memscope_schema::format::FileHeader;
use memscope_schema::{TimeScale, Totals};

use crate::decode::{BlockEvents, ModuleRecord, kind, strings};
use crate::pairing::{Allocations, Anomalies, pair};
use crate::stacks::{self, Stacks};

/// Events of the whole trace in time order, as columns of equal length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Events {
    /// Nanoseconds since the trace origin.
    pub ts_ns: Vec<i64>,
    /// Recorder thread id.
    pub thread_id: Vec<u32>,
    /// [`kind`] code.
    pub kind: Vec<u8>,
    /// Address (see `events.address`).
    pub address: Vec<u64>,
    /// Size in bytes for allocations and reallocations; 0 otherwise
    /// (pairing fills in the size of freed blocks).
    pub size: Vec<u64>,
    /// Alignment in bytes for allocations and reallocations; 0 otherwise.
    pub align: Vec<u64>,
    /// Old address of reallocations; 0 otherwise.
    pub old_address: Vec<u64>,
    /// Whether an allocation was zero-filled.
    pub zeroed: Vec<bool>,
    /// For tag events, in order: (event index, type string id, variable
    /// string id).
    pub tags: Vec<(usize, u32, u32)>,
    /// Trace-wide stack id of allocations and reallocations (0: none).
    pub stack_id: Vec<u32>,
}

impl Events {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.ts_ns.len()
    }

    /// Whether there are no events.
    pub fn is_empty(&self) -> bool {
        self.ts_ns.is_empty()
    }
}

/// One recorded thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Recorder thread id.
    pub thread_id: u32,
    /// OS thread id.
    pub os_tid: u32,
    /// Last recorded name.
    pub name: Option<String>,
    /// Time of the first block, ns since origin.
    pub start_ts_ns: i64,
    /// Time the thread began to exit, ns since origin.
    pub exit_ts_ns: Option<i64>,
    /// Allocations made (reallocations included).
    pub allocations: u64,
    /// Bytes allocated.
    pub allocated_bytes: u64,
}

/// Events whose timestamp goes back from the one before them in the same
/// thread: they can only come from a broken clock or a corrupt trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeReversals {
    /// Events moved forward to their predecessor's time.
    pub events: u64,
    /// Threads with at least one such event.
    pub threads: u64,
    /// The largest step back, in nanoseconds.
    pub largest_ns: i64,
}

impl TimeReversals {
    /// Makes the event timestamps of each thread non-decreasing, in file
    /// order. `blocks` are sorted by thread and then block sequence.
    fn repair(blocks: &mut [BlockEvents], scale: &TimeScale) -> TimeReversals {
        let mut r = TimeReversals::default();
        let mut thread = None;
        let mut last = 0;
        let mut thread_counted = false;
        for b in blocks.iter_mut() {
            if thread != Some(b.thread_id) {
                thread = Some(b.thread_id);
                last = 0;
                thread_counted = false;
            }
            for q in &mut b.q {
                if *q < last {
                    r.events += 1;
                    r.largest_ns =
                        r.largest_ns.max(scale.to_ns(last).saturating_sub(scale.to_ns(*q)));
                    if !thread_counted {
                        r.threads += 1;
                        thread_counted = true;
                    }
                    *q = last;
                } else {
                    last = *q;
                }
            }
        }
        r
    }
}

/// A whole decoded and paired trace.
#[derive(Clone, Debug)]
pub struct TraceData {
    /// The file header.
    pub header: FileHeader,
    /// Every event, in time order.
    pub events: Events,
    /// Every allocation, in the order it started.
    pub allocations: Allocations,
    /// For each event, the `alloc_id` it starts, ends or tags
    /// ([`crate::pairing::NONE_U64`] when unmatched).
    pub event_alloc_id: Vec<u64>,
    /// What pairing could not match, counted.
    pub anomalies: Anomalies,
    /// What pairing could not match, event by event.
    pub anomaly_rows: Vec<crate::pairing::Anomaly>,
    /// Threads by thread id.
    pub threads: Vec<Thread>,
    /// String definitions by id.
    pub strings: HashMap<u32, String>,
    /// The end marker's time (ns since origin) and totals, when finished.
    pub end: Option<(i64, Totals)>,
    /// Time of the last event or marker, ns since origin.
    pub last_ts_ns: i64,
    /// Extended records of unknown subkinds that were skipped.
    pub skipped_records: u64,
    /// Events stamped earlier than the event before them in their own
    /// thread; they keep their order in the file and take that earlier
    /// event's time.
    pub time_reversals: TimeReversals,
    /// Allocations and reallocations that refer to a stack id their thread
    /// never defines (they show without a stack).
    pub undefined_stack_refs: u64,
    /// Tags that name a string id the trace never defines (the name shows
    /// as `<unknown string ID>`).
    pub undefined_string_refs: u64,
    /// Size of the trace file in bytes.
    pub file_bytes: u64,
    /// Resident-set-size samples (ns since origin, bytes), in time order.
    pub rss: Vec<(i64, u64)>,
    /// Call stacks, their symbolized frames and the modules they lie in.
    pub stacks: Stacks,
}

impl TraceData {
    /// Assembles the decoded blocks of a trace file of `file_bytes` bytes:
    /// merges the threads' events into one time order, pairs allocations
    /// with their ends and gathers thread facts.
    pub fn build(header: FileHeader, mut blocks: Vec<BlockEvents>, file_bytes: u64) -> TraceData {
        let scale = TimeScale::new(&header);
        blocks.sort_unstable_by_key(|b| (b.thread_id, b.seq));
        let strings = strings(&blocks);
        let time_reversals = TimeReversals::repair(&mut blocks, &scale);
        let (raw_stacks, undefined_stack_refs) = stacks::intern(&mut blocks);
        let modules: Vec<ModuleRecord> =
            blocks.iter().flat_map(|b| b.modules.iter().cloned()).collect();
        crate::progress::stage(format!("symbolizing {} stacks", raw_stacks.len()));
        let stacks = Stacks::symbolize(raw_stacks, modules);
        let events_total: usize = blocks.iter().map(|b| b.len()).sum();
        crate::progress::stage(format!("merging and pairing {events_total} events"));
        let mut events = merge(&blocks, &scale);
        let paired = pair(&events);
        events.size = paired.event_size;
        let allocations = paired.allocations;

        let mut rss: Vec<(i64, u64)> = blocks
            .iter()
            .flat_map(|b| b.rss.iter().map(|&(q, bytes)| (scale.to_ns(q), bytes)))
            .collect();
        rss.sort_unstable();
        let mut threads: Vec<Thread> = Vec::new();
        let mut end = None;
        let mut last_q = 0;
        let mut skipped_records = 0;
        for b in &blocks {
            if threads.last().is_none_or(|t| t.thread_id != b.thread_id) {
                threads.push(Thread {
                    thread_id: b.thread_id,
                    os_tid: b.os_tid,
                    start_ts_ns: scale.to_ns(b.base_q),
                    ..Thread::default()
                });
            }
            let t = threads.last_mut().expect("pushed above");
            if let Some((_, name)) = b.names.iter().max_by_key(|(q, _)| *q) {
                t.name = Some(name.clone());
            }
            if let Some(q) = b.exit_q {
                t.exit_ts_ns = Some(scale.to_ns(q));
                last_q = last_q.max(q);
            }
            if let Some((q, totals)) = b.end {
                end = Some((scale.to_ns(q), totals));
                last_q = last_q.max(q);
            }
            if let Some(&q) = b.q.last() {
                last_q = last_q.max(q);
            }
            skipped_records += b.skipped;
        }
        let by_id: HashMap<u32, usize> =
            threads.iter().enumerate().map(|(i, t)| (t.thread_id, i)).collect();
        for i in 0..allocations.len() {
            if let Some(&t) = by_id.get(&allocations.alloc_thread_id[i]) {
                threads[t].allocations += 1;
                threads[t].allocated_bytes =
                    threads[t].allocated_bytes.saturating_add(allocations.size[i]);
            }
        }
        let undefined_string_refs = events
            .tags
            .iter()
            .filter(|&&(_, type_id, var_id)| {
                [type_id, var_id].iter().any(|id| *id != 0 && !strings.contains_key(id))
            })
            .count() as u64;
        let last_ts_ns = if last_q == 0 { 0 } else { scale.to_ns(last_q) };
        TraceData {
            header,
            events,
            allocations,
            event_alloc_id: paired.event_alloc_id,
            anomalies: paired.anomalies,
            anomaly_rows: paired.anomaly_rows,
            threads,
            strings,
            end,
            last_ts_ns,
            skipped_records,
            time_reversals,
            undefined_stack_refs,
            undefined_string_refs,
            file_bytes,
            rss,
            stacks,
        }
    }

    /// Duration of the trace: to the end marker, or to the last record of an
    /// unfinished trace (ns).
    pub fn duration_ns(&self) -> i64 {
        self.end.map_or(self.last_ts_ns, |(ts, _)| ts.max(self.last_ts_ns)).max(0)
    }
}

/// Ordering class of an event among events of other threads with the same
/// timestamp: deallocations (and reallocations, which free their old
/// block) first, so that an address freed by one thread and reused by
/// another in the same time quantum pairs correctly.
fn class(kind: u8) -> u8 {
    match kind {
        kind::DEALLOCATION | kind::REALLOCATION => 0,
        _ => 1,
    }
}

/// Position in one thread's stream of blocks.
struct Cursor {
    /// Current block, and one past the thread's last block.
    block: usize,
    end: usize,
    /// Next event in the current block, and next tag of the block.
    event: usize,
    tag: usize,
}

impl Cursor {
    /// Skips exhausted blocks; false when the stream is done.
    fn settle(&mut self, blocks: &[BlockEvents]) -> bool {
        while self.block < self.end && self.event >= blocks[self.block].len() {
            self.block += 1;
            self.event = 0;
            self.tag = 0;
        }
        self.block < self.end
    }

    /// Merge key of the next event: time, class, thread.
    fn key(&self, blocks: &[BlockEvents]) -> (u64, u8, u32) {
        let b = &blocks[self.block];
        (b.q[self.event], class(b.kind[self.event]), b.thread_id)
    }
}

/// Merges the per-thread event streams (each already in time order) into
/// one time order. Each thread's own order is kept whatever the timestamps.
fn merge(blocks: &[BlockEvents], scale: &TimeScale) -> Events {
    let total: usize = blocks.iter().map(BlockEvents::len).sum();
    let mut out = Events {
        ts_ns: Vec::with_capacity(total),
        thread_id: Vec::with_capacity(total),
        kind: Vec::with_capacity(total),
        address: Vec::with_capacity(total),
        size: Vec::with_capacity(total),
        align: Vec::with_capacity(total),
        old_address: Vec::with_capacity(total),
        zeroed: Vec::with_capacity(total),
        tags: Vec::new(),
        stack_id: Vec::with_capacity(total),
    };
    // Blocks are sorted by (thread, sequence): each thread is one run.
    let mut cursors = Vec::new();
    let mut i = 0;
    while i < blocks.len() {
        let j = i + blocks[i..].iter().take_while(|b| b.thread_id == blocks[i].thread_id).count();
        cursors.push(Cursor { block: i, end: j, event: 0, tag: 0 });
        i = j;
    }
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (s, c) in cursors.iter_mut().enumerate() {
        if c.settle(blocks) {
            heap.push(Reverse((c.key(blocks), s)));
        }
    }
    while let Some(Reverse((_, s))) = heap.pop() {
        let next = heap.peek().map(|Reverse((k, _))| *k);
        let c = &mut cursors[s];
        // Emit from this thread for as long as it stays first.
        while c.settle(blocks) {
            let k = c.key(blocks);
            if next.is_some_and(|n| n < k) {
                heap.push(Reverse((k, s)));
                break;
            }
            let b = &blocks[c.block];
            let e = c.event;
            if b.kind[e] == kind::TAG {
                let (type_id, var_id) = b.tags[c.tag];
                out.tags.push((out.ts_ns.len(), type_id, var_id));
                c.tag += 1;
            }
            out.ts_ns.push(scale.to_ns(b.q[e]));
            out.thread_id.push(b.thread_id);
            out.kind.push(b.kind[e]);
            out.address.push(b.address[e]);
            out.size.push(b.size[e]);
            out.align.push(b.align[e]);
            out.old_address.push(b.old_address[e]);
            out.zeroed.push(b.zeroed[e]);
            out.stack_id.push(b.stack[e]);
            c.event += 1;
        }
    }
    out
}
