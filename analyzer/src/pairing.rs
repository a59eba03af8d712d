//! Pairing: turns the time-ordered events into allocations, each from the
//! event that started it to the one that ended it.
//!
//! * An allocation starts an allocation at its address.
//! * A deallocation ends the allocation live at its address.
//! * A reallocation ends the allocation live at its old address and starts
//!   one at its new address, linked by `realloc_from` / `realloc_to`.
//! * A tag names the type of the allocation live at its address, or of the
//!   live allocation whose block contains it (interior pointers such as
//!   `Rc::as_ptr`). The last tag of an allocation wins. A reallocation
//!   chain holds one value moving between blocks, so its untagged blocks
//!   take the tag of the nearest tagged block before them in the chain, or
//!   else after them.
//!
//! Events that match nothing are kept as events and counted in
//! [`Anomalies`]: deallocations of blocks allocated before recording began
//! are the usual case.
//!
//! [`Pairer`] works a chunk of events at a time and hands rows out as soon
//! as they are final, so that memory holds only what is live: the live
//! allocations (with the untagged blocks of their reallocation chains,
//! which wait for a tag), the addresses of the last [`FREED_ADDRESSES`]
//! deallocations, and a window of [`REORDER_LOOKAHEAD`] events.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use address_map::AddressMap;

use crate::decode::kind;
use crate::merge::Events;

mod address_map;
mod freed;

pub use freed::FREED_ADDRESSES;
use freed::FreedAddresses;

/// Marks "no value" in the sentinel-coded `u64` columns below.
pub const NONE_U64: u64 = u64::MAX;

/// One allocation, from the event that started it to the one that ended
/// it. Absent values: [`NONE_U64`] in id columns, 0 in string and stack ids
/// (which start at 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allocation {
    /// Event index of the starting event.
    pub alloc_id: u64,
    /// Start address.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
    /// Alignment in bytes.
    pub align: u64,
    /// Start time, ns since origin.
    pub alloc_ts_ns: i64,
    /// End time (ns since origin) and ending thread; `None` when leaked.
    pub end: Option<(i64, u32)>,
    /// Allocating thread.
    pub alloc_thread_id: u32,
    /// Type name string id, or 0.
    pub type_id: u32,
    /// Variable name string id, or 0.
    pub var_id: u32,
    /// `alloc_id` this one continues, or [`NONE_U64`].
    pub realloc_from: u64,
    /// `alloc_id` that continues this one, or [`NONE_U64`].
    pub realloc_to: u64,
    /// Requested zero-filled.
    pub zeroed: bool,
    /// Trace-wide stack id (0: none).
    pub stack_id: u32,
}

/// Events as they leave pairing, as columns of equal length: the merged
/// events' own columns plus what pairing found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventRows {
    /// `event_id` of the first row.
    pub first_event_id: u64,
    /// Nanoseconds since the trace origin.
    pub ts_ns: Vec<i64>,
    /// Recorder thread id.
    pub thread_id: Vec<u32>,
    /// [`kind`] code.
    pub kind: Vec<u8>,
    /// Address (see `events.address`).
    pub address: Vec<u64>,
    /// Size in bytes: the event's own for allocations and reallocations,
    /// the freed block's for deallocations ([`NONE_U64`] when unknown), 0
    /// for tags.
    pub size: Vec<u64>,
    /// Alignment in bytes for allocations and reallocations; 0 otherwise.
    pub align: Vec<u64>,
    /// Old address of reallocations; 0 otherwise.
    pub old_address: Vec<u64>,
    /// The `alloc_id` the event starts, ends or tags, or [`NONE_U64`].
    pub alloc_id: Vec<u64>,
}

impl EventRows {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.alloc_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.alloc_id.is_empty()
    }

    /// Appends `events[..n]`, with sizes and `alloc_id`s to be filled in;
    /// with `skip`, only sizes and `alloc_id`s (as placeholders).
    fn extend(&mut self, events: &Events, n: usize, skip: bool) {
        if skip {
            self.size.resize(self.size.len() + n, 0);
            self.alloc_id.resize(self.alloc_id.len() + n, NONE_U64);
            return;
        }
        self.ts_ns.extend_from_slice(&events.ts_ns[..n]);
        self.thread_id.extend_from_slice(&events.thread_id[..n]);
        self.kind.extend_from_slice(&events.kind[..n]);
        self.address.extend_from_slice(&events.address[..n]);
        self.size.extend_from_slice(&events.size[..n]);
        self.align.extend_from_slice(&events.align[..n]);
        self.old_address.extend_from_slice(&events.old_address[..n]);
        self.alloc_id.resize(self.alloc_id.len() + n, NONE_U64);
    }
}

