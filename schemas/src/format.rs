//! The byte layout of a memscope trace: constants, the file header, the
//! block header and the packing of record words.
//!
//! `schemas/FORMAT.md` is the normative description; every item here names
//! the section it implements. All integers are little-endian.

use crate::error::{DecodeError, DecodeErrorKind};

/// The first eight bytes of every trace file ([FORMAT.md § File header]).
pub const MAGIC: [u8; 8] = *b"MEMSCOPE";

/// The format major version this crate writes and reads. A reader rejects
/// any other major version.
pub const FORMAT_MAJOR: u16 = 1;

/// The format minor version this crate writes. Readers accept any minor
/// version of their major version: newer minors only add extended record
/// subkinds, which older readers skip.
pub const FORMAT_MINOR: u16 = 2;

/// Size in bytes of one record word, the unit every record is made of.
pub const WORD_SIZE: usize = 8;

/// Granularity of the file header length, and alignment of the first block.
pub const PAGE_SIZE: usize = 4096;

/// Size in bytes of the fixed part of the file header; the program path and
/// arguments follow it.
pub const HEADER_FIXED_LEN: usize = 128;

/// Largest header length a reader accepts (bytes).
pub const MAX_HEADER_LEN: usize = 1 << 20;

/// Smallest and largest block length (bytes). Block lengths are powers of two.
pub const MIN_BLOCK_LEN: u32 = 4096;
/// See [`MIN_BLOCK_LEN`].
pub const MAX_BLOCK_LEN: u32 = 16 << 20;

/// Block length the recorder uses unless configured otherwise (64 KiB).
pub const DEFAULT_BLOCK_LEN: u32 = 64 << 10;

/// `u32` at the start of every used block: the bytes `MBLK`.
pub const BLOCK_MAGIC: u32 = u32::from_le_bytes(*b"MBLK");

/// Number of words in a block header.
pub const BLOCK_HEADER_WORDS: usize = 4;

/// Number of address bits stored in a record's first word. Addresses with
/// higher bits set are preceded by an `ADDR_HIGH` record.
pub const ADDR_BITS: u32 = 48;
/// Mask of the low [`ADDR_BITS`] bits of an address.
pub const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

/// Number of bits of the time delta in a record's first word.
pub const DT_BITS: u32 = 12;
/// Largest time delta (in quanta) a record's first word can hold; larger
/// steps are written as a `TIME` record.
pub const MAX_DT: u64 = (1 << DT_BITS) - 1;

/// Number of bits of the size field of allocation and reallocation records.
pub const SIZE_BITS: u32 = 56;
/// Largest size a record can hold (bytes). No real allocation reaches it: it
/// is larger than any 64-bit machine's address space in use.
pub const MAX_SIZE: u64 = (1 << SIZE_BITS) - 1;

/// Longest string payload the recorder writes (bytes); longer strings are cut
/// at a character boundary.
pub const MAX_STRING_LEN: usize = 4096;

/// Record kinds: the low four bits of a record's first word
/// ([FORMAT.md § Records]). Kind `0` never starts a record: a zero word
/// marks the end of the data in a block.
pub mod kind {
    /// An allocation (2 words).
    pub const ALLOC: u8 = 1;
    /// A deallocation (1 word).
    pub const FREE: u8 = 2;
    /// A reallocation (3 words).
    pub const REALLOC: u8 = 3;
    /// A new absolute time for the records that follow (1 word).
    pub const TIME: u8 = 4;
    /// A type tag on a heap block (2 words).
    pub const TAG: u8 = 5;
    /// The high 16 bits of the next record's address (1 word).
    pub const ADDR_HIGH: u8 = 6;
    /// A length-prefixed record; see [`super::ext`].
    pub const EXTENDED: u8 = 15;
}

/// Subkinds of extended records ([FORMAT.md § Extended records]). Readers
/// skip subkinds they do not know.
pub mod ext {
    /// A string definition for interning: string id and UTF-8 bytes.
    pub const STRING: u16 = 1;
    /// The name of the block's thread.
    pub const THREAD_NAME: u16 = 2;
    /// The block's thread is exiting.
    pub const THREAD_EXIT: u16 = 3;
    /// The end-of-trace marker with totals.
    pub const END: u16 = 4;
    /// A resident-set-size sample (minor version 1).
    pub const RSS: u16 = 5;
    /// A call stack: the thread's stack id and its return addresses
    /// (minor version 2).
    pub const STACK: u16 = 6;
    /// The stack of the allocations and reallocations that follow in the
    /// block (minor version 2).
    pub const STACK_REF: u16 = 7;
    /// A loaded module (executable or shared library) and its address range
    /// (minor version 2).
    pub const MODULE: u16 = 8;
}

