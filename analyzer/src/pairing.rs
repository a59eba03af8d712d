//! Pairing: turns the time-ordered events into allocations, each from the
//! event that started it to the one that ended it.
//!
//! * An allocation starts an allocation at its address.
//! * A deallocation ends the allocation live at its address.
//! * A reallocation ends the allocation live at its old address and starts
//!   one at its new address, linked by `realloc_from` / `realloc_to`.
//! * A tag names the type of the allocation live at its address, or of the
//!   live allocation whose block contains it (interior pointers such as
//!   `Rc::as_ptr`). The last tag of an allocation wins, and an allocation
//!   started by a reallocation inherits the tag of the one it continues.
//!
//! Events that match nothing are kept as events and counted in
//! [`Anomalies`]: deallocations of blocks allocated before recording began
//! are the usual case.

use rustc_hash::FxHashMap;

use crate::decode::kind;
use crate::model::Events;

/// Marks "no value" in the sentinel-coded columns below.
pub const NONE_U64: u64 = u64::MAX;
/// Marks "no value" in `free_ts_ns`.
pub const NONE_I64: i64 = i64::MIN;

/// Allocations as columns of equal length, in the order they started.
/// Absent values use the sentinels [`NONE_U64`], [`NONE_I64`] and 0 (thread
/// and string ids start at 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allocations {
    /// Event index of the starting event.
    pub alloc_id: Vec<u64>,
    /// Start address.
    pub address: Vec<u64>,
    /// Size in bytes.
    pub size: Vec<u64>,
    /// Alignment in bytes.
    pub align: Vec<u64>,
    /// Start time, ns since origin.
    pub alloc_ts_ns: Vec<i64>,
    /// End time, or [`NONE_I64`] when leaked.
    pub free_ts_ns: Vec<i64>,
    /// Allocating thread.
    pub alloc_thread_id: Vec<u32>,
    /// Ending thread, or 0 when leaked.
    pub free_thread_id: Vec<u32>,
    /// Type name string id, or 0.
    pub type_id: Vec<u32>,
    /// Variable name string id, or 0.
    pub var_id: Vec<u32>,
    /// `alloc_id` this one continues, or [`NONE_U64`].
    pub realloc_from: Vec<u64>,
    /// `alloc_id` that continues this one, or [`NONE_U64`].
    pub realloc_to: Vec<u64>,
    /// Requested zero-filled.
    pub zeroed: Vec<bool>,
}

impl Allocations {
    /// Number of allocations.
    pub fn len(&self) -> usize {
        self.alloc_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.alloc_id.is_empty()
    }

    fn start(&mut self, events: &Events, i: usize, realloc_from: u64) -> u32 {
        let row = self.alloc_id.len();
        self.alloc_id.push(i as u64);
        self.address.push(events.address[i]);
        self.size.push(events.size[i]);
        self.align.push(events.align[i]);
        self.alloc_ts_ns.push(events.ts_ns[i]);
        self.free_ts_ns.push(NONE_I64);
        self.alloc_thread_id.push(events.thread_id[i]);
        self.free_thread_id.push(0);
        self.type_id.push(0);
        self.var_id.push(0);
        self.realloc_from.push(realloc_from);
        self.realloc_to.push(NONE_U64);
        self.zeroed.push(events.zeroed[i]);
        row as u32
    }

    fn end(&mut self, row: usize, events: &Events, i: usize) {
        self.free_ts_ns[row] = events.ts_ns[i];
        self.free_thread_id[row] = events.thread_id[i];
    }

    /// Whether allocation `row` was live at time `ts` (ns).
    fn live_at(&self, row: usize, ts: i64) -> bool {
        self.alloc_ts_ns[row] <= ts
            && (self.free_ts_ns[row] == NONE_I64 || self.free_ts_ns[row] > ts)
    }
}

/// Events that matched nothing during pairing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Deallocations of addresses with no live allocation (usually blocks
    /// allocated before recording began).
    pub unknown_deallocations: u64,
    /// Reallocations of addresses with no live allocation.
    pub unknown_reallocations: u64,
    /// Allocations at an address that was still live: the earlier
    /// allocation is ended there (a missed deallocation).
    pub overlapping_allocations: u64,
    /// Tags whose address lies in no live allocation.
    pub unmatched_tags: u64,
}

