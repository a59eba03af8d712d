//! Hostile and broken input: the `testdata/bad/` corpus, each case's exact
//! error or warnings, and inputs that are not plain trace files.
//!
//! The corpus is generated here, never edited by hand: [`corpus`] builds
//! every file from one small reference trace written by the recorder's own
//! encoder. `corpus_on_disk_is_generated` fails when `testdata/bad/`
//! differs from what this file generates; to regenerate it after changing a
//! case, run
//!
//! ```text
//! MEMSCOPE_BLESS=1 cargo test -p memscope-analyzer --test bad_inputs
//! ```
//!
//! The same files seed the fuzzers (`fuzz/`).

mod common;

use std::path::{Path, PathBuf};

use common::{alloc, analyze, free, realloc, tag, temp_dir};
use memscope_schema::format::{ext, header_offset, kind, pack_ext, pack_head};
use memscope_schema::writer::synthetic_header;
use memscope_schema::{Record, Totals, TraceWriter};

/// Block length of every corpus trace: the smallest the format allows, to
/// keep the files small.
const BLOCK: usize = 4096;
/// Offset of the first block (thread 1's).
const FIRST_BLOCK: usize = 4096;

/// What the analyzer must do with a corpus file.
#[derive(Debug)]
enum Expect {
    /// Fail with this exit code and exactly this one-line message after
    /// the path.
    Error(i32, &'static str),
    /// Succeed, print exactly these warnings (after the path), and answer
    /// `sql` with exactly `rows` (CSV without the header line).
    Read { warnings: &'static [&'static str], sql: &'static str, rows: &'static str },
}

/// One file of the corpus.
struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: Expect,
}

/// The leaks query every readable case answers.
const LEAKS: &str = "SELECT size, type_name, alloc_thread_id FROM allocations \
     WHERE free_ts_ns IS NULL ORDER BY alloc_ts_ns";

/// The reference trace: two threads, one tagged leak of 100 bytes, an
/// end marker that matches (in thread 2's block).
fn reference() -> Vec<u8> {
    reference_with(|_| {})
}

/// The reference trace with more records for thread 1 pushed by `more`
/// before the end marker.
fn reference_with(more: impl FnOnce(&mut TraceWriter)) -> Vec<u8> {
    let totals =
        Totals { events: 6, allocations: 3, deallocations: 2, reallocations: 0, dropped: 0 };
    reference_ending(totals, more)
}

/// The reference trace, with `more` records for thread 1, ending with an
/// end marker that counts `totals`.
fn reference_ending(totals: Totals, more: impl FnOnce(&mut TraceWriter)) -> Vec<u8> {
    let mut w = TraceWriter::new(synthetic_header(BLOCK as u32));
    w.push(1, 101, &Record::String { id: 1, bytes: b"app::Buf" });
    w.push(1, 101, &alloc(10, 0x1000, 100));
    w.push(1, 101, &tag(11, 0x1000, 1, 0));
    w.push(2, 102, &alloc(15, 0x3000, 7));
    w.push(1, 101, &alloc(20, 0x2000, 50));
    w.push(1, 101, &free(30, 0x2000));
    w.push(2, 102, &free(40, 0x3000));
    more(&mut w);
    // On thread 2, so that thread 1's block holds no zero word: its data
    // ends at its first zero word, where cases append raw records.
    w.push(2, 102, &Record::End { q: 100_000, totals });
    w.finish()
}

