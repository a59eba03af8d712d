//! Per-thread recording: the thread's current block, its time base, its
//! counters and the reentrancy guard.
//!
//! The state is a `const`-initialized thread-local without a destructor, so
//! it is reachable at any point of a thread's life, thread-local
//! destructors included, and touching it never allocates. Thread exit is
//! observed through a second thread-local whose destructor writes a
//! `THREAD_EXIT` record; the thread keeps recording after it (into the
//! same block) for the frees made by later destructors.
//!
//! # Crash safety
//!
//! A record is published by storing its words after the first one, then the
//! first word with release ordering. The block is zero-filled and a reader
//! stops at the first zero word, so a process killed at any instruction
//! leaves either the whole record or none of it.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use memscope_schema::format::{BLOCK_HEADER_WORDS, BlockHeader, MAX_STRING_LEN, WORD_SIZE};
use memscope_schema::record::{MAX_FIXED_WORDS, stack_head, stack_ref};
use memscope_schema::{Record, RecordEncoder, Totals};

use crate::clock;
use crate::intern;
use crate::sink::SINK;
use crate::stack;
use crate::state::HOT;
use crate::stats::{self, OVERFLOW, PUBLISH_BYTES, Slot};

/// Words of the largest variable-size record the recorder writes: a thread
/// name or a string of [`MAX_STRING_LEN`] bytes plus its header words.
const MAX_VAR_WORDS: usize = 3 + MAX_STRING_LEN / WORD_SIZE;

/// Recorder thread ids, from 1 in order of each thread's first event.
static NEXT_THREAD_ID: AtomicU32 = AtomicU32::new(1);

/// Sets the sampling rate (once, at `init`).
pub(crate) fn set_sample_rate(bytes: u64) {
    HOT.sample_rate.store(bytes, Ordering::Relaxed);
}

/// What one thread needs to record: never shared with other threads.
pub(crate) struct ThreadState {
    /// Set while this thread is inside the recorder; nested allocator calls
    /// (from the recorder itself or from what it calls) pass through
    /// untracked.
    busy: Cell<bool>,
    /// Next free word of the current block, or null before the first block.
    pos: Cell<*mut u64>,
    /// One past the last word of the current block.
    end: Cell<*mut u64>,
    /// Time base of the next record (see `RecordEncoder`).
    last_q: Cell<u64>,
    thread_id: Cell<u32>,
    os_tid: Cell<u32>,
    /// Blocks this thread has taken so far.
    blocks: Cell<u32>,
    /// The thread's counters: [`OVERFLOW`] (shared, updated atomically)
    /// until the thread registers, or when it got no private slot.
    slot: Cell<&'static Slot>,
    shared_slot: Cell<bool>,
    /// Bytes left until the next sampled allocation (0: not drawn yet).
    until_sample: Cell<i64>,
    /// State of the sampling generator (0: not seeded yet).
    rng: Cell<u64>,
    /// The stack id the current block attributes allocations to (set by
    /// the block's last `STACK_REF`; 0 at the start of a block).
    block_stack: Cell<u32>,
    /// This thread's stack, once looked up (`stack_known`).
    stack: Cell<stack::Bounds>,
    stack_known: Cell<bool>,
}

thread_local! {
    static STATE: ThreadState = const {
        ThreadState {
            busy: Cell::new(false),
            pos: Cell::new(ptr::null_mut()),
            end: Cell::new(ptr::null_mut()),
            last_q: Cell::new(0),
            thread_id: Cell::new(0),
            os_tid: Cell::new(0),
            blocks: Cell::new(0),
            slot: Cell::new(&OVERFLOW),
            shared_slot: Cell::new(true),
            until_sample: Cell::new(0),
            rng: Cell::new(0),
            block_stack: Cell::new(0),
            stack: Cell::new(stack::Bounds::EMPTY),
            stack_known: Cell::new(false),
        }
    };
    static STACKS: stack::Cache = const { stack::Cache::new() };
    static EXIT: ExitNotifier = const { ExitNotifier };
}

/// Runs `f` on the hot path: with this thread's state, unless the thread
/// is inside the recorder's slow paths (then `f` does not run). The guard
/// is not set here: the hot path calls nothing that allocates, and every
/// slow path that may ([`ThreadState::record_slow`], string definitions,
/// thread registration) sets it itself.
#[inline(always)]
pub(crate) fn on_hot_path(f: impl FnOnce(&ThreadState)) {
    let _ = STATE.try_with(|t| {
        if !t.busy.get() {
            f(t)
        }
    });
}

