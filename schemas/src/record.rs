//! Records: the decoded form of the words in a block, the encoder that
//! turns records into words, and the decoder that turns a block back into
//! records ([FORMAT.md § Records]).

use crate::error::{DecodeError, DecodeErrorKind};
use crate::format::{
    ADDR_BITS, ADDR_MASK, BLOCK_HEADER_WORDS, BlockHeader, DT_BITS, MAX_DT, SIZE_BITS, WORD_SIZE,
    ext, kind, pack_addr_high, pack_ext, pack_head, pack_size, pack_time,
};

/// One decoded record. Timestamps `q` are absolute quantized clock values
/// (ticks shifted right by the header's `time_shift`); convert them with
/// [`crate::format::TimeScale`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    /// A block of `size` bytes aligned to `align` bytes was allocated at
    /// `address`; `zeroed` when it came from `alloc_zeroed`.
    Alloc {
        /// Quantized timestamp.
        q: u64,
        /// Start address of the block.
        address: u64,
        /// Requested size in bytes.
        size: u64,
        /// Requested alignment in bytes (a power of two).
        align: u64,
        /// Whether the block was requested zero-filled.
        zeroed: bool,
    },
    /// The block at `address` was deallocated.
    Free {
        /// Quantized timestamp.
        q: u64,
        /// Start address of the block.
        address: u64,
    },
    /// The block at `old_address` was reallocated to `size` bytes at
    /// `address` (which may equal `old_address`).
    Realloc {
        /// Quantized timestamp.
        q: u64,
        /// Start address of the block before the reallocation.
        old_address: u64,
        /// Start address of the block after the reallocation.
        address: u64,
        /// New size in bytes.
        size: u64,
        /// Alignment in bytes (a power of two).
        align: u64,
    },
    /// The heap block containing `address` holds a value of the type named
    /// by string `type_name`, bound to the variable named by `var_name`
    /// (string ids; 0 means absent).
    Tag {
        /// Quantized timestamp.
        q: u64,
        /// An address inside the tagged block (often its start).
        address: u64,
        /// String id of the type name.
        type_name: u32,
        /// String id of the variable name.
        var_name: u32,
    },
    /// String `id` (never 0) has these UTF-8 bytes. Ids are unique within a
    /// trace; the definition may appear in any block, before or after uses.
    String {
        /// String id.
        id: u32,
        /// The bytes, normally UTF-8.
        bytes: &'a [u8],
    },
    /// The block's thread is named `name` (the last such record wins).
    ThreadName {
        /// Quantized timestamp.
        q: u64,
        /// The name's bytes, normally UTF-8.
        name: &'a [u8],
    },
    /// The block's thread is exiting; its later records come from
    /// thread-local destructors.
    ThreadExit {
        /// Quantized timestamp.
        q: u64,
    },
    /// The end-of-trace marker, with the recorder's totals.
    End {
        /// Quantized timestamp.
        q: u64,
        /// Counts over the whole trace.
        totals: Totals,
    },
    /// The process's resident set size at time `q` (minor version 1).
    Rss {
        /// Quantized timestamp.
        q: u64,
        /// Resident set size in bytes.
        rss_bytes: u64,
    },
    /// Call stack `id` of the block's thread (minor version 2): return
    /// addresses, innermost (the allocator's caller) first. Ids are per
    /// thread, from 1; a thread may define the same stack under several ids.
    Stack {
        /// The thread's stack id (not 0).
        id: u32,
        /// Return addresses, innermost first.
        frames: Frames<'a>,
    },
    /// The allocations and reallocations that follow in this block, up to
    /// the next `StackRef`, were made at the thread's stack `id` (0: no
    /// stack). Every block starts at stack 0 (minor version 2).
    StackRef {
        /// The thread's stack id, or 0.
        id: u32,
    },
    /// A module (the executable or a shared library) mapped at
    /// `start..end` with load bias `bias`: an address `a` in the range is
    /// `a - bias` in the module file's own address space (minor version 2).
    Module {
        /// Quantized timestamp of the module map this entry belongs to.
        q: u64,
        /// Lowest address of the module's loaded segments.
        start: u64,
        /// One past the highest address of its loaded segments.
        end: u64,
        /// Load bias: run-time address minus address in the file.
        bias: u64,
        /// Path of the module file, as the loader knows it.
        path: &'a [u8],
        /// The GNU build id from the module's notes; empty when it has none.
        build_id: &'a [u8],
    },
    /// An extended record of a subkind this reader does not know (written
    /// by a newer minor version); skipped.
    Unknown {
        /// The extended subkind.
        subkind: u16,
    },
}

