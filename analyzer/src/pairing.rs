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
//! which wait for a tag), the addresses of the deallocations of the last
//! [`FREED_ADDRESSES`] events, and a window of [`REORDER_LOOKAHEAD`]
//! events.
//!
//! A trace without tags can be paired in several partitions at once, each
//! owning the addresses whose hash picks it: every event but a
//! reallocation concerns one address, and a reallocation between two
//! partitions is paired half in each (see [`Pairer::pair`]). The rows come
//! out as from one partition, so the tables do not depend on how many.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
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
    /// with `skip`, nothing.
    fn extend(&mut self, events: &Events, n: usize, skip: bool) {
        if skip {
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
    /// Whether the rows of `events` are not wanted: `events` then stays
    /// empty.
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
    /// 1 + the index in [`Partition::waiting`] of the ended, untagged blocks
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
/// deallocation or reallocation ends and the slot of the ring of
/// [`FreedAddresses`] it will compare the address with. Far enough for the
/// fetch from memory to finish before the event comes, near enough that
/// the lines stay in cache.
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

/// Pairs a trace's events chunk by chunk, on as many threads as it has
/// partitions (see [`Pairer::partitioned`]).
///
/// Each partition pairs the events at the addresses it owns, with state
/// of its own, and the rows of all are put back in the order one
/// partition would have made them: the tables do not depend on the number
/// of partitions. Its counts (`anomalies`, `per_thread`, `allocations`)
/// are summed over the partitions by [`Pairer::finish`], and zero before.
#[derive(Debug)]
pub struct Pairer {
    parts: Vec<Partition>,
    /// For each partition, the events of the chunk it pairs, by offset:
    /// those at its addresses (scratch of [`Pairer::pair`]).
    mine: Vec<Vec<u32>>,
    /// The `alloc_id` each reallocation of the chunk moved from, by event
    /// offset in the chunk, for those whose old and new addresses have
    /// different owners (scratch of [`Pairer::pair`]).
    moved_from: Vec<u64>,
    /// What did not match, counted (once [`Pairer::finish`]ed).
    pub anomalies: Anomalies,
    /// Allocations and bytes allocated per thread id (once finished).
    pub per_thread: FxHashMap<u32, (u64, u64)>,
    /// Allocations made (once finished).
    pub allocations: u64,
}

/// Most partitions a pairer splits into.
pub const MAX_PARTITIONS: usize = 16;

impl Pairer {
    /// A pairer of one partition at the start of a trace; `tags`: whether
    /// the trace holds tag events (without any, untagged reallocation
    /// chains need not wait for a type).
    pub fn new(tags: bool) -> Pairer {
        Pairer::partitioned(tags, 1)
    }

    /// A pairer of `partitions` partitions (1 to [`MAX_PARTITIONS`]), by
    /// a hash of the address, that pair each chunk at once on the rayon
    /// pool. A trace with tags gets one: a tag may name a block by an
    /// address inside it, which another partition may own.
    pub fn partitioned(tags: bool, partitions: usize) -> Pairer {
        let count = if tags { 1 } else { partitions.clamp(1, MAX_PARTITIONS) as u32 };
        Pairer {
            parts: (0..count).map(|index| Partition::new(tags, Owner { index, count })).collect(),
            mine: vec![Vec::new(); count as usize],
            moved_from: Vec::new(),
            anomalies: Anomalies::default(),
            per_thread: FxHashMap::default(),
            allocations: 0,
        }
    }

    /// How many partitions pair at once.
    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// Pairs the events of `events` (in time order, continuing those of
    /// earlier calls) and appends the rows made final to `out`. Unless
    /// `last`, the final [`REORDER_LOOKAHEAD`] events wait for the next
    /// call, to which they must be passed again at the front. Returns how
    /// many events were paired.
    ///
    /// With several partitions, each pairs the chunk's events at its
    /// addresses. A reallocation from one partition's address to
    /// another's is paired in both: the first ends the old block, the
    /// second starts the new one with a `realloc_from` that waits for the
    /// old block's `alloc_id`, filled in once both are done. Then their
    /// rows are merged by the event that made each.
    pub fn pair(&mut self, events: &Events, last: bool, out: &mut Rows) -> usize {
        let n = if last { events.len() } else { events.len().saturating_sub(REORDER_LOOKAHEAD) };
        let first = self.parts[0].next_event;
        if out.events.is_empty() {
            out.events.first_event_id = first;
        }
        let row0 = out.events.len();
        out.events.extend(events, n, out.skip_events);
        // Unwanted event rows are not made at all.
        let filled = match out.skip_events {
            true => Filled::new(&mut [], &mut []),
            false => Filled::new(&mut out.events.alloc_id[row0..], &mut out.events.size[row0..]),
        };
        let wanted = out.allocations_wanted;
        self.split(events, n);
        if let ([part], [mine]) = (&mut self.parts[..], &self.mine[..]) {
            // Straight into `out`, in order already.
            let mut made = Made::new(wanted, false);
            made.allocations = std::mem::take(&mut out.allocations);
            made.anomalies = std::mem::take(&mut out.anomalies);
            part.pair_events(events, n, mine, &filled, &mut made);
            out.allocations = made.allocations;
            out.anomalies = made.anomalies;
            return n;
        }
        let mut made: Vec<Made> = self
            .parts
            .par_iter_mut()
            .zip(&self.mine)
            .map(|(part, mine)| {
                let mut made = Made::new(wanted, true);
                part.pair_events(events, n, mine, &filled, &mut made);
                made
            })
            .collect();
        self.link_moves(first, n, &mut made);
        merge_made(made, out);
        n
    }

    /// Ends the trace: every allocation still live is leaked, and its row
    /// goes to `out` (in the order they started); the counts are summed.
    pub fn finish(&mut self, out: &mut Rows) {
        let wanted = out.allocations_wanted;
        let keyed = self.parts.len() > 1;
        let made: Vec<Made> = self
            .parts
            .iter_mut()
            .map(|part| {
                let mut made = Made::new(wanted, keyed);
                part.finish(&mut made);
                made
            })
            .collect();
        merge_made(made, out);
        for part in &mut self.parts {
            self.anomalies.add(&std::mem::take(&mut part.anomalies));
            for (thread_id, (count, bytes)) in part.per_thread.drain() {
                let t = self.per_thread.entry(thread_id).or_default();
                t.0 += count;
                t.1 = t.1.saturating_add(bytes);
            }
            self.allocations += std::mem::take(&mut part.allocations);
        }
    }

    /// Lists the events of `events[..n]` each partition pairs in
    /// [`Pairer::mine`]: those at its addresses, and a reallocation in
    /// both partitions of its old and new addresses.
    fn split(&mut self, events: &Events, n: usize) {
        for mine in &mut self.mine {
            mine.clear();
        }
        let n = u32::try_from(n).expect("a chunk of fewer than 2^32 events (it is in memory)");
        if let [mine] = &mut self.mine[..] {
            mine.extend(0..n);
            return;
        }
        let count = self.mine.len() as u32;
        for i in 0..n {
            let e = i as usize;
            let p = Owner::of(events.address[e], count) as usize;
            self.mine[p].push(i);
            if events.kind[e] == kind::REALLOCATION {
                let q = Owner::of(events.old_address[e], count) as usize;
                if q != p {
                    self.mine[q].push(i);
                }
            }
        }
    }

    /// Gives the blocks started this chunk by reallocations whose old
    /// block another partition ended (marked [`FROM_ELSEWHERE`]) the
    /// `alloc_id` of that block, in their rows and while live. The chunk's
    /// events start at `event_id` `first`; `n` were paired.
    fn link_moves(&mut self, first: u64, n: usize, made: &mut [Made]) {
        if made.iter().all(|m| m.moved.is_empty()) {
            return;
        }
        self.moved_from.clear();
        self.moved_from.resize(n, NONE_U64);
        for &(id, from) in made.iter().flat_map(|m| &m.moved) {
            self.moved_from[(id - first) as usize] = from;
        }
        let moved_from = &self.moved_from;
        let link = |from: &mut u64| {
            if *from != NONE_U64 && *from & FROM_ELSEWHERE != 0 {
                *from = moved_from[((*from & !FROM_ELSEWHERE) - first) as usize];
            }
        };
        for (part, made) in self.parts.iter_mut().zip(made) {
            for row in &mut made.allocations {
                link(&mut row.realloc_from);
            }
            // A block may have ended (and its place been taken) since.
            for &live in &made.pending {
                link(&mut part.lives[live as usize].realloc_from);
            }
        }
    }
}

/// Marks the `realloc_from` of a block started by a reallocation whose
/// old block another partition ends: `FROM_ELSEWHERE | event_id` of the
/// reallocation, until [`Pairer::pair`] links it (event ids stay below
/// 2^63).
const FROM_ELSEWHERE: u64 = 1 << 63;

/// Which addresses a partition of pairing owns: those whose hash picks
/// `index` of `count`.
#[derive(Clone, Copy, Debug)]
struct Owner {
    index: u32,
    count: u32,
}

impl Default for Owner {
    fn default() -> Self {
        Owner { index: 0, count: 1 }
    }
}

impl Owner {
    /// The index of the partition of `count` that owns `address`.
    #[inline]
    fn of(address: u64, count: u32) -> u32 {
        // The product's top bits depend on every bit of the address above
        // the 16-byte alignment; scaled to `count` without a division.
        let h = (address >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        ((h * u64::from(count)) >> 32) as u32
    }

    /// Whether `address` is this partition's.
    #[inline]
    fn owns(self, address: u64) -> bool {
        self.count == 1 || Owner::of(address, self.count) == self.index
    }
}

/// What one partition made of a chunk, to be merged with the others'.
#[derive(Debug)]
struct Made {
    /// Which allocation rows to make.
    wanted: Wanted,
    /// Whether to keep [`Made::order`] (only with several partitions).
    keyed: bool,
    /// Rows of ended (or leaked) allocations, in the order made.
    allocations: Vec<Allocation>,
    /// For each row of `allocations`, its place among every partition's:
    /// twice the `event_id` that ended it, plus 1 when it is the second
    /// block that event ends (an allocation at the live address of a
    /// missing deallocation, after the block a reallocation moved from);
    /// for leaked rows, the `alloc_id`.
    order: Vec<u64>,
    /// Anomalies, in event order.
    anomalies: Vec<Anomaly>,
    /// Reallocations whose old address it owns and new address it does
    /// not: `event_id` and the `alloc_id` of the block it ended there
    /// ([`NONE_U64`] when none was live).
    moved: Vec<(u64, u64)>,
    /// Its live blocks started this chunk with a `realloc_from` marked
    /// [`FROM_ELSEWHERE`].
    pending: Vec<u32>,
}

impl Made {
    fn new(wanted: Wanted, keyed: bool) -> Made {
        Made {
            wanted,
            keyed,
            allocations: Vec::new(),
            order: Vec::new(),
            anomalies: Vec::new(),
            moved: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Whether `row` is wanted in `allocations`.
    #[inline]
    fn wants(&self, row: &Allocation) -> bool {
        match self.wanted {
            Wanted::All => true,
            Wanted::Leaked => row.end.is_none(),
            Wanted::None => false,
        }
    }

    /// Hands out `row`, placed by `order` (see [`Made::order`]).
    #[inline]
    fn push(&mut self, row: Allocation, order: u64) {
        self.allocations.push(row);
        if self.keyed {
            self.order.push(order);
        }
    }
}

/// Appends the rows of every partition's `made` to `out`, in the order
/// one partition would have made them.
fn merge_made(made: Vec<Made>, out: &mut Rows) {
    let mut allocations = Vec::with_capacity(made.len());
    let mut anomalies = Vec::with_capacity(made.len());
    for m in made {
        allocations.push((m.order, m.allocations));
        // An event's unknown reallocation before its overlapping
        // allocation, as one partition makes them.
        let order = m
            .anomalies
            .iter()
            .map(|a| 2 * a.event + u64::from(a.kind == AnomalyKind::OverlappingAllocation))
            .collect();
        anomalies.push((order, m.anomalies));
    }
    merge_ordered(allocations, &mut out.allocations);
    merge_ordered(anomalies, &mut out.anomalies);
}

/// Appends the items of `runs`, each sorted by its order keys, to `out` in
/// the order of their keys.
fn merge_ordered<T>(runs: Vec<(Vec<u64>, Vec<T>)>, out: &mut Vec<T>) {
    if runs.len() == 1 {
        let (_, items) = runs.into_iter().next().expect("one run");
        if out.is_empty() {
            *out = items;
        } else {
            out.extend(items);
        }
        return;
    }
    // Which run each item comes from, in order, worked out from the keys
    // alone; then the items move once.
    let mut next = vec![0; runs.len()];
    let total = runs.iter().map(|(_, items)| items.len()).sum();
    let mut from = Vec::with_capacity(total);
    for _ in 0..total {
        let r = (0..runs.len())
            .filter(|&r| next[r] < runs[r].0.len())
            .min_by_key(|&r| runs[r].0[next[r]])
            .expect("an item is left");
        from.push(r);
        next[r] += 1;
    }
    let mut items: Vec<_> = runs.into_iter().map(|(_, items)| items.into_iter()).collect();
    out.extend(from.into_iter().map(|r| items[r].next().expect("counted")));
}

/// The `alloc_id` and `size` columns of a chunk's event rows, which the
/// partitions of pairing fill in at once, each the rows of the events at
/// its own addresses (so that no row is written by two); empty when the
/// rows are not wanted, and then nothing is written.
struct Filled<'a> {
    alloc_id: &'a [AtomicU64],
    size: &'a [AtomicU64],
}

impl<'a> Filled<'a> {
    fn new(alloc_id: &'a mut [u64], size: &'a mut [u64]) -> Filled<'a> {
        const _: () = assert!(std::mem::align_of::<AtomicU64>() == std::mem::align_of::<u64>());
        fn atomic(values: &mut [u64]) -> &[AtomicU64] {
            // SAFETY: `AtomicU64` has the size and bit validity of `u64`
            // and, as asserted above, its alignment; the exclusive borrow
            // of `values` lasts as long as the view, so nothing else
            // touches them meanwhile.
            unsafe { &*(values as *mut [u64] as *const [AtomicU64]) }
        }
        Filled { alloc_id: atomic(alloc_id), size: atomic(size) }
    }

    /// Sets the `alloc_id` of event `i` of the chunk.
    #[inline]
    fn set_alloc_id(&self, i: usize, alloc_id: u64) {
        if let Some(to) = self.alloc_id.get(i) {
            to.store(alloc_id, Ordering::Relaxed);
        }
    }

    /// Sets the `size` of event `i` of the chunk.
    #[inline]
    fn set_size(&self, i: usize, size: u64) {
        if let Some(to) = self.size.get(i) {
            to.store(size, Ordering::Relaxed);
        }
    }
}

/// One partition of pairing's state between chunks of events: the
/// allocations at the addresses it owns (see [`Owner`]).
#[derive(Debug, Default)]
struct Partition {
    /// Which addresses it pairs.
    owner: Owner,
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
    /// live allocation they end and its address (see [`Partition::overlap`]).
    late_ends: FxHashMap<u64, (u32, u64)>,
    /// What did not match, counted.
    anomalies: Anomalies,
    /// Allocations and bytes allocated per thread id.
    per_thread: FxHashMap<u32, (u64, u64)>,
    /// Allocations made.
    allocations: u64,
    /// Whether the trace holds tag events.
    tags: bool,
}

/// How far apart in time two events of different threads may be recorded
/// out of causal order: the time-stamp counter is read without a fence, so
/// a read may run some hundred cycles ahead of the load that obtained a
/// block, and cores' counters may differ slightly.
pub const REORDER_WINDOW_NS: i64 = 2_000;
/// How many events ahead pairing looks for the late deallocation of a
/// block still live where a new one starts (see [`REORDER_WINDOW_NS`]);
/// [`Pairer::pair`] keeps that many events back until the next chunk.
pub const REORDER_LOOKAHEAD: usize = 256;

impl Partition {
    /// A partition at the start of a trace, pairing the addresses of
    /// `owner`; `tags`: whether the trace holds tag events (without any,
    /// untagged reallocation chains need not wait for a type).
    fn new(tags: bool, owner: Owner) -> Partition {
        Partition { tags, owner, ..Partition::default() }
    }

    /// Pairs the events `mine` of the first `n` events of `events` (in
    /// time order, continuing those of earlier calls; the rest only looked
    /// at): those whose addresses it owns, in order. It fills in their
    /// `alloc_id` and `size` in `filled` and hands the rows made final to
    /// `out`. Of a reallocation whose old and new addresses have different
    /// owners, each pairs its own side: the old side's owner ends the old
    /// block and says which one it was in [`Made::moved`]; the new side's
    /// owner starts the new block with a `realloc_from` marked
    /// [`FROM_ELSEWHERE`], listed in [`Made::pending`], which
    /// [`Pairer::pair`] then resolves.
    fn pair_events(
        &mut self,
        events: &Events,
        n: usize,
        mine: &[u32],
        filled: &Filled<'_>,
        out: &mut Made,
    ) {
        let owner = self.owner;
        for (k, &i) in mine.iter().enumerate() {
            let i = i as usize;
            self.prefetch(events, mine, k);
            let id = self.next_event + i as u64;
            match events.kind[i] {
                kind::ALLOCATION => {
                    let live = self.start(events, i, NONE_U64);
                    filled.set_alloc_id(i, id);
                    self.place(events, i, live, out);
                }
                kind::DEALLOCATION => {
                    let address = events.address[i];
                    let ended = match self.late_end(id) {
                        Some(live) => Some(live),
                        None => self.free_at(address, false, id),
                    };
                    match ended {
                        Some(live) => {
                            let l = &self.lives[live as usize];
                            filled.set_alloc_id(i, l.alloc_id);
                            filled.set_size(i, l.size);
                            self.end(live, address, events, i, Ending::Freed, 0, out);
                        }
                        None => {
                            filled.set_size(i, NONE_U64);
                            let (kind, alloc_id) = match self.freed.last(address, id) {
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
                    let (old_side, new_side) = (owner.owns(old_address), owner.owns(address));
                    let mut old = None;
                    let mut from = NONE_U64;
                    if old_side {
                        old = match self.late_end(id) {
                            Some(live) => Some(live),
                            // In place, the new block takes the slot below.
                            None => self.free_at(old_address, old_address == address, id),
                        };
                        from = match old {
                            Some(o) => self.lives[o as usize].alloc_id,
                            None => {
                                self.anomalies.unknown_reallocations += 1;
                                let a = AnomalyKind::UnknownReallocation;
                                out.anomalies.push(anomaly(events, i, id, a, NONE_U64));
                                NONE_U64
                            }
                        };
                    }
                    if !new_side {
                        out.moved.push((id, from));
                        if let Some(old) = old {
                            let ending = Ending::Reallocated { to: id };
                            self.end(old, old_address, events, i, ending, 0, out);
                        }
                        continue;
                    }
                    let from = if old_side { from } else { FROM_ELSEWHERE | id };
                    let live = self.start(events, i, from);
                    if !old_side {
                        out.pending.push(live);
                    }
                    filled.set_alloc_id(i, id);
                    if let Some(old) = old {
                        let ending = Ending::Reallocated { to: id };
                        let before = self.end(old, old_address, events, i, ending, 0, out);
                        let waiting = self.keep_waiting(before.waiting);
                        let new = &mut self.lives[live as usize];
                        new.type_id = before.type_id;
                        new.var_id = before.var_id;
                        new.waiting = waiting;
                    }
                    self.place(events, i, live, out);
                }
                _ => {
                    // Tags come only to a pairer of one partition.
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
                            filled.set_alloc_id(i, l.alloc_id);
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
    }

    /// Ends the trace: every allocation still live is leaked, and its row
    /// goes to `out` (in the order they started).
    fn finish(&mut self, out: &mut Made) {
        let mut live: Vec<(u32, u64)> = self
            .slots
            .iter()
            .map(|(address, l)| (l as u32, address))
            .chain(self.late_ends.values().copied())
            .collect();
        live.sort_unstable_by_key(|&(l, _)| (self.lives[l as usize].alloc_id, l));
        live.dedup_by_key(|&mut (l, _)| l);
        for (l, address) in live {
            let order = self.lives[l as usize].alloc_id;
            self.finalize(l, address, None, Ending::Leaked, order, out);
        }
        self.slots.clear();
        self.late_ends.clear();
        self.ordered = None;
    }

    /// Asks the CPU to fetch what the events ahead of `mine[k]` (see
    /// [`Partition::pair_events`]) will look up (see [`PREFETCH_AHEAD`]).
    #[inline]
    fn prefetch(&self, events: &Events, mine: &[u32], k: usize) {
        let owner = self.owner;
        if let Some(&far) = mine.get(k + PREFETCH_AHEAD) {
            let far = far as usize;
            let address = events.address[far];
            if events.kind[far] != kind::REALLOCATION {
                self.slots.prefetch(address);
                if events.kind[far] == kind::DEALLOCATION {
                    self.freed.prefetch(address);
                }
            } else {
                let old_address = events.old_address[far];
                if owner.owns(address) {
                    self.slots.prefetch(address);
                }
                if owner.owns(old_address) {
                    self.slots.prefetch(old_address);
                    self.freed.prefetch(old_address);
                }
            }
        }
        if let Some(&near) = mine.get(k + PREFETCH_AHEAD / 2) {
            let near = near as usize;
            let address = match events.kind[near] {
                kind::DEALLOCATION => events.address[near],
                kind::REALLOCATION => events.old_address[near],
                _ => return,
            };
            if !owner.owns(address) {
                return;
            }
            if let Some(live) = self.slots.get(address).map(|l| l as u32) {
                let line: *const Live = &self.lives[live as usize];
                address_map::prefetch(line.cast());
            }
            self.freed.prefetch_ring(address);
        }
    }

    /// The live allocation that event `id` ends because it came late (see
    /// [`Partition::overlap`]), if any.
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
    fn place(&mut self, events: &Events, i: usize, live: u32, out: &mut Made) {
        let address = events.address[i];
        if let Some(ordered) = &mut self.ordered {
            ordered.insert(address, live);
        }
        if let Some(prev) = self.slots.insert(address, u64::from(live)) {
            self.overlap(events, i, prev as u32, out);
        }
    }

    /// Ends the block live at `address`, if any, at event `id`, and
    /// returns it: the address is recorded as freed, unless `reused` (a
    /// block starts there next).
    fn free_at(&mut self, address: u64, reused: bool, id: u64) -> Option<u32> {
        let live = self.slots.remove(address)? as u32;
        if !reused {
            self.freed.record(address, self.lives[live as usize].alloc_id, id);
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
    fn overlap(&mut self, events: &Events, i: usize, prev: u32, out: &mut Made) {
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
                // After the end of the block that a reallocation at the
                // same event moved away from (see `Made::order`).
                self.end(prev, address, events, i, Ending::Freed, 1, out);
            }
        }
    }

    /// Ends allocation `live`, started at `address`, at event `i`; `second`
    /// is 1 for the second block an event ends, else 0 (see
    /// [`Made::order`]).
    #[allow(clippy::too_many_arguments)]
    fn end(
        &mut self,
        live: u32,
        address: u64,
        events: &Events,
        i: usize,
        ending: Ending,
        second: u64,
        out: &mut Made,
    ) -> Inherit {
        let end = Some((events.ts_ns[i], events.thread_id[i]));
        let order = 2 * (self.next_event + i as u64) + second;
        self.finalize(live, address, end, ending, order, out)
    }

    /// Hands the ended (or leaked) allocation `live`, started at `address`,
    /// out, with the blocks of its chain that waited for its type, or
    /// keeps them waiting for the next block of the chain (only in a trace
    /// with tags: without any, no block can get a type later); frees its
    /// slot. `order` places its rows among those of other partitions (see
    /// [`Made::order`]).
    fn finalize(
        &mut self,
        live: u32,
        address: u64,
        end: Option<(i64, u32)>,
        ending: Ending,
        order: u64,
        out: &mut Made,
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
        for w in waiting {
            out.push(w, order);
        }
        if out.wants(&row) {
            out.push(row, order);
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

    /// The blocks kept as `waiting` (see [`Partition::keep_waiting`]).
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
    /// deallocated there in the last [`FREED_ADDRESSES`] events (usually
    /// blocks allocated before recording began).
    pub unknown_deallocations: u64,
    /// Reallocations of addresses with no live allocation.
    pub unknown_reallocations: u64,
    /// Allocations at an address that was still live: the earlier
    /// allocation is ended there (a missed deallocation).
    pub overlapping_allocations: u64,
    /// Tags whose address lies in no live allocation.
    pub unmatched_tags: u64,
}

impl Anomalies {
    /// Adds the counts of `other`.
    fn add(&mut self, other: &Anomalies) {
        self.double_deallocations += other.double_deallocations;
        self.unknown_deallocations += other.unknown_deallocations;
        self.unknown_reallocations += other.unknown_reallocations;
        self.overlapping_allocations += other.overlapping_allocations;
        self.unmatched_tags += other.unmatched_tags;
    }
}

/// What kind of anomaly an [`Anomaly`] is; its name is the `kind` of the
/// `anomalies` table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    /// A deallocation of a block already deallocated.
    DoubleDeallocation,
    /// A deallocation of an address not allocated in the trace, or whose
    /// block was freed [`FREED_ADDRESSES`] or more events before.
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Events of one thread each, from `(thread, kind, address, old
    /// address)`, a nanosecond apart; sizes of 16 bytes.
    fn events(items: &[(u32, u8, u64, u64)]) -> Events {
        let mut e = Events::default();
        for (i, &(thread, kind, address, old_address)) in items.iter().enumerate() {
            e.ts_ns.push(i as i64);
            e.thread_id.push(thread);
            e.kind.push(kind);
            e.address.push(address);
            e.size.push(if kind == kind::DEALLOCATION { 0 } else { 16 });
            e.align.push(if kind == kind::DEALLOCATION { 0 } else { 8 });
            e.old_address.push(old_address);
            e.zeroed.push(false);
            e.stack_id.push(0);
            e.tag.push((0, 0));
        }
        e
    }

    /// The rows of a whole trace, its anomalies, allocations, and
    /// allocations and bytes per thread (by thread id).
    type Paired = (Rows, Anomalies, u64, Vec<(u32, (u64, u64))>);

    /// Pairs `all` in chunks of `chunk` events (more than
    /// [`REORDER_LOOKAHEAD`]), as the second pass does, in `partitions`
    /// partitions; returns the rows and the counts.
    fn pair_all(all: &Events, chunk: usize, partitions: usize, rows: Rows) -> Paired {
        let mut pairer = Pairer::partitioned(false, partitions);
        let mut rows = rows;
        let mut start = 0;
        loop {
            let end = (start + chunk).min(all.len());
            let last = end == all.len();
            start += pairer.pair(&all.copy(start..end), last, &mut rows);
            if last {
                break;
            }
        }
        pairer.finish(&mut rows);
        let mut per_thread: Vec<_> = pairer.per_thread.into_iter().collect();
        per_thread.sort_unstable();
        (rows, pairer.anomalies, pairer.allocations, per_thread)
    }

    /// A deallocation counts as double for [`FREED_ADDRESSES`] - 1 events
    /// after the one before at its address, then as unknown, however
    /// many partitions share the deallocations between them.
    #[test]
    fn the_freed_window_counts_events_in_every_partitioning() {
        const A: u64 = 0xa000;
        let n = FREED_ADDRESSES;
        for (at, expected) in
            [(n, AnomalyKind::DoubleDeallocation), (n + 1, AnomalyKind::UnknownDeallocation)]
        {
            // The block at A is freed at event 1 and again at event `at`;
            // between, blocks at other addresses come and go.
            let mut items = vec![(1, kind::ALLOCATION, A, 0), (1, kind::DEALLOCATION, A, 0)];
            for k in 2..at {
                let filler = 0x100_0000 + 16 * (k as u64 / 2);
                let kind = if k % 2 == 0 { kind::ALLOCATION } else { kind::DEALLOCATION };
                items.push((2, kind, filler, 0));
            }
            items.push((1, kind::DEALLOCATION, A, 0));
            let all = events(&items);
            for partitions in [1, 3] {
                let (rows, ..) = pair_all(&all, 80_000, partitions, Rows::default());
                let last = rows.anomalies.last().expect("an anomaly");
                assert_eq!(
                    (last.event, last.kind),
                    (at as u64, expected),
                    "{partitions} partitions"
                );
                let alloc_id =
                    if expected == AnomalyKind::DoubleDeallocation { 0 } else { NONE_U64 };
                assert_eq!(last.alloc_id, alloc_id);
            }
        }
    }

    fn item() -> impl Strategy<Value = (u32, u8, u64, u64)> {
        // (thread, kind, address slot, old address slot), without tags.
        (1u32..4, 0u8..3, 0u64..32, 0u64..32)
            .prop_map(|(t, kind, a, old)| (t, kind, 0x1000 + 64 * a, 0x1000 + 64 * old))
    }

    proptest! {
        /// Every way of asking for rows (every allocation, the leaked
        /// ones, none; events or not) gives the same rows and counts in
        /// several partitions as in one, in chunks.
        #[test]
        fn partitions_pair_as_one(
            items in prop::collection::vec(item(), 0..2000),
            chunk in 300usize..900,
        ) {
            let all = events(&items);
            for wanted in [Wanted::All, Wanted::Leaked, Wanted::None] {
                for skip_events in [false, true] {
                    let rows = Rows { skip_events, allocations_wanted: wanted, ..Rows::default() };
                    let one = pair_all(&all, chunk, 1, rows.clone());
                    for partitions in [2, 3] {
                        let many = pair_all(&all, chunk, partitions, rows.clone());
                        prop_assert_eq!(&many, &one, "{:?}, skip {}, {} partitions", wanted, skip_events, partitions);
                    }
                }
            }
        }
    }
}