/// Rows that pairing has made final, in the order it made them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// Events, in time order.
    pub events: EventRows,
    /// Allocations, in the order they ended (leaked ones, at the end of
    /// the trace, in the order they started).
    pub allocations: Vec<Allocation>,
    /// Anomalies, in event order.
    pub anomalies: Vec<Anomaly>,
    /// Whether the rows of `events` are not wanted: `events` then holds
    /// placeholders, to be thrown away.
    pub skip_events: bool,
    /// Which rows of `allocations` are wanted; the others are not made.
    pub allocations_wanted: Wanted,
}

/// Which allocation rows pairing makes (see [`Rows::allocations_wanted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wanted {
    /// Every allocation.
    #[default]
    All,
    /// Only the allocations still live at the end of the trace (leaked).
    Leaked,
    /// None.
    None,
}

impl Rows {
    /// Whether `row` is wanted in `allocations`.
    fn wants(&self, row: &Allocation) -> bool {
        match self.allocations_wanted {
            Wanted::All => true,
            Wanted::Leaked => row.end.is_none(),
            Wanted::None => false,
        }
    }
}

/// A live allocation: what its row needs besides its address and end, in
/// one cache line (pairing reads one, at random, per deallocation).
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(64))]
struct Live {
    alloc_id: u64,
    size: u64,
    align: u64,
    alloc_ts_ns: i64,
    realloc_from: u64,
    alloc_thread_id: u32,
    type_id: u32,
    var_id: u32,
    stack_id: u32,
    /// 1 + the index in [`Pairer::waiting`] of the ended, untagged blocks
    /// of its reallocation chain before it, which take the type of the
    /// first tagged block after them; 0 when none wait.
    waiting: u32,
    zeroed: bool,
}

impl Live {
    /// Its row, with the address it started at and its end (time and
    /// thread; `None` when leaked).
    fn row(&self, address: u64, end: Option<(i64, u32)>) -> Allocation {
        Allocation {
            alloc_id: self.alloc_id,
            address,
            size: self.size,
            align: self.align,
            alloc_ts_ns: self.alloc_ts_ns,
            end,
            alloc_thread_id: self.alloc_thread_id,
            type_id: self.type_id,
            var_id: self.var_id,
            realloc_from: self.realloc_from,
            realloc_to: NONE_U64,
            zeroed: self.zeroed,
            stack_id: self.stack_id,
        }
    }
}

/// How many events ahead pairing asks the CPU to fetch the map entries of
/// an event's addresses; half as far ahead, the [`Live`] of the block a
/// deallocation or reallocation ends. Far enough for the fetch from memory to finish
/// before the event comes, near enough that the lines stay in cache.
const PREFETCH_AHEAD: usize = 16;

/// How an allocation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// By a reallocation that started allocation `to`; the chain goes on.
    Reallocated { to: u64 },
    /// By a deallocation, or by an allocation at its address (a missing
    /// deallocation): the chain ends.
    Freed,
    /// Not at all: leaked.
    Leaked,
}

/// Pairing's state between chunks of events.
#[derive(Debug, Default)]
pub struct Pairer {
    /// `event_id` of the next event to pair.
    next_event: u64,
    lives: Vec<Live>,
    free_lives: Vec<u32>,
    /// Ended untagged blocks of reallocation chains, waiting for a type
    /// (see [`Live::waiting`]); empty vectors are free.
    waiting: Vec<Vec<Allocation>>,
    free_waiting: Vec<u32>,
    /// The index of the [`Live`] at each address where a block is live.
    slots: AddressMap,
    /// The latest deallocations' addresses.
    freed: FreedAddresses,
    /// Live blocks by address, kept once a tag has missed a block start
    /// (interior pointers): the live block with the highest start at or
    /// below an address is the only one that can contain it.
    ordered: Option<BTreeMap<u64, u32>>,
    /// Deallocations (or reallocations) seen early, by event id, with the
    /// live allocation they end and its address (see [`Pairer::overlap`]).
    late_ends: FxHashMap<u64, (u32, u64)>,
    /// What did not match, counted.
    pub anomalies: Anomalies,
    /// Allocations and bytes allocated per thread id.
    pub per_thread: FxHashMap<u32, (u64, u64)>,
    /// Allocations made.
    pub allocations: u64,
    /// Whether the trace holds tag events.
    tags: bool,
}

