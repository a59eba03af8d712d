//! Call stacks as recorded: every allocation refers to a stack its thread
//! defined, the stack-reference of a block survives block boundaries, equal
//! call paths get equal stacks and different ones different stacks, and the
//! module map covers the return addresses.

mod support;

use std::collections::HashMap;
use std::hint::black_box;

use memscope_recorder::{Config, TrackingAllocator};
use memscope_schema::{Record, Trace};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

const FROM_A: usize = 1111;
const FROM_B: usize = 2222;
const ROUNDS: usize = 3000;

#[inline(never)]
fn site_a() {
    drop(black_box(vec![1u8; FROM_A]));
}

#[inline(never)]
fn site_b() {
    drop(black_box(vec![2u8; FROM_B]));
}

fn main() {
    match support::child_scenario().as_deref() {
        Some("small-blocks") => {
            // 4 KiB blocks: a few hundred events per block, so references
            // must be repeated at every block start.
            memscope_recorder::init_with(Config::from_env().block_len(4096)).unwrap();
            for _ in 0..ROUNDS {
                site_a();
                site_b();
            }
            return;
        }
        Some("dlopen") => {
            memscope_recorder::init();
            let name = c"libresolv.so.2";
            // SAFETY: a NUL-terminated name; the handle is never used.
            let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW) };
            println!("loaded={}", !handle.is_null());
            // The background thread looks at the loader every 10 ms.
            std::thread::sleep(std::time::Duration::from_millis(100));
            return;
        }
        Some(other) => panic!("unknown scenario {other}"),
        None => {}
    }
    support::run_checks(vec![
        ("allocations_refer_to_their_call_paths", allocations_refer_to_their_call_paths),
        (
            "a_library_loaded_later_joins_the_module_map",
            a_library_loaded_later_joins_the_module_map,
        ),
    ]);
}

fn allocations_refer_to_their_call_paths() {
    let dir = support::temp_dir();
    let (status, bytes, _) = support::run_child("small-blocks", dir.path());
    assert!(status.success(), "child failed: {status}");
    let trace = Trace::read(&bytes).unwrap();
    assert_eq!(trace.header.stack_depth, 64);

    // Each thread's definitions, then every allocation's stack by size.
    let mut defined: HashMap<(u32, u32), Vec<u64>> = HashMap::new();
    let mut modules: Vec<(u64, u64)> = Vec::new();
    for b in &trace.blocks {
        for r in &b.records {
            match r {
                Record::Stack { id, frames } => {
                    defined.insert((b.header.thread_id, *id), frames.iter().collect());
                }
                Record::Module { start, end, .. } => modules.push((*start, *end)),
                _ => {}
            }
        }
    }
    let mut stacks_of: HashMap<u64, Vec<Vec<u64>>> = HashMap::new();
    let mut blocks_with_a = 0;
    for b in &trace.blocks {
        let mut current = 0;
        let mut seen_a = false;
        for r in &b.records {
            match r {
                Record::StackRef { id } => current = *id,
                Record::Alloc { size, .. } if *size == FROM_A as u64 || *size == FROM_B as u64 => {
                    assert_ne!(current, 0, "an allocation in block {} without a stack", b.offset);
                    let frames = defined
                        .get(&(b.header.thread_id, current))
                        .unwrap_or_else(|| panic!("stack {current} is not defined"));
                    stacks_of.entry(*size).or_default().push(frames.clone());
                    seen_a |= *size == FROM_A as u64;
                }
                _ => {}
            }
        }
        blocks_with_a += usize::from(seen_a);
    }
    assert!(blocks_with_a > 10, "the allocations span many blocks: {blocks_with_a}");
    let (a, b) = (&stacks_of[&(FROM_A as u64)], &stacks_of[&(FROM_B as u64)]);
    assert_eq!((a.len(), b.len()), (ROUNDS, ROUNDS));
    assert!(a.iter().all(|s| s == &a[0]), "one call path, one stack");
    assert!(b.iter().all(|s| s == &b[0]), "one call path, one stack");
    assert_ne!(a[0], b[0], "two call paths, two stacks");
    assert!(a[0].len() >= 4, "the walk goes past the allocator: {:x?}", a[0]);
    // Each thread defines a stack once while it stays in the cache.
    assert!(defined.len() < 100, "{} stack definitions", defined.len());
    // The module map covers the addresses (the executable at least).
    for frame in &a[0] {
        assert!(
            modules.iter().any(|&(s, e)| (s..e).contains(frame)),
            "{frame:#x} is in no recorded module"
        );
    }
}

fn a_library_loaded_later_joins_the_module_map() {
    let dir = support::temp_dir();
    let trace_path = dir.path().join("dlopen.trace");
    let out = support::child_command("dlopen", &trace_path).output().unwrap();
    assert!(out.status.success(), "child failed: {}", String::from_utf8_lossy(&out.stderr));
    if String::from_utf8_lossy(&out.stdout).trim() != "loaded=true" {
        println!("skipped: libresolv.so.2 cannot be loaded here");
        return;
    }
    let bytes = std::fs::read(&trace_path).unwrap();
    let trace = Trace::read(&bytes).unwrap();
    let maps: Vec<(u64, String)> = trace
        .blocks
        .iter()
        .flat_map(|b| &b.records)
        .filter_map(|r| match r {
            Record::Module { q, path, .. } => {
                Some((*q, String::from_utf8_lossy(path).into_owned()))
            }
            _ => None,
        })
        .collect();
    let first = maps.iter().map(|m| m.0).min().unwrap();
    assert!(
        !maps.iter().any(|(q, p)| *q == first && p.contains("libresolv")),
        "not loaded at start"
    );
    assert!(
        maps.iter().any(|(q, p)| *q > first && p.contains("libresolv")),
        "a later map has it: {maps:?}"
    );
}
