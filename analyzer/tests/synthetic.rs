//! Every query file and table on synthetic traces whose answers are known
//! exactly, and the parallel decoder against the sequential reference.

mod common;

use common::*;
use memscope_analyzer::datafusion::arrow::compute::concat_batches;
use memscope_analyzer::datafusion::arrow::record_batch::RecordBatch;
use memscope_analyzer::decode::TraceFile;
use memscope_analyzer::model::TimeReversals;
use memscope_analyzer::pairing::Anomalies;
use memscope_analyzer::scan::TraceIndex;
use memscope_analyzer::stream;
use memscope_analyzer::tables::MemorySink;
use memscope_schema::writer::synthetic_header;
use memscope_schema::{Record, Totals, Trace, TraceWriter};
use proptest::prelude::*;

const STRINGS: [(u32, &str); 8] = [
    (1, "app::Order"),
    (2, "orders"),
    (3, "app::Session"),
    (4, "session"),
    (5, "app::Grow"),
    (6, "grow"),
    (7, "unused"),
    (8, "unused2"),
];

/// The reference trace. Times are nanoseconds. Thread 1 "main", thread 2
/// "worker":
///
/// * three `app::Order` blocks of 256 bytes at 0x1000, 0x1200, 0x1500 and
///   an untagged 64-byte block far away, all leaked;
/// * an `app::Session` of 1000 bytes at 0x2000 (tagged through an interior
///   address), freed after 100 ns;
/// * untagged blocks living 0, 1, 3, 1024 and 1000 ns;
/// * on the worker, an `app::Grow` block reallocated twice (once in place)
///   and freed, and a deallocation of an address never allocated.
fn reference(w: &mut TraceWriter) {
    let main = |w: &mut TraceWriter, r: Record<'static>| w.push(1, 100, &r);
    let worker = |w: &mut TraceWriter, r: Record<'static>| w.push(2, 200, &r);
    main(w, Record::ThreadName { q: 0, name: b"main" });
    for (id, s) in &STRINGS[..4] {
        main(w, Record::String { id: *id, bytes: s.as_bytes() });
    }
    main(w, alloc(100, 0x1000, 256));
    main(w, tag(101, 0x1000, 1, 2));
    main(w, alloc(110, 0x1200, 256));
    main(w, tag(111, 0x1200, 1, 2));
    main(w, alloc(120, 0x1500, 256));
    main(w, tag(121, 0x1500, 1, 2));
    main(w, alloc(130, 0x10_0000_0000, 64));
    main(w, alloc(200, 0x2000, 1000));
    main(w, tag(250, 0x2010, 3, 4));
    main(w, free(300, 0x2000));
    main(w, alloc(400, 0x3000, 10));
    main(w, free(400, 0x3000));
    main(w, alloc(500, 0x3100, 20));
    main(w, free(501, 0x3100));
    main(w, alloc(600, 0x3200, 30));
    main(w, free(603, 0x3200));
    main(w, alloc(1000, 0x4000, 40));
    main(w, free(2024, 0x4000));
    main(w, alloc(3000, 0x5000, 50));
    main(w, free(4000, 0x5000));
    worker(w, Record::ThreadName { q: 650, name: b"worker" });
    for (id, s) in &STRINGS[4..] {
        worker(w, Record::String { id: *id, bytes: s.as_bytes() });
    }
    worker(w, alloc(700, 0x6000, 16));
    worker(w, tag(700, 0x6000, 5, 6));
    worker(w, realloc(710, 0x6000, 0x6100, 32));
    worker(w, realloc(720, 0x6100, 0x6100, 64));
    worker(w, free(730, 0x6100));
    worker(w, free(800, 0x999_9000));
    worker(w, Record::ThreadExit { q: 900 });
    let totals =
        Totals { events: 26, allocations: 13, deallocations: 10, reallocations: 2, dropped: 0 };
    main(w, Record::End { q: 5000, totals });
}

fn reference_trace(dir: &std::path::Path) -> std::path::PathBuf {
    write_trace(dir, "reference.trace", reference)
}

#[test]
fn leaks_query() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    assert_eq!(
        lines(&t, &query_file("leaks.sql")),
        ["app::Order|1|main|3|768|256|100", "(unknown)|1|main|1|64|64|130"]
    );
}

#[test]
fn type_hotspots_query() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    assert_eq!(
        lines(&t, &query_file("type_hotspots.sql")),
        [
            "app::Session|1|1000|1000|1000|0",
            "app::Order|3|768|256|768|768",
            "(unknown)|6|214|35|114|64",
            "app::Grow|3|112|37|64|0",
        ]
    );
}

