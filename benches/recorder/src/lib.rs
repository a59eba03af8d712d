//! The allocation workload behind the recorder's overhead figures, after
//! `allocbench` in `../shared/research/perf-anchors.md`, so that our
//! figures compare with the ones measured there for heaptrack and dhat-rs.
//!
//! Each thread keeps a table of `window` live blocks. Every step allocates
//! a block, writes its first byte and puts it in a random slot, freeing the
//! block it replaces (or, one time in a thousand, leaking it). A share of
//! blocks grow like a `Vec` first: they start at an eighth of their size
//! and double with `realloc` until big enough. At the end the survivors
//! are freed. Sizes follow one of two mixes:
//!
//! * `small`: 16 to 128 bytes, uniform: the allocator's fast path, so a
//!   tracker's cost stands out;
//! * `default`: 70 % 16-128 B, 25 % 128 B-8 KiB and 5 % 8 KiB-1 MiB (both
//!   log-uniform).

use std::alloc::{Layout, alloc, dealloc, realloc};
use std::time::{Duration, Instant};

/// Size mixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// 16-128 bytes.
    Small,
    /// 16 bytes to 1 MiB.
    Default,
}

/// The workload's parameters.
#[derive(Clone, Debug, clap::Args)]
pub struct Workload {
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Allocations per thread.
    #[arg(long, default_value_t = 5_000_000)]
    pub allocs: usize,
    /// Live blocks per thread.
    #[arg(long, default_value_t = 10_000)]
    pub window: usize,
    /// Percent of blocks that grow by reallocation.
    #[arg(long, default_value_t = 5)]
    pub realloc_pct: u32,
    /// Blocks per thousand that are leaked instead of freed.
    #[arg(long, default_value_t = 1)]
    pub leak_permille: u32,
    /// Size mix.
    #[arg(long, value_enum, default_value_t = Mix::Default)]
    pub mix: Mix,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Allocations, deallocations and reallocations made.
    pub events: u64,
    /// Wall time of the work, from the first thread's start to the last
    /// thread's end.
    pub elapsed: Duration,
}

fn draw_size(rng: &mut fastrand::Rng, mix: Mix) -> usize {
    let log_uniform =
        |rng: &mut fastrand::Rng, lo: f64, hi: f64| (lo * (hi / lo).powf(rng.f64())) as usize;
    match mix {
        Mix::Small => rng.usize(16..=128),
        Mix::Default => match rng.u32(..100) {
            0..70 => rng.usize(16..=128),
            70..95 => log_uniform(rng, 128.0, 8192.0),
            _ => log_uniform(rng, 8192.0, (1 << 20) as f64),
        },
    }
}

/// One thread's share of the workload; returns its event count.
fn worker(w: &Workload, seed: u64) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut slots: Vec<Option<(*mut u8, Layout)>> = vec![None; w.window];
    let mut events = 0u64;
    for _ in 0..w.allocs {
        let size = draw_size(&mut rng, w.mix);
        // SAFETY: every layout has a non-zero size and alignment 8; each
        // block is freed or reallocated with the layout it has now.
        let (p, layout) = unsafe {
            if rng.u32(..100) < w.realloc_pct {
                let mut layout = Layout::from_size_align_unchecked((size / 8).max(8), 8);
                let mut p = alloc(layout);
                events += 1;
                while layout.size() < size {
                    let grown = Layout::from_size_align_unchecked(layout.size() * 2, 8);
                    p = realloc(p, layout, grown.size());
                    layout = grown;
                    events += 1;
                }
                (p, layout)
            } else {
                let layout = Layout::from_size_align_unchecked(size, 8);
                events += 1;
                (alloc(layout), layout)
            }
        };
        assert!(!p.is_null(), "out of memory");
        // SAFETY: `p` points to at least one writable byte.
        unsafe { p.write_volatile(1) };
        let slot = rng.usize(..w.window);
        if let Some((old, old_layout)) = slots[slot].replace((p, layout))
            && rng.u32(..1000) >= w.leak_permille
        {
            // SAFETY: `old` came from the global allocator with this layout.
            unsafe { dealloc(old, old_layout) };
            events += 1;
        }
    }
    for (p, layout) in slots.into_iter().flatten() {
        // SAFETY: as above.
        unsafe { dealloc(p, layout) };
        events += 1;
    }
    events
}

/// Runs the workload on `w.threads` threads.
pub fn run(w: &Workload) -> Outcome {
    let start = Instant::now();
    let events = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..w.threads).map(|t| s.spawn(move || worker(w, w.seed + t as u64))).collect();
        handles.into_iter().map(|h| h.join().expect("worker panicked")).sum()
    });
    Outcome { events, elapsed: start.elapsed() }
}

/// The command line shared by the three `allocbench-*` binaries.
#[derive(Debug, clap::Parser)]
pub struct Cli {
    /// The workload.
    #[command(flatten)]
    pub workload: Workload,
    /// Where a tracker writes its output (trace or dhat JSON).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

/// Prints an outcome as the line the `overhead` driver reads.
pub fn report(o: &Outcome) {
    println!("events={} elapsed_ns={}", o.events, o.elapsed.as_nanos());
}
