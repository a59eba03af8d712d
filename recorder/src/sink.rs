//! The trace file: its header mapping, the segments of blocks mapped as the
//! file grows, and the hand-out of blocks to threads.
//!
//! The file is a page-sized (or larger) header followed by blocks of
//! `block_len` bytes. Blocks are mapped in segments of [`SEGMENT_LEN`]
//! bytes: the first thread that needs a block in a new segment extends the
//! file with `posix_fallocate` (so that a full disk is an error here, not a
//! `SIGBUS` on a later write) and maps it `MAP_SHARED` with memmap2. The
//! mappings are never unmapped: every byte a thread stores is in the page
//! cache at once and survives the death of the process.
//!
//! This module and `thread.rs` hold the recorder's raw-pointer code.

use std::fs::File;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use memscope_schema::format::{FLAG_FINISHED, FLAG_RECORDING_FAILED, header_offset};

/// Bytes mapped at a time once the header is in place (16 MiB).
pub(crate) const SEGMENT_LEN: u64 = 16 << 20;
/// Segments a trace can have: with [`SEGMENT_LEN`], traces up to 1 TiB.
const MAX_SEGMENTS: usize = 65536;
/// Block index that marks block hand-out as closed by `finish`.
const CLOSED: u64 = 1 << 62;

/// Everything the recorder knows about its file. One per process.
pub(crate) struct Sink {
    fd: AtomicI32,
    header: AtomicPtr<u8>,
    header_len: AtomicU64,
    block_len: AtomicU64,
    next_block: AtomicU64,
    segments: [AtomicPtr<u8>; MAX_SEGMENTS],
    grow_lock: AtomicBool,
    failed: AtomicBool,
    /// Blocks handed out when `finish` closed hand-out; `u64::MAX` before.
    closed_at: AtomicU64,
    /// Segments, from the first, whose pages the background thread has
    /// faulted in.
    populated: AtomicU64,
}

pub(crate) static SINK: Sink = Sink {
    fd: AtomicI32::new(-1),
    header: AtomicPtr::new(ptr::null_mut()),
    header_len: AtomicU64::new(0),
    block_len: AtomicU64::new(0),
    next_block: AtomicU64::new(0),
    segments: [const { AtomicPtr::new(ptr::null_mut()) }; MAX_SEGMENTS],
    grow_lock: AtomicBool::new(false),
    failed: AtomicBool::new(false),
    closed_at: AtomicU64::new(u64::MAX),
    populated: AtomicU64::new(0),
};

/// Why the file could not be set up or grown.
#[derive(Debug)]
pub(crate) struct SinkError {
    pub(crate) what: &'static str,
    pub(crate) errno: i32,
}

impl Sink {
    /// Takes ownership of `file`, whose first `header.len()` bytes become the
    /// header, and prepares block hand-out.
    ///
    /// Called once, from `init`, before recording is switched on.
    pub(crate) fn open(&self, file: File, header: &[u8], block_len: u32) -> Result<(), SinkError> {
        let header_len = header.len() as u64;
        allocate(file.as_raw_fd(), 0, header_len)?;
        // SAFETY: the file was just created by this recorder and is not
        // truncated while the process runs (see `finish`); the mapping is
        // only written through, by this module.
        let mut map =
            unsafe { memmap2::MmapOptions::new().len(header_len as usize).map_mut(&file) }
                .map_err(|e| SinkError {
                    what: "mapping the trace header",
                    errno: e.raw_os_error().unwrap_or(0),
                })?;
        map.copy_from_slice(header);
        let base = map.as_mut_ptr();
        // The mapping lives until the process exits: threads write through it.
        std::mem::forget(map);
        self.header_len.store(header_len, Ordering::Relaxed);
        self.block_len.store(block_len.into(), Ordering::Relaxed);
        self.fd.store(file.into_raw_fd(), Ordering::Relaxed);
        self.header.store(base, Ordering::Release);
        Ok(())
    }

    /// Hands out a fresh, zero-filled block. Returns its first byte, or
    /// `None` when recording is closed or the file cannot grow (after
    /// which recording is off for good).
    pub(crate) fn claim_block(&self) -> Option<*mut u8> {
        let index = self.next_block.fetch_add(1, Ordering::Relaxed);
        let block_len = self.block_len.load(Ordering::Relaxed);
        let per_segment = SEGMENT_LEN / block_len;
        if index >= CLOSED {
            return None;
        }
        let segment = (index / per_segment) as usize;
        if segment >= MAX_SEGMENTS {
            self.fail(SinkError { what: "the trace reached its size limit of 1 TiB", errno: 0 });
            return None;
        }
        let base = self.segment(segment)?;
        // SAFETY: the segment mapping is SEGMENT_LEN bytes long and the
        // block lies inside it: (index % per_segment) * block_len + block_len
        // <= per_segment * block_len <= SEGMENT_LEN.
        Some(unsafe { base.add(((index % per_segment) * block_len) as usize) })
    }