/// Every corpus file, in the order of the issue that asked for them.
fn corpus() -> Vec<Case> {
    let good = reference();
    let reads = |warnings, sql, rows| Expect::Read { warnings, sql, rows };
    let leak = "100,app::Buf,1\n";
    let anomalies = "SELECT kind, address FROM anomalies ORDER BY event_id";
    vec![
        Case { name: "reference", bytes: good.clone(), expect: reads(&[], LEAKS, leak) },
        Case {
            name: "empty",
            bytes: vec![],
            expect: Expect::Error(
                65,
                "at byte offset 0: the file is empty, expected a memscope trace header",
            ),
        },
        Case {
            name: "wrong-magic",
            bytes: with_bytes(&good, header_offset::MAGIC, b"MEMSCOPX"),
            expect: Expect::Error(
                65,
                "at byte offset 0: not a memscope trace: expected magic \"MEMSCOPE\", found \"MEMSCOPX\"",
            ),
        },
        Case {
            name: "future-major",
            bytes: with_u16(&good, header_offset::MAJOR, 2),
            expect: Expect::Error(
                65,
                "at byte offset 8: trace format version 2.2 is not supported: this analyzer reads major version 1",
            ),
        },
        Case {
            // Version 1.0 had no RSS records, sampling or stacks: the
            // reference uses none, so it is also a valid 1.0 trace.
            name: "older-minor",
            bytes: with_u16(&good, header_offset::MINOR, 0),
            expect: reads(&[], LEAKS, leak),
        },
        Case {
            name: "newer-minor",
            bytes: with_u16(
                &append_words(&good, FIRST_BLOCK, &[pack_ext(0xabc, 2, 7), 1, 2]),
                header_offset::MINOR,
                9,
            ),
            expect: reads(
                &[
                    "1 records of kinds this analyzer does not know were skipped (trace format 1.9 is newer)",
                ],
                LEAKS,
                leak,
            ),
        },
        Case {
            name: "header-cut",
            bytes: good[..100].to_vec(),
            expect: Expect::Error(
                65,
                "at byte offset 100: the header is cut short: the file has 100 bytes, the header needs 128",
            ),
        },
        Case {
            name: "header-len-huge",
            bytes: with_u32(&good, header_offset::HEADER_LEN, 0x8000_0000),
            expect: Expect::Error(
                65,
                "at byte offset 12: header field header_len is 2147483648, expected a multiple of 4096 between 4096 and 1 MiB",
            ),
        },
        Case {
            name: "program-len-huge",
            bytes: with_u32(&good, header_offset::PROGRAM_LEN, u32::MAX),
            expect: Expect::Error(
                65,
                "at byte offset 96: header field program_len + args_len is 4294967304, expected to fit in header_len",
            ),
        },
        Case {
            name: "blocks-used-huge",
            bytes: with_u64(&good, header_offset::BLOCKS_USED, u64::MAX),
            expect: reads(
                &[
                    "the header counts 18446744073709551615 blocks but the file holds 2: the trace was changed or cut after it was finished, and events may be missing",
                ],
                LEAKS,
                leak,
            ),
        },
        Case {
            name: "block-cut",
            bytes: good[..good.len() - 8].to_vec(),
            expect: Expect::Error(
                65,
                "at byte offset 12280: a block is cut short: 4088 bytes present, a block has 4096",
            ),
        },
        Case {
            // A copy of a trace still being written: the cut block is left
            // out, with a warning.
            name: "unfinished-cut",
            bytes: with_u32(&good[..good.len() - 8], header_offset::FLAGS, 0),
            expect: reads(
                &[
                    "trace not finished: 4 events recovered (the program was killed, crashed or is still running)",
                    "the file ends 4088 bytes into a block, which was not read (a copy of a trace still being written?)",
                ],
                LEAKS,
                leak,
            ),
        },
        Case {
            name: "bad-block-magic",
            bytes: with_bytes(&good, FIRST_BLOCK, b"XXXX"),
            expect: Expect::Error(
                65,
                "at byte offset 4096: a block starts with 0x58585858, expected the block magic \"MBLK\" or an unused (zero) block",
            ),
        },
        Case {
            name: "unknown-kind",
            bytes: append_words(&good, FIRST_BLOCK, &[9]),
            expect: Expect::Error(65, "at byte offset 4208: unknown record kind 9"),
        },
        Case {
            name: "record-past-block-end",
            bytes: record_past_block_end(&good),
            expect: Expect::Error(
                65,
                "at byte offset 8184: a record of kind 3 needs 24 bytes but only 8 remain in its block",
            ),
        },
        Case {
            name: "extended-length-huge",
            bytes: append_words(&good, FIRST_BLOCK, &[pack_ext(ext::STRING, u16::MAX, 5)]),
            expect: Expect::Error(
                65,
                "at byte offset 4208: a record of kind 15 needs 524288 bytes but only 3984 remain in its block",
            ),
        },
        Case {
            name: "string-length-huge",
            bytes: append_words(&good, FIRST_BLOCK, &[pack_ext(ext::STRING, 1, 5), u64::MAX]),
            expect: Expect::Error(
                65,
                "at byte offset 4208: malformed extended record of subkind 1: string of 18446744073709551615 bytes in a payload of 0 bytes",
            ),
        },
        Case {
            name: "end-counts-huge",
            bytes: reference_ending(
                Totals {
                    events: u64::MAX,
                    allocations: u64::MAX,
                    deallocations: u64::MAX,
                    reallocations: u64::MAX,
                    dropped: u64::MAX,
                },
                |_| {},
            ),
            expect: reads(
                &[
                    "the end marker counts 18446744073709551615 events but only 6 were decoded; 18446744073709551609 are missing",
                    "18446744073709551615 events were dropped by the recorder (the trace file could not grow)",
                ],
                LEAKS,
                leak,
            ),
        },
        Case {
            // The first block's time base is just below 2^64: its first
            // record's delta carries the running time past it.
            name: "time-overflow",
            bytes: with_u64(&good, FIRST_BLOCK + 16, u64::MAX - 5),
            expect: Expect::Error(
                65,
                "at byte offset 4152: a record's timestamp overflows: time base 18446744073709551610 plus delta 10 exceeds 2^64",
            ),
        },
        Case {
            name: "time-backwards",
            bytes: reference_with(|w| {
                w.push(1, 101, &alloc(1_000, 0x5000, 8));
                w.push(1, 101, &alloc(400, 0x6000, 16));
            }),
            expect: reads(
                &[
                    "1 events in 1 threads are stamped earlier than the event before them in their thread (by up to 600 ns): they keep their order in the file and that event's time",
                ],
                "SELECT address, alloc_ts_ns FROM allocations WHERE size < 20 AND alloc_thread_id = 1 ORDER BY alloc_id",
                "20480,1000\n24576,1000\n",
            ),
        },
        Case {
            name: "block-wraps",
            bytes: reference_with(|w| w.push(1, 101, &alloc(50, 0xffff_ffff_fff0_0000, 1 << 21))),
            expect: Expect::Error(
                65,
                "at byte offset 4216: an allocation of 2097152 bytes at 0xfffffffffff00000 would run past the end of the 64-bit address space",
            ),
        },
        Case {
            name: "bytes-overflow",
            bytes: reference_with(|w| {
                for i in 0..300 {
                    w.push(1, 101, &alloc(50 + 2 * i, 0x10_0000, 1 << 55));
                    w.push(1, 101, &free(51 + 2 * i, 0x10_0000));
                }
            }),
            expect: Expect::Error(
                65,
                "at byte offset 12288: the allocations up to this block add up to more than 9223372036854775807 bytes (2^63 - 1), more than any real program allocates",
            ),
        },
        Case {
            name: "undefined-stack",
            bytes: reference_with(|w| {
                w.push(1, 101, &Record::StackRef { id: 9 });
                w.push(1, 101, &alloc(50, 0x7000, 32));
            }),
            expect: reads(
                &[
                    "1 allocations refer to a stack id that their thread never defines: they show without a stack",
                ],
                "SELECT size, stack_id IS NULL FROM allocations WHERE address = 28672",
                "32,true\n",
            ),
        },
        Case {
            name: "undefined-string",
            bytes: reference_with(|w| {
                w.push(1, 101, &alloc(50, 0x7000, 32));
                w.push(1, 101, &tag(51, 0x7000, 77, 0));
            }),
            expect: reads(
                &[
                    "1 type tags name a string id that the trace never defines: the name shows as <unknown string ID>",
                ],
                "SELECT size, type_name FROM allocations WHERE address = 28672",
                "32,<unknown string 77>\n",
            ),
        },
        Case {
            name: "unknown-deallocation",
            bytes: reference_with(|w| w.push(1, 101, &free(50, 0x9000))),
            expect: reads(&[], anomalies, "unknown_deallocation,36864\n"),
        },
        Case {
            name: "double-deallocation",
            bytes: reference_with(|w| w.push(1, 101, &free(50, 0x2000))),
            expect: reads(&[], anomalies, "double_deallocation,8192\n"),
        },
        Case {
            name: "unknown-reallocation",
            bytes: reference_with(|w| w.push(1, 101, &realloc(50, 0xa000, 0xb000, 64))),
            expect: reads(&[], anomalies, "unknown_reallocation,40960\n"),
        },
    ]
}

