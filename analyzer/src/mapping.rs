//! The trace's memory mapping, guarded against the file shrinking while it
//! is read.
//!
//! A read-only shared mapping of a file that another process truncates
//! makes every access past the new end raise `SIGBUS`, which would kill the
//! analyzer. The recorder itself truncates its file when it finishes, so a
//! trace analyzed while its program is still running can shrink under the
//! reader. While a [`GuardedMap`] is alive, a `SIGBUS` inside it is caught:
//! the handler maps zero-filled pages over the faulting page and the rest
//! of the map, the read goes on and sees zeros (an unused block, or the end of a block's data),
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
        // change or vanish. Truncation is what this module guards against:
        // pages that vanish read as zeros (see `on_sigbus`) and `faulted`
        // turns the read into an error. Bytes that a running recorder
        // stores into blocks while we read are a risk we accept, as every
        // reader of a live memory-mapped file does: the format stores a
        // record's first word last, so the decoder sees either a whole
        // record or a zero word (FORMAT.md § Finished and unfinished
        // traces), and the analyzer never writes through the map.
        let map = unsafe { Mmap::map(file) }?;
        let slot = if map.is_empty() { None } else { claim_slot(map.as_ptr() as usize, map.len()) };
        Ok(GuardedMap { map, slot })
    }

    /// Gives back the memory of the whole pages within `range` (byte
    /// offsets into the map): they leave the process's resident set, and a
    /// later read maps them again from the file (the page cache, usually).
    /// The bytes read stay the same. Best effort: a failure changes nothing.
    pub fn release(&self, range: std::ops::Range<usize>) {
        // SAFETY: sysconf only reads a system constant.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        let start = range.start.div_ceil(page) * page;
        let end = (range.end.min(self.map.len()) / page) * page;
        if start < end {
            // SAFETY: `MADV_DONTNEED` on a read-only shared file mapping
            // drops our page table entries only; the pages read the same
            // bytes from the file when touched again, so no `&[u8]` into the
            // map sees its bytes change (zero pages put over vanished ones
            // by the SIGBUS handler read as zeros again). The range lies in
            // the map.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
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

/// The `SIGBUS` handler: for an access fault inside a guarded map,
/// replaces the pages from the faulting one on by zero pages and marks the
/// map; for any
/// other fault, puts back the previous action, which takes the fault when
/// the access runs again; a `SIGBUS` sent by another process gets the
/// default action (the process ends).
extern "C" fn on_sigbus(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler;
    // errno is this thread's own, saved and restored around our calls.
    let (code, address, errno) =
        unsafe { ((*info).si_code, (*info).si_addr() as usize, *libc::__errno_location()) };
    if code == libc::BUS_ADRERR && zero_from(address) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = errno };
        return;
    }
    // SAFETY: sigaction, signal and raise are async-signal-safe; `previous`
    // is the action sigaction(2) gave us when ours was installed.
    unsafe {
        if code <= 0 {
            // Sent by a process (kill, sigqueue), not by a fault: it would
            // not come again by itself, and Rust's own handler would drop
            // it. Take the default action, as for any program.
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            libc::raise(libc::SIGBUS);
        } else {
            match PREVIOUS.get() {
                // The access faults again and the previous action takes it.
                Some(previous) => libc::sigaction(libc::SIGBUS, previous, std::ptr::null_mut()),
                // Ours was installed but the previous action not yet
                // stored: take the default one.
                None => {
                    libc::signal(libc::SIGBUS, libc::SIG_DFL);
                    0
                }
            };
        }
        *libc::__errno_location() = errno;
    }
}

/// Maps zero pages over the page of `address` and the rest of its map, if
/// it lies in a guarded map, and marks that map as faulted.
/// Async-signal-safe.
fn zero_from(address: usize) -> bool {
    for slot in &GUARDED {
        let start = slot.start.load(Ordering::SeqCst);
        let len = slot.len.load(Ordering::SeqCst);
        // A slot released and claimed again between the two loads would
        // pair one map's start with another's length: load start again.
        if start == 0
            || start == usize::MAX
            || slot.start.load(Ordering::SeqCst) != start
            || address < start
            || address - start >= len
        {
            continue;
        }
        let page = PAGE_SIZE.load(Ordering::SeqCst);
        let page_start = address & !(page - 1);
        // Everything from the faulting page to the end of the map: a file
        // is cut from its end, so the later pages are gone too, and one
        // mapping per faulting page could exhaust the process's mappings.
        let map_end = (start + len).div_ceil(page) * page;
        // SAFETY: the page lies inside a live mapping of ours: this thread
        // faulted while reading it, and a slot is released before its
        // mapping is unmapped (see `Drop`), with start and length read
        // consistently above. Replacing it with a private anonymous page
        // changes no memory that anything else owns.
        let replaced = unsafe {
            libc::mmap(
                page_start as *mut libc::c_void,
                map_end - page_start,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if replaced == libc::MAP_FAILED {
            return false;
        }
        slot.faulted.store(true, Ordering::SeqCst);
        return true;
    }
    false
}
