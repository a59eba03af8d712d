//! Interning of `&'static str` names (type and variable names of tags)
//! into string ids, without allocating or locking.
//!
//! The table maps a string's address and length to its id. A thread that
//! misses writes a `STRING` record with a fresh id into its own block first
//! and then publishes the id; two threads racing on the same string may
//! both define it, under two ids with the same text, which the analyzer
//! resolves by id. When the table is full, names are defined again on
//! every use: still correct, only larger.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const TABLE_LEN: usize = 4096;
const MAX_PROBES: usize = 32;

struct Entry {
    ptr: AtomicUsize,
    len: AtomicUsize,
    id: AtomicU32,
}

static TABLE: [Entry; TABLE_LEN] =
    [const { Entry { ptr: AtomicUsize::new(0), len: AtomicUsize::new(0), id: AtomicU32::new(0) } };
        TABLE_LEN];

/// The next string id; ids start at 1 (0 means "no string").
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

fn slot_of(ptr: usize) -> usize {
    // Fibonacci hashing of the address; string literals are at least
    // byte-aligned, so keep all bits.
    (ptr.wrapping_mul(0x9E37_79B9_7F4A_7C15_u64 as usize) >> 20) % TABLE_LEN
}

/// The id of `s` if it was interned before.
pub(crate) fn lookup(s: &'static str) -> Option<u32> {
    let (ptr, len) = (s.as_ptr() as usize, s.len());
    let start = slot_of(ptr);
    for i in 0..MAX_PROBES {
        let e = &TABLE[(start + i) % TABLE_LEN];
        let p = e.ptr.load(Ordering::Acquire);
        if p == 0 {
            return None;
        }
        if p == ptr && e.len.load(Ordering::Acquire) == len {
            let id = e.id.load(Ordering::Acquire);
            return (id != 0).then_some(id);
        }
    }
    None
}

/// A fresh string id.
pub(crate) fn new_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Publishes `id` for `s`, after its definition was written.
pub(crate) fn publish(s: &'static str, id: u32) {
    let (ptr, len) = (s.as_ptr() as usize, s.len());
    let start = slot_of(ptr);
    for i in 0..MAX_PROBES {
        let e = &TABLE[(start + i) % TABLE_LEN];
        if e.ptr.compare_exchange(0, ptr, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            e.len.store(len, Ordering::Release);
            e.id.store(id, Ordering::Release);
            return;
        }
        if e.ptr.load(Ordering::Acquire) == ptr && e.len.load(Ordering::Acquire) == len {
            return;
        }
    }
}
