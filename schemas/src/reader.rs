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

/// Byte ranges of the blocks of a trace file of `file_len` bytes, in file
/// order.
///
/// # Errors
///
/// [`DecodeErrorKind::BlockCutShort`] when the file ends inside a block.
pub fn block_ranges(header: &FileHeader, file_len: u64) -> Result<Vec<(u64, u64)>, DecodeError> {
    let start = u64::from(header.header_len);
    let block_len = u64::from(header.block_len);
    if file_len < start {
        return Err(DecodeError::new(
            file_len,
            DecodeErrorKind::HeaderCutShort { len: file_len, needed: start },
        ));
    }
    let body = file_len - start;
    if !body.is_multiple_of(block_len) {
        let cut = start + body / block_len * block_len;
        return Err(DecodeError::new(
            file_len,
            DecodeErrorKind::BlockCutShort { len: file_len - cut, expected: block_len },
        ));
    }
    Ok((0..body / block_len).map(|i| (start + i * block_len, block_len)).collect())
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
        let mut blocks = Vec::new();
        for (offset, len) in block_ranges(&header, bytes.len() as u64)? {
            let slice = &bytes[offset as usize..(offset + len) as usize];
            let Some(decoder) = BlockDecoder::new(slice, offset)? else {
                continue;
            };
            let block_header = *decoder.header();
            let records = decoder.collect::<Result<Vec<_>, _>>()?;
            blocks.push(Block { offset, header: block_header, records });
        }
        Ok(Trace { header, blocks })
    }
}
