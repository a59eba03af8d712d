//! End to end: a real traced program with planted leaks of known types,
//! counts and bytes, a reallocation chain, cross-thread frees and a
//! lifetime of known length; every query file runs through the
//! `memscope-analyze` binary and its answer is checked.
//!
//! This file is both the traced program (when `MEMSCOPE_TEST_CHILD` is set)
//! and the test that runs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use memscope_recorder::{TrackingAllocator, track_var};
use serde_json::Value;

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

/// 24 bytes.
#[allow(dead_code)]
struct Order {
    id: u64,
    price: u64,
    quantity: u32,
}

/// 48 bytes.
#[allow(dead_code)]
struct Session {
    user: u64,
    token: [u8; 40],
}

const ORDERS_LEAKED: usize = 3;
const ORDER_CAPACITY: usize = 100;
const SESSIONS_LEAKED: usize = 5;
const MESSAGES: usize = 8;
const SLEEP: Duration = Duration::from_millis(50);

fn child() {
    memscope_recorder::init();

    // Leaks on the main thread: three Vec<Order> with room for 100.
    for _ in 0..ORDERS_LEAKED {
        let orders: Vec<Order> = Vec::with_capacity(ORDER_CAPACITY);
        track_var!(orders);
        std::mem::forget(orders);
    }

    // Leaks on a thread named "leaker": five boxed sessions.
    std::thread::Builder::new()
        .name("leaker".into())
        .spawn(|| {
            for i in 0..SESSIONS_LEAKED {
                let session = Box::new(Session { user: i as u64, token: [7; 40] });
                track_var!(session);
                Box::leak(session);
            }
        })
        .unwrap()
        .join()
        .unwrap();

    // A reallocation chain: 16, 32, 64 and 128 bytes, then freed.
    let mut grow: Vec<u32> = Vec::with_capacity(4);
    track_var!(grow);
    for cap in [8, 16, 32] {
        grow.reserve_exact(cap);
    }
    drop(grow);

    // Cross-thread frees: "producer" allocates eight 128-byte messages,
    // "consumer" frees them.
    let (tx, rx) = mpsc::sync_channel::<Box<[u64; 16]>>(MESSAGES);
    let consumer = std::thread::Builder::new()
        .name("consumer".into())
        .spawn(move || {
            for message in rx {
                drop(message);
            }
        })
        .unwrap();
    std::thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            let messages: Vec<Box<[u64; 16]>> = (0..MESSAGES)
                .map(|i| {
                    let message = Box::new([i as u64; 16]);
                    track_var!(message);
                    message
                })
                .collect();
            for m in messages {
                tx.send(m).unwrap();
            }
        })
        .unwrap()
        .join()
        .unwrap();
    consumer.join().unwrap();

    // A lifetime of known length.
    let sleeper = Box::new([0u8; 4096]);
    track_var!(sleeper);
    std::thread::sleep(SLEEP);
    drop(sleeper);

    // A tag through an interior pointer (Rc points past its counts).
    let shared = Rc::new(Order { id: 1, price: 2, quantity: 3 });
    track_var!(shared);
    drop(shared);
}

