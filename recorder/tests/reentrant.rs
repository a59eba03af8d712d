//! A wrapped allocator that itself allocates through the global allocator
//! (as allocators with heap-allocated bookkeeping do) re-enters the
//! recorder: nothing deadlocks and every allocation is recorded once.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use memscope_recorder::TrackingAllocator;
use memscope_schema::{Record, Trace};

/// Allocates a 32-byte bookkeeping `Vec` through the global allocator
/// whenever it is asked for a block of `TRIGGER` bytes.
struct Reentrant;

const TRIGGER: usize = 7777;

// SAFETY: every call is forwarded to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Reentrant {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == TRIGGER {
            drop(black_box(Vec::<u64>::with_capacity(4)));
        }
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: TrackingAllocator<Reentrant> = TrackingAllocator::new(Reentrant);

fn main() {
    if support::child_scenario().is_some() {
        memscope_recorder::init();
        for _ in 0..1000 {
            drop(black_box(vec![0u8; TRIGGER]));
        }
        return;
    }
    support::run_checks(vec![(
        "reentrant_inner_allocator_is_recorded",
        reentrant_inner_allocator_is_recorded,
    )]);
}

fn reentrant_inner_allocator_is_recorded() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("reentrant", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    let records: Vec<&Record> = trace.blocks.iter().flat_map(|b| &b.records).collect();
    let outer = records
        .iter()
        .filter(|r| matches!(r, Record::Alloc { size, .. } if *size == TRIGGER as u64))
        .count();
    let inner = records.iter().filter(|r| matches!(r, Record::Alloc { size: 32, .. })).count();
    assert_eq!(outer, 1000);
    assert!(inner >= 1000, "the inner allocator's own allocations are recorded too: {inner}");
}
