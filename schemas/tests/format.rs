//! The trace format: headers, records and blocks survive a round trip, and
//! malformed input gives the documented error at the right offset.

use memscope_schema::format::{
    self, BLOCK_HEADER_WORDS, BlockHeader, FORMAT_MAJOR, FORMAT_MINOR, HEADER_FIXED_LEN, MAX_DT,
    header_offset, kind,
};
use memscope_schema::record::MAX_FIXED_WORDS;
use memscope_schema::writer::synthetic_header;
use memscope_schema::{
    BlockDecoder, DecodeErrorKind, FileHeader, Frames, Record, RecordEncoder, Totals, Trace,
    TraceWriter,
};
use proptest::prelude::*;

fn block_bytes(header: BlockHeader, records: &[Record<'_>], block_words: usize) -> Vec<u8> {
    let mut words = header.to_words().to_vec();
    let mut enc = RecordEncoder::new(header.base_q);
    for r in records {
        let mut buf = vec![0; RecordEncoder::max_words(r)];
        let n = enc.encode_into(r, &mut buf).unwrap();
        words.extend_from_slice(&buf[..n]);
    }
    assert!(words.len() <= block_words);
    words.resize(block_words, 0);
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<Record<'_>> {
    BlockDecoder::new(bytes, 0).unwrap().unwrap().collect::<Result<Vec<_>, _>>().unwrap()
}

const H: BlockHeader = BlockHeader { thread_id: 3, os_tid: 77, seq: 5, base_q: 1_000_000 };

#[test]
fn header_round_trips() {
    let mut h = synthetic_header(65536);
    h.args = vec!["prog".into(), "--flag".into(), "ünïcode".into()];
    h.header_len = 4096;
    let mut bytes = vec![0u8; 4096];
    h.encode(&mut bytes);
    assert_eq!(FileHeader::decode(&bytes).unwrap(), h);
}

#[test]
fn header_errors_name_the_field_and_offset() {
    let h = synthetic_header(65536);
    let mut good = vec![0u8; 4096];
    h.encode(&mut good);

    let e = FileHeader::decode(b"").unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::Empty);

    let e = FileHeader::decode(b"NOTATRACEFILE").unwrap_err();
    assert_eq!((e.offset, e.kind), (0, DecodeErrorKind::BadMagic { found: b"NOTATRAC".to_vec() }));

    let e = FileHeader::decode(&good[..100]).unwrap_err();
    assert_eq!(
        (e.offset, e.kind),
        (100, DecodeErrorKind::HeaderCutShort { len: 100, needed: 128 })
    );

    let mut future = good.clone();
    future[header_offset::MAJOR..header_offset::MAJOR + 2].copy_from_slice(&2u16.to_le_bytes());
    let e = FileHeader::decode(&future).unwrap_err();
    assert_eq!(e.offset, header_offset::MAJOR as u64);
    assert_eq!(
        e.kind,
        DecodeErrorKind::UnsupportedVersion {
            major: 2,
            minor: FORMAT_MINOR,
            supported: FORMAT_MAJOR
        }
    );
    assert!(
        e.to_string().contains(&format!("trace format version 2.{FORMAT_MINOR} is not supported")),
        "{e}"
    );

    let mut newer_minor = good.clone();
    newer_minor[header_offset::MINOR..header_offset::MINOR + 2]
        .copy_from_slice(&7u16.to_le_bytes());
    assert_eq!(FileHeader::decode(&newer_minor).unwrap().minor, 7);

    let mut bad_block = good.clone();
    bad_block[header_offset::BLOCK_LEN..header_offset::BLOCK_LEN + 4]
        .copy_from_slice(&1000u32.to_le_bytes());
    let e = FileHeader::decode(&bad_block).unwrap_err();
    assert_eq!(e.offset, header_offset::BLOCK_LEN as u64);
    assert!(matches!(
        e.kind,
        DecodeErrorKind::BadHeaderField { name: "block_len", value: 1000, .. }
    ));

    let mut huge_strings = good.clone();
    huge_strings[header_offset::ARGS_LEN..header_offset::ARGS_LEN + 4]
        .copy_from_slice(&u32::MAX.to_le_bytes());
    let e = FileHeader::decode(&huge_strings).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::BadHeaderField { .. }), "{e}");

    let e = FileHeader::decode(&good[..HEADER_FIXED_LEN + 3]).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::HeaderCutShort { .. }), "{e}");
}

