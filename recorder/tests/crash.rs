//! A traced program that dies keeps its trace: after SIGKILL at a random
//! moment, `abort()`, a panic out of `main` or `std::process::exit`, every
//! event completed before the end is in a readable trace.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use memscope_recorder::TrackingAllocator;
use memscope_schema::{Record, Trace};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

/// Blocks of this size are the ones the checks count.
const MARKER: u64 = 4242;
const KILL_THREADS: usize = 3;

fn main() {
    if let Some(scenario) = support::child_scenario() {
        memscope_recorder::init();
        // Ten marker blocks, live when the program dies.
        let _keep: Vec<Vec<u8>> =
            (0..10).map(|_| std::hint::black_box(Vec::with_capacity(MARKER as usize))).collect();
        match scenario.as_str() {
            "abort" => std::process::abort(),
            "panic" => panic!("the traced program panics out of main"),
            "exit" => std::process::exit(3),
            "kill" => allocate_until_killed(),
            other => panic!("unknown scenario {other}"),
        }
    }
    support::run_checks(vec![
        ("abort_keeps_every_event", abort_keeps_every_event),
        ("panic_out_of_main_keeps_every_event", panic_out_of_main_keeps_every_event),
        ("process_exit_finishes_the_trace", process_exit_finishes_the_trace),
        (
            "sigkill_at_a_random_moment_keeps_every_completed_event",
            sigkill_keeps_every_completed_event,
        ),
    ]);
}

fn marker_allocs(trace: &Trace) -> usize {
    trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter(|r| matches!(r, Record::Alloc { size: MARKER, .. }))
        .count()
}

fn abort_keeps_every_event() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("abort", dir.path());
    assert!(!status.success());
    let trace = Trace::read(&bytes).expect("an aborted program's trace reads");
    assert!(!trace.header.is_finished(), "abort skips finish");
    assert_eq!(marker_allocs(&trace), 10);
}

fn panic_out_of_main_keeps_every_event() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("panic", dir.path());
    assert_eq!(status.code(), Some(101));
    let trace = Trace::read(&bytes).expect("a panicked program's trace reads");
    assert_eq!(marker_allocs(&trace), 10);
    // The panic unwinds out of main, which drops `keep`: the frees are there.
    let frees = trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter(|r| matches!(r, Record::Free { .. }))
        .count();
    assert!(frees >= 10);
}

fn process_exit_finishes_the_trace() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("exit", dir.path());
    assert_eq!(status.code(), Some(3));
    let trace = Trace::read(&bytes).unwrap();
    assert!(trace.header.is_finished(), "exit() runs the recorder's atexit hook");
    assert_eq!(marker_allocs(&trace), 10);
}

/// Threads allocate marker blocks forever; after every 50 allocations a
/// thread reports how many it has completed.
fn allocate_until_killed() -> ! {
    for t in 0..KILL_THREADS {
        std::thread::Builder::new()
            .name(format!("k-{t}"))
            .spawn(move || {
                let mut ring: Vec<Vec<u8>> = Vec::with_capacity(64);
                let mut done = 0u64;
                loop {
                    let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(MARKER as usize));
                    done += 1;
                    if ring.len() == 64 {
                        ring.remove(0);
                    }
                    ring.push(block);
                    if done.is_multiple_of(50) {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{t} {done}");
                        let _ = out.flush();
                    }
                }
            })
            .unwrap();
    }
    loop {
        std::thread::park();
    }
}

fn sigkill_keeps_every_completed_event() {
    let dir = support::temp_dir();
    let trace_path = dir.path().join("kill.trace");
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let delay = Duration::from_millis(50 + seed % 400);
    eprintln!("killing after {delay:?} (seed {seed})");
    let mut child = support::spawn_child("kill", &trace_path);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut reported = [0u64; KILL_THREADS];
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut parts = line.split(' ').map(|p| p.parse::<u64>().unwrap());
            let (t, n) = (parts.next().unwrap() as usize, parts.next().unwrap());
            reported[t] = reported[t].max(n);
        }
        reported
    });
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    child.wait().unwrap();
    let reported = reader.join().unwrap();
    assert!(reported.iter().any(|&n| n > 0), "the child made progress before the kill");

    let bytes = std::fs::read(&trace_path).unwrap();
    let trace = Trace::read(&bytes).expect("a killed program's trace reads");
    assert!(!trace.header.is_finished());
    let threads = support::records_by_thread(&trace);
    for (t, &n) in reported.iter().enumerate() {
        let recorded = threads.get(&format!("k-{t}")).map_or(0, |r| {
            r.iter().filter(|r| matches!(r, Record::Alloc { size: MARKER, .. })).count() as u64
        });
        assert!(
            recorded >= n,
            "thread k-{t} reported {n} completed allocations, the trace has {recorded}"
        );
    }
}