#[test]
fn lifetime_histogram_query() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    assert_eq!(
        lines(&t, &query_file("lifetime_histogram.sql")),
        [
            "freed|0|0|2|2|30",
            "freed|1|2|4|1|30",
            "freed|3|8|16|3|112",
            "freed|6|64|128|1|1000",
            "freed|9|512|1024|1|50",
            "freed|10|1024|2048|1|40",
            "leaked||||4|832",
        ]
    );
}

#[test]
fn fragmentation_query() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    let rows = rows(&t, &query_file("fragmentation.sql"));
    assert_eq!(rows.len(), 2);
    // At the peak (t = 200 ns): Orders at 0x1000, 0x1200, 0x1500, the
    // Session at 0x2000 and the far block: gaps 256, 512 and 2560 bytes
    // (the gap to the far block is over 64 MiB and ignored).
    assert_eq!(rows[0][..6], ["peak", "200", "5", "1832", "3328", "2560"]);
    let f: f64 = rows[0][6].parse().unwrap();
    assert!((f - (1.0 - 2560.0 / 3328.0)).abs() < 1e-12, "{f}");
    // At the end: the three Orders and the far block; gaps 256 and 512.
    assert_eq!(rows[1][..6], ["end", "5000", "4", "832", "768", "512"]);
    let f: f64 = rows[1][6].parse().unwrap();
    assert!((f - (1.0 - 512.0 / 768.0)).abs() < 1e-12, "{f}");
}

#[test]
fn fragmentation_reads_the_rss_sample_at_or_before_each_moment() {
    let dir = temp_dir();
    let rss = |q, rss_bytes| Record::Rss { q, rss_bytes };
    let t = write_trace(dir.path(), "rss.trace", |w| {
        w.push(1, 1, &rss(5, 1000));
        w.push(1, 1, &alloc(10, 0x1000, 100));
        w.push(1, 1, &rss(12, 2000));
        // The peak, 150 bytes live from 20 ns on; two samples at that time.
        w.push(1, 1, &alloc(20, 0x2000, 50));
        w.push(1, 1, &rss(20, 3000));
        w.push(1, 1, &rss(20, 2500));
        w.push(1, 1, &rss(25, 4000));
        // The end: the last event, at 30 ns; the sample after it is not read.
        w.push(1, 1, &free(30, 0x2000));
        w.push(1, 1, &rss(40, 5000));
    });
    let got: Vec<(String, String, String)> = rows(&t, &query_file("fragmentation.sql"))
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[7].clone()))
        .collect();
    assert_eq!(
        got,
        [("peak".into(), "20".into(), "3000".into()), ("end".into(), "30".into(), "4000".into())]
    );
}

#[test]
fn fragmentation_without_free_space_is_null() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "one.trace", |w| w.push(1, 1, &alloc(5, 0x1000, 64)));
    assert_eq!(lines(&t, "fragmentation"), ["peak|5|1|64|0|0||", "end|5|1|64|0|0||"]);
}

#[test]
fn allocations_table() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    let got = lines(
        &t,
        "SELECT alloc_id, address, size, alloc_ts_ns, free_ts_ns, lifetime_ns, alloc_thread_id, free_thread_id, \
         type_name, var_name, realloc_from, realloc_to FROM allocations WHERE address >= 24576 AND address < 30000 \
         ORDER BY alloc_id",
    );
    // The Grow chain: ids are event ids; each reallocation ends one
    // allocation and starts the next, which keeps the tag.
    let ids: Vec<String> = rows(&t, "SELECT event_id FROM events WHERE kind IN ('allocation','reallocation') AND address >= 24576 AND address < 30000 ORDER BY event_id")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(ids.len(), 3);
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    assert_eq!(
        got,
        [
            format!("{a}|24576|16|700|710|10|2|2|app::Grow|grow||{b}"),
            format!("{b}|24832|32|710|720|10|2|2|app::Grow|grow|{a}|{c}"),
            format!("{c}|24832|64|720|730|10|2|2|app::Grow|grow|{b}|"),
        ]
    );
    // The Session was tagged through an interior address.
    assert_eq!(
        lines(&t, "SELECT type_name, var_name FROM allocations WHERE address = 8192"),
        ["app::Session|session"]
    );
}