/// Deepest call stack the recorder captures (frames).
pub const MAX_STACK_DEPTH: usize = 256;

/// Where timestamps come from ([FORMAT.md § Clock]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockSource {
    /// The x86-64 time-stamp counter (`rdtsc`), invariant across cores;
    /// converted to nanoseconds with the header's calibration points.
    Tsc,
    /// `CLOCK_MONOTONIC` in nanoseconds.
    Monotonic,
}

impl ClockSource {
    /// The header code of this clock source.
    pub const fn code(self) -> u8 {
        match self {
            ClockSource::Tsc => 1,
            ClockSource::Monotonic => 2,
        }
    }

    /// The clock source for a header code, if known.
    pub const fn from_code(code: u8) -> Option<ClockSource> {
        match code {
            1 => Some(ClockSource::Tsc),
            2 => Some(ClockSource::Monotonic),
            _ => None,
        }
    }

    /// A short lowercase name: `tsc` or `monotonic`.
    pub const fn name(self) -> &'static str {
        match self {
            ClockSource::Tsc => "tsc",
            ClockSource::Monotonic => "monotonic",
        }
    }
}

/// Header flag: the recorder finished the trace (`finish()` or normal exit)
/// and wrote the end marker, the end calibration and `blocks_used`.
pub const FLAG_FINISHED: u32 = 1 << 0;
/// Header flag: recording stopped early because the file could not grow or
/// be mapped (for example a full disk). Events up to that point are intact.
pub const FLAG_RECORDING_FAILED: u32 = 1 << 1;
/// Header flag: the program arguments did not fit in the header and were cut.
pub const FLAG_ARGS_TRUNCATED: u32 = 1 << 2;

/// Byte offsets of the fixed header fields ([FORMAT.md § File header]).
pub mod header_offset {
    /// `[u8; 8]` magic.
    pub const MAGIC: usize = 0;
    /// `u16` format major version.
    pub const MAJOR: usize = 8;
    /// `u16` format minor version.
    pub const MINOR: usize = 10;
    /// `u32` header length in bytes.
    pub const HEADER_LEN: usize = 12;
    /// `u32` block length in bytes.
    pub const BLOCK_LEN: usize = 16;
    /// `u8` record word size in bytes.
    pub const WORD_SIZE: usize = 20;
    /// `u8` time quantum as a shift of clock ticks.
    pub const TIME_SHIFT: usize = 21;
    /// `u8` clock source code.
    pub const CLOCK_SOURCE: usize = 22;
    /// `u8` pointer width in bits.
    pub const POINTER_BITS: usize = 23;
    /// `u32` process id.
    pub const PID: usize = 24;
    /// `u32` flags, updated while recording.
    pub const FLAGS: usize = 28;
    /// `u64` wall-clock start, nanoseconds since the Unix epoch.
    pub const START_UNIX_NS: usize = 32;
    /// `u64` clock ticks at the trace origin.
    pub const START_TICKS: usize = 40;
    /// `u64` `CLOCK_MONOTONIC` nanoseconds at the trace origin.
    pub const START_MONO_NS: usize = 48;
    /// `u64` clock ticks at the calibration point.
    pub const CAL_TICKS: usize = 56;
    /// `u64` `CLOCK_MONOTONIC` nanoseconds at the calibration point.
    pub const CAL_MONO_NS: usize = 64;
    /// `u64` clock ticks at the end of the trace (0 until finished).
    pub const END_TICKS: usize = 72;
    /// `u64` `CLOCK_MONOTONIC` nanoseconds at the end (0 until finished).
    pub const END_MONO_NS: usize = 80;
    /// `u64` number of blocks handed out (0 until finished).
    pub const BLOCKS_USED: usize = 88;
    /// `u32` length of the program path in bytes.
    pub const PROGRAM_LEN: usize = 96;
    /// `u32` length of the NUL-separated arguments in bytes.
    pub const ARGS_LEN: usize = 100;
    /// `u64` sampling rate in bytes, 0 when every allocation is recorded
    /// (minor version 1; zero in older traces).
    pub const SAMPLE_RATE: usize = 104;
    /// `u32` deepest call stack captured, in frames; 0 when stacks were not
    /// captured (minor version 2; zero in older traces).
    pub const STACK_DEPTH: usize = 112;
}

