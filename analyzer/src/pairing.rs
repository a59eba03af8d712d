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

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::decode::kind;
use crate::model::Events;

/// Marks "no value" in the sentinel-coded `u64` columns below.
pub const NONE_U64: u64 = u64::MAX;
/// Marks "no row" in row links.
const NO_ROW: u32 = u32::MAX;

/// Allocations as columns of equal length, in the order they started.
/// Absent values: [`NONE_U64`] in id columns, 0 in thread and string ids
/// (which start at 1), and `freed` false for the end columns.
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
    /// Whether the allocation ended (by a deallocation or reallocation).
    pub freed: Vec<bool>,
    /// End time, ns since origin; meaningful where `freed`.
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
    /// Trace-wide stack id (0: none).
    pub stack_id: Vec<u32>,
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
        self.freed.push(false);
        self.free_ts_ns.push(0);
        self.alloc_thread_id.push(events.thread_id[i]);
        self.free_thread_id.push(0);
        self.type_id.push(0);
        self.var_id.push(0);
        self.realloc_from.push(realloc_from);
        self.realloc_to.push(NONE_U64);
        self.zeroed.push(events.zeroed[i]);
        self.stack_id.push(events.stack_id.get(i).copied().unwrap_or(0));
        row as u32
    }

    fn end(&mut self, row: usize, events: &Events, i: usize) {
        self.freed[row] = true;
        self.free_ts_ns[row] = events.ts_ns[i];
        self.free_thread_id[row] = events.thread_id[i];
    }
}

/// Events that matched nothing during pairing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies {
    /// Deallocations of addresses with no live allocation whose last block
    /// there was already deallocated: double frees.
    pub double_deallocations: u64,
    /// Deallocations of addresses with no live allocation and no earlier
    /// deallocated block (usually blocks allocated before recording began).
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
    /// A deallocation of an address never allocated in the trace.
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
    pub event: usize,
    /// What is wrong.
    pub kind: AnomalyKind,
    /// The allocation involved: for a double deallocation the one already
    /// deallocated, for an overlapping allocation the one it ended;
    /// [`NONE_U64`] otherwise.
    pub alloc_id: u64,
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
    /// What did not match, counted.
    pub anomalies: Anomalies,
    /// What did not match, event by event, in event order.
    pub anomaly_rows: Vec<Anomaly>,
}

/// A tag event and the allocation row it applies to.
struct TagHit {
    event: usize,
    row: u32,
    type_id: u32,
    var_id: u32,
}

