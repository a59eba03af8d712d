//! Many threads that allocate, free each other's blocks and exit while
//! others go on: every allocation is recorded once and pairs with exactly
//! one deallocation, and every thread's name and exit are recorded.

mod support;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::Duration;

use memscope_recorder::TrackingAllocator;
use memscope_schema::{Record, Trace};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

const WORKERS: usize = 16;
const BLOCKS_PER_WORKER: usize = 3000;
/// Worker `w` allocates blocks of `MARKER_SIZE + w` bytes, a size nothing
/// else in the program uses.
const MARKER_SIZE: u64 = 5003;
/// Size of the block each worker frees from a thread-local destructor.
const TLS_BLOCK: u64 = 7777;

thread_local! {
    static LATE: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

fn main() {
    if let Some(scenario) = support::child_scenario() {
        assert_eq!(scenario, "stress");
        stress_child();
        return;
    }
    support::run_checks(vec![(
        "sixteen_threads_pair_every_block",
        sixteen_threads_pair_every_block,
    )]);
}

fn stress_child() {
    memscope_recorder::init();
    // Worker w sends every other block to worker (w + 1) % WORKERS, which
    // frees it: half of all frees cross threads.
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..WORKERS).map(|_| mpsc::channel::<Vec<u8>>()).unzip();
    let mut handles = Vec::new();
    for (w, rx) in receivers.into_iter().enumerate() {
        let tx = senders[(w + 1) % WORKERS].clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("w-{w}"))
                .spawn(move || {
                    LATE.with(|l| *l.borrow_mut() = Some(Vec::with_capacity(TLS_BLOCK as usize)));
                    let size = (MARKER_SIZE as usize) + w;
                    for i in 0..BLOCKS_PER_WORKER {
                        let block = std::hint::black_box(vec![i as u8; size]);
                        if i.is_multiple_of(2) {
                            tx.send(block)
                                .expect("the next worker lives until all blocks are sent");
                        }
                        // Free whatever the previous worker sent so far.
                        while let Ok(other) = rx.try_recv() {
                            drop(other);
                        }
                    }
                    drop(tx);
                    // Staggered exits: some threads are gone while others
                    // still allocate.
                    std::thread::sleep(Duration::from_millis((w % 4) as u64 * 5));
                    rx
                })
                .expect("spawning a worker"),
        );
    }
    drop(senders);
    // The main thread keeps allocating while workers come and go.
    let mut main_blocks = Vec::new();
    let mut leftovers = Vec::new();
    for h in handles {
        for _ in 0..100 {
            main_blocks.push(Box::new([0u8; 64]));
        }
        leftovers.push(h.join().expect("worker panicked"));
    }
    // Blocks still in channels are freed here, on the main thread.
    for rx in leftovers {
        for block in rx.try_iter() {
            drop(block);
        }
    }
    drop(main_blocks);
}

fn sixteen_threads_pair_every_block() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("stress", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    assert!(trace.header.is_finished());

    // Every worker is named and exited.
    let threads = support::records_by_thread(&trace);
    for w in 0..WORKERS {
        let records = &threads[&format!("w-{w}")];
        assert!(
            records.iter().any(|r| matches!(r, Record::ThreadExit { .. })),
            "w-{w} has no exit record"
        );
        let allocs = records
            .iter()
            .filter(|r| matches!(r, Record::Alloc { size, .. } if *size == MARKER_SIZE + w as u64));
        assert_eq!(allocs.count(), BLOCKS_PER_WORKER, "w-{w} allocations");
    }

    // Pair all allocations and frees in time order (frees first at equal
    // times, as the analyzer does): every marker and TLS block is freed
    // exactly once, and about half the frees are by another thread.
    let mut events: Vec<(u64, u8, u32, usize, Record)> = Vec::new();
    for b in &trace.blocks {
        for (i, r) in b.records.iter().enumerate() {
            let (q, class) = match *r {
                Record::Alloc { q, .. } => (q, 1),
                Record::Free { q, .. } | Record::Realloc { q, .. } => (q, 0),
                _ => continue,
            };
            events.push((
                q,
                class,
                b.header.thread_id,
                (b.header.seq as usize) << 32 | i,
                r.clone(),
            ));
        }
    }
    events.sort_by_key(|e| (e.0, e.1, e.2, e.3));
    let mut live: HashMap<u64, (u64, u32)> = HashMap::new();
    let (mut freed, mut cross, mut tls_freed) = (0usize, 0usize, 0usize);
    for (_, _, thread, _, r) in &events {
        match *r {
            Record::Alloc { address, size, .. } => {
                assert!(
                    live.insert(address, (size, *thread)).is_none(),
                    "address {address:#x} allocated twice"
                );
            }
            Record::Free { address, .. } => {
                if let Some((size, by)) = live.remove(&address) {
                    if (MARKER_SIZE..MARKER_SIZE + WORKERS as u64).contains(&size) {
                        freed += 1;
                        cross += usize::from(by != *thread);
                    }
                    tls_freed += usize::from(size == TLS_BLOCK);
                }
            }
            Record::Realloc { old_address, address, size, .. } => {
                live.remove(&old_address);
                live.insert(address, (size, *thread));
            }
            _ => {}
        }
    }
    assert_eq!(freed, WORKERS * BLOCKS_PER_WORKER, "every marker block is freed exactly once");
    assert_eq!(
        cross,
        WORKERS * BLOCKS_PER_WORKER / 2,
        "every other block is freed by another thread"
    );
    assert_eq!(tls_freed, WORKERS, "blocks freed by thread-local destructors are recorded");
    let leaked_markers =
        live.values().filter(|(s, _)| (MARKER_SIZE..MARKER_SIZE + WORKERS as u64).contains(s));
    assert_eq!(leaked_markers.count(), 0);
}
