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
        self.copy(self.len().saturating_sub(n)..self.len())
    }

    /// A copy of the events at `range`.
    ///
    /// # Panics
    ///
    /// When `range` reaches past the last event.
    pub fn copy(&self, range: std::ops::Range<usize>) -> Events {
        Events {
            ts_ns: self.ts_ns[range.clone()].to_vec(),
            thread_id: self.thread_id[range.clone()].to_vec(),
            kind: self.kind[range.clone()].to_vec(),
            address: self.address[range.clone()].to_vec(),
            size: self.size[range.clone()].to_vec(),
            align: self.align[range.clone()].to_vec(),
            old_address: self.old_address[range.clone()].to_vec(),
            zeroed: self.zeroed[range.clone()].to_vec(),
            stack_id: self.stack_id[range.clone()].to_vec(),
            tag: self.tag[range].to_vec(),
        }
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

/// Merge key of an event: time, then [`class`], then thread id, packed
/// into one integer that compares as the tuple would.
#[inline]
fn key(q: u64, kind: u8, thread_id: u32) -> u128 {
    (u128::from(q) << 64) | (u128::from(class(kind)) << 32) | u128::from(thread_id)
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

/// Where a stream's merge has got to during [`Merger::drain`]: its next
/// event is event `event` of its `block`th pending block.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    block: usize,
    event: usize,
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
    ///
    /// Works in two steps: first the order (which block and event each
    /// output row comes from), from the events' times and kinds alone; then
    /// each column is gathered in that order, a column at a time, instead
    /// of an event at a time across ten columns.
    pub fn drain(&mut self, bound: Option<u64>, out: &mut Events) {
        // Every pending block, each stream's in sequence from `first[s]`.
        let mut blocks: Vec<&BlockEvents> = Vec::new();
        let mut first = Vec::with_capacity(self.streams.len());
        for stream in &self.streams {
            first.push(blocks.len());
            blocks.extend(&stream.blocks);
        }
        let mut cursors: Vec<Cursor> =
            self.streams.iter().map(|s| Cursor { block: 0, event: s.event }).collect();
        let pending: usize = blocks.iter().map(|b| b.len()).sum::<usize>()
            - self.streams.iter().map(|s| s.event).sum::<usize>();
        let limit = bound.map_or(u128::MAX, |b| u128::from(b) << 64);
        // The key of stream `s`'s next event below the bound, moving its
        // cursor past exhausted blocks.
        let next_key = |s: usize, c: &mut Cursor| -> Option<u128> {
            let thread_id = self.streams[s].thread_id;
            let pending = &self.streams[s].blocks;
            loop {
                let b = pending.get(c.block)?;
                if c.event < b.len() {
                    let k = key(b.q[c.event], b.kind[c.event], thread_id);
                    return (k < limit).then_some(k);
                }
                *c = Cursor { block: c.block + 1, event: 0 };
            }
        };
        // Step one: (block, event) of each row, in merge order.
        let mut order: Vec<(u32, u32)> = Vec::with_capacity(pending);
        let mut heap = BinaryHeap::with_capacity(self.streams.len());
        for (s, c) in cursors.iter_mut().enumerate() {
            if let Some(k) = next_key(s, c) {
                heap.push(Reverse((k, s)));
            }
        }
        while let Some(Reverse((_, s))) = heap.pop() {
            let next = heap.peek().map_or(u128::MAX, |Reverse((k, _))| *k);
            let c = &mut cursors[s];
            // Emit from this thread for as long as it stays first.
            loop {
                let b = first[s] + c.block;
                order.push((b as u32, c.event as u32));
                c.event += 1;
                match next_key(s, c) {
                    Some(n) if n > next => {
                        heap.push(Reverse((n, s)));
                        break;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
        // Step two: the columns, gathered.
        let scale = &self.scale;
        let at = |&(b, e): &(u32, u32)| (blocks[b as usize], e as usize);
        out.ts_ns.extend(order.iter().map(at).map(|(b, e)| scale.to_ns(b.q[e])));
        out.thread_id.extend(order.iter().map(at).map(|(b, _)| b.thread_id));
        out.kind.extend(order.iter().map(at).map(|(b, e)| b.kind[e]));
        out.address.extend(order.iter().map(at).map(|(b, e)| b.address[e]));
        out.size.extend(order.iter().map(at).map(|(b, e)| b.size[e]));
        out.align.extend(order.iter().map(at).map(|(b, e)| b.align[e]));
        out.old_address.extend(order.iter().map(at).map(|(b, e)| b.old_address[e]));
        out.zeroed.extend(order.iter().map(at).map(|(b, e)| b.zeroed[e]));
        out.stack_id.extend(order.iter().map(at).map(|(b, e)| b.stack[e]));
        // A block's tags are its tag events' in order: each block's next
        // tag, from where its stream's merge stood.
        let mut next_tag = vec![0; blocks.len()];
        for (stream, &f) in self.streams.iter().zip(&first) {
            if !stream.blocks.is_empty() {
                next_tag[f] = stream.tag;
            }
        }
        out.tag.extend(order.iter().map(|&(b, e)| {
            let block = blocks[b as usize];
            if block.kind[e as usize] != kind::TAG {
                return (0, 0);
            }
            let t = &mut next_tag[b as usize];
            *t += 1;
            block.tags[*t - 1]
        }));
        drop(blocks);
        for ((stream, c), f) in self.streams.iter_mut().zip(cursors).zip(first) {
            stream.tag = if c.block < stream.blocks.len() { next_tag[f + c.block] } else { 0 };
            stream.blocks.drain(..c.block.min(stream.blocks.len()));
            stream.event = c.event;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A block of `thread`'s events: (time step, kind) each, times
    /// advancing from `q`; addresses number the events so that each row
    /// can be told apart.
    fn block(thread: u32, q: &mut u64, events: &[(u64, u8)], serial: &mut u64) -> BlockEvents {
        let mut b = BlockEvents { thread_id: thread, ..BlockEvents::default() };
        for &(step, k) in events {
            *q += step;
            *serial += 1;
            b.q.push(*q);
            b.kind.push(k);
            b.address.push(*serial);
            b.size.push(*serial * 2);
            b.align.push(8);
            b.old_address.push(*serial * 3);
            b.zeroed.push(serial.is_multiple_of(2));
            b.stack.push(*serial as u32);
            if k == kind::TAG {
                b.tags.push((*serial as u32, thread));
            }
        }
        b
    }

    /// An output row as the test compares it: time (quantized), thread,
    /// kind, address and tag.
    type Row = (u64, u32, u8, u64, (u32, u32));

    /// The merge as its definition states it, one event at a time: the
    /// thread whose next event has the smallest (time, class, thread)
    /// goes next.
    fn reference(threads: &[Vec<BlockEvents>]) -> Vec<Row> {
        let mut rows: Vec<Vec<_>> = threads
            .iter()
            .map(|blocks| {
                let mut tags = blocks.iter().flat_map(|b| b.tags.iter().copied());
                blocks
                    .iter()
                    .flat_map(|b| (0..b.len()).map(move |e| (b, e)))
                    .map(|(b, e)| {
                        let tag =
                            if b.kind[e] == kind::TAG { tags.next().unwrap() } else { (0, 0) };
                        (b.q[e], b.thread_id, b.kind[e], b.address[e], tag)
                    })
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect()
            })
            .collect();
        let mut out = Vec::new();
        while let Some(t) = (0..rows.len()).filter(|&t| !rows[t].is_empty()).min_by_key(|&t| {
            let &(q, thread, k, ..) = rows[t].last().unwrap();
            (q, class(k), thread)
        }) {
            out.push(rows[t].pop().unwrap());
        }
        out
    }

    proptest! {
        /// Pushing blocks a few at a time and draining up to the next
        /// block's first time gives the reference merge's rows, with every
        /// column from the same event and each tag with its own event,
        /// through equal times, runs of one thread and blocks left partly
        /// merged.
        #[test]
        fn drains_in_the_reference_order(
            threads in prop::collection::vec(
                prop::collection::vec(prop::collection::vec((0u64..4, 0u8..4), 0..12), 1..5),
                1..5,
            ),
            per_drain in 1usize..4,
        ) {
            let mut serial = 0;
            let blocks: Vec<Vec<BlockEvents>> = threads
                .iter()
                .enumerate()
                .map(|(t, blocks)| {
                    let mut q = 0;
                    blocks.iter().map(|events| block(t as u32 + 1, &mut q, events, &mut serial)).collect()
                })
                .collect();
            // All blocks in the order of their first time, as the second
            // pass feeds them.
            let mut feed: Vec<&BlockEvents> = blocks.iter().flatten().collect();
            feed.sort_by_key(|b| (b.q.first().copied().unwrap_or(u64::MAX), b.thread_id));
            let header = memscope_schema::writer::synthetic_header(4096);
            let mut merger = Merger::new(TimeScale::new(&header));
            let mut out = Events::default();
            for (i, group) in feed.chunks(per_drain).enumerate() {
                for b in group {
                    merger.push((*b).clone());
                }
                let bound = feed.get((i + 1) * per_drain).map(|b| b.q.first().copied().unwrap_or(u64::MAX));
                merger.drain(bound, &mut out);
            }
            merger.drain(None, &mut out);
            let expected = reference(&blocks);
            prop_assert_eq!(out.len(), expected.len());
            for (i, want) in expected.iter().enumerate() {
                let got = (out.ts_ns[i], out.thread_id[i], out.kind[i], out.address[i], out.tag[i]);
                let want_ns = TimeScale::new(&header).to_ns(want.0);
                prop_assert_eq!(got, (want_ns, want.1, want.2, want.3, want.4), "row {}", i);
                let a = out.address[i];
                prop_assert_eq!(
                    (out.size[i], out.old_address[i], out.zeroed[i], out.stack_id[i]),
                    (a * 2, a * 3, a.is_multiple_of(2), a as u32)
                );
            }
        }
    }
}