/// Pairs the events (in time order).
pub fn pair(events: &Events) -> Paired {
    let n = events.len();
    let mut allocs = Allocations::default();
    let mut event_alloc_id = vec![NONE_U64; n];
    let mut event_size = events.size.clone();
    let mut anomalies = Anomalies::default();
    let mut live: FxHashMap<u64, u32> = FxHashMap::default();
    // Row links along reallocation chains, for tag inheritance.
    let mut from_row: Vec<u32> = Vec::new();
    let mut hits: Vec<TagHit> = Vec::new();
    let mut misses: Vec<(usize, u32, u32)> = Vec::new();
    // Deallocations (or reallocations) seen early, by event index, with the
    // allocation row they end (see `overlap`).
    let mut late_ends: FxHashMap<usize, u32> = FxHashMap::default();
    // The last allocation deallocated at each address not live again since,
    // to tell a double deallocation from one of an unknown address.
    let mut freed: FxHashMap<u64, u64> = FxHashMap::default();
    let mut rows: Vec<Anomaly> = Vec::new();
    let mut tags = events.tags.iter();

    for i in 0..n {
        match events.kind[i] {
            kind::ALLOCATION => {
                let row = allocs.start(events, i, NONE_U64);
                from_row.push(NO_ROW);
                event_alloc_id[i] = i as u64;
                freed.remove(&events.address[i]);
                if let Some(prev) = live.insert(events.address[i], row) {
                    overlap(
                        events,
                        i,
                        prev,
                        &mut allocs,
                        &mut late_ends,
                        &mut anomalies,
                        &mut rows,
                    );
                }
            }
            kind::DEALLOCATION => {
                let ended = match late_ends.remove(&i) {
                    Some(row) => Some(row),
                    None => live.remove(&events.address[i]),
                };
                match ended {
                    Some(row) => {
                        allocs.end(row as usize, events, i);
                        event_alloc_id[i] = allocs.alloc_id[row as usize];
                        event_size[i] = allocs.size[row as usize];
                        freed.insert(events.address[i], allocs.alloc_id[row as usize]);
                    }
                    None => match freed.get(&events.address[i]) {
                        Some(&before) => {
                            anomalies.double_deallocations += 1;
                            rows.push(Anomaly {
                                event: i,
                                kind: AnomalyKind::DoubleDeallocation,
                                alloc_id: before,
                            });
                        }
                        None => {
                            anomalies.unknown_deallocations += 1;
                            rows.push(Anomaly {
                                event: i,
                                kind: AnomalyKind::UnknownDeallocation,
                                alloc_id: NONE_U64,
                            });
                        }
                    },
                }
            }
            kind::REALLOCATION => {
                let old = match late_ends.remove(&i) {
                    Some(row) => Some(row),
                    None => live.remove(&events.old_address[i]),
                };
                if old.is_none() {
                    anomalies.unknown_reallocations += 1;
                    rows.push(Anomaly {
                        event: i,
                        kind: AnomalyKind::UnknownReallocation,
                        alloc_id: NONE_U64,
                    });
                }
                let from = old.map_or(NONE_U64, |o| allocs.alloc_id[o as usize]);
                let row = allocs.start(events, i, from);
                from_row.push(old.unwrap_or(NO_ROW));
                if let Some(old) = old.map(|o| o as usize) {
                    allocs.end(old, events, i);
                    allocs.realloc_to[old] = i as u64;
                }
                event_alloc_id[i] = i as u64;
                freed.remove(&events.address[i]);
                if events.old_address[i] != events.address[i]
                    && let Some(old) = old
                {
                    // The old block's address is free now.
                    freed.insert(events.old_address[i], allocs.alloc_id[old as usize]);
                }
                if let Some(prev) = live.insert(events.address[i], row) {
                    overlap(
                        events,
                        i,
                        prev,
                        &mut allocs,
                        &mut late_ends,
                        &mut anomalies,
                        &mut rows,
                    );
                }
            }
            _ => {
                let &(_, type_id, var_id) =
                    tags.next().expect("every tag event has its string ids");
                match live.get(&events.address[i]) {
                    Some(&row) => hits.push(TagHit { event: i, row, type_id, var_id }),
                    None => misses.push((i, type_id, var_id)),
                }
            }
        }
    }
    if !misses.is_empty() {
        let resolved = resolve_interior_tags(events, &allocs, &misses);
        anomalies.unmatched_tags = (misses.len() - resolved.len()) as u64;
        let found: rustc_hash::FxHashSet<usize> = resolved.iter().map(|h| h.event).collect();
        rows.extend(misses.iter().filter(|m| !found.contains(&m.0)).map(|m| Anomaly {
            event: m.0,
            kind: AnomalyKind::UnmatchedTag,
            alloc_id: NONE_U64,
        }));
        rows.sort_unstable_by_key(|a| a.event);
        hits.extend(resolved);
        hits.sort_unstable_by_key(|h| h.event);
    }
    apply_tags(&mut allocs, &hits, &from_row, &mut event_alloc_id);
    Paired { allocations: allocs, event_alloc_id, event_size, anomalies, anomaly_rows: rows }
}

/// How far apart in time two events of different threads may be recorded
/// out of causal order: the time-stamp counter is read without a fence, so
/// a read may run some hundred cycles ahead of the load that obtained a
/// block, and cores' counters may differ slightly.
pub const REORDER_WINDOW_NS: i64 = 2_000;
/// How many events ahead [`overlap`] looks for the late deallocation.
const REORDER_LOOKAHEAD: usize = 256;