/// Runs `f` with this thread's state and the guard set, unless the thread
/// is already inside the recorder (then `f` does not run and `None` is
/// returned).
#[inline(always)]
pub(crate) fn with_thread<R>(f: impl FnOnce(&ThreadState) -> R) -> Option<R> {
    STATE
        .try_with(|t| {
            if t.busy.replace(true) {
                return None;
            }
            let r = f(t);
            t.busy.set(false);
            Some(r)
        })
        .ok()
        .flatten()
}

/// Marks the calling thread as the recorder's own: none of its allocations
/// are recorded, for the rest of its life.
pub(crate) fn mark_internal() {
    let _ = STATE.try_with(|t| t.busy.set(true));
}

/// Writes a record from a thread marked internal (the background thread).
pub(crate) fn write_internal(rec: &Record<'_>) {
    let _ = STATE.try_with(|t| t.record_var(rec));
}

/// Runs `f` with the recorder's guard set, so that allocations made by `f`
/// on this thread are not recorded. Used by `init` and `finish`.
pub(crate) fn untracked<R>(f: impl FnOnce() -> R) -> R {
    let was = STATE.try_with(|t| t.busy.replace(true)).unwrap_or(true);
    let r = f();
    if !was {
        let _ = STATE.try_with(|t| t.busy.set(false));
    }
    r
}

impl ThreadState {
    /// Records a fixed-size event at quantized time `q` (from one of the
    /// `clock::now_q*` functions). The closure builds it from the time.
    /// `stack` is the thread's stack id of an allocation or reallocation
    /// (0: none), `None` for other events.
    #[inline(always)]
    pub(crate) fn record(
        &self,
        q: u64,
        stack: Option<u32>,
        make: impl Fn(u64) -> Record<'static>,
    ) -> bool {
        let q = q.max(self.last_q.get());
        let rec = make(q);
        let mut enc = RecordEncoder::new(self.last_q.get());
        let mut out = [0; MAX_FIXED_WORDS];
        let n = enc.encode(&rec, &mut out);
        let stack_change = stack.filter(|&s| s != self.block_stack.get());
        if self.publish_fixed(stack_change, &out, n) {
            self.last_q.set(enc.last_q());
            if let Some(s) = stack_change {
                self.block_stack.set(s);
            }
            return true;
        }
        self.record_slow(&rec, q, stack)
    }

    /// [`ThreadState::publish`] for the `n` first words of a fixed-size
    /// record's encoding, preceded by a `STACK_REF` to `stack` when given,
    /// unrolled (a copy of variable length would call `memcpy` on every
    /// event). The record and its prefix appear together or not at all.
    #[inline(always)]
    fn publish_fixed(&self, stack: Option<u32>, out: &[u64; MAX_FIXED_WORDS], n: usize) -> bool {
        let pos = self.pos.get();
        let room = (self.end.get() as usize).wrapping_sub(pos as usize) / WORD_SIZE;
        let pre = usize::from(stack.is_some());
        if pos.is_null() || n + pre > room || n == 0 {
            return false;
        }
        let first = match stack {
            Some(id) => stack_ref(id),
            None => out[0],
        };
        // SAFETY: as in `publish`: `pos..pos + pre + n` lies in this
        // thread's own block, and the first word is stored last, with
        // release ordering.
        unsafe {
            for (i, &w) in out.iter().enumerate() {
                if i < n && i + pre > 0 {
                    pos.add(i + pre).write(w);
                }
            }
            AtomicU64::from_ptr(pos).store(first, Ordering::Release);
            self.pos.set(pos.add(n + pre));
        }
        true
    }

    /// The thread's id for the stack of the current allocation (0 when
    /// stacks are off or none could be walked), writing its definition
    /// the first time.
    #[inline(always)]
    pub(crate) fn stack_id(&self) -> u32 {
        let depth = HOT.stack_depth.load(Ordering::Relaxed) as usize;
        if depth == 0 {
            return 0;
        }
        self.capture_stack(depth)
    }

