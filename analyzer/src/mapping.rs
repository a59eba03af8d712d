//! The trace's memory mapping, guarded against the file shrinking while it
//! is read.
//!
//! A read-only shared mapping of a file that another process truncates
//! makes every access past the new end raise `SIGBUS`, which would kill the
//! analyzer. The recorder itself truncates its file when it finishes, so a
//! trace analyzed while its program is still running can shrink under the
//! reader. While a [`GuardedMap`] is alive, a `SIGBUS` inside it is caught:
//! the handler maps a zero-filled page over the faulting page, the read
//! goes on and sees zeros (an unused block, or the end of a block's data),
//! and the map remembers that it [faulted](GuardedMap::faulted). The
//! decoder then reports the file as changed instead of answering from what
//! it read. A `SIGBUS` anywhere else goes to the handler that was installed
//! before ours (Rust's own, which reports stack overflows) or to the
//! default action.

use std::fs::File;
use std::ops::Deref;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::Mmap;

/// How many maps can be guarded at once; a map opened while every slot is
/// taken is not guarded (it still works, as an unguarded mapping).
const SLOTS: usize = 64;

/// One guarded address range. `start == 0` means the slot is free.
struct Slot {
    start: AtomicUsize,
    len: AtomicUsize,
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot =
    Slot { start: AtomicUsize::new(0), len: AtomicUsize::new(0), faulted: AtomicBool::new(false) };

static GUARDED: [Slot; SLOTS] = [FREE_SLOT; SLOTS];

/// The page size, read once before the handler is installed.
static PAGE_SIZE: AtomicUsize = AtomicUsize::new(0);

/// The `SIGBUS` action that was in place before ours.
static PREVIOUS: OnceLock<libc::sigaction> = OnceLock::new();

/// A read-only memory mapping of a whole file that survives the file being
/// truncated while it is read.
#[derive(Debug)]
pub struct GuardedMap {
    map: Mmap,
    /// Index into `GUARDED`, or `None` when no slot was free or the file is
    /// empty.
    slot: Option<usize>,
}

impl GuardedMap {
    /// Maps `file` read-only.
    ///
    /// # Errors
    ///
    /// The operating system's error when the mapping fails.
    pub fn new(file: &File) -> std::io::Result<GuardedMap> {
        install_handler();
        // SAFETY: memmap2 requires that the file not be modified or
        // truncated while mapped, because the bytes behind the slice could
        // change or vanish. The analyzer only reads the map; bytes that a
        // running recorder appends into blocks are whole records or zero
        // words (FORMAT.md § Finished and unfinished traces), which the
        // decoder reads either way. Truncation is what this module guards
        // against: pages that vanish read as zeros (see `on_sigbus`) and
        // `faulted` turns the read into an error.
        let map = unsafe { Mmap::map(file) }?;
        let slot = if map.is_empty() { None } else { claim_slot(map.as_ptr() as usize, map.len()) };
        Ok(GuardedMap { map, slot })
    }

    /// Whether part of the file vanished while it was mapped: some pages
    /// were read as zeros instead of the file's bytes.
    pub fn faulted(&self) -> bool {
        self.slot.is_some_and(|s| GUARDED[s].faulted.load(Ordering::SeqCst))
    }
}

impl Deref for GuardedMap {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for GuardedMap {
    fn drop(&mut self) {
        // Release the slot before the map is unmapped (fields drop after
        // this), so the handler never treats a stale range as ours.
        if let Some(s) = self.slot {
            GUARDED[s].len.store(0, Ordering::SeqCst);
            GUARDED[s].start.store(0, Ordering::SeqCst);
        }
    }
}

fn claim_slot(start: usize, len: usize) -> Option<usize> {
    GUARDED.iter().position(|slot| {
        if slot.start.compare_exchange(0, usize::MAX, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return false;
        }
        slot.faulted.store(false, Ordering::SeqCst);
        slot.len.store(len, Ordering::SeqCst);
        slot.start.store(start, Ordering::SeqCst);
        true
    })
}

fn install_handler() {
    PREVIOUS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        PAGE_SIZE.store(usize::try_from(page).unwrap_or(4096).max(4096), Ordering::SeqCst);
        // SAFETY: `action` and `previous` are plain C structs, zeroed and
        // then filled as sigaction(2) requires: a three-argument handler
        // with SA_SIGINFO. `on_sigbus` only does async-signal-safe work
        // (atomic loads and stores, mmap and sigaction system calls).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGBUS, &action, &mut previous) != 0 {
                // No guard: the previous action stays. Keep it as is.
                libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut previous);
            }
            previous
        }
    });
}

/// The `SIGBUS` handler: for a fault inside a guarded map, replaces the
/// faulting page by a zero page and marks the map; for any other fault,
/// puts back the previous action and returns, so that the access faults
/// again and the previous action deals with it.
extern "C" fn on_sigbus(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler;
    // for SIGBUS, si_addr is the faulting address.
    let address = unsafe { (*info).si_addr() } as usize;
    for slot in &GUARDED {
        let start = slot.start.load(Ordering::SeqCst);
        let len = slot.len.load(Ordering::SeqCst);
        if start == 0 || start == usize::MAX || address < start || address - start >= len {
            continue;
        }
        let page = PAGE_SIZE.load(Ordering::SeqCst);
        let page_start = address & !(page - 1);
        // SAFETY: the page lies inside a live mapping of ours (the slot is
        // released before the mapping is unmapped, and this thread is
        // reading it right now), so replacing it with a private anonymous
        // page changes no memory that anything else owns.
        let replaced = unsafe {
            libc::mmap(
                page_start as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced != libc::MAP_FAILED {
            slot.faulted.store(true, Ordering::SeqCst);
            return;
        }
        break;
    }
    if let Some(previous) = PREVIOUS.get() {
        // SAFETY: `previous` is the action sigaction(2) returned to us.
        unsafe { libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()) };
    }
}
