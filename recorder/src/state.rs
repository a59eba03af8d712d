//! The process-wide recording state.
//!
//! ```text
//!            init_with ok                finish / atexit
//!   OFF ──► STARTING ──────────► ON ──────────────────► FINISHING ──► STOPPED
//!    ▲          │ error                 │ file error                     ▲
//!    └──────────┘                       └────────────────────────────────┘
//! ```
//!
//! The allocator hooks read the state with one acquire load; only `ON`
//! records. The cache line is written a handful of times per process, so
//! reading it costs no more than an L1 hit.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

pub(crate) const OFF: u8 = 0;
pub(crate) const STARTING: u8 = 1;
pub(crate) const ON: u8 = 2;
pub(crate) const FINISHING: u8 = 3;
pub(crate) const STOPPED: u8 = 4;

/// Everything the hot path reads besides the thread's own state, on one
/// cache line behind one address (in a position-independent binary each
/// static costs a load of its address first).
#[repr(C, align(64))]
pub(crate) struct Hot {
    /// The recording state (see the diagram above).
    pub(crate) state: AtomicU8,
    /// Whether the clock is the time-stamp counter (else CLOCK_MONOTONIC).
    pub(crate) use_tsc: AtomicBool,
    /// Quantum of record timestamps, as a right shift of clock ticks.
    pub(crate) shift: AtomicU8,
    /// Mean bytes between sampled allocations; 0 records every one.
    pub(crate) sample_rate: AtomicU64,
    /// Deepest call stack captured per allocation; 0 captures none.
    pub(crate) stack_depth: AtomicU32,
}

pub(crate) static HOT: Hot = Hot {
    state: AtomicU8::new(OFF),
    use_tsc: AtomicBool::new(false),
    shift: AtomicU8::new(0),
    sample_rate: AtomicU64::new(0),
    stack_depth: AtomicU32::new(0),
};

/// The recording state.
pub(crate) static STATE: &AtomicU8 = &HOT.state;

/// Whether allocator events are being recorded.
///
/// Acquire pairs with the release store of `ON` in `init_with`, so a thread
/// that sees `ON` also sees the clock, block length and file set up before
/// it (free on x86-64, where every load acquires).
#[inline(always)]
pub(crate) fn recording() -> bool {
    HOT.state.load(Ordering::Acquire) == ON
}

/// Switches recording off for good after the file failed.
pub(crate) fn stop_after_failure() {
    HOT.state.store(STOPPED, Ordering::Release);
}
