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

use std::sync::atomic::{AtomicU8, Ordering};

pub(crate) const OFF: u8 = 0;
pub(crate) const STARTING: u8 = 1;
pub(crate) const ON: u8 = 2;
pub(crate) const FINISHING: u8 = 3;
pub(crate) const STOPPED: u8 = 4;

pub(crate) static STATE: AtomicU8 = AtomicU8::new(OFF);

/// Whether allocator events are being recorded.
///
/// Acquire pairs with the release store of `ON` in `init_with`, so a thread
/// that sees `ON` also sees the clock, block length and file set up before
/// it (free on x86-64, where every load acquires).
#[inline(always)]
pub(crate) fn recording() -> bool {
    STATE.load(Ordering::Acquire) == ON
}

/// Switches recording off for good after the file failed.
pub(crate) fn stop_after_failure() {
    STATE.store(STOPPED, Ordering::Release);
}
