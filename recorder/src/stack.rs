//! Call stacks on the hot path: a walk of the frame-pointer chain, bounded
//! by the thread's own stack, and a per-thread cache of the stacks already
//! written to the trace.
//!
//! A walk reads two words per frame and never faults: it runs only when the
//! stack pointer is inside the thread's own stack (not on a signal stack, a
//! coroutine's or a segmented stack), and every frame pointer it follows
//! must lie between the stack pointer and the top of that stack, be 8-byte
//! aligned and move towards the top. Between the stack pointer and the top,
//! the stack is mapped. Code built
//! without frame pointers (`-C force-frame-pointers=yes`) may cut a stack
//! short or skip frames; it cannot make the walk read outside the stack.
//! The standard library keeps frame pointers.
//!
//! Stacks are interned per thread, so the hot path shares nothing with other
//! threads: a stack seen for the first time (or evicted from the cache) is
//! written as a `STACK` record under a new id of the thread, and the
//! analyzer merges equal stacks of all threads into one id.

use std::cell::Cell;
use std::mem::MaybeUninit;

use memscope_schema::format::MAX_STACK_DEPTH;

/// Frames captured unless configured otherwise (heaptrack's limit too).
pub const DEFAULT_STACK_DEPTH: u32 = 64;

/// Entries of the per-thread cache of written stacks (a power of two).
const CACHE_ENTRIES: usize = 1024;

/// The capture buffer: word 0 is left for the `STACK` record's first word,
/// the addresses follow.
pub(crate) type Buffer = [MaybeUninit<u64>; 1 + MAX_STACK_DEPTH];

/// A fresh, uninitialized capture buffer (costs nothing).
#[inline(always)]
pub(crate) fn buffer() -> Buffer {
    [const { MaybeUninit::uninit() }; 1 + MAX_STACK_DEPTH]
}

/// Writes the return addresses of the calling thread's stack into
/// `out[1..]`, innermost first, at most `depth` of them (and at most
/// `MAX_STACK_DEPTH`); returns how many. `bounds` is the thread's stack,
/// from [`bounds`]: nothing is captured when the stack pointer is outside
/// it.
#[inline(always)]
pub(crate) fn walk(out: &mut Buffer, depth: usize, bounds: Bounds) -> usize {
    let Some((mut fp, sp)) = registers() else {
        return 0;
    };
    let Bounds { low, top: stack_top } = bounds;
    if sp < low || sp >= stack_top {
        return 0;
    }
    let depth = depth.min(MAX_STACK_DEPTH);
    let mut n = 0;
    while n < depth {
        if fp < sp || fp % 8 != 0 || fp.saturating_add(16) > stack_top {
            break;
        }
        // SAFETY: `fp..fp + 16` lies between the stack pointer and the top
        // of this thread's stack, which is mapped and readable, and is
        // 8-byte aligned. A frame record is the caller's frame pointer
        // followed by the return address (x86-64 and AArch64 alike).
        let (next, ret) = unsafe {
            let p = fp as *const usize;
            (std::ptr::read_volatile(p), std::ptr::read_volatile(p.add(1)))
        };
        if ret == 0 {
            break;
        }
        out[1 + n].write(ret as u64);
        n += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    n
}

/// The frame pointer and the stack pointer of the caller, where the target
/// has a frame-pointer convention the walk knows.
#[inline(always)]
fn registers() -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: copies two registers; touches no memory and no flags.
        unsafe {
            std::arch::asm!(
                "mov {fp}, rbp",
                "mov {sp}, rsp",
                fp = out(reg) fp,
                sp = out(reg) sp,
                options(nomem, nostack, preserves_flags)
            );
        }
        Some((fp, sp))
    }
    #[cfg(target_arch = "aarch64")]
    {
        let (fp, sp): (usize, usize);
        // SAFETY: copies two registers; touches no memory and no flags.
        unsafe {
            std::arch::asm!(
                "mov {fp}, x29",
                "mov {sp}, sp",
                fp = out(reg) fp,
                sp = out(reg) sp,
                options(nomem, nostack, preserves_flags)
            );
        }
        Some((fp, sp))
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        None
    }
}

