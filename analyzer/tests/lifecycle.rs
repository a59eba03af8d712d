//! Traced programs under stress, checked through the analyzer: sixteen
//! threads that free each other's blocks and exit while others run pair
//! completely; a program killed with SIGKILL opens with a warning.
//!
//! This file is both the traced program (when `MEMSCOPE_TEST_CHILD` is set)
//! and the test that runs it.

use std::hint::black_box;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use memscope_recorder::TrackingAllocator;

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

const WORKERS: usize = 16;
const BLOCKS: usize = 2000;
/// Worker blocks have sizes MARKER..MARKER + WORKERS, used by nothing else.
const MARKER: usize = 7001;

fn sixteen_threads() {
    memscope_recorder::init();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..WORKERS).map(|_| mpsc::channel::<Vec<u8>>()).unzip();
    let mut handles = Vec::new();
    for (w, rx) in receivers.into_iter().enumerate() {
        let tx = senders[(w + 1) % WORKERS].clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || {
                    for i in 0..BLOCKS {
                        let block = black_box(vec![1u8; MARKER + w]);
                        if i % 2 == 0 {
                            let _ = tx.send(block);
                        }
                        while let Ok(b) = rx.try_recv() {
                            drop(b);
                        }
                    }
                    drop(tx);
                    std::thread::sleep(Duration::from_millis((w % 4) as u64 * 3));
                    rx
                })
                .unwrap(),
        );
    }
    drop(senders);
    // Every receiver stays alive until all workers are done, so no send fails
    // (a failed send would hand the block back to its own thread).
    let receivers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for b in receivers.iter().flat_map(|rx| rx.try_iter()) {
        drop(b);
    }
}

fn killed() -> ! {
    memscope_recorder::init();
    for t in 0..2 {
        std::thread::spawn(move || {
            let mut ring: Vec<Vec<u8>> = Vec::new();
            for n in 0u64.. {
                ring.push(black_box(vec![0u8; 100 + t]));
                if ring.len() > 100 {
                    ring.remove(0);
                }
                if n == 10_000 && t == 0 {
                    println!("running");
                }
            }
        });
    }
    loop {
        std::thread::park();
    }
}

fn main() {
    match std::env::var("MEMSCOPE_TEST_CHILD").as_deref() {
        Ok("threads") => return sixteen_threads(),
        Ok("killed") => killed(),
        _ => {}
    }
    let dir = tempfile::tempdir().unwrap();
    every_block_of_sixteen_threads_pairs(dir.path());
    println!("test every_block_of_sixteen_threads_pairs ... ok");
    a_killed_program_opens_with_a_warning(dir.path());
    println!("test a_killed_program_opens_with_a_warning ... ok");
}

fn child(scenario: &str, trace: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("MEMSCOPE_TEST_CHILD", scenario).env("MEMSCOPE_TRACE", trace);
    c
}

fn analyze(trace: &Path, sql: &str) -> (String, String, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .arg(trace)
        .args(["--sql", sql, "--format", "csv"])
        .output()
        .unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code(),
    )
}

fn every_block_of_sixteen_threads_pairs(dir: &Path) {
    let trace = dir.join("threads.trace");
    assert!(child("threads", &trace).status().unwrap().success());
    let (out, err, code) = analyze(
        &trace,
        &format!(
            "SELECT count(*) AS blocks, count(free_ts_ns) AS freed, \
             sum(CASE WHEN free_thread_id <> alloc_thread_id THEN 1 ELSE 0 END) AS cross_thread \
             FROM allocations WHERE size >= {MARKER} AND size < {}",
            MARKER + WORKERS
        ),
    );
    assert_eq!(code, Some(0), "{err}");
    let total = WORKERS * BLOCKS;
    assert_eq!(out, format!("blocks,freed,cross_thread\n{total},{total},{}\n", total / 2));
    assert!(!err.contains("warning"), "a finished, paired trace warns of nothing: {err}");
    let (out, _, _) = analyze(
        &trace,
        "SELECT count(*) AS workers, count(exit_ts_ns) AS exited FROM threads WHERE name LIKE 'worker-%'",
    );
    assert_eq!(out, format!("workers,exited\n{WORKERS},{WORKERS}\n"));
}

fn a_killed_program_opens_with_a_warning(dir: &Path) {
    let trace = dir.join("killed.trace");
    let mut c = child("killed", &trace).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "running\n");
    std::thread::sleep(Duration::from_millis(30));
    c.kill().unwrap();
    c.wait().unwrap();
    drop(stdout);
    let (out, err, code) = analyze(&trace, "SELECT finished, events > 20000 AS many FROM trace");
    assert_eq!(code, Some(0), "an unfinished trace is not an error: {err}");
    assert_eq!(out, "finished,many\nfalse,true\n");
    assert!(err.contains(": trace not finished: "), "{err}");
    assert!(err.contains(" events recovered"), "{err}");
}
