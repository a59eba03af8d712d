//! The workload on `TrackingAllocator<System>`, recording to `--out` (or
//! `$MEMSCOPE_TRACE`). The trace is finished at exit, as in a real program.

use clap::Parser;
use memscope_recorder::{Config, TrackingAllocator};

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

fn main() {
    let cli = memscope_allocbench::Cli::parse();
    let mut config = Config::from_env();
    if let Some(out) = &cli.out {
        config = config.path(out);
    }
    memscope_recorder::init_with(config).expect("starting the recorder");
    memscope_allocbench::report(&memscope_allocbench::run(&cli.workload));
}