/// A hash of a stack's addresses (never 0), the cache key.
#[inline(always)]
pub(crate) fn hash(frames: &[u64]) -> u64 {
    let mut h = frames.len() as u64;
    for &a in frames {
        h = (h.rotate_left(26) ^ a).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    h | 1
}

/// The stacks a thread has written: a direct-mapped table from stack hash
/// to the thread's stack id. A miss (a new stack, or one evicted by another
/// with the same slot) writes the stack again under a new id. Two stacks
/// with the same 64-bit hash would share an id: with a million distinct
/// stacks the odds are about one in 2^25.
pub(crate) struct Cache {
    hashes: [Cell<u64>; CACHE_ENTRIES],
    ids: [Cell<u32>; CACHE_ENTRIES],
    last_id: Cell<u32>,
}

impl Cache {
    pub(crate) const fn new() -> Cache {
        Cache {
            hashes: [const { Cell::new(0) }; CACHE_ENTRIES],
            ids: [const { Cell::new(0) }; CACHE_ENTRIES],
            last_id: Cell::new(0),
        }
    }

    /// The thread's id for the stack with hash `h`, if it was written.
    #[inline(always)]
    pub(crate) fn get(&self, h: u64) -> Option<u32> {
        let i = slot(h);
        (self.hashes[i].get() == h).then(|| self.ids[i].get())
    }

    /// A new id for the stack with hash `h`; [`Cache::insert`] it once its
    /// definition is written.
    #[inline(always)]
    pub(crate) fn next_id(&self) -> u32 {
        self.last_id.get().wrapping_add(1).max(1)
    }

    /// Remembers that stack `h` was written as `id`.
    #[inline(always)]
    pub(crate) fn insert(&self, h: u64, id: u32) {
        let i = slot(h);
        self.hashes[i].set(h);
        self.ids[i].set(id);
        self.last_id.set(id);
    }
}

#[inline(always)]
fn slot(h: u64) -> usize {
    (h >> (64 - CACHE_ENTRIES.trailing_zeros())) as usize
}

/// The address range of a thread's stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Lowest address of the stack.
    pub(crate) low: usize,
    /// One past its highest address.
    pub(crate) top: usize,
}

impl Bounds {
    /// Bounds that contain no stack pointer: nothing is captured.
    pub(crate) const EMPTY: Bounds = Bounds { low: usize::MAX, top: 0 };
}

/// The calling thread's stack, or [`Bounds::EMPTY`] when it cannot be had.
/// May allocate (glibc reads `/proc/self/maps` for the main thread): call
/// it with the guard set.
#[cold]
pub(crate) fn bounds() -> Bounds {
    #[cfg(target_os = "linux")]
    {
        let mut attr = MaybeUninit::<libc::pthread_attr_t>::uninit();
        // SAFETY: `attr` is initialized by pthread_getattr_np when it returns
        // 0, read by pthread_attr_getstack into our locals, and destroyed
        // once; pthread_self is always valid.
        unsafe {
            if libc::pthread_getattr_np(libc::pthread_self(), attr.as_mut_ptr()) != 0 {
                return Bounds::EMPTY;
            }
            let (mut addr, mut size) = (std::ptr::null_mut(), 0usize);
            let rc = libc::pthread_attr_getstack(attr.as_ptr(), &mut addr, &mut size);
            libc::pthread_attr_destroy(attr.as_mut_ptr());
            if rc != 0 || addr.is_null() {
                return Bounds::EMPTY;
            }
            Bounds { low: addr as usize, top: (addr as usize).saturating_add(size) }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Bounds::EMPTY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[inline(never)]
    fn depth_here(bounds: Bounds) -> usize {
        let mut buf = buffer();
        walk(&mut buf, 64, bounds)
    }

    #[test]
    fn walks_only_on_the_threads_own_stack() {
        let own = bounds();
        assert!(own.low < own.top, "{own:?}");
        assert!(depth_here(own) >= 2, "the test's callers are on the stack");
        assert_eq!(depth_here(Bounds::EMPTY), 0);
        // A stack pointer outside the given stack (as on a signal stack):
        // nothing is read.
        let elsewhere = Bounds { low: own.top, top: own.top + (1 << 20) };
        assert_eq!(depth_here(elsewhere), 0);
    }
}
