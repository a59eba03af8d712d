//! The recorder's hot path in one process: an allocation and its
//! deallocation through `TrackingAllocator<System>` (recording to a file)
//! against the same calls on `System` directly.
//!
//! Run: `cargo bench -p memscope-allocbench --bench hot_path` (with 64-frame
//! stacks, the default), and again with `MEMSCOPE_STACKS=0` for the hot path
//! without stacks; the group name says which (`recorder_stacks64`,
//! `recorder_stacks0`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memscope_recorder::{Config, TrackingAllocator};

#[global_allocator]
static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);

fn hot_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_env().path(dir.path().join("hot_path.trace"));
    let group = format!("recorder_stacks{}", config.stack_depth);
    memscope_recorder::init_with(config).unwrap();
    let mut g = c.benchmark_group(group);
    g.measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(2));
    for size in [64usize, 4096] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        g.bench_function(format!("system_alloc_free_{size}B"), |b| {
            // SAFETY: a valid layout; the block is freed with it.
            b.iter(|| unsafe {
                let p = System.alloc(layout);
                System.dealloc(black_box(p), layout);
            })
        });
        g.bench_function(format!("tracking_alloc_free_{size}B"), |b| {
            // SAFETY: as above, through the recording allocator.
            b.iter(|| unsafe {
                let p = GLOBAL.alloc(layout);
                GLOBAL.dealloc(black_box(p), layout);
            })
        });
    }
    let small = Layout::from_size_align(64, 8).unwrap();
    g.bench_function("tracking_alloc_realloc_free_64B_128B", |b| {
        // SAFETY: valid layouts; the block is freed with its final layout.
        b.iter(|| unsafe {
            let p = GLOBAL.alloc(small);
            let p = GLOBAL.realloc(black_box(p), small, 128);
            GLOBAL.dealloc(black_box(p), Layout::from_size_align(128, 8).unwrap());
        })
    });
    g.finish();
    memscope_recorder::finish();
}

criterion_group!(recorder, hot_path);
criterion_main!(recorder);
