//! The workload on plain `System` (glibc malloc): the baseline.

use clap::Parser;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    let cli = memscope_allocbench::Cli::parse();
    memscope_allocbench::report(&memscope_allocbench::run(&cli.workload));
}