/// How far apart in time two events of different threads may be recorded
/// out of causal order: the time-stamp counter is read without a fence, so
/// a read may run some hundred cycles ahead of the load that obtained a
/// block, and cores' counters may differ slightly.
pub const REORDER_WINDOW_NS: i64 = 2_000;
/// How many events ahead pairing looks for the late deallocation of a
/// block still live where a new one starts (see [`REORDER_WINDOW_NS`]); [`Pairer::pair`] keeps that many events back until the
/// next chunk.
pub const REORDER_LOOKAHEAD: usize = 256;

impl Pairer {
    /// A pairer at the start of a trace; `tags`: whether the trace holds
    /// tag events (without any, untagged reallocation chains need not wait
    /// for a type).
    pub fn new(tags: bool) -> Pairer {
        Pairer { tags, ..Pairer::default() }
    }

    /// Pairs the events of `events` (in time order, continuing those of
    /// earlier calls) and appends the rows made final to `out`. Unless
    /// `last`, the final [`REORDER_LOOKAHEAD`] events wait for the next
    /// call, to which they must be passed again at the front. Returns how
    /// many events were paired.
    pub fn pair(&mut self, events: &Events, last: bool, out: &mut Rows) -> usize {
        let n = if last { events.len() } else { events.len().saturating_sub(REORDER_LOOKAHEAD) };
        if out.events.is_empty() {
            out.events.first_event_id = self.next_event;
        }
        let row0 = out.events.len();
        out.events.extend(events, n, out.skip_events);
        for i in 0..n {
            self.prefetch(events, i);
            let id = self.next_event + i as u64;
            let r = row0 + i;
            match events.kind[i] {
                kind::ALLOCATION => {
                    let live = self.start(events, i, NONE_U64);
                    out.events.alloc_id[r] = id;
                    self.place(events, i, live, out);
                }
                kind::DEALLOCATION => {
                    let address = events.address[i];
                    let ended = match self.late_end(id) {
                        Some(live) => Some(live),
                        None => self.free_at(address, false),
                    };
                    match ended {
                        Some(live) => {
                            let l = &self.lives[live as usize];
                            out.events.alloc_id[r] = l.alloc_id;
                            out.events.size[r] = l.size;
                            self.end(live, address, events, i, Ending::Freed, out);
                        }
                        None => {
                            out.events.size[r] = NONE_U64;
                            let (kind, alloc_id) = match self.freed.last(address) {
                                Some(before) => {
                                    self.anomalies.double_deallocations += 1;
                                    (AnomalyKind::DoubleDeallocation, before)
                                }
                                _ => {
                                    self.anomalies.unknown_deallocations += 1;
                                    (AnomalyKind::UnknownDeallocation, NONE_U64)
                                }
                            };
                            out.anomalies.push(anomaly(events, i, id, kind, alloc_id));
                        }
                    }
                }
                kind::REALLOCATION => {
                    let (old_address, address) = (events.old_address[i], events.address[i]);
                    let old = match self.late_end(id) {
                        Some(live) => Some(live),
                        // In place, the new block takes the slot below.
                        None => self.free_at(old_address, old_address == address),
                    };
                    let from = match old {
                        Some(o) => self.lives[o as usize].alloc_id,
                        None => {
                            self.anomalies.unknown_reallocations += 1;
                            let a = AnomalyKind::UnknownReallocation;
                            out.anomalies.push(anomaly(events, i, id, a, NONE_U64));
                            NONE_U64
                        }
                    };
                    let live = self.start(events, i, from);
                    out.events.alloc_id[r] = id;
                    if let Some(old) = old {
                        let ending = Ending::Reallocated { to: id };
                        let before = self.end(old, old_address, events, i, ending, out);
                        let waiting = self.keep_waiting(before.waiting);
                        let new = &mut self.lives[live as usize];
                        new.type_id = before.type_id;
                        new.var_id = before.var_id;
                        new.waiting = waiting;
                    }
                    self.place(events, i, live, out);
                }
                _ => {
                    let address = events.address[i];
                    let (type_id, var_id) = events.tag[i];
                    let live = match self.slots.get(address).map(|l| l as u32) {
                        Some(live) => Some(live),
                        None => self.containing(address),
                    };
                    match live {
                        Some(live) => {
                            let l = &mut self.lives[live as usize];
                            l.type_id = type_id;
                            l.var_id = var_id;
                            out.events.alloc_id[r] = l.alloc_id;
                        }
                        None => {
                            self.anomalies.unmatched_tags += 1;
                            let a = AnomalyKind::UnmatchedTag;
                            out.anomalies.push(anomaly(events, i, id, a, NONE_U64));
                        }
                    }
                }
            }
        }
        self.next_event += n as u64;
        n
    }

