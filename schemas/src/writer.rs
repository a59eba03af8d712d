//! An in-memory trace writer: builds whole trace files from records, in the
//! recorder's layout, for tests, benchmarks and synthetic traces.
//!
//! The recorder writes into a memory-mapped file through
//! [`RecordEncoder`] directly; this writer uses the same encoder and the
//! same block rules (a record never crosses a block, a zero word ends a
//! block), so what it builds is what the recorder would have written.

use crate::format::{
    BLOCK_HEADER_WORDS, BlockHeader, ClockSource, DEFAULT_BLOCK_LEN, FLAG_FINISHED, FORMAT_MAJOR,
    FORMAT_MINOR, FileHeader, PAGE_SIZE, WORD_SIZE,
};
use crate::record::{Record, RecordEncoder};

/// A header for synthetic traces: monotonic clock in nanoseconds (so
/// quantized timestamps with `time_shift` 0 are nanoseconds since the
/// origin), finished, program `synthetic`.
pub fn synthetic_header(block_len: u32) -> FileHeader {
    FileHeader {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
        header_len: PAGE_SIZE as u32,
        block_len,
        time_shift: 0,
        clock: ClockSource::Monotonic,
        pid: 4242,
        flags: FLAG_FINISHED,
        start_unix_ns: 1_700_000_000_000_000_000,
        start_ticks: 0,
        start_mono_ns: 0,
        cal_ticks: 0,
        cal_mono_ns: 0,
        end_ticks: 0,
        end_mono_ns: 0,
        blocks_used: 0,
        sample_rate: 0,
        stack_depth: 0,
        program: "synthetic".into(),
        args: vec!["synthetic".into()],
    }
}

/// One thread's stream of blocks being written.
#[derive(Debug)]
struct ThreadStream {
    thread_id: u32,
    os_tid: u32,
    blocks: u32,
    /// Index into `TraceWriter::blocks` of the current block, and the next
    /// free word in it.
    current: Option<(usize, usize)>,
    encoder: RecordEncoder,
}

/// Builds a trace in memory. Records are appended per thread; blocks are
/// laid out in the order threads fill them, as the recorder does.
#[derive(Debug)]
pub struct TraceWriter {
    header: FileHeader,
    blocks: Vec<Vec<u64>>,
    threads: Vec<ThreadStream>,
}

impl TraceWriter {
    /// A writer for a trace with this header. `header_len` is recomputed
    /// from the program and arguments.
    pub fn new(mut header: FileHeader) -> TraceWriter {
        header.header_len =
            header.encoded_len().div_ceil(PAGE_SIZE).max(1) as u32 * PAGE_SIZE as u32;
        TraceWriter { header, blocks: Vec::new(), threads: Vec::new() }
    }

    /// A writer with [`synthetic_header`] and the default block length.
    pub fn synthetic() -> TraceWriter {
        TraceWriter::new(synthetic_header(DEFAULT_BLOCK_LEN))
    }

    /// The header as it will be written.
    pub fn header_mut(&mut self) -> &mut FileHeader {
        &mut self.header
    }

    fn block_words(&self) -> usize {
        self.header.block_len as usize / WORD_SIZE
    }

    /// Appends `record` to the stream of thread `thread_id` (OS id
    /// `os_tid`). Timed records must not go back in time within a thread.
    /// A [`Record::StackRef`] applies only within its block: when a block
    /// fills up, the next one starts at stack 0 again.
    ///
    /// # Panics
    ///
    /// Panics if the record cannot fit in an empty block.
    pub fn push(&mut self, thread_id: u32, os_tid: u32, record: &Record<'_>) {
        let t = match self.threads.iter().position(|t| t.thread_id == thread_id) {
            Some(t) => t,
            None => {
                self.threads.push(ThreadStream {
                    thread_id,
                    os_tid,
                    blocks: 0,
                    current: None,
                    encoder: RecordEncoder::new(0),
                });
                self.threads.len() - 1
            }
        };
        let q = record_q(record);
        let mut buf = vec![0u64; RecordEncoder::max_words(record)];
        for attempt in 0..2 {
            let stream = &mut self.threads[t];
            if let Some((b, pos)) = stream.current {
                let mut enc = stream.encoder;
                let n = enc.encode_into(record, &mut buf).expect("the buffer has max_words words");
                if pos + n <= self.blocks[b].len() {
                    self.blocks[b][pos..pos + n].copy_from_slice(&buf[..n]);
                    stream.encoder = enc;
                    stream.current = Some((b, pos + n));
                    return;
                }
            }
            assert!(attempt == 0, "record of {} words does not fit in a block", buf.len());
            // A new block, based at this record's time.
            let base_q = q.unwrap_or(stream.encoder.last_q());
            let header =
                BlockHeader { thread_id, os_tid: stream.os_tid, seq: stream.blocks, base_q };
            let mut words = vec![0u64; self.block_words()];
            words[..BLOCK_HEADER_WORDS].copy_from_slice(&header.to_words());
            self.blocks.push(words);
            let stream = &mut self.threads[t];
            stream.blocks += 1;
            stream.current = Some((self.blocks.len() - 1, BLOCK_HEADER_WORDS));
            stream.encoder = RecordEncoder::new(base_q);
        }
    }

    /// Adds `count` unused (zero) blocks, as a recorder leaves when a
    /// segment is not yet filled.
    pub fn push_unused_blocks(&mut self, count: usize) {
        for _ in 0..count {
            self.blocks.push(vec![0; self.block_words()]);
        }
    }

    /// The trace file's bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.file_len());
        self.write_to(&mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// The length in bytes of the trace file [`TraceWriter::finish`]
    /// would return.
    pub fn file_len(&self) -> usize {
        self.header.header_len as usize + self.blocks.len() * self.header.block_len as usize
    }

    /// Writes the trace file to `out`, giving each block's memory back once
    /// written: a trace too big to be held twice (as built and as bytes)
    /// can still be written.
    ///
    /// # Errors
    ///
    /// Whatever error `out` returns.
    pub fn write_to(mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.header.blocks_used = self.blocks.len() as u64;
        let mut header = vec![0u8; self.header.header_len as usize];
        self.header.encode(&mut header);
        out.write_all(&header)?;
        let mut bytes = Vec::with_capacity(self.header.block_len as usize);
        for block in self.blocks.drain(..) {
            bytes.clear();
            bytes.extend(block.iter().flat_map(|w| w.to_le_bytes()));
            out.write_all(&bytes)?;
        }
        Ok(())
    }
}

/// The quantized timestamp of a timed record.
fn record_q(record: &Record<'_>) -> Option<u64> {
    match *record {
        Record::Alloc { q, .. }
        | Record::Free { q, .. }
        | Record::Realloc { q, .. }
        | Record::Tag { q, .. }
        | Record::ThreadName { q, .. }
        | Record::ThreadExit { q }
        | Record::End { q, .. }
        | Record::Rss { q, .. }
        | Record::Module { q, .. } => Some(q),
        Record::String { .. }
        | Record::Stack { .. }
        | Record::StackRef { .. }
        | Record::Unknown { .. } => None,
    }
}