/// The result of pairing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Paired {
    /// The allocations.
    pub allocations: Allocations,
    /// For each event, the `alloc_id` it starts, ends or tags, or
    /// [`NONE_U64`].
    pub event_alloc_id: Vec<u64>,
    /// For each event, the size in bytes of the block a deallocation freed
    /// (0 when unknown); for other kinds the event's own size.
    pub event_size: Vec<u64>,
    /// What did not match.
    pub anomalies: Anomalies,
}

/// Pairs the events (in time order).
pub fn pair(events: &Events) -> Paired {
    let n = events.len();
    let mut allocs = Allocations::default();
    let mut event_alloc_id = vec![NONE_U64; n];
    let mut event_size = events.size.clone();
    let mut anomalies = Anomalies::default();
    let mut live: FxHashMap<u64, u32> = FxHashMap::default();
    live.reserve(1024);
    let mut pending_tags: Vec<(usize, u32, u32)> = Vec::new();
    let mut tags = events.tags.iter().peekable();

    for i in 0..n {
        match events.kind[i] {
            kind::ALLOCATION => {
                let row = allocs.start(events, i, NONE_U64);
                event_alloc_id[i] = i as u64;
                if let Some(prev) = live.insert(events.address[i], row) {
                    anomalies.overlapping_allocations += 1;
                    allocs.end(prev as usize, events, i);
                }
            }
            kind::DEALLOCATION => match live.remove(&events.address[i]) {
                Some(row) => {
                    allocs.end(row as usize, events, i);
                    event_alloc_id[i] = allocs.alloc_id[row as usize];
                    event_size[i] = allocs.size[row as usize];
                }
                None => anomalies.unknown_deallocations += 1,
            },
            kind::REALLOCATION => {
                let old = live.remove(&events.old_address[i]);
                if old.is_none() {
                    anomalies.unknown_reallocations += 1;
                }
                let from = old.map_or(NONE_U64, |o| allocs.alloc_id[o as usize]);
                let row = allocs.start(events, i, from) as usize;
                if let Some(old) = old.map(|o| o as usize) {
                    allocs.end(old, events, i);
                    allocs.realloc_to[old] = i as u64;
                    // The block moved or grew: it holds the same value, so
                    // it keeps its tag.
                    allocs.type_id[row] = allocs.type_id[old];
                    allocs.var_id[row] = allocs.var_id[old];
                }
                event_alloc_id[i] = i as u64;
                if let Some(prev) = live.insert(events.address[i], row as u32) {
                    anomalies.overlapping_allocations += 1;
                    allocs.end(prev as usize, events, i);
                }
            }
            _ => {
                let &&(_, type_id, var_id) = tags.peek().expect("every tag event has its ids");
                tags.next();
                match live.get(&events.address[i]) {
                    Some(&row) => {
                        allocs.type_id[row as usize] = type_id;
                        allocs.var_id[row as usize] = var_id;
                        event_alloc_id[i] = allocs.alloc_id[row as usize];
                    }
                    None => pending_tags.push((i, type_id, var_id)),
                }
            }
        }
    }
    if !pending_tags.is_empty() {
        resolve_interior_tags(
            events,
            &mut allocs,
            &mut event_alloc_id,
            &pending_tags,
            &mut anomalies,
        );
    }
    Paired { allocations: allocs, event_alloc_id, event_size, anomalies }
}

/// Tags whose address is not the start of a live block: find the live
/// block that contains the address.
///
/// Live blocks never overlap, so among the allocations live at the tag's
/// time, the one with the highest start address at or below the tagged
/// address is the only candidate.
fn resolve_interior_tags(
    events: &Events,
    allocs: &mut Allocations,
    event_alloc_id: &mut [u64],
    pending: &[(usize, u32, u32)],
    anomalies: &mut Anomalies,
) {
    let mut by_address: Vec<u32> = (0..allocs.len() as u32).collect();
    by_address
        .sort_unstable_by_key(|&r| (allocs.address[r as usize], allocs.alloc_ts_ns[r as usize]));
    for &(i, type_id, var_id) in pending {
        let (addr, ts) = (events.address[i], events.ts_ns[i]);
        let upper = by_address.partition_point(|&r| allocs.address[r as usize] <= addr);
        let found =
            by_address[..upper].iter().rev().map(|&r| r as usize).find(|&r| allocs.live_at(r, ts));
        match found {
            Some(r) if addr < allocs.address[r].saturating_add(allocs.size[r]) => {
                allocs.type_id[r] = type_id;
                allocs.var_id[r] = var_id;
                event_alloc_id[i] = allocs.alloc_id[r];
            }
            _ => anomalies.unmatched_tags += 1,
        }
    }
}