#[test]
fn every_record_kind_round_trips() {
    let records = vec![
        Record::Alloc {
            q: 1_000_010,
            address: 0x5555_0000_1000,
            size: 24,
            align: 8,
            zeroed: false,
        },
        Record::Alloc {
            q: 1_000_010,
            address: 0x7fff_0000_0010,
            size: (1 << 40) + 3,
            align: 4096,
            zeroed: true,
        },
        Record::Realloc {
            q: 1_000_020,
            old_address: 0x5555_0000_1000,
            address: 0x5555_0000_2000,
            size: 48,
            align: 8,
        },
        Record::Tag { q: 1_000_030, address: 0x5555_0000_2010, type_name: 1, var_name: 2 },
        Record::String { id: 1, bytes: b"alloc::vec::Vec<u64>" },
        Record::String { id: 2, bytes: b"" },
        Record::ThreadName { q: 1_000_030, name: b"worker-7" },
        // A step longer than a record's delta: a TIME record is inserted.
        Record::Free { q: 1_000_030 + MAX_DT + 1, address: 0x5555_0000_2000 },
        // An address above 48 bits: an ADDR_HIGH record is inserted.
        Record::Alloc {
            q: 5_000_000,
            address: 0xffff_8000_0000_0040,
            size: 8,
            align: 16,
            zeroed: false,
        },
        Record::Free { q: 5_000_000, address: 0xffff_8000_0000_0040 },
        Record::Stack {
            id: 1,
            frames: Frames::Words(&[0x5555_0000_1234, 0x5555_0000_5678, u64::MAX]),
        },
        Record::Stack { id: 2, frames: Frames::Words(&[]) },
        Record::StackRef { id: 1 },
        Record::Alloc { q: 5_000_000, address: 0x10, size: 8, align: 8, zeroed: false },
        Record::StackRef { id: 0 },
        Record::Module {
            q: 5_000_000,
            start: 0x5555_0000_0000,
            end: 0x5555_0010_0000,
            bias: 0x5555_0000_0000,
            path: b"/usr/lib/x86_64-linux-gnu/libc.so.6",
            build_id: &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5],
        },
        Record::Module { q: 5_000_000, start: 1, end: 2, bias: 0, path: b"", build_id: b"" },
        Record::ThreadExit { q: 5_000_001 },
        Record::End {
            q: 5_000_002,
            totals: Totals {
                events: 7,
                allocations: 3,
                deallocations: 2,
                reallocations: 1,
                dropped: 0,
            },
        },
    ];
    let bytes = block_bytes(H, &records, 512);
    assert_eq!(decode(&bytes), records);
}

#[test]
fn time_going_backwards_is_encoded_absolutely() {
    let records = vec![
        Record::Free { q: 2_000_000, address: 0x10 },
        Record::Free { q: 1_500_000, address: 0x20 },
        Record::Free { q: 1_500_003, address: 0x30 },
    ];
    assert_eq!(decode(&block_bytes(H, &records, 64)), records);
}

#[test]
fn a_zero_word_ends_the_block() {
    let records = vec![Record::Free { q: 1_000_001, address: 0x10 }];
    let mut bytes = block_bytes(H, &records, 64);
    // Garbage after the terminating zero word is not read.
    bytes[8 * (BLOCK_HEADER_WORDS + 2)] = 0xff;
    assert_eq!(decode(&bytes), records);
}

#[test]
fn unused_block_and_bad_block_magic() {
    assert!(BlockDecoder::new(&[0u8; 4096], 8192).unwrap().is_none());
    let mut bytes = vec![0u8; 4096];
    bytes[..4].copy_from_slice(b"JUNK");
    let e = BlockDecoder::new(&bytes, 8192).unwrap_err();
    assert_eq!(e.offset, 8192);
    assert_eq!(e.kind, DecodeErrorKind::BadBlockMagic { found: u32::from_le_bytes(*b"JUNK") });
}

