//! Reading a trace file: the one memory mapping of the analyzer, and the
//! parallel decoding of its blocks into columns.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use std::os::unix::fs::OpenOptionsExt;

use memscope_schema::format::FileHeader;
use memscope_schema::reader::BlockLayout;
use memscope_schema::{BlockDecoder, DecodeError, DecodeErrorKind, Record, Totals};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::mapping::GuardedMap;

/// Event kinds, as stored in [`BlockEvents::kind`] and ordered as in
/// `memscope_schema::tables::event_kind::ALL`.
pub mod kind {
    /// An allocation.
    pub const ALLOCATION: u8 = 0;
    /// A deallocation.
    pub const DEALLOCATION: u8 = 1;
    /// A reallocation.
    pub const REALLOCATION: u8 = 2;
    /// A type tag.
    pub const TAG: u8 = 3;
}

/// An open trace file, memory-mapped.
#[derive(Debug)]
pub struct TraceFile {
    path: PathBuf,
    file: File,
    map: GuardedMap,
    header: FileHeader,
    layout: BlockLayout,
}

impl TraceFile {
    /// Opens and maps the trace at `path` and validates its header.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] / [`Error::Io`] when the file cannot be opened,
    /// [`Error::NotATrace`] for a directory or anything else that is not a
    /// regular file, [`Error::Decode`] for a bad header.
    pub fn open(path: &Path) -> Result<TraceFile> {
        // Look before opening: opening a FIFO would wait for a writer.
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            return Err(Error::NotATrace {
                path: path.to_path_buf(),
                reason: "is a directory without memscope tables (expected a trace file or a directory written by `convert`)".into(),
            });
        }
        if !meta.is_file() {
            return Err(Error::NotATrace {
                path: path.to_path_buf(),
                reason: "is not a regular file (a FIFO, socket or device cannot be memory-mapped; copy the trace to a file first)".into(),
            });
        }
        // O_NONBLOCK: should the path have become a FIFO since, the open
        // returns at once and the check below rejects it.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::NotATrace {
                path: path.to_path_buf(),
                reason: "is not a regular file".into(),
            });
        }
        if meta.len() == 0 {
            return Err(Error::Decode {
                path: path.to_path_buf(),
                source: DecodeError::new(0, memscope_schema::DecodeErrorKind::Empty),
            });
        }
        let map = GuardedMap::new(&file).map_err(|e| Error::io(path, e))?;
        let decode_error = |source| Error::Decode { path: path.to_path_buf(), source };
        let header = FileHeader::decode(&map).map_err(decode_error)?;
        let layout = BlockLayout::of(&header, map.len() as u64).map_err(decode_error)?;
        Ok(TraceFile { path: path.to_path_buf(), file, map, header, layout })
    }

    /// Checks, after reading, that the file did not change under the
    /// reader. A file that grew (a recorder still writing) is fine, and the
    /// answer covers the bytes that were mapped: that is returned as a
    /// warning.
    ///
    /// # Errors
    ///
    /// [`Error::Changed`] when the file shrank while it was read (part of
    /// what was read may be zeros instead of its bytes).
    pub fn check_unchanged(&self) -> Result<Option<String>> {
        let mapped = self.map.len() as u64;
        let now = self.file.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        if now < mapped {
            return Err(Error::Changed {
                path: self.path.clone(),
                detail: format!(
                    "the file shrank from {mapped} to {now} bytes while it was read; read it again once nothing writes to it"
                ),
            });
        }
        if self.map.faulted() {
            return Err(Error::Changed {
                path: self.path.clone(),
                detail: "part of the file vanished while it was read (cut and grown again?); read it again once nothing writes to it".into(),
            });
        }
        Ok((now > mapped).then(|| {
            format!(
                "the file grew by {} bytes while it was read (is it still being recorded?); this answer covers its first {mapped} bytes",
                now - mapped
            )
        }))
    }

    /// The trace's header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Gives back the memory of the pages of `range` once read (see
    /// [`GuardedMap::release`]).
    pub fn release(&self, range: std::ops::Range<usize>) {
        self.map.release(range);
    }

    /// Where the blocks are; `partial_bytes` counts a cut-off tail of an
    /// unfinished trace, which is not read.
    pub fn layout(&self) -> &BlockLayout {
        &self.layout
    }

    /// Decodes every used block, in parallel, into per-block columns, in
    /// file order.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for the malformed block or record with the lowest
    /// offset, or at the first block where the sizes allocated so far add
    /// up to more than `i64::MAX` bytes.
    pub fn decode(&self) -> Result<Vec<BlockEvents>> {
        decode_blocks(&self.map, &self.layout)
            .map_err(|source| Error::Decode { path: self.path.clone(), source })
    }
}