/// Offset of the first zero word of the block at `block`: where the next
/// record would start.
fn end_of_data(bytes: &[u8], block: usize) -> usize {
    (block + 32..block + BLOCK).step_by(8).find(|&i| bytes[i..i + 8] == [0; 8]).unwrap()
}

/// Appends raw words after the last record of the block at `block`.
fn append_words(bytes: &[u8], block: usize, words: &[u64]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let at = end_of_data(bytes, block);
    for (i, w) in words.iter().enumerate() {
        b[at + 8 * i..at + 8 * i + 8].copy_from_slice(&w.to_le_bytes());
    }
    b
}

/// Fills the first block with one-word records up to its last word, which
/// starts a three-word record.
fn record_past_block_end(bytes: &[u8]) -> Vec<u8> {
    let last = FIRST_BLOCK + BLOCK - 8;
    let filler = pack_head(kind::FREE, 0, 0x10);
    let mut words = vec![filler; (last - end_of_data(bytes, FIRST_BLOCK)) / 8];
    words.push(pack_head(kind::REALLOC, 0, 0x10));
    append_words(bytes, FIRST_BLOCK, &words)
}

fn with_bytes(bytes: &[u8], at: usize, v: &[u8]) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[at..at + v.len()].copy_from_slice(v);
    b
}