#[test]
fn reserved_kind_is_an_error_at_its_offset() {
    let mut bytes = block_bytes(H, &[Record::Free { q: 1_000_001, address: 0x10 }], 64);
    let at = 8 * (BLOCK_HEADER_WORDS + 1);
    bytes[at] = 9; // a reserved kind
    let out: Vec<_> = BlockDecoder::new(&bytes, 4096).unwrap().unwrap().collect();
    assert_eq!(out.len(), 2);
    let e = out[1].as_ref().unwrap_err();
    assert_eq!(e.offset, 4096 + at as u64);
    assert_eq!(e.kind, DecodeErrorKind::UnknownRecordKind { kind: 9 });
}

#[test]
fn record_past_block_end_is_an_error() {
    let mut words = H.to_words().to_vec();
    words.push(format::pack_head(kind::REALLOC, 0, 0x10)); // needs 3 words, 1 left
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let out: Vec<_> = BlockDecoder::new(&bytes, 0).unwrap().unwrap().collect();
    let e = out[0].as_ref().unwrap_err();
    assert_eq!(
        e.kind,
        DecodeErrorKind::RecordPastBlockEnd { kind: kind::REALLOC, needed: 24, available: 8 }
    );
}

#[test]
fn unknown_extended_subkind_is_skipped() {
    let mut words = H.to_words().to_vec();
    words.push(format::pack_ext(999, 2, 0));
    words.extend([123, 456]);
    words.push(format::pack_head(kind::FREE, 1, 0x10));
    words.resize(64, 0);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert_eq!(
        decode(&bytes),
        vec![Record::Unknown { subkind: 999 }, Record::Free { q: 1_000_001, address: 0x10 }]
    );
}

#[test]
fn string_longer_than_its_payload_is_an_error() {
    let mut words = H.to_words().to_vec();
    words.push(format::pack_ext(format::ext::STRING, 2, 5));
    words.extend([100, 0]); // claims 100 bytes in one word
    words.resize(64, 0);
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let out: Vec<_> = BlockDecoder::new(&bytes, 0).unwrap().unwrap().collect();
    assert!(matches!(
        out[0].as_ref().unwrap_err().kind,
        DecodeErrorKind::BadExtendedRecord { subkind: 1, .. }
    ));
}

#[test]
fn writer_splits_blocks_and_reader_reads_them_back() {
    let mut w = TraceWriter::new(synthetic_header(4096));
    for i in 0..2000u64 {
        w.push(
            1,
            10,
            &Record::Alloc {
                q: i * 10,
                address: 0x1000 + i * 32,
                size: 32,
                align: 8,
                zeroed: false,
            },
        );
        w.push(2, 20, &Record::Free { q: i * 10 + 5, address: 0x1000 + i * 32 });
    }
    w.push_unused_blocks(3);
    let bytes = w.finish();
    let trace = Trace::read(&bytes).unwrap();
    let t1: Vec<_> = trace
        .blocks
        .iter()
        .filter(|b| b.header.thread_id == 1)
        .flat_map(|b| b.records.clone())
        .collect();
    let t2: Vec<_> = trace
        .blocks
        .iter()
        .filter(|b| b.header.thread_id == 2)
        .flat_map(|b| b.records.clone())
        .collect();
    assert_eq!(t1.len(), 2000);
    assert_eq!(t2.len(), 2000);
    assert!(trace.blocks.len() > 4, "2000 two-word records need several 4 KiB blocks");
    assert_eq!(
        t1[1999],
        Record::Alloc { q: 19990, address: 0x1000 + 1999 * 32, size: 32, align: 8, zeroed: false }
    );
    let seqs: Vec<u32> =
        trace.blocks.iter().filter(|b| b.header.thread_id == 2).map(|b| b.header.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
}

#[test]
fn file_cut_inside_a_block_is_an_error() {
    let mut w = TraceWriter::new(synthetic_header(4096));
    w.push(1, 10, &Record::Free { q: 1, address: 0x10 });
    let bytes = w.finish();
    let e = Trace::read(&bytes[..bytes.len() - 100]).unwrap_err();
    assert_eq!(e.kind, DecodeErrorKind::BlockCutShort { len: 3996, expected: 4096 });
    assert_eq!(e.offset, bytes.len() as u64 - 100);
}

fn arb_record() -> impl Strategy<Value = Record<'static>> {
    let addr = prop_oneof![1u64..(1 << 47), any::<u64>().prop_filter("non-null", |a| *a != 0)];
    let align = (0u32..13).prop_map(|s| 1u64 << s);
    prop_oneof![
        (addr.clone(), 1u64..(1 << 40), align.clone(), any::<bool>()).prop_map(
            |(address, size, align, zeroed)| Record::Alloc { q: 0, address, size, align, zeroed }
        ),
        addr.clone().prop_map(|address| Record::Free { q: 0, address }),
        (addr.clone(), addr.clone(), 1u64..(1 << 40), align).prop_map(
            |(old_address, address, size, align)| Record::Realloc {
                q: 0,
                old_address,
                address,
                size,
                align
            }
        ),
        (addr, 0u32..100, 0u32..100).prop_map(|(address, type_name, var_name)| Record::Tag {
            q: 0,
            address,
            type_name,
            var_name
        }),
        (
            1u32..100,
            prop::sample::select(vec!["", "a", "alloc::vec::Vec<u8>", "exactly8", "ünïcödé name"])
        )
            .prop_map(|(id, s)| Record::String { id, bytes: s.as_bytes() }),
        (1u32..1000, prop::collection::vec(any::<u64>(), 0..70)).prop_map(|(id, frames)| {
            Record::Stack { id, frames: Frames::Words(Vec::leak(frames)) }
        }),
        (0u32..1000).prop_map(|id| Record::StackRef { id }),
        (
            any::<u64>(),
            any::<u64>(),
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(start, bias, path, build_id)| Record::Module {
                q: 0,
                start,
                end: start.wrapping_add(4096),
                bias,
                path: Vec::leak(path),
                build_id: Vec::leak(build_id),
            }),
    ]
}

