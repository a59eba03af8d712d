//! The workload on dhat-rs's `dhat::Alloc`, writing its profile to `--out`.

use clap::Parser;

#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

fn main() {
    let cli = memscope_allocbench::Cli::parse();
    let out = cli.out.clone().unwrap_or_else(|| "dhat-heap.json".into());
    let _profiler = dhat::Profiler::builder().file_name(out).build();
    memscope_allocbench::report(&memscope_allocbench::run(&cli.workload));
}