#[test]
fn events_and_threads_tables() {
    let dir = temp_dir();
    let t = reference_trace(dir.path());
    assert_eq!(
        lines(&t, "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind"),
        ["allocation|11", "deallocation|8", "reallocation|2", "tag|5"]
    );
    // The unknown deallocation matches no allocation.
    assert_eq!(
        lines(
            &t,
            "SELECT thread_id, address, size, alloc_id FROM events WHERE kind = 'deallocation' AND alloc_id IS NULL"
        ),
        ["2|161058816||"]
    );
    // A deallocation carries the size of the block it freed.
    assert_eq!(
        lines(&t, "SELECT size FROM events WHERE kind = 'deallocation' AND address = 8192"),
        ["1000"]
    );
    // Events are in time order with ids from 0.
    assert_eq!(
        lines(
            &t,
            "SELECT count(*), min(event_id), max(event_id), bool_and(ts_ns >= 0) FROM events"
        ),
        ["26|0|25|true"]
    );
    assert_eq!(
        lines(
            &t,
            "SELECT thread_id, os_tid, name, start_ts_ns, exit_ts_ns, allocations, allocated_bytes FROM threads ORDER BY thread_id"
        ),
        ["1|100|main|0||10|1982", "2|200|worker|650|900|3|112"]
    );
    assert_eq!(
        lines(
            &t,
            "SELECT program, pid, duration_ns, finished, format_version, clock_source, events, threads, \
             file_bytes, sample_rate_bytes FROM trace"
        ),
        [format!(
            "synthetic|4242|5000|true|{}.{}|monotonic|26|2|{}|0",
            memscope_schema::format::FORMAT_MAJOR,
            memscope_schema::format::FORMAT_MINOR,
            std::fs::metadata(&t).unwrap().len()
        )]
    );
    let l = loaded(&t);
    assert_eq!(
        l.data.anomalies,
        Anomalies {
            double_deallocations: 0,
            unknown_deallocations: 1,
            unknown_reallocations: 0,
            overlapping_allocations: 0,
            unmatched_tags: 0
        }
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn frees_sort_before_allocations_of_other_threads_at_equal_times() {
    // Thread 2 frees 0x100 at t=50 and thread 1 reuses it at t=50: the
    // reuse must start a new allocation, not collide with the old one.
    let dir = temp_dir();
    let t = write_trace(dir.path(), "reuse.trace", |w| {
        w.push(2, 2, &alloc(10, 0x100, 8));
        w.push(1, 1, &alloc(50, 0x100, 16));
        w.push(2, 2, &free(50, 0x100));
        w.push(1, 1, &free(60, 0x100));
    });
    assert_eq!(
        lines(
            &t,
            "SELECT size, alloc_ts_ns, free_ts_ns, alloc_thread_id, free_thread_id FROM allocations ORDER BY alloc_ts_ns"
        ),
        ["8|10|50|2|2", "16|50|60|1|1"]
    );
    assert_eq!(loaded(&t).data.anomalies, Anomalies::default());
}

#[test]
fn reuse_recorded_slightly_out_of_order_still_pairs() {
    // Thread 2 frees 0x100 and thread 1 reuses it, but thread 1's
    // timestamp came out 3 ns earlier than the free's (an unfenced
    // time-stamp counter read): the free still ends the first block.
    let dir = temp_dir();
    let t = write_trace(dir.path(), "skew.trace", |w| {
        w.push(2, 2, &alloc(10, 0x100, 8));
        w.push(1, 1, &alloc(100, 0x100, 16));
        w.push(2, 2, &free(103, 0x100));
        w.push(1, 1, &free(200, 0x100));
        // Far apart in time, the same pattern is a missing deallocation.
        w.push(2, 2, &alloc(1_000, 0x200, 8));
        w.push(1, 1, &alloc(10_000, 0x200, 16));
        w.push(2, 2, &free(20_000, 0x200));
    });
    assert_eq!(
        lines(
            &t,
            "SELECT address, size, alloc_ts_ns, free_ts_ns, alloc_thread_id, free_thread_id FROM allocations ORDER BY alloc_ts_ns"
        ),
        [
            "256|8|10|103|2|2",
            "256|16|100|200|1|1",
            "512|8|1000|10000|2|1",
            "512|16|10000|20000|1|2"
        ]
    );
    let a = loaded(&t).data.anomalies;
    assert_eq!((a.overlapping_allocations, a.unknown_deallocations), (1, 0));
}

#[test]
fn unfinished_trace_warns_and_counts_recovered_events() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "unfinished.trace", |w| {
        w.header_mut().flags = 0;
        w.push(1, 1, &alloc(10, 0x100, 8));
        w.push(1, 1, &alloc(20, 0x200, 8));
        w.push_unused_blocks(2);
    });
    let l = loaded(&t);
    assert_eq!(
        l.warnings,
        [
            "trace not finished: 2 events recovered (the program was killed, crashed or is still running)"
        ]
    );
    assert_eq!(lines(&t, "SELECT finished, duration_ns FROM trace"), ["false|20"]);
}