/// The file header: what the analyzer needs to interpret every block
/// ([FORMAT.md § File header]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileHeader {
    /// Format major version.
    pub major: u16,
    /// Format minor version.
    pub minor: u16,
    /// Length of the header in bytes, a multiple of [`PAGE_SIZE`]; the first
    /// block starts at this offset.
    pub header_len: u32,
    /// Length of every block in bytes, a power of two.
    pub block_len: u32,
    /// Timestamps in records are clock ticks shifted right by this amount.
    pub time_shift: u8,
    /// Where the ticks come from.
    pub clock: ClockSource,
    /// Id of the traced process.
    pub pid: u32,
    /// [`FLAG_FINISHED`], [`FLAG_RECORDING_FAILED`], [`FLAG_ARGS_TRUNCATED`].
    pub flags: u32,
    /// Wall-clock time of the trace origin, nanoseconds since the Unix epoch.
    pub start_unix_ns: u64,
    /// Calibration: clock ticks and `CLOCK_MONOTONIC` nanoseconds at the
    /// trace origin, at a calibration point shortly after, and at the end
    /// (zero until finished).
    pub start_ticks: u64,
    /// See [`FileHeader::start_ticks`].
    pub start_mono_ns: u64,
    /// See [`FileHeader::start_ticks`].
    pub cal_ticks: u64,
    /// See [`FileHeader::start_ticks`].
    pub cal_mono_ns: u64,
    /// See [`FileHeader::start_ticks`].
    pub end_ticks: u64,
    /// See [`FileHeader::start_ticks`].
    pub end_mono_ns: u64,
    /// Blocks handed out by the recorder; zero until finished.
    pub blocks_used: u64,
    /// Mean bytes between sampled allocations under Poisson sampling by
    /// bytes; 0 when every allocation is recorded.
    pub sample_rate: u64,
    /// Deepest call stack the recorder captured, in frames; 0 when it
    /// captured none.
    pub stack_depth: u32,
    /// Path of the traced program (lossy UTF-8 when decoded).
    pub program: String,
    /// Arguments of the traced program, the program name first.
    pub args: Vec<String>,
}

impl FileHeader {
    /// Whether the recorder finished this trace.
    pub fn is_finished(&self) -> bool {
        self.flags & FLAG_FINISHED != 0
    }

    /// Whether recording stopped early because the file could not grow.
    pub fn recording_failed(&self) -> bool {
        self.flags & FLAG_RECORDING_FAILED != 0
    }

    /// The probability that an allocation of `size` bytes was recorded:
    /// 1 without sampling or at or above the rate, else
    /// `1 - exp(-size / sample_rate)`. Its inverse is the allocation's weight.
    pub fn sample_probability(&self, size: u64) -> f64 {
        if self.sample_rate == 0 || size >= self.sample_rate {
            1.0
        } else {
            1.0 - (-(size as f64) / self.sample_rate as f64).exp()
        }
    }

    /// Nanoseconds per clock tick, from the widest calibration interval
    /// available: origin to end when finished, else origin to the
    /// calibration point. Exactly 1.0 for [`ClockSource::Monotonic`].
    pub fn ns_per_tick(&self) -> f64 {
        if self.clock == ClockSource::Monotonic {
            return 1.0;
        }
        let pairs = [(self.end_ticks, self.end_mono_ns), (self.cal_ticks, self.cal_mono_ns)];
        for (ticks, ns) in pairs {
            if ticks > self.start_ticks && ns > self.start_mono_ns {
                return (ns - self.start_mono_ns) as f64 / (ticks - self.start_ticks) as f64;
            }
        }
        // No usable calibration: assume a 1 GHz counter rather than fail.
        1.0
    }

    /// Converts a quantized timestamp from a record into nanoseconds since
    /// the trace origin (negative only for a clock that went backwards).
    pub fn quanta_to_ns(&self, q: u64) -> i64 {
        TimeScale::new(self).to_ns(q)
    }

