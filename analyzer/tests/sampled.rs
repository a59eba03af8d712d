//! Sampling by bytes end to end: a traced program records 1 allocation in
//! about 8; the analyzer's weighted sums estimate the true counts and bytes.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use memscope_recorder::{Config, TrackingAllocator, track_var};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

const RATE: u64 = 4096;
const BLOCKS: u64 = 200_000;
const LEAK_EVERY: u64 = 100;

/// Size of block `i`: 16 to 1039 bytes, spread by a multiplicative hash.
fn size(i: u64) -> u64 {
    16 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54)
}

fn child() {
    memscope_recorder::init_with(Config::from_env().sample_rate(RATE)).unwrap();
    for i in 0..BLOCKS {
        let block: Vec<u8> = black_box(Vec::with_capacity(size(i) as usize));
        if i % LEAK_EVERY == 0 {
            track_var!(block);
            std::mem::forget(block);
        }
    }
}

fn main() {
    if std::env::var_os("MEMSCOPE_TEST_CHILD").is_some() {
        child();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("sampled.trace");
    let status = Command::new(std::env::current_exe().unwrap())
        .env("MEMSCOPE_TEST_CHILD", "1")
        .env("MEMSCOPE_TRACE", &trace)
        .status()
        .unwrap();
    assert!(status.success(), "traced child failed: {status}");
    weighted_sums_estimate_the_truth(&trace);
    println!("test weighted_sums_estimate_the_truth ... ok");
}

fn query(trace: &Path, sql: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .arg(trace)
        .args(["--sql", sql, "--format", "csv", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().skip(1).map(str::to_string).collect()
}

fn close(estimate: f64, truth: f64, tolerance: f64) -> bool {
    (estimate - truth).abs() <= tolerance * truth
}

fn weighted_sums_estimate_the_truth(trace: &Path) {
    let true_bytes: u64 = (0..BLOCKS).map(size).sum();
    let true_leaked: u64 = (0..BLOCKS).step_by(LEAK_EVERY as usize).map(size).sum();
    let rows = query(
        trace,
        "SELECT count(*), sum(weight), sum(size * weight) FROM allocations \
         WHERE size BETWEEN 16 AND 1039 \
         AND alloc_thread_id = (SELECT thread_id FROM threads WHERE name = 'main')",
    );
    let v: Vec<f64> = rows[0].split(',').map(|x| x.parse().unwrap()).collect();
    let (recorded, count, bytes) = (v[0], v[1], v[2]);
    assert!(recorded < BLOCKS as f64 / 4.0, "most blocks are not recorded: {recorded}");
    // The program's own other allocations of these sizes are few; allow 5 %.
    assert!(close(count, BLOCKS as f64, 0.05), "estimated {count} allocations, truly {BLOCKS}");
    assert!(close(bytes, true_bytes as f64, 0.05), "estimated {bytes} bytes, truly {true_bytes}");
    // The leaks query estimates the tagged leaks.
    let leaks = query(trace, "leaks");
    let tagged =
        leaks.iter().find(|l| l.starts_with("alloc::vec::Vec<u8>,")).expect("a Vec<u8> leak row");
    let fields: Vec<&str> = tagged.split(',').collect();
    let (count, bytes): (f64, f64) = (fields[3].parse().unwrap(), fields[4].parse().unwrap());
    let true_count = (BLOCKS / LEAK_EVERY) as f64;
    assert!(close(count, true_count, 0.25), "estimated {count} leaked blocks, truly {true_count}");
    assert!(
        close(bytes, true_leaked as f64, 0.25),
        "estimated {bytes} leaked bytes, truly {true_leaked}"
    );
    assert_eq!(query(trace, "SELECT sample_rate_bytes FROM trace"), [RATE.to_string()]);
}
