//! The smallest traced program: `MEMSCOPE_TRACE=basic.trace cargo run -p memscope-recorder --example basic`.

use memscope_recorder::TrackingAllocator;
use std::alloc::System;

#[global_allocator]
static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);

fn main() {
    memscope_recorder::init();
    let v: Vec<u64> = (0..1000).collect();
    memscope_recorder::track_var!(v);
    let s = memscope_recorder::stats();
    println!("{s:?}");
    memscope_recorder::finish();
}