fn main() {
    if std::env::var_os("MEMSCOPE_TEST_CHILD").is_some() {
        child();
        return;
    }
    let args = libtest_mimic::Arguments::from_args();
    let dir = tempfile::Builder::new().prefix("memscope-planted").tempdir().unwrap();
    let trace = dir.path().join("planted.trace");
    let status = Command::new(std::env::current_exe().unwrap())
        .env("MEMSCOPE_TEST_CHILD", "1")
        .env("MEMSCOPE_TRACE", &trace)
        .status()
        .unwrap();
    assert!(status.success(), "the traced child failed: {status}");
    let t: &'static Path = Box::leak(trace.into_boxed_path());
    let checks: [(&str, Check); 7] = [
        ("leaks_query_finds_the_planted_leaks", leaks),
        ("type_hotspots_query_counts_planted_types", type_hotspots),
        ("lifetime_histogram_query_places_the_sleeper", lifetimes),
        ("fragmentation_query_agrees_with_leaks", fragmentation),
        ("reallocation_chain_is_linked", realloc_chain),
        ("cross_thread_frees_name_both_threads", cross_thread),
        ("interior_pointer_tag_resolves", interior_tag),
    ];
    let trials = checks
        .into_iter()
        .map(|(name, check)| {
            libtest_mimic::Trial::test(name, move || {
                check(t);
                Ok(())
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    drop(dir);
    conclusion.exit();
}

/// A check of the child's trace.
type Check = fn(&Path);

fn query_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("queries").join(name)
}

/// Runs `memscope-analyze TRACE --sql SQL --format json` and returns the
/// rows.
fn query(trace: &Path, sql: &str) -> Vec<serde_json::Map<String, Value>> {
    let out = Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .arg(trace)
        .args(["--sql", sql, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "memscope-analyze failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    rows.into_iter().map(|r| r.as_object().unwrap().clone()).collect()
}

fn file_query(trace: &Path, name: &str) -> Vec<serde_json::Map<String, Value>> {
    query(trace, query_file(name).to_str().unwrap())
}

fn u(row: &serde_json::Map<String, Value>, col: &str) -> u64 {
    row.get(col).and_then(Value::as_u64).unwrap_or_else(|| panic!("{col} in {row:?}"))
}

fn s<'a>(row: &'a serde_json::Map<String, Value>, col: &str) -> &'a str {
    row.get(col).and_then(Value::as_str).unwrap_or_else(|| panic!("{col} in {row:?}"))
}

fn leaks(t: &Path) {
    let rows = file_query(t, "leaks.sql");
    let order = rows
        .iter()
        .find(|r| s(r, "type_name") == "alloc::vec::Vec<planted::Order>")
        .expect("the Order leak");
    assert_eq!(s(order, "thread_name"), "main");
    assert_eq!(u(order, "leaked_count"), ORDERS_LEAKED as u64);
    assert_eq!(u(order, "leaked_bytes"), (ORDERS_LEAKED * ORDER_CAPACITY * 24) as u64);
    assert_eq!(u(order, "largest_bytes"), (ORDER_CAPACITY * 24) as u64);
    let session = rows
        .iter()
        .find(|r| s(r, "type_name") == "alloc::boxed::Box<planted::Session>")
        .expect("the Session leak");
    assert_eq!(s(session, "thread_name"), "leaker");
    assert_eq!(u(session, "leaked_count"), SESSIONS_LEAKED as u64);
    assert_eq!(u(session, "leaked_bytes"), (SESSIONS_LEAKED * 48) as u64);
    // Nothing else that was tagged leaked.
    let tagged: Vec<&str> = rows
        .iter()
        .map(|r| s(r, "type_name"))
        .filter(|n| *n != "(unknown)" && !n.contains("Order>") && !n.contains("Session>"))
        .collect();
    assert!(tagged.is_empty(), "unexpected leaks: {tagged:?}");
    // Largest first.
    let bytes: Vec<u64> = rows.iter().map(|r| u(r, "leaked_bytes")).collect();
    assert!(bytes.windows(2).all(|w| w[0] >= w[1]), "{bytes:?}");
}

fn type_hotspots(t: &Path) {
    let rows = file_query(t, "type_hotspots.sql");
    let by_type = |name: &str| {
        rows.iter().find(|r| s(r, "type_name") == name).unwrap_or_else(|| panic!("{name}"))
    };
    let grow = by_type("alloc::vec::Vec<u32>");
    assert_eq!(u(grow, "allocations"), 4, "the first allocation and three reallocations");
    assert_eq!(u(grow, "allocated_bytes"), 16 + 32 + 64 + 128);
    assert_eq!(
        u(grow, "peak_live_bytes"),
        128,
        "a reallocation ends one block as it starts the next"
    );
    assert_eq!(u(grow, "leaked_bytes"), 0);
    let messages = by_type("alloc::boxed::Box<[u64; 16]>");
    assert_eq!(u(messages, "allocations"), MESSAGES as u64);
    assert_eq!(u(messages, "allocated_bytes"), (MESSAGES * 128) as u64);
    assert_eq!(
        u(messages, "peak_live_bytes"),
        (MESSAGES * 128) as u64,
        "all messages exist before any is sent"
    );
    let orders = by_type("alloc::vec::Vec<planted::Order>");
    assert_eq!(u(orders, "peak_live_bytes"), 7200);
    assert_eq!(u(orders, "leaked_bytes"), 7200);
}

fn lifetimes(t: &Path) {
    let rows = file_query(t, "lifetime_histogram.sql");
    // 50 ms lies in [2^25, 2^26) ns.
    let bucket = rows
        .iter()
        .find(|r| r.get("bucket").and_then(Value::as_u64) == Some(25))
        .expect("bucket 25");
    assert!(u(bucket, "allocations") >= 1 && u(bucket, "bytes") >= 4096, "{bucket:?}");
    assert_eq!((u(bucket, "lower_ns"), u(bucket, "upper_ns")), (1 << 25, 1 << 26));
    // The leaked row agrees with the leaks query.
    let leaked = rows.last().unwrap();
    assert_eq!(s(leaked, "status"), "leaked");
    let leaks = file_query(t, "leaks.sql");
    assert_eq!(u(leaked, "allocations"), leaks.iter().map(|r| u(r, "leaked_count")).sum::<u64>());
    assert_eq!(u(leaked, "bytes"), leaks.iter().map(|r| u(r, "leaked_bytes")).sum::<u64>());
    // The sleeper itself.
    let sleeper = query(t, "SELECT lifetime_ns FROM allocations WHERE var_name = 'sleeper'");
    let ns = u(&sleeper[0], "lifetime_ns");
    assert!(ns >= SLEEP.as_nanos() as u64 && ns < 5_000_000_000, "sleeper lived {ns} ns");
}

fn fragmentation(t: &Path) {
    let rows = file_query(t, "fragmentation.sql");
    assert_eq!(rows.iter().map(|r| s(r, "at")).collect::<Vec<_>>(), ["peak", "end"]);
    let end = &rows[1];
    let leaks = file_query(t, "leaks.sql");
    assert_eq!(u(end, "live_blocks"), leaks.iter().map(|r| u(r, "leaked_count")).sum::<u64>());
    assert_eq!(u(end, "live_bytes"), leaks.iter().map(|r| u(r, "leaked_bytes")).sum::<u64>());
    for r in &rows {
        assert!(u(r, "largest_gap_bytes") <= u(r, "free_bytes"));
        if let Some(f) = r.get("fragmentation").and_then(Value::as_f64) {
            assert!((0.0..=1.0).contains(&f), "{f}");
        }
    }
    let peak = &rows[0];
    assert!(u(peak, "live_bytes") >= u(end, "live_bytes"));
}

fn realloc_chain(t: &Path) {
    let rows = query(
        t,
        "SELECT alloc_id, size, realloc_from, realloc_to, free_ts_ns FROM allocations \
         WHERE type_name = 'alloc::vec::Vec<u32>' ORDER BY alloc_id",
    );
    let sizes: Vec<u64> = rows.iter().map(|r| u(r, "size")).collect();
    assert_eq!(sizes, [16, 32, 64, 128]);
    for w in rows.windows(2) {
        assert_eq!(u(&w[1], "realloc_from"), u(&w[0], "alloc_id"));
        assert_eq!(u(&w[0], "realloc_to"), u(&w[1], "alloc_id"));
    }
    assert!(rows[0].get("realloc_from").is_none_or(Value::is_null));
    assert!(rows[3].get("realloc_to").is_none_or(Value::is_null));
    assert!(
        rows.iter().all(|r| r.get("free_ts_ns").is_some_and(|v| !v.is_null())),
        "the chain was freed"
    );
}

fn cross_thread(t: &Path) {
    let rows = query(
        t,
        "SELECT ta.name AS alloc_thread, tf.name AS free_thread, count(*) AS n FROM allocations a \
         JOIN threads ta ON ta.thread_id = a.alloc_thread_id JOIN threads tf ON tf.thread_id = a.free_thread_id \
         WHERE a.type_name = 'alloc::boxed::Box<[u64; 16]>' GROUP BY ta.name, tf.name",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((s(&rows[0], "alloc_thread"), s(&rows[0], "free_thread")), ("producer", "consumer"));
    assert_eq!(u(&rows[0], "n"), MESSAGES as u64);
}

fn interior_tag(t: &Path) {
    let rows = query(
        t,
        "SELECT size, free_ts_ns FROM allocations WHERE type_name = 'alloc::rc::Rc<planted::Order>'",
    );
    assert_eq!(rows.len(), 1);
    assert_eq!(u(&rows[0], "size"), 16 + 24, "an Rc block holds two counts and the value");
}