    /// Ends the trace: every allocation still live is leaked, and its row
    /// goes to `out` (in the order they started).
    pub fn finish(&mut self, out: &mut Rows) {
        let mut live: Vec<(u32, u64)> = self
            .slots
            .iter()
            .map(|(address, l)| (l as u32, address))
            .chain(self.late_ends.values().copied())
            .collect();
        live.sort_unstable_by_key(|&(l, _)| (self.lives[l as usize].alloc_id, l));
        live.dedup_by_key(|&mut (l, _)| l);
        for (l, address) in live {
            self.finalize(l, address, None, Ending::Leaked, out);
        }
        self.slots.clear();
        self.late_ends.clear();
        self.ordered = None;
    }

    /// Asks the CPU to fetch what the events ahead of event `i` will look
    /// up (see [`PREFETCH_AHEAD`]).
    #[inline]
    fn prefetch(&self, events: &Events, i: usize) {
        let far = i + PREFETCH_AHEAD;
        if far < events.len() {
            self.slots.prefetch(events.address[far]);
            match events.kind[far] {
                kind::DEALLOCATION => self.freed.prefetch(events.address[far]),
                kind::REALLOCATION => {
                    self.slots.prefetch(events.old_address[far]);
                    self.freed.prefetch(events.old_address[far]);
                }
                _ => {}
            }
        }
        let near = i + PREFETCH_AHEAD / 2;
        if near < events.len() {
            let address = match events.kind[near] {
                kind::DEALLOCATION => events.address[near],
                kind::REALLOCATION => events.old_address[near],
                _ => return,
            };
            if let Some(live) = self.slots.get(address).map(|l| l as u32) {
                let line: *const Live = &self.lives[live as usize];
                address_map::prefetch(line.cast());
            }
        }
    }

    /// The live allocation that event `id` ends because it came late (see
    /// [`Pairer::overlap`]), if any.
    #[inline]
    fn late_end(&mut self, id: u64) -> Option<u32> {
        if self.late_ends.is_empty() {
            return None;
        }
        self.late_ends.remove(&id).map(|(live, _)| live)
    }

    /// Starts an allocation at event `i`.
    fn start(&mut self, events: &Events, i: usize, realloc_from: u64) -> u32 {
        let thread_id = events.thread_id[i];
        let size = events.size[i];
        let t = self.per_thread.entry(thread_id).or_default();
        t.0 += 1;
        t.1 = t.1.saturating_add(size);
        self.allocations += 1;
        let live = Live {
            alloc_id: self.next_event + i as u64,
            size,
            align: events.align[i],
            alloc_ts_ns: events.ts_ns[i],
            realloc_from,
            alloc_thread_id: thread_id,
            type_id: 0,
            var_id: 0,
            stack_id: events.stack_id[i],
            waiting: 0,
            zeroed: events.zeroed[i],
        };
        match self.free_lives.pop() {
            Some(l) => {
                self.lives[l as usize] = live;
                l
            }
            None => {
                self.lives.push(live);
                self.lives.len() as u32 - 1
            }
        }
    }

    /// Makes the allocation `live`, started by event `i`, the one live at
    /// its address.
    fn place(&mut self, events: &Events, i: usize, live: u32, out: &mut Rows) {
        let address = events.address[i];
        if let Some(ordered) = &mut self.ordered {
            ordered.insert(address, live);
        }
        if let Some(prev) = self.slots.insert(address, u64::from(live)) {
            self.overlap(events, i, prev as u32, out);
        }
    }

