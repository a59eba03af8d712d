//! [`TrackingAllocator`]: the `GlobalAlloc` wrapper.

use std::alloc::{GlobalAlloc, Layout};

use memscope_schema::Record;

use crate::clock;
use crate::state::recording;
use crate::thread::on_hot_path;

/// A global allocator that forwards every call to `A` and records it.
///
/// Install it with `#[global_allocator]` and start recording with
/// [`crate::init`]. Until then, and after [`crate::finish`], it costs one
/// relaxed atomic load per call. It wraps any `GlobalAlloc`: `System`,
/// jemalloc, mimalloc or your own.
///
/// ```no_run
/// use memscope_recorder::TrackingAllocator;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);
/// ```
///
/// Every call goes to the inner allocator first. A successful allocation is
/// timestamped after the inner call returns, a deallocation before the
/// inner call runs: so when another thread reuses a freed address, the
/// deallocation is recorded earlier than the reuse (up to the time-stamp
/// counter's out-of-order execution, a few hundred nanoseconds at most,
/// which the analyzer's pairing absorbs). Failed allocations (null) are not
/// recorded.
#[derive(Debug, Default)]
pub struct TrackingAllocator<A> {
    inner: A,
}

impl<A> TrackingAllocator<A> {
    /// Wraps `inner`.
    pub const fn new(inner: A) -> TrackingAllocator<A> {
        TrackingAllocator { inner }
    }

    /// The wrapped allocator.
    pub const fn inner(&self) -> &A {
        &self.inner
    }
}

#[inline(always)]
fn on_alloc(p: *mut u8, layout: Layout, zeroed: bool) {
    if p.is_null() || !recording() {
        return;
    }
    on_hot_path(|t| {
        let (address, size, align) = (p as u64, layout.size() as u64, layout.align() as u64);
        t.count_alloc(size);
        if t.sampled(size) {
            let stack = t.stack_id();
            t.record(clock::now_q(), Some(stack), |q| Record::Alloc {
                q,
                address,
                size,
                align,
                zeroed,
            });
        }
    });
}

// SAFETY: every method forwards to `A` with the caller's arguments unchanged
// and returns `A`'s result unchanged, so `A`'s implementation of the
// `GlobalAlloc` contract is ours. Recording never unwinds, never calls back
// into `A` for the block being recorded and, on this thread, never records
// allocations made while it runs (the reentrancy guard in `thread.rs`).
unsafe impl<A: GlobalAlloc> GlobalAlloc for TrackingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        let p = unsafe { self.inner.alloc(layout) };
        on_alloc(p, layout, false);
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { self.inner.alloc_zeroed(layout) };
        on_alloc(p, layout, true);
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if recording() {
            on_hot_path(|t| {
                let address = ptr as u64;
                t.count_free(layout.size() as u64);
                t.record(clock::now_q(), None, |q| Record::Free { q, address });
            });
        }
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { self.inner.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract.
        let p = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !p.is_null() && recording() {
            on_hot_path(|t| {
                let (old_address, address) = (ptr as u64, p as u64);
                let (size, align) = (new_size as u64, layout.align() as u64);
                t.count_realloc(layout.size() as u64, size);
                if t.sampled(size) {
                    let stack = t.stack_id();
                    t.record(clock::now_q(), Some(stack), |q| Record::Realloc {
                        q,
                        old_address,
                        address,
                        size,
                        align,
                    });
                } else {
                    // The new block is not sampled; the old one may have
                    // been, so end it.
                    t.record(clock::now_q(), None, |q| Record::Free { q, address: old_address });
                }
            });
        }
        p
    }
}
