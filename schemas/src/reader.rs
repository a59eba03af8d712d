//! The sequential reference reader: the whole trace, block by block, in file
//! order. The analyzer's parallel decoder must agree with it.

use crate::error::{DecodeError, DecodeErrorKind};
use crate::format::{BlockHeader, FileHeader};
use crate::record::{BlockDecoder, Record};

/// The records of one used block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block<'a> {
    /// Byte offset of the block in the file.
    pub offset: u64,
    /// The block's header.
    pub header: BlockHeader,
    /// Its records, in the order they were written.
    pub records: Vec<Record<'a>>,
}

/// A whole trace: the header and every used block, borrowing string
/// payloads from the trace's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace<'a> {
    /// The file header.
    pub header: FileHeader,
    /// Used blocks in file order (unused blocks are skipped).
    pub blocks: Vec<Block<'a>>,
}

/// Where the blocks of a trace file are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLayout {
    /// Offset of the first block (the header length).
    pub first: u64,
    /// Length of every block.
    pub block_len: u64,
    /// Number of whole blocks.
    pub count: u64,
    /// Bytes after the last whole block: 0, except in an unfinished trace
    /// whose file ends inside a block (those bytes are not read).
    pub partial_bytes: u64,
}

impl BlockLayout {
    /// Reads the layout of a trace file of `file_len` bytes.
    ///
    /// A finished trace always ends on a block boundary. An unfinished one
    /// (killed program, or recording stopped by a full disk) may end inside
    /// a block, after a copy or a failed file extension: that partial block
    /// is left out and counted in `partial_bytes`.
    ///
    /// # Errors
    ///
    /// [`DecodeErrorKind::HeaderCutShort`] when the file ends before the
    /// first block; [`DecodeErrorKind::BlockCutShort`] when a finished trace
    /// ends inside a block.
    pub fn of(header: &FileHeader, file_len: u64) -> Result<BlockLayout, DecodeError> {
        let first = u64::from(header.header_len);
        let block_len = u64::from(header.block_len);
        if file_len < first {
            return Err(DecodeError::new(
                file_len,
                DecodeErrorKind::HeaderCutShort { len: file_len, needed: first },
            ));
        }
        let body = file_len - first;
        let partial_bytes = body % block_len;
        if partial_bytes != 0 && header.is_finished() && !header.recording_failed() {
            return Err(DecodeError::new(
                file_len,
                DecodeErrorKind::BlockCutShort { len: partial_bytes, expected: block_len },
            ));
        }
        Ok(BlockLayout { first, block_len, count: body / block_len, partial_bytes })
    }

    /// Byte range of block `i`.
    pub fn block(&self, i: u64) -> std::ops::Range<usize> {
        let start = self.first + i * self.block_len;
        start as usize..(start + self.block_len) as usize
    }
}

impl<'a> Trace<'a> {
    /// Reads a whole trace from its bytes, sequentially.
    ///
    /// # Errors
    ///
    /// The first [`DecodeError`] met: in the header, a block header or a
    /// record.
    pub fn read(bytes: &'a [u8]) -> Result<Trace<'a>, DecodeError> {
        let header = FileHeader::decode(bytes)?;
        let layout = BlockLayout::of(&header, bytes.len() as u64)?;
        let mut blocks = Vec::new();
        for i in 0..layout.count {
            let range = layout.block(i);
            let offset = range.start as u64;
            let Some(decoder) = BlockDecoder::new(&bytes[range], offset)? else {
                continue;
            };
            let block_header = *decoder.header();
            let records = decoder.collect::<Result<Vec<_>, _>>()?;
            blocks.push(Block { offset, header: block_header, records });
        }
        Ok(Trace { header, blocks })
    }
}
