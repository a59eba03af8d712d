//! The merge of the threads' event streams into one time order, a chunk of
//! blocks at a time.
//!
//! Each thread's events are already in its own order. The merge takes, at
//! each step, the thread whose next event has the smallest key (time, then
//! deallocations before other kinds, then thread id) and emits from it for
//! as long as it stays smallest; a thread's own order is kept whatever its
//! timestamps say. Because a thread's later blocks never hold an event
//! earlier than their repaired first time ([`crate::scan::BlockSummary`]),
//! the merge can stop at a time bound and go on when more blocks are
//! decoded: it emits exactly what the merge of the whole trace would, in
//! the same order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use memscope_schema::TimeScale;
use rustc_hash::FxHashMap;

use crate::decode::{BlockEvents, kind};
use crate::model::TimeReversals;

/// Events in time order, as columns of equal length.
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
    /// Size in bytes for allocations and reallocations; 0 otherwise.
    pub size: Vec<u64>,
    /// Alignment in bytes for allocations and reallocations; 0 otherwise.
    pub align: Vec<u64>,
    /// Old address of reallocations; 0 otherwise.
    pub old_address: Vec<u64>,
    /// Whether an allocation was zero-filled.
    pub zeroed: Vec<bool>,
    /// Trace-wide stack id of allocations and reallocations (0: none).
    pub stack_id: Vec<u32>,
    /// String ids (type, variable) of tags; (0, 0) for other kinds.
    pub tag: Vec<(u32, u32)>,
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

    /// A copy of the last `n` events (all of them when fewer).
    pub fn tail(&self, n: usize) -> Events {
        let from = self.len().saturating_sub(n);
        Events {
            ts_ns: self.ts_ns[from..].to_vec(),
            thread_id: self.thread_id[from..].to_vec(),
            kind: self.kind[from..].to_vec(),
            address: self.address[from..].to_vec(),
            size: self.size[from..].to_vec(),
            align: self.align[from..].to_vec(),
            old_address: self.old_address[from..].to_vec(),
            zeroed: self.zeroed[from..].to_vec(),
            stack_id: self.stack_id[from..].to_vec(),
            tag: self.tag[from..].to_vec(),
        }
    }

    /// Makes room for `n` more events.
    fn reserve(&mut self, n: usize) {
        self.ts_ns.reserve(n);
        self.thread_id.reserve(n);
        self.kind.reserve(n);
        self.address.reserve(n);
        self.size.reserve(n);
        self.align.reserve(n);
        self.old_address.reserve(n);
        self.zeroed.reserve(n);
        self.stack_id.reserve(n);
        self.tag.reserve(n);
    }

    fn push(&mut self, b: &BlockEvents, e: usize, tag: (u32, u32), scale: &TimeScale) {
        self.ts_ns.push(scale.to_ns(b.q[e]));
        self.thread_id.push(b.thread_id);
        self.kind.push(b.kind[e]);
        self.address.push(b.address[e]);
        self.size.push(b.size[e]);
        self.align.push(b.align[e]);
        self.old_address.push(b.old_address[e]);
        self.zeroed.push(b.zeroed[e]);
        self.stack_id.push(b.stack[e]);
        self.tag.push(tag);
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

/// One thread's decoded blocks not yet wholly merged.
#[derive(Debug, Default)]
struct Stream {
    thread_id: u32,
    blocks: VecDeque<BlockEvents>,
    /// Next event of the front block, and its next tag.
    event: usize,
    tag: usize,
    /// The latest time seen in the thread, for [`TimeReversals`].
    last_q: u64,
    reversed: bool,
}

impl Stream {
    /// Drops exhausted blocks; false when no event is left.
    fn settle(&mut self) -> bool {
        while self.blocks.front().is_some_and(|b| self.event >= b.len()) {
            self.blocks.pop_front();
            self.event = 0;
            self.tag = 0;
        }
        !self.blocks.is_empty()
    }

    /// Merge key of the next event: time, class, thread.
    fn key(&self) -> (u64, u8, u32) {
        let b = &self.blocks[0];
        (b.q[self.event], class(b.kind[self.event]), self.thread_id)
    }
}

/// The merge's state between chunks.
#[derive(Debug)]
pub struct Merger {
    scale: TimeScale,
    streams: Vec<Stream>,
    by_thread: FxHashMap<u32, usize>,
    /// Events stamped earlier than the event before them in their thread.
    pub time_reversals: TimeReversals,
}

impl Merger {
    /// A merge of events whose times convert with `scale`.
    pub fn new(scale: TimeScale) -> Merger {
        Merger {
            scale,
            streams: Vec::new(),
            by_thread: FxHashMap::default(),
            time_reversals: TimeReversals::default(),
        }
    }

    /// Adds a decoded block; each thread's blocks must come in sequence
    /// order. Makes the thread's timestamps non-decreasing (see
    /// [`TimeReversals`]).
    pub fn push(&mut self, mut b: BlockEvents) {
        let next = self.streams.len();
        let s = *self.by_thread.entry(b.thread_id).or_insert(next);
        if s == next {
            self.streams.push(Stream { thread_id: b.thread_id, ..Stream::default() });
        }
        let stream = &mut self.streams[s];
        let r = &mut self.time_reversals;
        for q in &mut b.q {
            if *q < stream.last_q {
                r.events += 1;
                let back = self.scale.to_ns(stream.last_q).saturating_sub(self.scale.to_ns(*q));
                r.largest_ns = r.largest_ns.max(back);
                if !stream.reversed {
                    r.threads += 1;
                    stream.reversed = true;
                }
                *q = stream.last_q;
            } else {
                stream.last_q = *q;
            }
        }
        if !b.is_empty() {
            stream.blocks.push_back(b);
        }
    }

    /// Appends to `out`, in time order, every pushed event earlier than
    /// `bound` (quantized; `None`: every event). Blocks pushed later must
    /// hold no event earlier than `bound`.
    pub fn drain(&mut self, bound: Option<u64>, out: &mut Events) {
        let below = |k: &(u64, u8, u32)| bound.is_none_or(|b| k.0 < b);
        // Room for every event pushed and not yet emitted, the most this
        // emits: growing the columns as it goes copied them over and over.
        let pending: usize = self
            .streams
            .iter()
            .map(|s| s.blocks.iter().map(BlockEvents::len).sum::<usize>() - s.event)
            .sum();
        out.reserve(pending);
        let mut heap = BinaryHeap::with_capacity(self.streams.len());
        for (s, stream) in self.streams.iter_mut().enumerate() {
            if stream.settle() {
                let k = stream.key();
                if below(&k) {
                    heap.push(Reverse((k, s)));
                }
            }
        }
        while let Some(Reverse((_, s))) = heap.pop() {
            let next = heap.peek().map(|Reverse((k, _))| *k);
            let stream = &mut self.streams[s];
            // Emit from this thread for as long as it stays first.
            while stream.settle() {
                let k = stream.key();
                if !below(&k) {
                    break;
                }
                if next.is_some_and(|n| n < k) {
                    heap.push(Reverse((k, s)));
                    break;
                }
                let b = &stream.blocks[0];
                let e = stream.event;
                let tag = if b.kind[e] == kind::TAG {
                    stream.tag += 1;
                    b.tags[stream.tag - 1]
                } else {
                    (0, 0)
                };
                out.push(b, e, tag, &self.scale);
                stream.event += 1;
            }
        }
    }
}