fn with_u16(bytes: &[u8], at: usize, v: u16) -> Vec<u8> {
    with_bytes(bytes, at, &v.to_le_bytes())
}

fn with_u32(bytes: &[u8], at: usize, v: u32) -> Vec<u8> {
    with_bytes(bytes, at, &v.to_le_bytes())
}

fn with_u64(bytes: &[u8], at: usize, v: u64) -> Vec<u8> {
    with_bytes(bytes, at, &v.to_le_bytes())
}

fn corpus_dir() -> PathBuf {
    common::root().join("testdata").join("bad")
}

fn file_of(case: &Case) -> PathBuf {
    corpus_dir().join(format!("{}.trace", case.name))
}

#[test]
fn corpus_on_disk_is_generated() {
    let cases = corpus();
    let dir = corpus_dir();
    if std::env::var_os("MEMSCOPE_BLESS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "trace") {
                std::fs::remove_file(path).unwrap();
            }
        }
        for case in &cases {
            std::fs::write(file_of(case), &case.bytes).unwrap();
        }
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".trace"))
        .collect();
    on_disk.sort();
    let mut generated: Vec<String> = cases.iter().map(|c| format!("{}.trace", c.name)).collect();
    generated.sort();
    assert_eq!(on_disk, generated, "testdata/bad is stale: run with MEMSCOPE_BLESS=1");
    for case in &cases {
        let bytes = std::fs::read(file_of(case)).unwrap();
        assert!(bytes == case.bytes, "{} is stale: run with MEMSCOPE_BLESS=1", case.name);
    }
}