    #[inline(never)]
    fn capture_stack(&self, depth: usize) -> u32 {
        let bounds = if self.stack_known.get() { self.stack.get() } else { self.find_stack() };
        let mut buf = stack::buffer();
        let n = stack::walk(&mut buf, depth, bounds);
        if n == 0 {
            return 0;
        }
        buf[0].write(0);
        // SAFETY: `walk` initialized `buf[1..=n]` and `buf[0]` is written
        // above; `MaybeUninit<u64>` has the layout of `u64`.
        let words =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u64>(), 1 + n) };
        let h = stack::hash(&words[1..]);
        STACKS
            .try_with(|cache| {
                if let Some(id) = cache.get(h) {
                    return id;
                }
                let id = cache.next_id();
                words[0] = stack_head(id, n);
                if self.record_words(words) {
                    cache.insert(h, id);
                    id
                } else {
                    0
                }
            })
            .unwrap_or(0)
    }

    #[cold]
    fn find_stack(&self) -> stack::Bounds {
        let was_busy = self.busy.replace(true);
        let bounds = stack::bounds();
        self.busy.set(was_busy);
        self.stack.set(bounds);
        self.stack_known.set(true);
        bounds
    }

    /// The block is full (or there is none yet): take a new one. Sets the
    /// guard, since registering a thread may allocate.
    #[cold]
    #[inline(never)]
    fn record_slow(&self, rec: &Record<'_>, q: u64, stack: Option<u32>) -> bool {
        let was_busy = self.busy.replace(true);
        let ok = if self.new_block(q) {
            let mut enc = RecordEncoder::new(self.last_q.get());
            let mut out = [0; MAX_FIXED_WORDS + 1];
            let stack = stack.filter(|&s| s != 0);
            let pre = usize::from(stack.is_some());
            let mut fixed = [0; MAX_FIXED_WORDS];
            let n = enc.encode(rec, &mut fixed);
            out[pre..pre + n].copy_from_slice(&fixed[..n]);
            if let Some(s) = stack {
                out[0] = stack_ref(s);
            }
            let ok = self.publish(&out[..pre + n]);
            if ok && let Some(s) = stack {
                self.block_stack.set(s);
            }
            self.last_q.set(enc.last_q());
            ok
        } else {
            self.count_dropped();
            false
        };
        self.busy.set(was_busy);
        ok
    }

    /// Records a variable-size record (string, thread name, exit, end).
    /// False when it could not be written, or cannot fit even an empty
    /// block (callers cap strings with [`max_string_len`]).
    pub(crate) fn record_var(&self, rec: &Record<'_>) -> bool {
        let mut buf = [0u64; MAX_VAR_WORDS];
        let mut enc = RecordEncoder::new(self.last_q.get());
        let Some(n) = enc.encode_into(rec, &mut buf) else {
            return false;
        };
        self.record_words(&buf[..n])
    }

    /// Appends the words of one encoded record that carries no time delta
    /// (an extended record), taking a new block when the current one is
    /// full. False when it could not be written; such records (strings,
    /// stacks, names) are not events, so they do not count as dropped.
    fn record_words(&self, words: &[u64]) -> bool {
        if self.publish(words) {
            return true;
        }
        if words.len() > block_capacity_words() {
            return false;
        }
        let was_busy = self.busy.replace(true);
        let ok = self.new_block(clock::now_q().max(self.last_q.get()));
        self.busy.set(was_busy);
        ok && self.publish(words)
    }

    /// Appends `words` to the current block, first word last; false when
    /// they do not fit (or there is no block yet).
    #[inline(always)]
    fn publish(&self, words: &[u64]) -> bool {
        let pos = self.pos.get();
        let room = (self.end.get() as usize).wrapping_sub(pos as usize) / WORD_SIZE;
        if pos.is_null() || words.len() > room || words.is_empty() {
            return false;
        }
        // SAFETY: `pos..end` is the unwritten tail of a block that this
        // thread alone owns, inside a mapping that is never unmapped, and
        // `words.len() <= room`. The first word is stored last, atomically
        // with release ordering, so the record appears whole or not at all
        // (see the module docs); `pos` is 8-byte aligned because blocks are.
        unsafe {
            for (i, w) in words.iter().enumerate().skip(1) {
                pos.add(i).write(*w);
            }
            AtomicU64::from_ptr(pos).store(words[0], Ordering::Release);
            self.pos.set(pos.add(words.len()));
        }
        true
    }

    /// Takes a new block and writes its header; on the thread's first block
    /// also registers the thread. False when no block can be had.
    fn new_block(&self, q: u64) -> bool {
        let first = self.thread_id.get() == 0;
        if first {
            self.register();
        }
        let Some(block) = SINK.claim_block() else {
            self.pos.set(ptr::null_mut());
            self.end.set(ptr::null_mut());
            return false;
        };
        let block = block.cast::<u64>();
        let words = BlockHeader {
            thread_id: self.thread_id.get(),
            os_tid: self.os_tid.get(),
            seq: self.blocks.get(),
            base_q: q,
        }
        .to_words();
        let block_words = crate::block_len() / WORD_SIZE;
        // SAFETY: `block` is a fresh, zero-filled, 8-byte-aligned block of
        // `block_words` words handed to this thread alone; the header's
        // first word is stored last, as for records.
        unsafe {
            for (i, w) in words.iter().enumerate().skip(1) {
                block.add(i).write(*w);
            }
            AtomicU64::from_ptr(block).store(words[0], Ordering::Release);
            self.pos.set(block.add(BLOCK_HEADER_WORDS));
            self.end.set(block.add(block_words));
        }
        self.block_stack.set(0);
        self.last_q.set(q);
        self.blocks.set(self.blocks.get() + 1);
        if first {
            self.record_thread_name(q);
        }
        true
    }

    /// Gives the thread its id, its counter slot and its exit notifier.
    #[cold]
    fn register(&self) {
        self.thread_id.set(NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed));
        self.os_tid.set(gettid());
        if let Some(slot) = stats::claim_slot() {
            self.slot.set(slot);
            self.shared_slot.set(false);
        }
        // Registering the destructor may allocate; the guard is set, so
        // those allocations pass through untracked.
        let _ = EXIT.try_with(|_| {});
    }

    fn record_thread_name(&self, q: u64) {
        let mut buf = [0u8; 16];
        let name: &[u8] = if self.os_tid.get() == std::process::id() {
            b"main"
        } else {
            os_thread_name(&mut buf)
        };
        if !name.is_empty() {
            self.record_var(&Record::ThreadName { q, name });
        }
    }

    /// Writes a string definition for `s` unless it is interned; returns its
    /// id, or 0 when the definition could not be written.
    pub(crate) fn intern(&self, s: &'static str) -> u32 {
        if let Some(id) = intern::lookup(s) {
            return id;
        }
        let id = intern::new_id();
        let bytes = truncate_utf8(s.as_bytes(), max_string_len());
        if !self.record_var(&Record::String { id, bytes }) {
            return 0;
        }
        intern::publish(s, id);
        id
    }

    #[inline(always)]
    fn slot(&self) -> &'static Slot {
        self.slot.get()
    }

    #[inline(always)]
    fn shared(&self) -> bool {
        self.shared_slot.get()
    }

    /// Whether an allocation of `size` bytes is recorded under Poisson
    /// sampling by bytes (always when sampling is off): a countdown of
    /// bytes, reset to an exponentially distributed gap with mean
    /// `sample_rate` at every sampled allocation.
    #[inline(always)]
    pub(crate) fn sampled(&self, size: u64) -> bool {
        let rate = HOT.sample_rate.load(Ordering::Relaxed);
        if rate == 0 || size >= rate {
            return true;
        }
        self.sample_countdown(size, rate)
    }

    #[inline(never)]
    fn sample_countdown(&self, size: u64, rate: u64) -> bool {
        let mut left = self.until_sample.get();
        if left == 0 {
            left = self.next_gap(rate);
        }
        left -= size as i64;
        if left > 0 {
            self.until_sample.set(left);
            return false;
        }
        while left <= 0 {
            left += self.next_gap(rate);
        }
        self.until_sample.set(left);
        true
    }

    /// An exponentially distributed gap in bytes with mean `rate`.
    fn next_gap(&self, rate: u64) -> i64 {
        let mut x = self.rng.get();
        if x == 0 {
            x = clock::ticks() ^ (u64::from(gettid()) << 32) | 1;
        }
        // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let u = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        (-(1.0 - u).ln() * rate as f64) as i64 + 1
    }

    /// Counts an allocation of `size` bytes.
    #[inline(always)]
    pub(crate) fn count_alloc(&self, size: u64) {
        let (slot, shared) = (self.slot(), self.shared());
        stats::bump(&slot.allocations, 1, shared);
        stats::bump(&slot.allocated_bytes, size, shared);
        self.live_bytes_changed(size as i64);
    }

    /// Counts a deallocation of `size` bytes.
    #[inline(always)]
    pub(crate) fn count_free(&self, size: u64) {
        let (slot, shared) = (self.slot(), self.shared());
        stats::bump(&slot.deallocations, 1, shared);
        stats::bump(&slot.freed_bytes, size, shared);
        self.live_bytes_changed(-(size as i64));
    }

    /// Counts a reallocation from `old_size` to `new_size` bytes: one
    /// deallocation and one allocation.
    #[inline(always)]
    pub(crate) fn count_realloc(&self, old_size: u64, new_size: u64) {
        let (slot, shared) = (self.slot(), self.shared());
        stats::bump(&slot.reallocations, 1, shared);
        stats::bump(&slot.allocations, 1, shared);
        stats::bump(&slot.deallocations, 1, shared);
        stats::bump(&slot.allocated_bytes, new_size, shared);
        stats::bump(&slot.freed_bytes, old_size, shared);
        self.live_bytes_changed(new_size as i64 - old_size as i64);
    }

    pub(crate) fn count_tag(&self) {
        stats::bump(&self.slot().tags, 1, self.shared());
    }

    fn count_dropped(&self) {
        stats::bump(&self.slot().dropped, 1, self.shared());
    }

    #[inline(always)]
    fn live_bytes_changed(&self, delta: i64) {
        if self.shared() {
            stats::publish_active(delta);
            return;
        }
        let unpublished = &self.slot().unpublished;
        let v = unpublished.load(Ordering::Relaxed) + delta;
        if (-PUBLISH_BYTES..PUBLISH_BYTES).contains(&v) {
            unpublished.store(v, Ordering::Relaxed);
        } else {
            stats::publish_active(v);
            unpublished.store(0, Ordering::Relaxed);
        }
    }

    /// Publishes this thread's pending live-byte change.
    pub(crate) fn flush_live_bytes(&self) {
        if self.shared() {
            return;
        }
        let unpublished = &self.slot().unpublished;
        let v = unpublished.load(Ordering::Relaxed);
        if v != 0 {
            stats::publish_active(v);
            unpublished.store(0, Ordering::Relaxed);
        }
    }
}