/// The return addresses of a [`Record::Stack`]: native words when encoding,
/// little-endian bytes from a file when decoding.
#[derive(Clone, Copy, Debug)]
pub enum Frames<'a> {
    /// Addresses as words.
    Words(&'a [u64]),
    /// Addresses as 8-byte little-endian groups (a whole number of them).
    Bytes(&'a [u8]),
}

impl<'a> Frames<'a> {
    /// Number of frames.
    pub fn len(&self) -> usize {
        match self {
            Frames::Words(w) => w.len(),
            Frames::Bytes(b) => b.len() / WORD_SIZE,
        }
    }

    /// Whether there are no frames.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The address of frame `i` (0 is the innermost).
    pub fn get(&self, i: usize) -> Option<u64> {
        match *self {
            Frames::Words(w) => w.get(i).copied(),
            Frames::Bytes(b) => (i < b.len() / WORD_SIZE).then(|| word(b, i)),
        }
    }

    /// The addresses, innermost first.
    pub fn iter(&self) -> FramesIter<'a> {
        FramesIter { frames: *self, next: 0 }
    }
}

/// Iterator over the addresses of [`Frames`], innermost first.
#[derive(Clone, Debug)]
pub struct FramesIter<'a> {
    frames: Frames<'a>,
    next: usize,
}

impl Iterator for FramesIter<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let a = self.frames.get(self.next)?;
        self.next += 1;
        Some(a)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.frames.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for FramesIter<'_> {}

impl PartialEq for Frames<'_> {
    fn eq(&self, other: &Frames<'_>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Frames<'_> {}

/// The recorder's counts at the end of a trace, carried by [`Record::End`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Allocation and deallocation records written (allocations,
    /// deallocations, reallocations and tags).
    pub events: u64,
    /// Allocations, including those made by reallocations.
    pub allocations: u64,
    /// Deallocations, including those made by reallocations.
    pub deallocations: u64,
    /// Reallocations.
    pub reallocations: u64,
    /// Events the recorder saw but could not write (file full or failed).
    pub dropped: u64,
}

const END_PAYLOAD_WORDS: usize = 6;

/// The most words [`RecordEncoder::encode`] writes for one fixed-size record,
/// prefixes (`TIME`, `ADDR_HIGH`) included.
pub const MAX_FIXED_WORDS: usize = 5;

/// Turns records into words, tracking the time base of one block.
///
/// Fixed-size records ([`Record::Alloc`], [`Record::Free`],
/// [`Record::Realloc`], [`Record::Tag`]) are encoded with
/// [`RecordEncoder::encode`]; variable-size ones with
/// [`RecordEncoder::encode_into`]. The recorder and every synthetic trace go
/// through this type, so they cannot disagree on the layout.
#[derive(Clone, Copy, Debug)]
pub struct RecordEncoder {
    last_q: u64,
}

impl RecordEncoder {
    /// An encoder for a block whose header has time base `base_q`.
    #[inline]
    pub const fn new(base_q: u64) -> RecordEncoder {
        RecordEncoder { last_q: base_q }
    }

    /// The time base the next record's delta is taken from.
    #[inline]
    pub const fn last_q(&self) -> u64 {
        self.last_q
    }