    /// Maps the segment blocks are handed out from and the one after it,
    /// and faults in their pages (and those of any earlier segment not yet
    /// done), so that allocating threads find them ready. Called by the
    /// background thread every tick. A failure here is left for the
    /// allocating thread that truly needs the segment to report.
    pub(crate) fn grow_ahead(&self) {
        let next = self.next_block.load(Ordering::Relaxed);
        let block_len = self.block_len.load(Ordering::Relaxed);
        if next >= CLOSED || block_len == 0 || self.failed.load(Ordering::Relaxed) {
            return;
        }
        let current = next / (SEGMENT_LEN / block_len);
        for s in self.populated.load(Ordering::Relaxed)..=current + 1 {
            let s = s as usize;
            if s >= MAX_SEGMENTS {
                return;
            }
            let mut base = self.segments[s].load(Ordering::Acquire);
            if base.is_null() {
                self.lock_growth();
                let mapped = self.map_segment(s);
                self.unlock_growth();
                match mapped {
                    Ok(b) => base = b,
                    Err(_) => return,
                }
            }
            populate(base);
            self.populated.store(s as u64 + 1, Ordering::Relaxed);
        }
    }

    /// The mapping of segment `s`, creating it if needed.
    fn segment(&self, s: usize) -> Option<*mut u8> {
        let p = self.segments[s].load(Ordering::Acquire);
        if !p.is_null() {
            return Some(p);
        }
        // Slow path, once per SEGMENT_LEN bytes of trace: one thread extends
        // the file while others wanting the same segment wait.
        self.lock_growth();
        let result = self.map_segment(s);
        self.unlock_growth();
        match result {
            Ok(p) => Some(p),
            Err(e) => {
                self.fail(e);
                None
            }
        }
    }