fn with_q(r: Record<'static>, q: u64) -> Record<'static> {
    match r {
        Record::Alloc { address, size, align, zeroed, .. } => {
            Record::Alloc { q, address, size, align, zeroed }
        }
        Record::Free { address, .. } => Record::Free { q, address },
        Record::Realloc { old_address, address, size, align, .. } => {
            Record::Realloc { q, old_address, address, size, align }
        }
        Record::Tag { address, type_name, var_name, .. } => {
            Record::Tag { q, address, type_name, var_name }
        }
        Record::Module { start, end, bias, path, build_id, .. } => {
            Record::Module { q, start, end, bias, path, build_id }
        }
        other => other,
    }
}

proptest! {
    /// Random streams on random threads, written with the recorder's
    /// encoder through the trace writer, read back identically.
    #[test]
    fn random_streams_round_trip(
        items in prop::collection::vec((1u32..4, arb_record(), 0u64..10_000), 0..400),
        block_len in prop::sample::select(vec![4096u32, 8192, 65536]),
    ) {
        let mut w = TraceWriter::new(synthetic_header(block_len));
        let mut clocks = [0u64; 4];
        let mut expected: Vec<Vec<Record<'static>>> = vec![Vec::new(); 4];
        for (t, r, step) in items {
            clocks[t as usize] += step;
            let r = with_q(r, clocks[t as usize]);
            w.push(t, 100 + t, &r);
            expected[t as usize].push(r);
        }
        let bytes = w.finish();
        let trace = Trace::read(&bytes).unwrap();
        for t in 1..4u32 {
            let got: Vec<_> = trace.blocks.iter().filter(|b| b.header.thread_id == t).flat_map(|b| b.records.clone()).collect();
            prop_assert_eq!(&got, &expected[t as usize]);
        }
    }

    /// A fixed-size record never needs more than MAX_FIXED_WORDS words.
    #[test]
    fn fixed_records_fit(r in arb_record(), last in any::<u64>(), q in any::<u64>()) {
        let r = with_q(r, q >> 4);
        let mut enc = RecordEncoder::new(last >> 4);
        let mut out = [0; MAX_FIXED_WORDS];
        let n = enc.encode(&r, &mut out);
        prop_assert!(n <= MAX_FIXED_WORDS);
    }
}