    /// The time delta for `q`, emitting a `TIME` record into `out[*n]` when
    /// the step does not fit in [`DT_BITS`] bits or goes backwards.
    #[inline(always)]
    fn delta(&mut self, q: u64, out: &mut [u64; MAX_FIXED_WORDS], n: &mut usize) -> u64 {
        let dt = q.wrapping_sub(self.last_q);
        if dt > MAX_DT {
            out[*n] = pack_time(q);
            *n += 1;
            self.last_q = q;
            0
        } else {
            self.last_q = q;
            dt
        }
    }

    #[inline(always)]
    fn address_prefix(address: u64, out: &mut [u64; MAX_FIXED_WORDS], n: &mut usize) {
        if address >> ADDR_BITS != 0 {
            out[*n] = pack_addr_high(address);
            *n += 1;
        }
    }

    /// Encodes a fixed-size record into `out` and returns the number of
    /// words written (1 to [`MAX_FIXED_WORDS`]). The words must be stored
    /// contiguously in this order.
    ///
    /// Returns 0 for the variable-size records, which need
    /// [`RecordEncoder::encode_into`].
    #[inline(always)]
    pub fn encode(&mut self, record: &Record<'_>, out: &mut [u64; MAX_FIXED_WORDS]) -> usize {
        let mut n = 0;
        match *record {
            Record::Alloc { q, address, size, align, zeroed } => {
                let dt = self.delta(q, out, &mut n);
                Self::address_prefix(address, out, &mut n);
                out[n] = pack_head(kind::ALLOC, dt, address);
                out[n + 1] = pack_size(size, align, zeroed);
                n + 2
            }
            Record::Free { q, address } => {
                let dt = self.delta(q, out, &mut n);
                Self::address_prefix(address, out, &mut n);
                out[n] = pack_head(kind::FREE, dt, address);
                n + 1
            }
            Record::Realloc { q, old_address, address, size, align } => {
                let dt = self.delta(q, out, &mut n);
                Self::address_prefix(address, out, &mut n);
                out[n] = pack_head(kind::REALLOC, dt, address);
                out[n + 1] = pack_size(size, align, false);
                out[n + 2] = old_address;
                n + 3
            }
            Record::Tag { q, address, type_name, var_name } => {
                let dt = self.delta(q, out, &mut n);
                Self::address_prefix(address, out, &mut n);
                out[n] = pack_head(kind::TAG, dt, address);
                out[n + 1] = u64::from(type_name) | u64::from(var_name) << 32;
                n + 2
            }
            _ => 0,
        }
    }

    /// Number of words [`RecordEncoder::encode_into`] writes for `record`
    /// (at most, for fixed-size records, which may need prefixes).
    pub fn max_words(record: &Record<'_>) -> usize {
        match record {
            Record::String { bytes, .. } => 2 + bytes.len().div_ceil(WORD_SIZE),
            Record::ThreadName { name, .. } => 3 + name.len().div_ceil(WORD_SIZE),
            Record::ThreadExit { .. } => 2,
            Record::End { .. } => 1 + END_PAYLOAD_WORDS,
            Record::Rss { .. } => 3,
            Record::Stack { frames, .. } => 1 + frames.len(),
            Record::StackRef { .. } => 1,
            Record::Module { path, build_id, .. } => {
                7 + path.len().div_ceil(WORD_SIZE) + build_id.len().div_ceil(WORD_SIZE)
            }
            Record::Unknown { .. } => 1,
            _ => MAX_FIXED_WORDS,
        }
    }