/// Decodes every used block of the trace `bytes` laid out as `layout`, in
/// parallel, into per-block columns, in file order.
///
/// # Errors
///
/// The malformed block or record with the lowest offset, or
/// [`DecodeErrorKind::TooManyBytes`] at the first block where the sizes
/// allocated so far add up to more than `i64::MAX` bytes.
pub fn decode_blocks(bytes: &[u8], layout: &BlockLayout) -> Result<Vec<BlockEvents>, DecodeError> {
    let results: Vec<Result<(u64, BlockEvents), DecodeError>> = (0..layout.count)
        .into_par_iter()
        .filter_map(|i| {
            let range = layout.block(i);
            let offset = range.start as u64;
            let block = BlockEvents::decode(&bytes[range], offset);
            crate::progress::advance(layout.block_len);
            block.map(|b| b.map(|b| (offset, b))).transpose()
        })
        .collect();
    let mut blocks = Vec::with_capacity(results.len());
    let mut first_error: Option<DecodeError> = None;
    let mut allocated_bytes = 0u64;
    for r in results {
        match r {
            Ok((offset, b)) => {
                // Sums of sizes in SQL are 64-bit: bound them here, in file
                // order, so the error names the first block over.
                allocated_bytes = allocated_bytes.saturating_add(b.allocated_bytes());
                if allocated_bytes > i64::MAX as u64 && first_error.is_none() {
                    first_error = Some(DecodeError::new(
                        offset,
                        DecodeErrorKind::TooManyBytes { limit: i64::MAX as u64 },
                    ));
                }
                blocks.push(b)
            }
            Err(e) if first_error.as_ref().is_none_or(|f| e.offset < f.offset) => {
                first_error = Some(e)
            }
            Err(_) => {}
        }
    }
    match first_error {
        Some(source) => Err(source),
        None => Ok(blocks),
    }
}

/// The records of one block as columns (one entry per event), plus the
/// block's strings, thread names and markers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockEvents {
    /// The block's thread.
    pub thread_id: u32,
    /// The block's OS thread id.
    pub os_tid: u32,
    /// The block's index among its thread's blocks.
    pub seq: u32,
    /// The block's time base (quantized).
    pub base_q: u64,
    /// Quantized timestamp of each event.
    pub q: Vec<u64>,
    /// [`kind`] of each event.
    pub kind: Vec<u8>,
    /// Address of each event (see `events.address`).
    pub address: Vec<u64>,
    /// Size in bytes (allocations, reallocations), else 0.
    pub size: Vec<u64>,
    /// Alignment in bytes (allocations, reallocations), else 0.
    pub align: Vec<u64>,
    /// Old address (reallocations), else 0.
    pub old_address: Vec<u64>,
    /// Whether an allocation was zero-filled.
    pub zeroed: Vec<bool>,
    /// String ids (type, variable) of each tag event, in event order.
    pub tags: Vec<(u32, u32)>,
    /// String definitions.
    pub strings: Vec<(u32, String)>,
    /// Thread names with their quantized timestamps.
    pub names: Vec<(u64, String)>,
    /// Quantized timestamp of the thread's exit record.
    pub exit_q: Option<u64>,
    /// The end marker, if this block holds it.
    pub end: Option<(u64, Totals)>,
    /// Resident-set-size samples: (quantized time, bytes).
    pub rss: Vec<(u64, u64)>,
    /// Extended records of unknown subkinds that were skipped.
    pub skipped: u64,
    /// Stack id of each event: the thread's own id as decoded (0 for none
    /// and for events other than allocations and reallocations); trace-wide
    /// ids once [`crate::stacks::intern`] has run.
    pub stack: Vec<u32>,
    /// Stack definitions of the thread: (thread's stack id, return
    /// addresses innermost first).
    pub stacks: Vec<(u32, Vec<u64>)>,
    /// Module map entries.
    pub modules: Vec<ModuleRecord>,
}

