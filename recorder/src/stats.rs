//! Live counters for [`crate::stats`], kept without a cache line shared
//! between threads on the hot path.
//!
//! Each thread owns a slot of counters that only it writes (plain loads and
//! stores); `stats()` sums the slots. A thread that exits adds its slot to
//! the retired totals and frees it. Threads beyond [`SLOTS`] share one
//! overflow slot updated with atomic additions.
//!
//! The peak needs the sum over all threads at every moment, which per-thread
//! counters cannot give. Each thread therefore publishes its change in live
//! bytes to a global counter once it exceeds [`PUBLISH_BYTES`] in either
//! direction, and the peak is taken over those published sums. The peak can
//! thus read low by at most `PUBLISH_BYTES` per thread running at the time;
//! it is exact for a single thread up to that bound. The analyzer computes the
//! exact peak from the trace.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Live-byte change a thread accumulates before publishing it (16 KiB).
pub(crate) const PUBLISH_BYTES: i64 = 16 << 10;
/// Threads that get a private slot at the same time.
pub(crate) const SLOTS: usize = 512;

/// Counters of one thread, on their own cache lines.
#[repr(align(128))]
pub(crate) struct Slot {
    in_use: AtomicBool,
    pub(crate) allocations: AtomicU64,
    pub(crate) deallocations: AtomicU64,
    pub(crate) reallocations: AtomicU64,
    pub(crate) allocated_bytes: AtomicU64,
    pub(crate) freed_bytes: AtomicU64,
    pub(crate) tags: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// The owner's change of live bytes not yet published (see module docs).
    pub(crate) unpublished: AtomicI64,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            in_use: AtomicBool::new(false),
            allocations: AtomicU64::new(0),
            deallocations: AtomicU64::new(0),
            reallocations: AtomicU64::new(0),
            allocated_bytes: AtomicU64::new(0),
            freed_bytes: AtomicU64::new(0),
            tags: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            unpublished: AtomicI64::new(0),
        }
    }

    fn counters(&self) -> [&AtomicU64; 7] {
        [
            &self.allocations,
            &self.deallocations,
            &self.reallocations,
            &self.allocated_bytes,
            &self.freed_bytes,
            &self.tags,
            &self.dropped,
        ]
    }
}

static SLOT_TABLE: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
/// Shared slot for threads beyond [`SLOTS`] and for threads after their exit
/// notification (their later events come from thread-local destructors).
pub(crate) static OVERFLOW: Slot = Slot::new();
/// Sums of the slots of exited threads.
static RETIRED: Slot = Slot::new();

/// Published live bytes and the highest value they reached.
static ACTIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static PEAK_BYTES: AtomicI64 = AtomicI64::new(0);

/// Adds `v` to a counter of a slot. Private slots have one writer, so a
/// load and a store suffice; the shared slot needs an atomic addition.
#[inline(always)]
pub(crate) fn bump(counter: &AtomicU64, v: u64, shared: bool) {
    if shared {
        counter.fetch_add(v, Ordering::Relaxed);
    } else {
        counter.store(counter.load(Ordering::Relaxed).wrapping_add(v), Ordering::Relaxed);
    }
}

/// Claims a private slot; `None` when all are taken.
pub(crate) fn claim_slot() -> Option<&'static Slot> {
    SLOT_TABLE
        .iter()
        .find(|s| !s.in_use.load(Ordering::Relaxed) && !s.in_use.swap(true, Ordering::Acquire))
}

/// Folds a private slot into the retired totals and frees it.
pub(crate) fn retire_slot(slot: &'static Slot) {
    for (from, to) in slot.counters().into_iter().zip(RETIRED.counters()) {
        to.fetch_add(from.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }
    slot.in_use.store(false, Ordering::Release);
}

/// Publishes a thread's accumulated change of live bytes. Live bytes never
/// go below zero: a deficit can only come from deallocating blocks that
/// were allocated before `init`, which are not live in the trace's sense.
#[inline]
pub(crate) fn publish_active(delta: i64) {
    let clamp = |a: i64| Some(a.saturating_add(delta).max(0));
    let before =
        ACTIVE_BYTES.fetch_update(Ordering::Relaxed, Ordering::Relaxed, clamp).unwrap_or(0);
    if delta > 0 {
        PEAK_BYTES.fetch_max(before.saturating_add(delta), Ordering::Relaxed);
    }
}

/// Live bytes now: the published sum plus every thread's unpublished
/// change, never below zero.
pub(crate) fn active_bytes() -> u64 {
    let unpublished: i64 = SLOT_TABLE
        .iter()
        .filter(|s| s.in_use.load(Ordering::Relaxed))
        .map(|s| s.unpublished.load(Ordering::Relaxed))
        .sum();
    (ACTIVE_BYTES.load(Ordering::Relaxed) + unpublished).max(0) as u64
}

/// Sums over every slot, in the order of [`Slot::counters`].
pub(crate) fn sums() -> [u64; 7] {
    let mut total = [0u64; 7];
    let slots = SLOT_TABLE.iter().chain([&OVERFLOW, &RETIRED]);
    for slot in slots {
        for (t, c) in total.iter_mut().zip(slot.counters()) {
            *t = t.wrapping_add(c.load(Ordering::Relaxed));
        }
    }
    total
}

/// The peak of live bytes, counting `active` (the value a caller just
/// read) so that the peak never reads below a live value once seen.
pub(crate) fn peak_with(active: u64) -> u64 {
    let active = active.min(i64::MAX as u64) as i64;
    PEAK_BYTES.fetch_max(active, Ordering::Relaxed).max(active) as u64
}