#[test]
fn end_marker_totals_above_decoded_events_warn() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "short.trace", |w| {
        w.push(1, 1, &alloc(10, 0x100, 8));
        let totals = Totals { events: 5, allocations: 5, ..Totals::default() };
        w.push(1, 1, &Record::End { q: 20, totals });
    });
    assert_eq!(
        loaded(&t).warnings,
        ["the end marker counts 5 events but only 1 were decoded; 4 are missing"]
    );
}

#[test]
fn empty_trace_has_empty_tables() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "empty.trace", |_| {});
    assert_eq!(lines(&t, "leaks"), Vec::<String>::new());
    assert_eq!(lines(&t, "lifetime_histogram"), ["leaked||||0|0"]);
    assert_eq!(lines(&t, "SELECT events, threads, duration_ns FROM trace"), ["0|0|0"]);
}

#[test]
fn tags_spread_along_reallocation_chains_and_last_tag_wins() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "chain.trace", |w| {
        for (id, s) in [(1, "T"), (2, "U")] {
            w.push(1, 1, &Record::String { id, bytes: s.as_bytes() });
        }
        // Built, then tagged: the blocks before the tag take it too.
        w.push(1, 1, &alloc(10, 0x1000, 8));
        w.push(1, 1, &realloc(20, 0x1000, 0x2000, 16));
        w.push(1, 1, &realloc(30, 0x2000, 0x3000, 32));
        w.push(1, 1, &tag(40, 0x3000, 1, 0));
        w.push(1, 1, &realloc(50, 0x3000, 0x4000, 64));
        // Retagged: from then on the chain is U; T stays before.
        w.push(1, 1, &tag(60, 0x4000, 2, 0));
        w.push(1, 1, &realloc(70, 0x4000, 0x5000, 128));
        w.push(1, 1, &free(80, 0x5000));
    });
    assert_eq!(
        lines(&t, "SELECT size, type_name FROM allocations ORDER BY alloc_id"),
        ["8|T", "16|T", "32|T", "64|U", "128|U"]
    );
}

#[test]
fn interior_tags_resolve_at_their_own_moment_under_address_reuse() {
    // Rc-like blocks reused at one address, each tagged 16 bytes in.
    let dir = temp_dir();
    let t = write_trace(dir.path(), "rc.trace", |w| {
        w.push(1, 1, &Record::String { id: 1, bytes: b"Rc<Order>" });
        for i in 0..2000u64 {
            w.push(1, 1, &alloc(i * 10, 0x7000, 40));
            w.push(1, 1, &tag(i * 10 + 1, 0x7010, 1, 0));
            w.push(1, 1, &free(i * 10 + 1, 0x7000));
        }
        // A tag inside no live block.
        w.push(1, 1, &tag(30_000, 0x9000, 1, 0));
    });
    assert_eq!(lines(&t, "SELECT count(*), count(type_name) FROM allocations"), ["2000|2000"]);
    assert_eq!(loaded(&t).data.anomalies.unmatched_tags, 1);
}

#[test]
fn timestamp_overflow_is_a_decode_error() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "overflow.trace", |w| {
        w.push(1, 1, &free(u64::MAX >> 4, 0x10));
        w.push(1, 1, &free((u64::MAX >> 4) + 5, 0x10));
    });
    // The writer encodes the second record with a delta from a base near
    // the 60-bit limit; patch the block's base to make the sum overflow.
    let mut bytes = std::fs::read(&t).unwrap();
    bytes[4096 + 16..4096 + 24].copy_from_slice(&u64::MAX.to_le_bytes());
    std::fs::write(&t, &bytes).unwrap();
    let out = analyze(&[t.to_str().unwrap(), "--sql", "leaks"]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timestamp overflows"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unfinished_trace_cut_inside_a_block_reads_with_a_warning() {
    let dir = temp_dir();
    let t = write_trace(dir.path(), "cut.trace", |w| {
        w.header_mut().flags = 0;
        w.push(1, 1, &alloc(10, 0x100, 8));
    });
    let bytes = std::fs::read(&t).unwrap();
    std::fs::write(&t, &bytes[..bytes.len() - 1000]).unwrap();
    // The only block is cut: nothing is read, and the user is told.
    let l = loaded(&t);
    assert_eq!(l.data.event_count, 0);
    assert!(
        l.warnings.iter().any(|w| w.contains("ends 64536 bytes into a block")),
        "{:?}",
        l.warnings
    );
}