    /// Encodes the header into `out`, which must be at least
    /// [`FileHeader::encoded_len`] bytes long. Bytes after the encoded
    /// program and arguments are left as they are.
    ///
    /// # Panics
    ///
    /// Panics if `out` is too short.
    pub fn encode(&self, out: &mut [u8]) {
        use header_offset as o;
        let args = join_args(&self.args);
        out[o::MAGIC..o::MAGIC + 8].copy_from_slice(&MAGIC);
        put_u16(out, o::MAJOR, self.major);
        put_u16(out, o::MINOR, self.minor);
        put_u32(out, o::HEADER_LEN, self.header_len);
        put_u32(out, o::BLOCK_LEN, self.block_len);
        out[o::WORD_SIZE] = WORD_SIZE as u8;
        out[o::TIME_SHIFT] = self.time_shift;
        out[o::CLOCK_SOURCE] = self.clock.code();
        out[o::POINTER_BITS] = 64;
        put_u32(out, o::PID, self.pid);
        put_u32(out, o::FLAGS, self.flags);
        put_u64(out, o::START_UNIX_NS, self.start_unix_ns);
        put_u64(out, o::START_TICKS, self.start_ticks);
        put_u64(out, o::START_MONO_NS, self.start_mono_ns);
        put_u64(out, o::CAL_TICKS, self.cal_ticks);
        put_u64(out, o::CAL_MONO_NS, self.cal_mono_ns);
        put_u64(out, o::END_TICKS, self.end_ticks);
        put_u64(out, o::END_MONO_NS, self.end_mono_ns);
        put_u64(out, o::BLOCKS_USED, self.blocks_used);
        put_u32(out, o::PROGRAM_LEN, self.program.len() as u32);
        put_u32(out, o::ARGS_LEN, args.len() as u32);
        put_u64(out, o::SAMPLE_RATE, self.sample_rate);
        put_u32(out, o::STACK_DEPTH, self.stack_depth);
        out[o::STACK_DEPTH + 4..HEADER_FIXED_LEN].fill(0);
        let p = HEADER_FIXED_LEN;
        out[p..p + self.program.len()].copy_from_slice(self.program.as_bytes());
        let a = p + self.program.len();
        out[a..a + args.len()].copy_from_slice(&args);
    }

    /// Bytes [`FileHeader::encode`] writes: the fixed part, the program path
    /// and the NUL-separated arguments.
    pub fn encoded_len(&self) -> usize {
        HEADER_FIXED_LEN + self.program.len() + join_args(&self.args).len()
    }