    /// Ends the block live at `address`, if any, and returns it: the
    /// address is recorded as freed, unless `reused` (a block starts there
    /// next).
    fn free_at(&mut self, address: u64, reused: bool) -> Option<u32> {
        let live = self.slots.remove(address)? as u32;
        if !reused {
            self.freed.record(address, self.lives[live as usize].alloc_id);
        }
        self.unorder(address);
        Some(live)
    }

    /// Forgets the live block at `address` in the ordered view.
    fn unorder(&mut self, address: u64) {
        if let Some(ordered) = &mut self.ordered {
            ordered.remove(&address);
        }
    }

    /// The live block that contains `address` (not at its start).
    fn containing(&mut self, address: u64) -> Option<u32> {
        let ordered = self
            .ordered
            .get_or_insert_with(|| self.slots.iter().map(|(a, l)| (a, l as u32)).collect());
        let (&start, &live) = ordered.range(..=address).next_back()?;
        (address < start.saturating_add(self.lives[live as usize].size)).then_some(live)
    }

    /// Event `i` starts a block at an address where allocation `prev` is
    /// still live. When another thread's deallocation (or reallocation) of
    /// that address follows within [`REORDER_WINDOW_NS`], the two were
    /// recorded out of order: that event ends `prev` when it comes.
    /// Otherwise a deallocation is missing from the trace; `prev` ends here
    /// and the anomaly is counted.
    fn overlap(&mut self, events: &Events, i: usize, prev: u32, out: &mut Rows) {
        let address = events.address[i];
        let limit = (i + 1 + REORDER_LOOKAHEAD).min(events.len());
        let late = (i + 1..limit)
            .take_while(|&j| events.ts_ns[j].saturating_sub(events.ts_ns[i]) <= REORDER_WINDOW_NS)
            .find(|&j| {
                events.thread_id[j] != events.thread_id[i]
                    && !self.late_ends.contains_key(&(self.next_event + j as u64))
                    && match events.kind[j] {
                        kind::DEALLOCATION => events.address[j] == address,
                        kind::REALLOCATION => events.old_address[j] == address,
                        _ => false,
                    }
            });
        match late {
            Some(j) => {
                self.late_ends.insert(self.next_event + j as u64, (prev, address));
            }
            None => {
                self.anomalies.overlapping_allocations += 1;
                let alloc_id = self.lives[prev as usize].alloc_id;
                let id = self.next_event + i as u64;
                let a = AnomalyKind::OverlappingAllocation;
                out.anomalies.push(anomaly(events, i, id, a, alloc_id));
                self.end(prev, address, events, i, Ending::Freed, out);
            }
        }
    }

    /// Ends allocation `live`, started at `address`, at event `i`.
    fn end(
        &mut self,
        live: u32,
        address: u64,
        events: &Events,
        i: usize,
        ending: Ending,
        out: &mut Rows,
    ) -> Inherit {
        let end = Some((events.ts_ns[i], events.thread_id[i]));
        self.finalize(live, address, end, ending, out)
    }

    /// Hands the ended (or leaked) allocation `live`, started at `address`,
    /// out, with the blocks of its chain that waited for its type, or
    /// keeps them waiting for the next block of the chain (only in a trace
    /// with tags: without any, no block can get a type later); frees its
    /// slot.
    fn finalize(
        &mut self,
        live: u32,
        address: u64,
        end: Option<(i64, u32)>,
        ending: Ending,
        out: &mut Rows,
    ) -> Inherit {
        let l = self.lives[live as usize];
        let mut row = l.row(address, end);
        let mut waiting = self.take_waiting(l.waiting);
        self.free_lives.push(live);
        let (type_id, var_id) = (row.type_id, row.var_id);
        if let Ending::Reallocated { to } = ending {
            row.realloc_to = to;
            if type_id == 0 && self.tags {
                if out.wants(&row) {
                    waiting.push(row);
                }
                return Inherit { type_id, var_id, waiting };
            }
        }
        if type_id != 0 {
            for w in &mut waiting {
                w.type_id = type_id;
                w.var_id = var_id;
            }
        }
        out.allocations.extend(waiting);
        if out.wants(&row) {
            out.allocations.push(row);
        }
        Inherit { type_id, var_id, waiting: Vec::new() }
    }

