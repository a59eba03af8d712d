//! The recorder in a process's life: `fork()`, a file that cannot grow,
//! RSS samples from the background thread, and sampling by bytes.

mod support;

use std::hint::black_box;
use std::time::Duration;

use memscope_recorder::{Config, TrackingAllocator};
use memscope_schema::{Record, Trace};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

/// Blocks of this size come from the forked child only.
const CHILD_MARKER: usize = 6161;
/// Blocks of this size come from the parent after the fork.
const PARENT_MARKER: usize = 6262;

fn main() {
    if let Some(scenario) = support::child_scenario() {
        match scenario.as_str() {
            "fork" => fork_child(),
            "disk_full" => disk_full_child(),
            "rss" => rss_child(),
            "sampled" => sampled_child(),
            other => panic!("unknown scenario {other}"),
        }
        return;
    }
    support::run_checks(vec![
        ("fork_child_stops_recording_and_parent_trace_stays_whole", fork_keeps_the_parent_trace),
        ("a_file_that_cannot_grow_stops_recording_once", file_that_cannot_grow),
        ("background_thread_samples_rss", background_thread_samples_rss),
        (
            "sampling_records_large_blocks_and_every_free",
            sampling_records_large_blocks_and_every_free,
        ),
    ]);
}

fn fork_child() {
    memscope_recorder::init();
    // SAFETY: fork in a program whose other threads (the recorder's
    // background thread) hold no lock the child needs: the child only
    // allocates through the recorder, which stops in the child, and exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        for _ in 0..100 {
            drop(black_box(vec![7u8; CHILD_MARKER]));
        }
        // A normal exit runs the atexit hook, which must not finish the
        // parent's trace.
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "forked child failed");
    for _ in 0..10 {
        drop(black_box(vec![1u8; PARENT_MARKER]));
    }
}

fn fork_keeps_the_parent_trace() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("fork", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).expect("the parent's trace reads");
    assert!(trace.header.is_finished(), "the parent finished its trace");
    let records: Vec<&Record> = trace.blocks.iter().flat_map(|b| &b.records).collect();
    let count = |size: usize| {
        records
            .iter()
            .filter(|r| matches!(r, Record::Alloc { size: s, .. } if *s == size as u64))
            .count()
    };
    assert_eq!(count(CHILD_MARKER), 0, "the forked child records nothing");
    assert_eq!(count(PARENT_MARKER), 10, "the parent keeps recording after fork");
    let ends = records.iter().filter(|r| matches!(r, Record::End { .. })).count();
    assert_eq!(ends, 1, "only the parent writes an end marker");
}

/// Recording into a file limited to 20 MiB (RLIMIT_FSIZE): growing past it
/// fails like a full disk.
fn disk_full_child() {
    // SAFETY: plain calls that change this process's own limits.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit { rlim_cur: 20 << 20, rlim_max: 20 << 20 };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    memscope_recorder::init_with(Config::from_env().rss_interval(Duration::ZERO)).unwrap();
    // About 3 million events, far more than 20 MiB of trace.
    let mut kept = Vec::with_capacity(1000);
    for i in 0..1_500_000usize {
        let b = black_box(vec![0u8; 16 + i % 100]);
        if kept.len() < 1000 {
            kept.push(b);
        }
    }
    // The program goes on correctly.
    assert_eq!(kept.len(), 1000);
    println!("done");
}

fn file_that_cannot_grow() {
    let dir = support::temp_dir();
    let trace = dir.path().join("disk_full.trace");
    let out = support::child_command("disk_full", &trace).output().unwrap();
    assert!(
        out.status.success(),
        "the program keeps running: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("memscope: recording stopped").count(), 1, "one message: {stderr}");
    let bytes = std::fs::read(&trace).unwrap();
    assert!(bytes.len() <= 20 << 20);
    let trace = Trace::read(&bytes).expect("the trace before the failure reads");
    assert!(trace.header.recording_failed());
    let allocs = trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter(|r| matches!(r, Record::Alloc { .. }))
        .count();
    assert!(allocs > 100_000, "events up to the failure are kept: {allocs}");
}

fn rss_child() {
    memscope_recorder::init_with(Config::from_env().rss_interval(Duration::from_millis(5)))
        .unwrap();
    let big = black_box(vec![1u8; 64 << 20]);
    std::thread::sleep(Duration::from_millis(200));
    drop(big);
}

fn background_thread_samples_rss() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("rss", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    let rss: Vec<u64> = trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter_map(|r| if let Record::Rss { rss_bytes, .. } = r { Some(*rss_bytes) } else { None })
        .collect();
    assert!(rss.len() >= 10, "a sample every 5 ms for 200 ms: got {}", rss.len());
    assert!(rss.iter().any(|&b| b >= 64 << 20), "the 64 MiB block shows in RSS: {rss:?}");
    let threads = support::records_by_thread(&trace);
    assert!(threads.contains_key("memscope"), "samples come from the recorder's thread");
    let own_allocs =
        threads["memscope"].iter().filter(|r| matches!(r, Record::Alloc { .. })).count();
    assert_eq!(own_allocs, 0, "the recorder's thread records no allocation of its own");
}

fn sampled_child() {
    memscope_recorder::init_with(Config::from_env().sample_rate(4096)).unwrap();
    let before = memscope_recorder::stats();
    for i in 0..20_000usize {
        drop(black_box(vec![0u8; 64 + i % 64]));
    }
    for _ in 0..10 {
        drop(black_box(vec![0u8; 100_000]));
    }
    let after = memscope_recorder::stats();
    // stats() counts every allocation, sampled or not.
    assert_eq!(after.total_allocations - before.total_allocations, 20_010);
}

fn sampling_records_large_blocks_and_every_free() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("sampled", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    assert_eq!(trace.header.sample_rate, 4096);
    let records: Vec<&Record> = trace.blocks.iter().flat_map(|b| &b.records).collect();
    let small = records.iter().filter(|r| matches!(r, Record::Alloc { size: 64..128, .. })).count();
    let large = records.iter().filter(|r| matches!(r, Record::Alloc { size: 100_000, .. })).count();
    let frees = records.iter().filter(|r| matches!(r, Record::Free { .. })).count();
    assert_eq!(large, 10, "blocks at or above the rate are always recorded");
    // 20 000 blocks of ~96 bytes at rate 4096: about 20000 * (1 - e^(-96/4096)) = 463.
    assert!((300..650).contains(&small), "about 2.3 % of small blocks are recorded: {small}");
    assert!(frees >= 20_010, "every deallocation is recorded: {frees}");
}