/// A `MODULE` record: a loaded executable or library.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleRecord {
    /// Quantized time of the module map it belongs to.
    pub q: u64,
    /// Lowest loaded address.
    pub start: u64,
    /// One past the highest loaded address.
    pub end: u64,
    /// Load bias: run-time address minus address in the file.
    pub bias: u64,
    /// Path of the file.
    pub path: String,
    /// GNU build id (empty when the module has none).
    pub build_id: Vec<u8>,
}

/// One event as it is decoded, before it goes into the columns of a
/// [`BlockEvents`] (whose fields say what each holds).
struct Event {
    q: u64,
    kind: u8,
    address: u64,
    size: u64,
    align: u64,
    old_address: u64,
    zeroed: bool,
    stack: u32,
}

impl Event {
    /// An event of `kind` with every other field 0.
    fn of(kind: u8) -> Event {
        Event { q: 0, kind, address: 0, size: 0, align: 0, old_address: 0, zeroed: false, stack: 0 }
    }
}

/// What the first pass keeps of a block's events
/// ([`BlockEvents::decode_counting`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// The first event's quantized time, unrepaired; `None` without events.
    pub first_q: Option<u64>,
    /// The largest quantized event time, unrepaired (0 without events).
    pub max_q: u64,
    /// Events.
    pub events: u64,
    /// Allocations and reallocations.
    pub allocations: u64,
    /// Tags.
    pub tags: u64,
    /// Bytes allocated by the allocations and reallocations (saturating
    /// at `u64::MAX`), as [`BlockEvents::allocated_bytes`] counts them.
    pub allocated_bytes: u64,
}

impl EventCounts {
    /// Counts an event of `kind` at quantized time `q` with `size` bytes.
    #[inline]
    fn count(&mut self, q: u64, kind: u8, size: u64) {
        self.first_q.get_or_insert(q);
        self.max_q = self.max_q.max(q);
        self.events += 1;
        match kind {
            kind::ALLOCATION | kind::REALLOCATION => {
                self.allocations += 1;
                self.allocated_bytes = self.allocated_bytes.saturating_add(size);
            }
            kind::TAG => self.tags += 1,
            _ => {}
        }
    }
}

impl BlockEvents {
    /// Decodes one block; `None` for an unused block.
    ///
    /// # Errors
    ///
    /// The block's first malformed record or header.
    pub fn decode(bytes: &[u8], offset: u64) -> Result<Option<BlockEvents>, DecodeError> {
        Ok(BlockEvents::decode_as::<true>(bytes, offset)?.map(|(b, _)| b))
    }

    /// Decodes one block as [`BlockEvents::decode`] does (with the same
    /// checks and errors), but counts its events instead of keeping them:
    /// the event columns are left empty. What the first pass over a trace
    /// needs ([`crate::scan`]).
    ///
    /// # Errors
    ///
    /// The block's first malformed record or header.
    pub fn decode_counting(
        bytes: &[u8],
        offset: u64,
    ) -> Result<Option<(BlockEvents, EventCounts)>, DecodeError> {
        BlockEvents::decode_as::<false>(bytes, offset)
    }