    /// Keeps the blocks of a chain that wait for a type; returns the
    /// [`Live::waiting`] that finds them.
    fn keep_waiting(&mut self, blocks: Vec<Allocation>) -> u32 {
        if blocks.is_empty() {
            return 0;
        }
        let i = match self.free_waiting.pop() {
            Some(i) => {
                self.waiting[i as usize] = blocks;
                i
            }
            None => {
                self.waiting.push(blocks);
                self.waiting.len() as u32 - 1
            }
        };
        i + 1
    }

    /// The blocks kept as `waiting` (see [`Pairer::keep_waiting`]).
    fn take_waiting(&mut self, waiting: u32) -> Vec<Allocation> {
        let Some(i) = waiting.checked_sub(1) else {
            return Vec::new();
        };
        self.free_waiting.push(i);
        std::mem::take(&mut self.waiting[i as usize])
    }
}

/// What the next block of a reallocation chain takes from the block it
/// continues: its type and variable string ids (the type 0 when it has
/// none), and the ended blocks of the chain that wait for a type.
struct Inherit {
    type_id: u32,
    var_id: u32,
    waiting: Vec<Allocation>,
}

/// The anomaly of `kind` at event `i` (`event_id` `id`).
fn anomaly(events: &Events, i: usize, id: u64, kind: AnomalyKind, alloc_id: u64) -> Anomaly {
    let address = match kind {
        AnomalyKind::UnknownReallocation => events.old_address[i],
        _ => events.address[i],
    };
    Anomaly {
        event: id,
        ts_ns: events.ts_ns[i],
        thread_id: events.thread_id[i],
        address,
        kind,
        alloc_id,
    }
}

/// Events that matched nothing during pairing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Deallocations of addresses with no live allocation whose last block
    /// there was already deallocated: double frees.
    pub double_deallocations: u64,
    /// Deallocations of addresses with no live allocation and no block
    /// deallocated there among the last [`FREED_ADDRESSES`] deallocations
    /// (usually blocks allocated before recording began).
    pub unknown_deallocations: u64,
    /// Reallocations of addresses with no live allocation.
    pub unknown_reallocations: u64,
    /// Allocations at an address that was still live: the earlier
    /// allocation is ended there (a missed deallocation).
    pub overlapping_allocations: u64,
    /// Tags whose address lies in no live allocation.
    pub unmatched_tags: u64,
}

/// What kind of anomaly an [`Anomaly`] is; its name is the `kind` of the
/// `anomalies` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// A deallocation of a block already deallocated.
    DoubleDeallocation,
    /// A deallocation of an address not allocated in the trace, or whose
    /// block was freed before the last [`FREED_ADDRESSES`] deallocations.
    UnknownDeallocation,
    /// A reallocation of an address with no live allocation.
    UnknownReallocation,
    /// An allocation at an address still live: a deallocation is missing.
    OverlappingAllocation,
    /// A tag whose address is in no live allocation.
    UnmatchedTag,
}

impl AnomalyKind {
    /// Every kind, in the order of its codes.
    pub const ALL: [AnomalyKind; 5] = [
        AnomalyKind::DoubleDeallocation,
        AnomalyKind::UnknownDeallocation,
        AnomalyKind::UnknownReallocation,
        AnomalyKind::OverlappingAllocation,
        AnomalyKind::UnmatchedTag,
    ];

    /// The name in the `anomalies` table.
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::DoubleDeallocation => "double_deallocation",
            AnomalyKind::UnknownDeallocation => "unknown_deallocation",
            AnomalyKind::UnknownReallocation => "unknown_reallocation",
            AnomalyKind::OverlappingAllocation => "overlapping_allocation",
            AnomalyKind::UnmatchedTag => "unmatched_tag",
        }
    }
}

/// One event pairing could not match as a well-behaved program would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// Index of the event (its `event_id`).
    pub event: u64,
    /// Its time, ns since origin.
    pub ts_ns: i64,
    /// Its thread.
    pub thread_id: u32,
    /// Its address (the old address of a reallocation).
    pub address: u64,
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The allocation involved: for a double deallocation the one already
    /// deallocated, for an overlapping allocation the one it ended;
    /// [`NONE_U64`] otherwise.
    pub alloc_id: u64,
}