    /// Encodes any record into the start of `out` and returns the number of
    /// words written, or `None` when `out` is too short or a string payload
    /// is longer than an extended record can hold (65 534 words); nothing
    /// is written then. Does not allocate.
    pub fn encode_into(&mut self, record: &Record<'_>, out: &mut [u64]) -> Option<usize> {
        let mut fixed = [0; MAX_FIXED_WORDS];
        let saved = self.last_q;
        let n = self.encode(record, &mut fixed);
        if n > 0 {
            if n > out.len() {
                self.last_q = saved;
                return None;
            }
            out[..n].copy_from_slice(&fixed[..n]);
            return Some(n);
        }
        let n = Self::max_words(record);
        if n > out.len() || n - 1 > usize::from(u16::MAX) {
            return None;
        }
        let payload_len = (n - 1) as u16;
        match record {
            Record::String { id, bytes } => {
                out[0] = pack_ext(ext::STRING, payload_len, *id);
                put_bytes(bytes, &mut out[1..n]);
            }
            Record::ThreadName { q, name } => {
                out[0] = pack_ext(ext::THREAD_NAME, payload_len, 0);
                out[1] = *q;
                put_bytes(name, &mut out[2..n]);
            }
            Record::ThreadExit { q } => {
                out[0] = pack_ext(ext::THREAD_EXIT, payload_len, 0);
                out[1] = *q;
            }
            Record::End { q, totals } => {
                out[0] = pack_ext(ext::END, payload_len, 0);
                out[1..n].copy_from_slice(&[
                    *q,
                    totals.events,
                    totals.allocations,
                    totals.deallocations,
                    totals.reallocations,
                    totals.dropped,
                ]);
            }
            Record::Rss { q, rss_bytes } => {
                out[0] = pack_ext(ext::RSS, payload_len, 0);
                out[1] = *q;
                out[2] = *rss_bytes;
            }
            Record::Stack { id, frames } => {
                out[0] = stack_head(*id, frames.len());
                for (o, a) in out[1..n].iter_mut().zip(frames.iter()) {
                    *o = a;
                }
            }
            Record::StackRef { id } => out[0] = stack_ref(*id),
            Record::Module { q, start, end, bias, path, build_id } => {
                out[0] = pack_ext(ext::MODULE, payload_len, 0);
                out[1..5].copy_from_slice(&[*q, *start, *end, *bias]);
                let p = 5 + 1 + path.len().div_ceil(WORD_SIZE);
                put_bytes(path, &mut out[5..p]);
                put_bytes(build_id, &mut out[p..n]);
            }
            Record::Unknown { subkind } => out[0] = pack_ext(*subkind, 0, 0),
            _ => unreachable!("fixed-size records are encoded above"),
        }
        Some(n)
    }
}

/// The first word of a `STACK` record of `depth` frames (at most
/// [`crate::format::MAX_STACK_DEPTH`]) defining the thread's stack `id`; the
/// addresses follow, innermost first.
#[inline(always)]
pub const fn stack_head(id: u32, depth: usize) -> u64 {
    pack_ext(ext::STACK, depth as u16, id)
}

/// The one word of a `STACK_REF` record naming the thread's stack `id`.
#[inline(always)]
pub const fn stack_ref(id: u32) -> u64 {
    pack_ext(ext::STACK_REF, 0, id)
}

/// Writes a string payload into `out`: its byte length, then the bytes
/// zero-padded to whole words. `out` has `1 + ceil(len / 8)` words.
fn put_bytes(bytes: &[u8], out: &mut [u64]) {
    out[0] = bytes.len() as u64;
    for (w, chunk) in out[1..].iter_mut().zip(bytes.chunks(WORD_SIZE)) {
        let mut b = [0u8; WORD_SIZE];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_le_bytes(b);
    }
}

/// Reads a little-endian word at word index `i` of `bytes`.
#[inline(always)]
fn word(bytes: &[u8], i: usize) -> u64 {
    let b = &bytes[i * WORD_SIZE..i * WORD_SIZE + WORD_SIZE];
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Decodes the records of one block, in the order they were written.
///
/// Decoding stops at the first zero word (the end of the data written so
/// far) or at the end of the block. Iterating yields `Err` once, for the
/// first malformed record, and then stops.
#[derive(Debug)]
pub struct BlockDecoder<'a> {
    bytes: &'a [u8],
    offset: u64,
    header: BlockHeader,
    pos: usize,
    q: u64,
    failed: bool,
}

