//! The error type of trace decoding: what is wrong and at which byte.

use std::fmt;

/// A malformed or unsupported trace: what was expected and the byte offset
/// in the file where the problem was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// Byte offset from the start of the file.
    pub offset: u64,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    /// An error of `kind` at byte `offset`.
    pub fn new(offset: u64, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }
}

/// What is wrong with a trace. Every variant carries the values found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The file is empty.
    Empty,
    /// The file does not start with [`crate::format::MAGIC`].
    BadMagic {
        /// The first bytes of the file (up to eight).
        found: Vec<u8>,
    },
    /// The format's major version is not one this reader supports.
    UnsupportedVersion {
        /// Major version in the file.
        major: u16,
        /// Minor version in the file.
        minor: u16,
        /// The major version this reader supports.
        supported: u16,
    },
    /// The file ends inside the header.
    HeaderCutShort {
        /// Length of the file in bytes.
        len: u64,
        /// Bytes the header needs.
        needed: u64,
    },
    /// A header field holds a value out of its range.
    BadHeaderField {
        /// The field's name as in FORMAT.md.
        name: &'static str,
        /// The value found.
        value: u64,
        /// What the field must hold.
        expected: &'static str,
    },
    /// The file ends inside a block.
    BlockCutShort {
        /// Bytes of the block present.
        len: u64,
        /// Bytes a block has.
        expected: u64,
    },
    /// A used block does not start with [`crate::format::BLOCK_MAGIC`].
    BadBlockMagic {
        /// The block's first four bytes as a little-endian `u32`.
        found: u32,
    },
    /// A record's kind is not defined in this major version.
    UnknownRecordKind {
        /// The kind found.
        kind: u8,
    },
    /// A record extends past the end of its block.
    RecordPastBlockEnd {
        /// The record's kind.
        kind: u8,
        /// Bytes the record needs.
        needed: u64,
        /// Bytes left in the block.
        available: u64,
    },
    /// A record's time delta carries the running time past 2^64 quanta.
    TimeOverflow {
        /// The running time before the record (quanta).
        base: u64,
        /// The record's delta (quanta).
        delta: u64,
    },
    /// An allocation or reallocation whose block would run past the end of
    /// the 64-bit address space.
    BlockWraps {
        /// The block's start address.
        address: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// The sizes of all allocations and reallocations up to this block sum
    /// to more than `i64::MAX` bytes, which no real program allocates and
    /// which sums in SQL could not hold.
    TooManyBytes {
        /// The limit exceeded, in bytes (`i64::MAX`).
        limit: u64,
    },
    /// An extended record's payload does not match its subkind.
    BadExtendedRecord {
        /// The extended subkind.
        subkind: u16,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at byte offset {}: {}", self.offset, self.kind)
    }
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeErrorKind::*;
        match self {
            Empty => write!(f, "the file is empty, expected a memscope trace header"),
            BadMagic { found } => write!(
                f,
                "not a memscope trace: expected magic \"MEMSCOPE\", found {:?}",
                String::from_utf8_lossy(found)
            ),
            UnsupportedVersion { major, minor, supported } => write!(
                f,
                "trace format version {major}.{minor} is not supported: this analyzer reads major version {supported}"
            ),
            HeaderCutShort { len, needed } => {
                write!(
                    f,
                    "the header is cut short: the file has {len} bytes, the header needs {needed}"
                )
            }
            BadHeaderField { name, value, expected } => {
                write!(f, "header field {name} is {value}, expected {expected}")
            }
            BlockCutShort { len, expected } => {
                write!(f, "a block is cut short: {len} bytes present, a block has {expected}")
            }
            BadBlockMagic { found } => {
                write!(
                    f,
                    "a block starts with {found:#010x}, expected the block magic \"MBLK\" or an unused (zero) block"
                )
            }
            UnknownRecordKind { kind } => write!(f, "unknown record kind {kind}"),
            RecordPastBlockEnd { kind, needed, available } => write!(
                f,
                "a record of kind {kind} needs {needed} bytes but only {available} remain in its block"
            ),
            TimeOverflow { base, delta } => {
                write!(
                    f,
                    "a record's timestamp overflows: time base {base} plus delta {delta} exceeds 2^64"
                )
            }
            BlockWraps { address, size } => write!(
                f,
                "an allocation of {size} bytes at {address:#x} would run past the end of the 64-bit address space"
            ),
            TooManyBytes { limit } => write!(
                f,
                "the allocations up to this block add up to more than {limit} bytes (2^63 - 1), more than any real program allocates"
            ),
            BadExtendedRecord { subkind, reason } => {
                write!(f, "malformed extended record of subkind {subkind}: {reason}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}
