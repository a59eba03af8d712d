//! Every allocator call of a program is recorded as the right record, in
//! order, with the live counters to match.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;

use memscope_recorder::{Config, TrackingAllocator, track_var};
use memscope_schema::{Record, Trace};

#[global_allocator]
static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);

fn main() {
    if let Some(scenario) = support::child_scenario() {
        match scenario.as_str() {
            "sequence" => sequence_child(),
            "stats" => stats_child(),
            "init_twice" => init_twice_child(),
            "init_errors" => init_errors_child(),
            "long_type_name" => long_type_name_child(),
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    support::run_checks(vec![
        ("records_each_call_in_order", records_each_call_in_order),
        ("stats_count_exactly", stats_count_exactly),
        ("init_twice_and_from_threads_records_once", init_twice_and_from_threads_records_once),
        ("init_errors_leave_the_program_running", init_errors_leave_the_program_running),
        ("long_type_names_fit_small_blocks", long_type_names_fit_small_blocks),
    ]);
}

/// On a thread named "probe": a fixed sequence of raw allocator calls.
fn sequence_child() {
    memscope_recorder::init();
    std::thread::Builder::new()
        .name("probe".into())
        .spawn(|| {
            let a = Layout::from_size_align(123, 16).unwrap();
            let z = Layout::from_size_align(64, 64).unwrap();
            // SAFETY: valid non-zero layouts; every block is freed with the
            // layout it was allocated with.
            unsafe {
                let p = GLOBAL.alloc(a);
                let p = GLOBAL.realloc(p, a, 4567);
                let q = GLOBAL.alloc_zeroed(z);
                GLOBAL.dealloc(q, z);
                let v: Vec<u32> = Vec::with_capacity(10);
                track_var!(v);
                drop(v);
                GLOBAL.dealloc(p, Layout::from_size_align(4567, 16).unwrap());
            }
        })
        .unwrap()
        .join()
        .unwrap();
    memscope_recorder::finish();
}

fn records_each_call_in_order() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("sequence", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    assert!(trace.header.is_finished());
    let threads = support::records_by_thread(&trace);
    let probe = &threads["probe"];
    // Skip the thread name and whatever the thread's start-up allocates;
    // our sequence starts with the 123-byte allocation.
    let start = probe
        .iter()
        .position(|r| matches!(r, Record::Alloc { size: 123, .. }))
        .expect("the 123-byte alloc");
    let ours: Vec<&Record> = probe[start..]
        .iter()
        .filter(|r| {
            matches!(
                r,
                Record::Alloc { .. }
                    | Record::Free { .. }
                    | Record::Realloc { .. }
                    | Record::Tag { .. }
            )
        })
        .collect();
    let Record::Alloc { address: a, align: 16, zeroed: false, .. } = *ours[0] else {
        panic!("{:?}", ours[0])
    };
    let Record::Realloc { old_address, address: b, size: 4567, align: 16, .. } = *ours[1] else {
        panic!("{:?}", ours[1])
    };
    assert_eq!(old_address, a);
    let Record::Alloc { address: z, size: 64, align: 64, zeroed: true, .. } = *ours[2] else {
        panic!("{:?}", ours[2])
    };
    assert_eq!(*ours[3], Record::Free { q: q_of(ours[3]), address: z });
    let Record::Alloc { address: v, size: 40, align: 4, .. } = *ours[4] else {
        panic!("{:?}", ours[4])
    };
    let Record::Tag { address: tagged, type_name, var_name, .. } = *ours[5] else {
        panic!("{:?}", ours[5])
    };
    assert_eq!(tagged, v);
    assert_eq!(*ours[6], Record::Free { q: q_of(ours[6]), address: v });
    assert_eq!(*ours[7], Record::Free { q: q_of(ours[7]), address: b });
    // Timestamps never go backwards within a thread.
    let qs: Vec<u64> = ours.iter().map(|r| q_of(r)).collect();
    assert!(qs.windows(2).all(|w| w[0] <= w[1]), "{qs:?}");
    // The tag's strings are defined somewhere in the trace.
    let strings: Vec<(u32, &[u8])> = trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter_map(
            |r| if let Record::String { id, bytes } = r { Some((*id, *bytes)) } else { None },
        )
        .collect();
    assert!(strings.contains(&(type_name, b"alloc::vec::Vec<u32>".as_slice())), "{strings:?}");
    assert!(strings.contains(&(var_name, b"v".as_slice())));
    // The end marker is there.
    assert!(trace.blocks.iter().flat_map(|b| &b.records).any(|r| matches!(r, Record::End { .. })));
}

fn q_of(r: &Record) -> u64 {
    match *r {
        Record::Alloc { q, .. }
        | Record::Free { q, .. }
        | Record::Realloc { q, .. }
        | Record::Tag { q, .. } => q,
        _ => 0,
    }
}

/// Checks `stats()` against known work, in the child, exiting non-zero
/// on a mismatch.
fn stats_child() {
    memscope_recorder::init();
    // Blocks allocated before init and freed after it count as
    // deallocations, which can hold `active_bytes` at zero: keep a ballast
    // live so that differences below are exact.
    let ballast = black_box(vec![1u8; 1 << 20]);
    let before = memscope_recorder::stats();
    let a = Layout::from_size_align(1000, 8).unwrap();
    // SAFETY: valid layouts; blocks freed with their layouts.
    unsafe {
        // Calls to the inner allocator directly are not recorded.
        let direct = System.alloc(a);
        System.dealloc(direct, a);
        let p = GLOBAL.alloc(a);
        let p = GLOBAL.realloc(p, a, 3000);
        let q = GLOBAL.alloc(Layout::from_size_align(500, 8).unwrap());
        let mid = memscope_recorder::stats();
        assert_eq!(mid.total_allocations - before.total_allocations, 3);
        assert_eq!(mid.total_reallocations - before.total_reallocations, 1);
        assert_eq!(mid.total_deallocations - before.total_deallocations, 1);
        assert_eq!(mid.active_bytes - before.active_bytes, 3500);
        assert!(mid.peak_bytes >= mid.active_bytes);
        GLOBAL.dealloc(p, Layout::from_size_align(3000, 8).unwrap());
        GLOBAL.dealloc(q, Layout::from_size_align(500, 8).unwrap());
        let after = memscope_recorder::stats();
        assert_eq!(after.active_bytes, before.active_bytes);
        assert_eq!(after.total_deallocations - before.total_deallocations, 3);
        assert!(after.peak_bytes >= mid.active_bytes);
    }
    drop(ballast);
    // A large block moves the published peak at once.
    let big = black_box(vec![0u8; 10 << 20]);
    let with_big = memscope_recorder::stats();
    drop(big);
    assert!(with_big.peak_bytes >= 10 << 20);
    assert!(memscope_recorder::stats().peak_bytes >= 10 << 20);
}

fn stats_count_exactly() {
    let dir = support::temp_dir();
    let (status, _, _) = support::run_child("stats", dir.path());
    assert!(status.success(), "the child's stats assertions failed: {status}");
}

/// `init` from eight threads at once, then again: one trace, all recorded.
fn init_twice_child() {
    let handles: Vec<_> = (0..8)
        .map(|i| {
            std::thread::Builder::new()
                .name(format!("init-{i}"))
                .spawn(move || {
                    memscope_recorder::init();
                    // black_box: the optimizer may not remove the allocation.
                    drop(black_box(Box::new([i as u8; 333])));
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    memscope_recorder::init();
    memscope_recorder::init_with(Config::default().path("/nonexistent/ignored.trace"))
        .expect("already recording");
    drop(black_box(Box::new([9u8; 333])));
}

fn init_twice_and_from_threads_records_once() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("init_twice", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    assert!(trace.header.is_finished(), "normal exit finishes the trace");
    let threads = support::records_by_thread(&trace);
    for i in 0..8 {
        let name = format!("init-{i}");
        let records = &threads[&name];
        let allocs =
            records.iter().filter(|r| matches!(r, Record::Alloc { size: 333, .. })).count();
        assert_eq!(allocs, 1, "{name} allocated one 333-byte box after init");
    }
    let main_allocs =
        threads["main"].iter().filter(|r| matches!(r, Record::Alloc { size: 333, .. })).count();
    assert_eq!(main_allocs, 1);
    assert!(!std::path::Path::new("/nonexistent/ignored.trace").exists());
}

fn init_errors_child() {
    let e = memscope_recorder::init_with(Config::default().block_len(1000)).unwrap_err();
    assert!(e.to_string().contains("block_len 1000"), "{e}");
    let e = memscope_recorder::init_with(Config::default().path("/nonexistent-dir/x.trace"))
        .unwrap_err();
    assert!(e.to_string().contains("/nonexistent-dir/x.trace"), "{e}");
    // The program goes on, untraced, and may still start recording.
    let v: Vec<u64> = black_box((0..100).collect());
    assert_eq!(v.iter().sum::<u64>(), 4950);
    assert_eq!(memscope_recorder::stats().total_allocations, 0);
    memscope_recorder::init();
    let b = black_box(Box::new(7u64));
    assert_eq!(memscope_recorder::stats().total_allocations, 1);
    drop(b);
}

fn init_errors_leave_the_program_running() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("init_errors", dir.path());
    assert!(status.success(), "child failed: {status}");
    assert!(Trace::read(&bytes).is_ok());
}

type T0 = (u64, u64, u64, u64);
type T1 = (T0, T0, T0, T0);
type T2 = (T1, T1, T1, T1);
type T3 = (T2, T2, T2, T2);
/// A type whose name is over 5 KiB long.
type T4 = (T3, T3, T3, T3);

/// With 4 KiB blocks, a type name longer than a block can hold is cut to
/// fit, and the tag still names it.
fn long_type_name_child() {
    memscope_recorder::init_with(Config::from_env().block_len(4096)).unwrap();
    assert!(std::any::type_name::<Box<T4>>().len() > 5000);
    for _ in 0..3 {
        let b: Box<T4> = black_box(Box::default());
        track_var!(b);
        drop(b);
    }
}

fn long_type_names_fit_small_blocks() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("long_type_name", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    let records: Vec<&Record> = trace.blocks.iter().flat_map(|b| &b.records).collect();
    let strings: Vec<(u32, usize)> = records
        .iter()
        .filter_map(|r| {
            if let Record::String { id, bytes } = r { Some((*id, bytes.len())) } else { None }
        })
        .collect();
    let tags: Vec<u32> = records
        .iter()
        .filter_map(|r| if let Record::Tag { type_name, .. } = r { Some(*type_name) } else { None })
        .collect();
    assert_eq!(tags.len(), 3, "every tag is written");
    for t in &tags {
        let len = strings
            .iter()
            .find(|(id, _)| id == t)
            .map(|s| s.1)
            .expect("the tag's type name is defined");
        assert!(len > 3000 && len <= 4096 - 32 - 16, "name cut to fit an empty block: {len} bytes");
    }
    assert!(trace.blocks.len() < 20, "no block is wasted per tag: {} blocks", trace.blocks.len());
}