#[test]
fn every_corpus_file_gives_its_exact_answer() {
    let mut failures = Vec::new();
    for case in corpus() {
        let path = file_of(&case);
        let p = path.to_str().unwrap();
        let (sql, expect_rows) = match &case.expect {
            Expect::Error(..) => (LEAKS, ""),
            Expect::Read { sql, rows, .. } => (*sql, *rows),
        };
        let out = analyze(&[p, "--sql", sql, "--format", "csv"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!stderr.contains("panicked"), "{}: {stderr}", case.name);
        match case.expect {
            Expect::Error(code, message) => {
                let prefix = format!("memscope-analyze: error: {p}: ");
                if out.status.code() != Some(code)
                    || !stderr.starts_with(&prefix)
                    || stderr[prefix.len()..] != format!("{message}\n")
                {
                    failures.push(format!(
                        "{}: expected exit {code} and {prefix}{message}\n   got exit {:?} and {stderr}",
                        case.name,
                        out.status.code()
                    ));
                }
            }
            Expect::Read { warnings, .. } => {
                let expected: String = warnings
                    .iter()
                    .map(|w| format!("memscope-analyze: warning: {p}: {w}\n"))
                    .collect();
                let rows = stdout.split_once('\n').map_or("", |(_, rows)| rows);
                if out.status.code() != Some(0) || stderr != expected || rows != expect_rows {
                    failures.push(format!(
                        "{}: expected exit 0, rows {expect_rows:?} and stderr\n{expected}   got exit {:?}, rows {rows:?} and stderr\n{stderr}",
                        case.name,
                        out.status.code()
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_report_counts_anomalies_of_the_corpus() {
    let path = corpus_dir().join("double-deallocation.trace");
    let out = analyze(&["report", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["totals"]["anomalies"],
        serde_json::json!([{ "count": 1, "kind": "double_deallocation" }]),
        "{}",
        json["totals"]
    );
}

#[test]
fn directories_fifos_and_devices_are_refused_at_once() {
    let dir = temp_dir();
    let out = analyze(&[dir.path().to_str().unwrap(), "--sql", LEAKS]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a directory without memscope tables"), "{err}");

    // Opening a FIFO for reading waits for a writer: the analyzer must not.
    let fifo = dir.path().join("trace.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for path in [fifo.as_path(), Path::new("/dev/null")] {
        let out = analyze(&[path.to_str().unwrap(), "--sql", LEAKS]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{err}");
        assert!(
            err.contains(&format!(
                "{}: is not a regular file (a FIFO, socket or device cannot be memory-mapped; copy the trace to a file first)",
                path.display()
            )),
            "{err}"
        );
    }
}

#[test]
fn a_trace_that_shrinks_while_it_is_read_is_an_error() {
    let dir = temp_dir();
    let path = dir.path().join("shrinking.trace");
    let good = reference();
    std::fs::write(&path, &good).unwrap();
    let file = memscope_analyzer::decode::TraceFile::open(&path).unwrap();
    // Cut the file after it was mapped: reading the vanished blocks raises
    // SIGBUS, which the mapping's guard turns into zero pages.
    std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(4096).unwrap();
    let blocks = file.decode().unwrap();
    assert!(blocks.is_empty(), "the vanished blocks read as unused: {blocks:?}");
    let err = file.check_unchanged().unwrap_err();
    assert_eq!(err.exit_code(), 75);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the file shrank from {} to 4096 bytes while it was read; read it again once nothing writes to it",
            path.display(),
            good.len()
        )
    );
}

#[test]
fn a_trace_that_grows_while_it_is_read_is_answered_with_a_warning() {
    let dir = temp_dir();
    let path = dir.path().join("growing.trace");
    let good = reference();
    std::fs::write(&path, &good).unwrap();
    let file = memscope_analyzer::decode::TraceFile::open(&path).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .set_len(good.len() as u64 + 4096)
        .unwrap();
    assert_eq!(file.decode().unwrap().len(), 2);
    assert_eq!(
        file.check_unchanged().unwrap().as_deref(),
        Some(
            format!(
                "the file grew by 4096 bytes while it was read (is it still being recorded?); this answer covers its first {} bytes",
                good.len()
            )
            .as_str()
        )
    );
}