impl<'a> BlockDecoder<'a> {
    /// A decoder for `bytes`, one whole block that starts at byte `offset`
    /// of the file. Returns `Ok(None)` for an unused block.
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::BlockCutShort`] when `bytes` cannot hold a block
    /// header or is not a whole number of words, and
    /// [`DecodeErrorKind::BadBlockMagic`] for a block that is neither unused
    /// nor starts with the block magic.
    pub fn new(bytes: &'a [u8], offset: u64) -> Result<Option<BlockDecoder<'a>>, DecodeError> {
        let min = BLOCK_HEADER_WORDS * WORD_SIZE;
        if bytes.len() < min || !bytes.len().is_multiple_of(WORD_SIZE) {
            return Err(DecodeError::new(
                offset + bytes.len() as u64,
                DecodeErrorKind::BlockCutShort { len: bytes.len() as u64, expected: min as u64 },
            ));
        }
        let words = [word(bytes, 0), word(bytes, 1), word(bytes, 2), word(bytes, 3)];
        let Some(header) = BlockHeader::from_words(words, offset)? else {
            return Ok(None);
        };
        Ok(Some(BlockDecoder {
            bytes,
            offset,
            header,
            pos: BLOCK_HEADER_WORDS,
            q: header.base_q,
            failed: false,
        }))
    }

    /// The block's header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// Byte offset in the file of the next record to decode.
    pub fn offset(&self) -> u64 {
        self.offset + (self.pos * WORD_SIZE) as u64
    }

    fn words(&self) -> usize {
        self.bytes.len() / WORD_SIZE
    }

    fn error(
        &mut self,
        at_word: usize,
        kind: DecodeErrorKind,
    ) -> Option<Result<Record<'a>, DecodeError>> {
        self.failed = true;
        Some(Err(DecodeError::new(self.offset + (at_word * WORD_SIZE) as u64, kind)))
    }

    /// Adds a record's time delta to the running time.
    fn advance(
        &mut self,
        start: usize,
        dt: u64,
    ) -> Result<(), Option<Result<Record<'a>, DecodeError>>> {
        match self.q.checked_add(dt) {
            Some(q) => {
                self.q = q;
                Ok(())
            }
            None => {
                Err(self.error(start, DecodeErrorKind::TimeOverflow { base: self.q, delta: dt }))
            }
        }
    }

    fn need(
        &mut self,
        start: usize,
        kind: u8,
        len: usize,
    ) -> Result<(), Option<Result<Record<'a>, DecodeError>>> {
        if start + len > self.words() {
            return Err(self.error(
                start,
                DecodeErrorKind::RecordPastBlockEnd {
                    kind,
                    needed: (len * WORD_SIZE) as u64,
                    available: ((self.words() - start) * WORD_SIZE) as u64,
                },
            ));
        }
        Ok(())
    }
}

impl<'a> Iterator for BlockDecoder<'a> {
    type Item = Result<Record<'a>, DecodeError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let mut high: u64 = 0;
        loop {
            if self.failed || self.pos >= self.words() {
                return None;
            }
            let start = self.pos;
            let w0 = word(self.bytes, start);
            if w0 == 0 {
                return None;
            }
            let k = (w0 & 0xf) as u8;
            let dt = (w0 >> 4) & MAX_DT;
            let address = (w0 >> 16) & ADDR_MASK | high;
            let fixed_len = match k {
                kind::ALLOC | kind::TAG => 2,
                kind::FREE | kind::TIME | kind::ADDR_HIGH => 1,
                kind::REALLOC => 3,
                kind::EXTENDED => 1 + ((w0 >> 16) & 0xffff) as usize,
                _ => return self.error(start, DecodeErrorKind::UnknownRecordKind { kind: k }),
            };
            if let Err(e) = self.need(start, k, fixed_len) {
                return e;
            }
            self.pos = start + fixed_len;
            match k {
                kind::TIME => {
                    self.q = w0 >> 4;
                    continue;
                }
                kind::ADDR_HIGH => {
                    high = ((w0 >> 16) & 0xffff) << ADDR_BITS;
                    continue;
                }
                kind::ALLOC => {
                    if let Err(e) = self.advance(start, dt) {
                        return e;
                    }
                    let w1 = word(self.bytes, start + 1);
                    let (size, align, zeroed) = unpack_size(w1);
                    if address.checked_add(size).is_none() {
                        return self.error(start, DecodeErrorKind::BlockWraps { address, size });
                    }
                    return Some(Ok(Record::Alloc { q: self.q, address, size, align, zeroed }));
                }
                kind::FREE => {
                    if let Err(e) = self.advance(start, dt) {
                        return e;
                    }
                    return Some(Ok(Record::Free { q: self.q, address }));
                }
                kind::REALLOC => {
                    if let Err(e) = self.advance(start, dt) {
                        return e;
                    }
                    let (size, align, _) = unpack_size(word(self.bytes, start + 1));
                    let old_address = word(self.bytes, start + 2);
                    if address.checked_add(size).is_none() {
                        return self.error(start, DecodeErrorKind::BlockWraps { address, size });
                    }
                    return Some(Ok(Record::Realloc {
                        q: self.q,
                        old_address,
                        address,
                        size,
                        align,
                    }));
                }
                kind::TAG => {
                    if let Err(e) = self.advance(start, dt) {
                        return e;
                    }
                    let w1 = word(self.bytes, start + 1);
                    return Some(Ok(Record::Tag {
                        q: self.q,
                        address,
                        type_name: w1 as u32,
                        var_name: (w1 >> 32) as u32,
                    }));
                }
                _ => {
                    let subkind = ((w0 >> 4) & 0xfff) as u16;
                    let value = (w0 >> 32) as u32;
                    let payload = start + 1..self.pos;
                    return Some(self.extended(start, subkind, value, payload));
                }
            }
        }
    }
}

impl<'a> BlockDecoder<'a> {
    fn extended(
        &mut self,
        start: usize,
        subkind: u16,
        value: u32,
        payload: std::ops::Range<usize>,
    ) -> Result<Record<'a>, DecodeError> {
        let len = payload.len();
        let too_short = |this: &mut Self, needed: usize| {
            this.failed = true;
            DecodeError::new(
                this.offset + (start * WORD_SIZE) as u64,
                DecodeErrorKind::BadExtendedRecord {
                    subkind,
                    reason: format!("payload of {len} words, need {needed}"),
                },
            )
        };
        match subkind {
            ext::STRING => {
                let bytes = self.payload_bytes(start, subkind, payload.clone())?;
                if value == 0 {
                    self.failed = true;
                    return Err(DecodeError::new(
                        self.offset + (start * WORD_SIZE) as u64,
                        DecodeErrorKind::BadExtendedRecord {
                            subkind,
                            reason: "string id 0".into(),
                        },
                    ));
                }
                Ok(Record::String { id: value, bytes })
            }
            ext::THREAD_NAME => {
                if len < 2 {
                    return Err(too_short(self, 2));
                }
                let q = word(self.bytes, payload.start);
                let name = self.payload_bytes(start, subkind, payload.start + 1..payload.end)?;
                Ok(Record::ThreadName { q, name })
            }
            ext::THREAD_EXIT => {
                if len < 1 {
                    return Err(too_short(self, 1));
                }
                Ok(Record::ThreadExit { q: word(self.bytes, payload.start) })
            }
            ext::END => {
                if len < END_PAYLOAD_WORDS {
                    return Err(too_short(self, END_PAYLOAD_WORDS));
                }
                let w = |i| word(self.bytes, payload.start + i);
                Ok(Record::End {
                    q: w(0),
                    totals: Totals {
                        events: w(1),
                        allocations: w(2),
                        deallocations: w(3),
                        reallocations: w(4),
                        dropped: w(5),
                    },
                })
            }
            ext::RSS => {
                if len < 2 {
                    return Err(too_short(self, 2));
                }
                let w = |i| word(self.bytes, payload.start + i);
                Ok(Record::Rss { q: w(0), rss_bytes: w(1) })
            }
            ext::STACK => {
                if value == 0 {
                    self.failed = true;
                    return Err(DecodeError::new(
                        self.offset + (start * WORD_SIZE) as u64,
                        DecodeErrorKind::BadExtendedRecord { subkind, reason: "stack id 0".into() },
                    ));
                }
                let bytes: &'a [u8] = self.bytes;
                let frames = &bytes[payload.start * WORD_SIZE..payload.end * WORD_SIZE];
                Ok(Record::Stack { id: value, frames: Frames::Bytes(frames) })
            }
            ext::STACK_REF => Ok(Record::StackRef { id: value }),
            ext::MODULE => {
                if len < 6 {
                    return Err(too_short(self, 6));
                }
                let w = |i| word(self.bytes, payload.start + i);
                let (q, start_address, end, bias) = (w(0), w(1), w(2), w(3));
                let path_at = payload.start + 4;
                let path_len = word(self.bytes, path_at).min(len as u64 * WORD_SIZE as u64);
                let build_id_at = path_at + 1 + (path_len as usize).div_ceil(WORD_SIZE);
                if build_id_at >= payload.end {
                    return Err(too_short(self, build_id_at + 1 - payload.start));
                }
                let path = self.payload_bytes(start, subkind, path_at..build_id_at)?;
                let build_id = self.payload_bytes(start, subkind, build_id_at..payload.end)?;
                Ok(Record::Module { q, start: start_address, end, bias, path, build_id })
            }
            _ => Ok(Record::Unknown { subkind }),
        }
    }

    /// Reads a length-prefixed byte string from `words`.
    fn payload_bytes(
        &mut self,
        start: usize,
        subkind: u16,
        words: std::ops::Range<usize>,
    ) -> Result<&'a [u8], DecodeError> {
        if words.is_empty() {
            self.failed = true;
            return Err(DecodeError::new(
                self.offset + (start * WORD_SIZE) as u64,
                DecodeErrorKind::BadExtendedRecord {
                    subkind,
                    reason: "missing string length".into(),
                },
            ));
        }
        let len = word(self.bytes, words.start);
        let room = ((words.len() - 1) * WORD_SIZE) as u64;
        if len > room {
            self.failed = true;
            return Err(DecodeError::new(
                self.offset + (start * WORD_SIZE) as u64,
                DecodeErrorKind::BadExtendedRecord {
                    subkind,
                    reason: format!("string of {len} bytes in a payload of {room} bytes"),
                },
            ));
        }
        let from = (words.start + 1) * WORD_SIZE;
        let bytes: &'a [u8] = self.bytes;
        Ok(&bytes[from..from + len as usize])
    }
}

/// Unpacks the size word of an allocation or reallocation: size in bytes,
/// alignment in bytes and the zeroed flag.
#[inline(always)]
pub fn unpack_size(w: u64) -> (u64, u64, bool) {
    let size = w & ((1 << SIZE_BITS) - 1);
    let align_log2 = (w >> SIZE_BITS) & 0x3f;
    (size, 1u64 << align_log2, w >> 62 & 1 == 1)
}

/// Checked at compile time: a time delta and an address fit beside the kind.
const _: () = assert!(4 + DT_BITS + ADDR_BITS == 64);