    /// Decodes one block, keeping its events as columns when `COLUMNS`,
    /// else counting them.
    fn decode_as<const COLUMNS: bool>(
        bytes: &[u8],
        offset: u64,
    ) -> Result<Option<(BlockEvents, EventCounts)>, DecodeError> {
        let Some(decoder) = BlockDecoder::new(bytes, offset)? else {
            return Ok(None);
        };
        let h = *decoder.header();
        // Columns grow with the records actually present: a block may be
        // large and nearly empty.
        let mut b = BlockEvents {
            thread_id: h.thread_id,
            os_tid: h.os_tid,
            seq: h.seq,
            base_q: h.base_q,
            ..BlockEvents::default()
        };
        let mut counts = EventCounts::default();
        let mut stack = 0;
        for record in decoder {
            let event = match record? {
                Record::Alloc { q, address, size, align, zeroed } => {
                    let kind = kind::ALLOCATION;
                    Event { q, kind, address, size, align, old_address: 0, zeroed, stack }
                }
                Record::Free { q, address } => {
                    Event { q, address, ..Event::of(kind::DEALLOCATION) }
                }
                Record::Realloc { q, old_address, address, size, align } => {
                    let kind = kind::REALLOCATION;
                    Event { q, kind, address, size, align, old_address, zeroed: false, stack }
                }
                Record::Tag { q, address, type_name, var_name } => {
                    if COLUMNS {
                        b.tags.push((type_name, var_name));
                    }
                    Event { q, address, ..Event::of(kind::TAG) }
                }
                Record::StackRef { id } => {
                    stack = id;
                    continue;
                }
                Record::Stack { id, frames } => {
                    b.stacks.push((id, frames.iter().collect()));
                    continue;
                }
                Record::Module { q, start, end, bias, path, build_id } => {
                    b.modules.push(ModuleRecord {
                        q,
                        start,
                        end,
                        bias,
                        path: String::from_utf8_lossy(path).into_owned(),
                        build_id: build_id.to_vec(),
                    });
                    continue;
                }
                Record::String { id, bytes } => {
                    b.strings.push((id, String::from_utf8_lossy(bytes).into_owned()));
                    continue;
                }
                Record::ThreadName { q, name } => {
                    b.names.push((q, String::from_utf8_lossy(name).into_owned()));
                    continue;
                }
                Record::ThreadExit { q } => {
                    b.exit_q = Some(q);
                    continue;
                }
                Record::End { q, totals } => {
                    b.end = Some((q, totals));
                    continue;
                }
                Record::Rss { q, rss_bytes } => {
                    b.rss.push((q, rss_bytes));
                    continue;
                }
                Record::Unknown { .. } => {
                    b.skipped += 1;
                    continue;
                }
            };
            if COLUMNS {
                b.push(event);
            } else {
                counts.count(event.q, event.kind, event.size);
            }
        }
        Ok(Some((b, counts)))
    }

    #[inline]
    fn push(&mut self, e: Event) {
        self.q.push(e.q);
        self.kind.push(e.kind);
        self.address.push(e.address);
        self.size.push(e.size);
        self.align.push(e.align);
        self.old_address.push(e.old_address);
        self.zeroed.push(e.zeroed);
        self.stack.push(e.stack);
    }

    /// Keeps the first `n` events (and their tags): what an earlier read of
    /// a block still being written held.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.len() {
            return;
        }
        let tags = self.kind[..n].iter().filter(|&&k| k == kind::TAG).count();
        self.tags.truncate(tags);
        self.q.truncate(n);
        self.kind.truncate(n);
        self.address.truncate(n);
        self.size.truncate(n);
        self.align.truncate(n);
        self.old_address.truncate(n);
        self.zeroed.truncate(n);
        self.stack.truncate(n);
    }

    /// Drops the event columns (keeping strings, stacks, names and markers)
    /// and their memory.
    pub fn clear_events(&mut self) {
        self.q = Vec::new();
        self.kind = Vec::new();
        self.address = Vec::new();
        self.size = Vec::new();
        self.align = Vec::new();
        self.old_address = Vec::new();
        self.zeroed = Vec::new();
        self.tags = Vec::new();
        self.stack = Vec::new();
    }

    /// Number of events in the block.
    pub fn len(&self) -> usize {
        self.q.len()
    }

    /// Bytes allocated by the block's allocations and reallocations
    /// (saturating at `u64::MAX`).
    pub fn allocated_bytes(&self) -> u64 {
        self.kind
            .iter()
            .zip(&self.size)
            .filter(|&(&k, _)| k == kind::ALLOCATION || k == kind::REALLOCATION)
            .fold(0u64, |sum, (_, &size)| sum.saturating_add(size))
    }

    /// Whether the block holds no events.
    pub fn is_empty(&self) -> bool {
        self.q.is_empty()
    }
}

/// All string definitions of a trace, by id.
pub fn strings(blocks: &[BlockEvents]) -> HashMap<u32, String> {
    blocks.iter().flat_map(|b| b.strings.iter().cloned()).collect()
}