    /// Decodes and validates a header from the start of a trace file.
    ///
    /// # Errors
    ///
    /// Returns a [`DecodeError`] with the offset of the offending field when
    /// the magic is wrong, the major version is not [`FORMAT_MAJOR`], the
    /// bytes end before the header does, or a field is out of range.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, DecodeError> {
        use header_offset as o;
        if bytes.is_empty() {
            return Err(DecodeError::new(0, DecodeErrorKind::Empty));
        }
        let magic_len = bytes.len().min(8);
        if bytes[..magic_len] != MAGIC[..magic_len] {
            return Err(DecodeError::new(
                0,
                DecodeErrorKind::BadMagic { found: bytes[..magic_len].to_vec() },
            ));
        }
        if bytes.len() < HEADER_FIXED_LEN {
            return Err(DecodeError::new(
                bytes.len() as u64,
                DecodeErrorKind::HeaderCutShort {
                    len: bytes.len() as u64,
                    needed: HEADER_FIXED_LEN as u64,
                },
            ));
        }
        let major = get_u16(bytes, o::MAJOR);
        let minor = get_u16(bytes, o::MINOR);
        if major != FORMAT_MAJOR {
            return Err(DecodeError::new(
                o::MAJOR as u64,
                DecodeErrorKind::UnsupportedVersion { major, minor, supported: FORMAT_MAJOR },
            ));
        }
        let header_len = get_u32(bytes, o::HEADER_LEN);
        let field = |offset: usize, name: &'static str, value: u64, expected: &'static str| {
            DecodeError::new(
                offset as u64,
                DecodeErrorKind::BadHeaderField { name, value, expected },
            )
        };
        if !(header_len as usize).is_multiple_of(PAGE_SIZE)
            || (header_len as usize) < HEADER_FIXED_LEN
            || header_len as usize > MAX_HEADER_LEN
        {
            return Err(field(
                o::HEADER_LEN,
                "header_len",
                header_len.into(),
                "a multiple of 4096 between 4096 and 1 MiB",
            ));
        }
        let block_len = get_u32(bytes, o::BLOCK_LEN);
        if !block_len.is_power_of_two() || !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&block_len) {
            return Err(field(
                o::BLOCK_LEN,
                "block_len",
                block_len.into(),
                "a power of two between 4 KiB and 16 MiB",
            ));
        }
        if bytes[o::WORD_SIZE] as usize != WORD_SIZE {
            return Err(field(o::WORD_SIZE, "word_size", bytes[o::WORD_SIZE].into(), "8"));
        }
        let time_shift = bytes[o::TIME_SHIFT];
        if time_shift > 32 {
            return Err(field(o::TIME_SHIFT, "time_shift", time_shift.into(), "at most 32"));
        }
        let clock = ClockSource::from_code(bytes[o::CLOCK_SOURCE]).ok_or_else(|| {
            field(
                o::CLOCK_SOURCE,
                "clock_source",
                bytes[o::CLOCK_SOURCE].into(),
                "1 (tsc) or 2 (monotonic)",
            )
        })?;
        if bytes[o::POINTER_BITS] != 64 {
            return Err(field(
                o::POINTER_BITS,
                "pointer_bits",
                bytes[o::POINTER_BITS].into(),
                "64",
            ));
        }
        let program_len = get_u32(bytes, o::PROGRAM_LEN) as usize;
        let args_len = get_u32(bytes, o::ARGS_LEN) as usize;
        let strings_end = HEADER_FIXED_LEN as u64 + program_len as u64 + args_len as u64;
        if strings_end > header_len as u64 {
            return Err(field(
                o::PROGRAM_LEN,
                "program_len + args_len",
                (program_len + args_len) as u64,
                "to fit in header_len",
            ));
        }
        if (bytes.len() as u64) < strings_end {
            return Err(DecodeError::new(
                bytes.len() as u64,
                DecodeErrorKind::HeaderCutShort { len: bytes.len() as u64, needed: strings_end },
            ));
        }
        let p = HEADER_FIXED_LEN;
        let program = String::from_utf8_lossy(&bytes[p..p + program_len]).into_owned();
        let raw_args = &bytes[p + program_len..p + program_len + args_len];
        let args = if raw_args.is_empty() {
            Vec::new()
        } else {
            raw_args.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        };
        Ok(FileHeader {
            major,
            minor,
            header_len,
            block_len,
            time_shift,
            clock,
            pid: get_u32(bytes, o::PID),
            flags: get_u32(bytes, o::FLAGS),
            start_unix_ns: get_u64(bytes, o::START_UNIX_NS),
            start_ticks: get_u64(bytes, o::START_TICKS),
            start_mono_ns: get_u64(bytes, o::START_MONO_NS),
            cal_ticks: get_u64(bytes, o::CAL_TICKS),
            cal_mono_ns: get_u64(bytes, o::CAL_MONO_NS),
            end_ticks: get_u64(bytes, o::END_TICKS),
            end_mono_ns: get_u64(bytes, o::END_MONO_NS),
            blocks_used: get_u64(bytes, o::BLOCKS_USED),
            sample_rate: get_u64(bytes, o::SAMPLE_RATE),
            stack_depth: get_u32(bytes, o::STACK_DEPTH),
            program,
            args,
        })
    }
}

/// Converts quantized record timestamps into nanoseconds since the trace
/// origin. Built once per trace from its header.
#[derive(Clone, Copy, Debug)]
pub struct TimeScale {
    shift: u32,
    start_ticks: u64,
    /// Nanoseconds per tick as a 32.32 fixed-point number, so that the
    /// conversion is integer arithmetic (exact to well under a
    /// nanosecond over any real trace length).
    ns_per_tick_fixed: u64,
}

impl TimeScale {
    /// The scale of a trace's header.
    pub fn new(header: &FileHeader) -> TimeScale {
        let ns_per_tick = header.ns_per_tick();
        let fixed = if ns_per_tick.is_finite() && ns_per_tick > 0.0 {
            (ns_per_tick * (1u64 << 32) as f64).round().min(u64::MAX as f64) as u64
        } else {
            1 << 32
        };
        TimeScale {
            shift: header.time_shift.into(),
            start_ticks: header.start_ticks,
            ns_per_tick_fixed: fixed,
        }
    }