/// Writes the end-of-trace marker on the calling thread. The caller holds
/// the guard (see [`untracked`]).
pub(crate) fn write_end(totals: Totals) {
    let _ = STATE.try_with(|t| {
        let q = clock::now_q().max(t.last_q.get());
        t.record_var(&Record::End { q, totals });
    });
}

/// Runs the exit bookkeeping when a thread's thread-locals are destroyed.
struct ExitNotifier;

impl Drop for ExitNotifier {
    fn drop(&mut self) {
        let _ = STATE.try_with(|t| {
            if t.busy.replace(true) {
                return;
            }
            if crate::state::recording() && t.thread_id.get() != 0 {
                let q = clock::now_q().max(t.last_q.get());
                // The OS name may have been set after the first event.
                t.record_thread_name(q);
                t.record_var(&Record::ThreadExit { q });
            }
            t.flush_live_bytes();
            if !t.shared() {
                stats::retire_slot(t.slot());
                t.slot.set(&OVERFLOW);
                t.shared_slot.set(true);
            }
            t.busy.set(false);
        });
    }
}

fn gettid() -> u32 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid has no arguments and cannot fail.
        unsafe { libc::syscall(libc::SYS_gettid) as u32 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

/// The calling thread's OS name (at most 15 bytes on Linux), without
/// allocating.
fn os_thread_name(buf: &mut [u8; 16]) -> &[u8] {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_NAME writes at most 16 bytes, NUL included, into
        // the 16-byte buffer.
        let rc =
            unsafe { libc::prctl(libc::PR_GET_NAME, buf.as_mut_ptr() as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return &[];
        }
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        &buf[..len]
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = buf;
        &[]
    }
}

/// Words a record can use in an empty block.
fn block_capacity_words() -> usize {
    crate::block_len() / WORD_SIZE - BLOCK_HEADER_WORDS
}

/// The longest string the recorder writes: [`MAX_STRING_LEN`], or less when
/// a `STRING` record of that length would not fit in an empty block.
fn max_string_len() -> usize {
    MAX_STRING_LEN.min((block_capacity_words() - 2) * WORD_SIZE)
}

/// The longest prefix of `bytes` of at most `max` bytes that does not cut a
/// UTF-8 character.
fn truncate_utf8(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    while end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}