    /// Takes the lock that serializes growing and cutting the file.
    fn lock_growth(&self) {
        while self.grow_lock.swap(true, Ordering::Acquire) {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }

    fn unlock_growth(&self) {
        self.grow_lock.store(false, Ordering::Release);
    }

    /// Extends the file over segment `s` and maps it. Called with the growth
    /// lock held.
    fn map_segment(&self, s: usize) -> Result<*mut u8, SinkError> {
        let p = self.segments[s].load(Ordering::Acquire);
        if !p.is_null() {
            return Ok(p);
        }
        if self.failed.load(Ordering::Relaxed) {
            return Err(SinkError { what: "recording failed earlier", errno: 0 });
        }
        let fd = self.fd.load(Ordering::Relaxed);
        let header_len = self.header_len.load(Ordering::Relaxed);
        let offset = header_len + s as u64 * SEGMENT_LEN;
        // After `finish` cut the file, only the blocks handed out before
        // it may still need room: never grow past them again.
        let mut len = SEGMENT_LEN;
        let closed_at = self.closed_at.load(Ordering::Acquire);
        if closed_at != u64::MAX {
            let end = header_len + closed_at * self.block_len.load(Ordering::Relaxed);
            len = len.min(end.saturating_sub(offset));
        }
        let size_before = file_size(fd)?;
        if let Err(e) = allocate(fd, offset, len) {
            // A failed posix_fallocate may have grown the file part of the
            // way; cut it back so that it still ends on a block boundary.
            // SAFETY: plain system call on our own descriptor; every mapped
            // segment lies below `size_before` (growth is serialized).
            unsafe { libc::ftruncate(fd, size_before as libc::off_t) };
            return Err(e);
        }
        // SAFETY: the file belongs to this recorder and the range was just
        // allocated; nothing truncates it below a handed-out block while the
        // process runs (see `finish`).
        let mut map = unsafe {
            memmap2::MmapOptions::new().offset(offset).len(SEGMENT_LEN as usize).map_mut(fd)
        }
        .map_err(|e| SinkError {
            what: "mapping the trace file",
            errno: e.raw_os_error().unwrap_or(0),
        })?;
        let base = map.as_mut_ptr();
        std::mem::forget(map);
        self.segments[s].store(base, Ordering::Release);
        Ok(base)
    }

    /// Stops recording for good after a file error: sets the header flag and
    /// prints one line to stderr (without allocating).
    pub(crate) fn fail(&self, e: SinkError) {
        if self.failed.swap(true, Ordering::Relaxed) {
            return;
        }
        crate::state::stop_after_failure();
        self.set_flag(FLAG_RECORDING_FAILED);
        let mut line = LineBuf::new();
        line.push(b"memscope: recording stopped: ");
        line.push(e.what.as_bytes());
        if e.errno != 0 {
            line.push(b" (errno ");
            line.push_u64(e.errno as u64);
            line.push(b")");
        }
        line.push(b"; the program continues untraced and the trace keeps every earlier event\n");
        line.write_stderr();
    }

    /// Sets bits in the header's flags field.
    pub(crate) fn set_flag(&self, flag: u32) {
        if let Some(flags) = self.header_u32(header_offset::FLAGS) {
            flags.fetch_or(flag, Ordering::Release);
        }
    }

    fn header_u32(&self, offset: usize) -> Option<&AtomicU32> {
        let base = self.header.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: the header mapping is page-aligned, at least 4096 bytes
        // long and never unmapped; `offset` is a 4-byte-aligned field offset
        // below HEADER_FIXED_LEN, and the recorder only accesses it
        // atomically.
        Some(unsafe { AtomicU32::from_ptr(base.add(offset).cast()) })
    }

    fn header_u64(&self, offset: usize) -> Option<&AtomicU64> {
        let base = self.header.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: as in `header_u32`, for an 8-byte-aligned field.
        Some(unsafe { AtomicU64::from_ptr(base.add(offset).cast()) })
    }

    /// Writes the calibration point taken shortly after the origin.
    pub(crate) fn write_calibration(&self, ticks: u64, mono_ns: u64) {
        if let (Some(t), Some(n)) =
            (self.header_u64(header_offset::CAL_TICKS), self.header_u64(header_offset::CAL_MONO_NS))
        {
            t.store(ticks, Ordering::Relaxed);
            n.store(mono_ns, Ordering::Relaxed);
        }
    }

    /// Closes block hand-out, completes the header and cuts the file after
    /// the last handed-out block. Threads keep writing into the blocks they
    /// already hold; those all lie before the cut.
    pub(crate) fn finish(&self, end_ticks: u64, end_mono_ns: u64) {
        let used = self.next_block.swap(CLOSED, Ordering::AcqRel).min(CLOSED);
        self.closed_at.store(used, Ordering::Release);
        let fields = [
            (header_offset::END_TICKS, end_ticks),
            (header_offset::END_MONO_NS, end_mono_ns),
            (header_offset::BLOCKS_USED, used),
        ];
        for (offset, value) in fields {
            if let Some(f) = self.header_u64(offset) {
                f.store(value, Ordering::Relaxed);
            }
        }
        self.set_flag(FLAG_FINISHED);
        let fd = self.fd.load(Ordering::Relaxed);
        if fd >= 0 {
            let len = self.header_len.load(Ordering::Relaxed)
                + used * self.block_len.load(Ordering::Relaxed);
            // Under the growth lock, so that a segment being mapped for a
            // block handed out just before closing cannot re-grow the file
            // after the cut (`map_segment` stops at `closed_at` blocks).
            self.lock_growth();
            // SAFETY: plain system call on our own descriptor. Every block a
            // thread can still write lies below `len` (hand-out is closed).
            unsafe { libc::ftruncate(fd, len as libc::off_t) };
            self.unlock_growth();
        }
    }
}

/// Faults in the pages of a freshly mapped segment for writing, so that the
/// first record on each page does not take a page fault on an allocating
/// thread. Best effort: kernels before 5.14 do not know the advice.
fn populate(base: *mut u8) {
    #[cfg(target_os = "linux")]
    // SAFETY: `base` starts a live mapping of SEGMENT_LEN bytes; the advice
    // only faults pages in and changes no contents.
    unsafe {
        libc::madvise(base.cast(), SEGMENT_LEN as usize, libc::MADV_POPULATE_WRITE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = base;
}

/// Reserves disk space for `len` bytes at `offset`, growing the file.
fn allocate(fd: RawFd, offset: u64, len: u64) -> Result<(), SinkError> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system call on a descriptor we own.
        let rc = unsafe { libc::posix_fallocate(fd, offset as libc::off_t, len as libc::off_t) };
        if rc == 0 {
            return Ok(());
        }
        // Filesystems without fallocate (EOPNOTSUPP) fall back to a sparse
        // extension; a full disk is an error.
        if rc != libc::EOPNOTSUPP && rc != libc::EINVAL {
            return Err(SinkError { what: "growing the trace file (disk full?)", errno: rc });
        }
    }
    let size = file_size(fd)?;
    if size < offset + len {
        // SAFETY: plain system call on a descriptor we own.
        if unsafe { libc::ftruncate(fd, (offset + len) as libc::off_t) } != 0 {
            return Err(SinkError { what: "growing the trace file", errno: errno() });
        }
    }
    Ok(())
}

/// The file's current size in bytes.
fn file_size(fd: RawFd) -> Result<u64, SinkError> {
    // SAFETY: fstat writes into the zeroed `stat` we own.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return Err(SinkError { what: "reading the trace file size", errno: errno() });
        }
        Ok(st.st_size as u64)
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A fixed-size line for messages printed from inside the allocator, where
/// formatting machinery that allocates must not run.
pub(crate) struct LineBuf {
    buf: [u8; 256],
    len: usize,
}

impl LineBuf {
    pub(crate) const fn new() -> LineBuf {
        LineBuf { buf: [0; 256], len: 0 }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    pub(crate) fn push_u64(&mut self, mut v: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    pub(crate) fn write_stderr(&self) {
        // SAFETY: writes initialized bytes of our own buffer to fd 2.
        unsafe { libc::write(2, self.buf.as_ptr().cast(), self.len) };
    }
}