/// Event `i` starts a block at an address where allocation `prev` is still
/// live. When another thread's deallocation (or reallocation) of that
/// address follows within [`REORDER_WINDOW_NS`], the two were recorded out
/// of order: that event ends `prev` when it comes. Otherwise a deallocation
/// is missing from the trace; `prev` ends here and the anomaly is counted.
fn overlap(
    events: &Events,
    i: usize,
    prev: u32,
    allocs: &mut Allocations,
    late_ends: &mut FxHashMap<usize, u32>,
    anomalies: &mut Anomalies,
    rows: &mut Vec<Anomaly>,
) {
    let address = events.address[i];
    let limit = (i + 1 + REORDER_LOOKAHEAD).min(events.len());
    let late = (i + 1..limit)
        .take_while(|&j| events.ts_ns[j].saturating_sub(events.ts_ns[i]) <= REORDER_WINDOW_NS)
        .find(|&j| {
            events.thread_id[j] != events.thread_id[i]
                && !late_ends.contains_key(&j)
                && match events.kind[j] {
                    kind::DEALLOCATION => events.address[j] == address,
                    kind::REALLOCATION => events.old_address[j] == address,
                    _ => false,
                }
        });
    match late {
        Some(j) => {
            late_ends.insert(j, prev);
        }
        None => {
            anomalies.overlapping_allocations += 1;
            rows.push(Anomaly {
                event: i,
                kind: AnomalyKind::OverlappingAllocation,
                alloc_id: allocs.alloc_id[prev as usize],
            });
            allocs.end(prev as usize, events, i);
        }
    }
}

/// Applies tags in time order (the last tag of an allocation wins), then
/// spreads them along reallocation chains: a chain is one value moving
/// between blocks, so each untagged block of a chain takes the tag of the
/// nearest tagged block before it, or else after it.
fn apply_tags(
    allocs: &mut Allocations,
    hits: &[TagHit],
    from_row: &[u32],
    event_alloc_id: &mut [u64],
) {
    let mut own = vec![false; allocs.len()];
    for h in hits {
        let row = h.row as usize;
        allocs.type_id[row] = h.type_id;
        allocs.var_id[row] = h.var_id;
        own[row] = true;
        event_alloc_id[h.event] = allocs.alloc_id[row];
    }
    // Forward: rows are in start order, so a predecessor is final first.
    for row in 0..allocs.len() {
        let from = from_row[row];
        if !own[row] && from != NO_ROW {
            allocs.type_id[row] = allocs.type_id[from as usize];
            allocs.var_id[row] = allocs.var_id[from as usize];
        }
    }
    // Backward: blocks of a chain before its first tag.
    for row in (0..allocs.len()).rev() {
        let from = from_row[row];
        if from != NO_ROW && allocs.type_id[from as usize] == 0 && allocs.type_id[row] != 0 {
            allocs.type_id[from as usize] = allocs.type_id[row];
            allocs.var_id[from as usize] = allocs.var_id[row];
        }
    }
}

/// Tags whose address is not the start of a live block: replays the events
/// up to the last such tag with the live blocks ordered by address, and
/// finds the block that contains each tagged address at the tag's own
/// position in time. Live blocks never overlap, so the live block with the
/// highest start at or below the address is the only candidate.
fn resolve_interior_tags(
    events: &Events,
    allocs: &Allocations,
    misses: &[(usize, u32, u32)],
) -> Vec<TagHit> {
    let mut live: BTreeMap<u64, u32> = BTreeMap::new();
    let mut next_row = 0u32;
    let mut out = Vec::new();
    let mut misses = misses.iter().peekable();
    let last = misses.clone().last().map_or(0, |m| m.0);
    for i in 0..=last {
        match events.kind[i] {
            kind::ALLOCATION => {
                live.insert(events.address[i], next_row);
                next_row += 1;
            }
            kind::DEALLOCATION => {
                live.remove(&events.address[i]);
            }
            kind::REALLOCATION => {
                live.remove(&events.old_address[i]);
                live.insert(events.address[i], next_row);
                next_row += 1;
            }
            _ => {
                let Some(&&(event, type_id, var_id)) = misses.peek().filter(|m| m.0 == i) else {
                    continue;
                };
                misses.next();
                let address = events.address[i];
                if let Some((&start, &row)) = live.range(..=address).next_back()
                    && address < start.saturating_add(allocs.size[row as usize])
                {
                    out.push(TagHit { event, row, type_id, var_id });
                }
            }
        }
    }
    out
}