fn arb_events() -> impl Strategy<Value = Vec<(u32, u8, u64, u64)>> {
    // (thread, kind, address slot, time step)
    prop::collection::vec((1u32..5, 0u8..4, 0u64..64, 0u64..5000), 0..600)
}

/// A trace in blocks of 4096 bytes of one record per `(thread, kind,
/// slot, step)` item (threads 1 to 4): the thread's clock moves on by
/// `step` ticks, and `record(time, kind, slot)` makes the record.
fn stepped_trace(
    items: Vec<(u32, u8, u64, u64)>,
    record: impl Fn(u64, u8, u64) -> Record<'static>,
) -> Vec<u8> {
    let mut w = TraceWriter::new(synthetic_header(4096));
    let mut clocks = [0u64; 5];
    for (t, kind, slot, step) in items {
        clocks[t as usize] += step;
        w.push(t, t + 10, &record(clocks[t as usize], kind, slot));
    }
    w.finish()
}

/// Every table of the second pass over `bytes`, read with `options`, and
/// what it counted of anomalies and time reversals.
type SecondPass = (Vec<(&'static str, RecordBatch)>, Anomalies, TimeReversals);

fn second_pass(bytes: &[u8], options: stream::Options<'_>) -> SecondPass {
    let header = memscope_schema::format::FileHeader::decode(bytes).unwrap();
    let layout = memscope_schema::reader::BlockLayout::of(&header, bytes.len() as u64).unwrap();
    let index = TraceIndex::build(bytes, &layout).unwrap();
    let mut sink = MemorySink::new();
    let data = stream::run(header, bytes, &layout, index, &mut sink, options).unwrap();
    let tables = sink
        .finish()
        .into_iter()
        .map(|t| (t.table.name, concat_batches(&t.schema, &t.batches).unwrap()))
        .collect();
    (tables, data.anomalies, data.time_reversals)
}

proptest! {
    /// The analyzer's parallel block decoder yields exactly the sequential
    /// reference reader's records, for random multi-thread traces.
    #[test]
    fn parallel_decoder_equals_sequential_reader(items in arb_events(), block_len in prop::sample::select(vec![4096u32, 65536])) {
        let mut w = TraceWriter::new(synthetic_header(block_len));
        let mut clocks = [0u64; 5];
        for (t, kind, slot, step) in items {
            clocks[t as usize] += step;
            let q = clocks[t as usize];
            let address = 0x1000 + slot * 64;
            let r = match kind {
                0 => alloc(q, address, slot + 1),
                1 => free(q, address),
                2 => realloc(q, address, address + 0x10_0000, slot * 3 + 1),
                _ => tag(q, address, 1, 2),
            };
            w.push(t, t + 10, &r);
        }
        let bytes = w.finish();
        let dir = temp_dir();
        let path = dir.path().join("p.trace");
        std::fs::write(&path, &bytes).unwrap();
        let parallel = TraceFile::open(&path).unwrap().decode().unwrap();
        let sequential = Trace::read(&bytes).unwrap();
        prop_assert_eq!(parallel.len(), sequential.blocks.len());
        for (p, s) in parallel.iter().zip(&sequential.blocks) {
            prop_assert_eq!((p.thread_id, p.seq, p.base_q), (s.header.thread_id, s.header.seq, s.header.base_q));
            let mut tags = p.tags.iter();
            let mut events = 0;
            for r in &s.records {
                let i = events;
                let got = (p.q[i], p.kind[i], p.address[i]);
                match *r {
                    Record::Alloc { q, address, size, .. } => { prop_assert_eq!(got, (q, 0, address)); prop_assert_eq!(p.size[i], size); }
                    Record::Free { q, address } => prop_assert_eq!(got, (q, 1, address)),
                    Record::Realloc { q, old_address, address, size, .. } => {
                        prop_assert_eq!(got, (q, 2, address));
                        prop_assert_eq!((p.old_address[i], p.size[i]), (old_address, size));
                    }
                    Record::Tag { q, address, type_name, var_name } => {
                        prop_assert_eq!(got, (q, 3, address));
                        prop_assert_eq!(tags.next(), Some(&(type_name, var_name)));
                    }
                    _ => continue,
                }
                events += 1;
            }
            prop_assert_eq!(events, p.len());
        }
    }

    /// The second pass gives the same tables whatever the number of blocks
    /// it decodes at once, for random multi-thread traces with address
    /// reuse across threads, reallocation chains, tags at block starts and
    /// inside blocks, and events of many threads at the same time.
    #[test]
    fn tables_do_not_depend_on_the_chunk_size(
        items in prop::collection::vec((1u32..5, 0u8..5, 0u64..48, prop::sample::select(vec![0u64, 1, 3, 700, 4000])), 0..3000),
    ) {
        let bytes = stepped_trace(items, |q, kind, slot| {
            let address = 0x1000 + slot * 64;
            match kind {
                0 => alloc(q, address, 48),
                1 => free(q, address),
                2 => realloc(q, address, 0x1000 + (slot * 7 % 48) * 64, 40),
                3 => tag(q, address, 1, 2),
                _ => tag(q, address + 8, 3, 0),
            }
        });
        let tables = |chunk_blocks: usize| {
            second_pass(&bytes, stream::Options { chunk_blocks, ..stream::Options::default() })
        };
        let whole = tables(usize::MAX);
        let header = memscope_schema::format::FileHeader::decode(&bytes).unwrap();
        let layout = memscope_schema::reader::BlockLayout::of(&header, bytes.len() as u64).unwrap();
        prop_assert!(layout.count > 2 || whole.0[0].1.num_rows() < 200);
        for chunk in [1, 2, 5] {
            prop_assert_eq!(&tables(chunk), &whole, "chunks of {} blocks", chunk);
        }
    }

    /// Pairing partitioned by address gives the same tables as one
    /// partition, for random traces without tags (with tags, pairing keeps
    /// to one): allocations, deallocations and reallocations of a few
    /// addresses on several threads, so that addresses are reused across
    /// threads and partitions, reallocations move blocks between
    /// partitions, deallocations come twice or of unknown blocks, and
    /// reuses are recorded out of order within the reorder window; in
    /// chunks of one block and of the whole trace.
    #[test]
    fn tables_do_not_depend_on_the_pairing_partitions(
        items in prop::collection::vec((1u32..5, 0u8..4, 0u64..40, prop::sample::select(vec![0u64, 1, 3, 700, 4000])), 0..3000),
    ) {
        let bytes = stepped_trace(items, |q, kind, slot| {
            let address = 0x1000 + slot * 64;
            match kind {
                0 | 3 => alloc(q, address, 48 + slot),
                1 => free(q, address),
                // In place for a fifth of the slots.
                _ => {
                    let to = if slot % 5 == 0 { address } else { 0x1000 + (slot * 7 % 40) * 64 };
                    realloc(q, address, to, 40)
                }
            }
        });
        for chunk_blocks in [1, usize::MAX] {
            let tables = |pairing_partitions: usize| {
                let options = stream::Options { chunk_blocks, pairing_partitions, ..stream::Options::default() };
                second_pass(&bytes, options)
            };
            let one = tables(1);
            for partitions in [2, 3, 7] {
                prop_assert_eq!(&tables(partitions), &one, "{} partitions, chunks of {} blocks", partitions, chunk_blocks);
            }
        }
    }
}

/// A block that gained events after the first pass read it (a recorder
/// still writing) is read as the first pass saw it: the tables agree with
/// the counts, and hold none of the later events.
#[test]
fn events_written_between_the_two_passes_are_left_out() {
    let build = |extra: u64| {
        let mut w = TraceWriter::new(synthetic_header(65536));
        for i in 0..10 + extra {
            w.push(1, 11, &alloc(10 + i, 0x1000 + i * 64, 32));
        }
        w.finish()
    };
    let before = build(0);
    let after = build(5);
    assert_eq!(before.len(), after.len(), "one block either way");
    let header = memscope_schema::format::FileHeader::decode(&after).unwrap();
    let layout = memscope_schema::reader::BlockLayout::of(&header, after.len() as u64).unwrap();
    let index = TraceIndex::build(&before, &layout).unwrap();
    assert_eq!(index.events, 10);
    let mut sink = MemorySink::new();
    let data = stream::run(header, &after, &layout, index, &mut sink, Default::default()).unwrap();
    let tables = sink.finish();
    let rows = |name: &str| tables.iter().find(|t| t.table.name == name).unwrap().num_rows();
    assert_eq!((data.event_count, rows("events"), rows("allocations")), (10, 10, 10));
}