    /// Nanoseconds since the trace origin of quantized timestamp `q`
    /// (negative before the origin; saturating at the `i64` range).
    #[inline]
    pub fn to_ns(&self, q: u64) -> i64 {
        // A shift that loses high bits (only in a corrupt trace) saturates.
        let ticks = if q.leading_zeros() >= self.shift { q << self.shift } else { u64::MAX };
        let (delta, negative) = match ticks.checked_sub(self.start_ticks) {
            Some(d) => (d, false),
            None => (self.start_ticks - ticks, true),
        };
        let ns = (u128::from(delta) * u128::from(self.ns_per_tick_fixed) + (1 << 31)) >> 32;
        let ns = i64::try_from(ns).unwrap_or(i64::MAX);
        if negative { -ns } else { ns }
    }
}

fn join_args(args: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(a.as_bytes());
    }
    out
}

/// The header of one block: which thread wrote it and its time base
/// ([FORMAT.md § Blocks]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Recorder-assigned thread id, unique within the trace, starting at 1.
    pub thread_id: u32,
    /// The operating system's thread id (`gettid`).
    pub os_tid: u32,
    /// Index of this block among the blocks of its thread, starting at 0.
    pub seq: u32,
    /// Quantized timestamp that the block's first time delta is relative to.
    pub base_q: u64,
}

impl BlockHeader {
    /// The header as its four words, in file order.
    pub fn to_words(&self) -> [u64; BLOCK_HEADER_WORDS] {
        [
            u64::from(BLOCK_MAGIC) | u64::from(self.thread_id) << 32,
            u64::from(self.os_tid) | u64::from(self.seq) << 32,
            self.base_q,
            0,
        ]
    }

    /// Reads a block header from the first four words of a block. Returns
    /// `Ok(None)` for an unused block (first word zero).
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::BadBlockMagic`] when the first word is neither zero
    /// nor starts with [`BLOCK_MAGIC`]; `offset` is the block's offset.
    pub fn from_words(
        words: [u64; BLOCK_HEADER_WORDS],
        offset: u64,
    ) -> Result<Option<BlockHeader>, DecodeError> {
        if words[0] == 0 {
            return Ok(None);
        }
        let magic = words[0] as u32;
        if magic != BLOCK_MAGIC {
            return Err(DecodeError::new(offset, DecodeErrorKind::BadBlockMagic { found: magic }));
        }
        Ok(Some(BlockHeader {
            thread_id: (words[0] >> 32) as u32,
            os_tid: words[1] as u32,
            seq: (words[1] >> 32) as u32,
            base_q: words[2],
        }))
    }
}

/// Packs the first word of a timed record: kind, time delta and the low 48
/// bits of an address.
#[inline(always)]
pub const fn pack_head(kind: u8, dt: u64, address: u64) -> u64 {
    (kind as u64) | (dt << 4) | ((address & ADDR_MASK) << 16)
}

/// Packs the second word of an allocation or reallocation: size in bytes
/// (56 bits), log2 of the alignment (6 bits) and the zeroed flag.
#[inline(always)]
pub const fn pack_size(size: u64, align: u64, zeroed: bool) -> u64 {
    let size = if size > MAX_SIZE { MAX_SIZE } else { size };
    let align_log2 = if align == 0 { 0 } else { align.trailing_zeros() as u64 };
    size | (align_log2 << SIZE_BITS) | ((zeroed as u64) << 62)
}

/// Packs the first word of an extended record: subkind, payload length in
/// words (after this word) and a 32-bit inline value.
#[inline(always)]
pub const fn pack_ext(subkind: u16, len_words: u16, value: u32) -> u64 {
    (kind::EXTENDED as u64)
        | ((subkind as u64 & 0xfff) << 4)
        | ((len_words as u64) << 16)
        | ((value as u64) << 32)
}

/// Packs a `TIME` record holding quantized timestamp `q` (60 bits).
#[inline(always)]
pub const fn pack_time(q: u64) -> u64 {
    (kind::TIME as u64) | (q << 4)
}

/// Packs an `ADDR_HIGH` record for the next record's address.
#[inline(always)]
pub const fn pack_addr_high(address: u64) -> u64 {
    (kind::ADDR_HIGH as u64) | ((address >> ADDR_BITS) << 16)
}

fn put_u16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn get_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}
