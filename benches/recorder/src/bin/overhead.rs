//! `overhead`: runs the allocation workload under plain `System`,
//! memscope's `TrackingAllocator<System>` (recording to a file) and
//! dhat-rs, in turn, and prints the time each tracker adds per event.
//!
//! Whole-process wall time (start-up, file growth, page faults and the
//! flush at exit included) is measured for each run. Runs alternate
//! System, memscope, dhat, System, … so that drift on a shared machine
//! hits all variants alike; a tracker's ratio is the median over runs of
//! its time divided by the System run of the same round, and the time it
//! adds per event is `(ratio - 1) × median System time / events`. CPU time
//! (user + system, all threads) is reported the same way.
//!
//! Run with `scripts/measure-recorder.sh` (which builds the binaries in
//! release mode first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Parser;

/// Measures the recorder's overhead against System and dhat-rs.
#[derive(Debug, Parser)]
struct Args {
    /// Rounds per configuration.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Rounds that include dhat-rs (it takes seconds per run).
    #[arg(long, default_value_t = 3)]
    dhat_runs: usize,
    /// Allocations per thread with one thread; with two threads each does half.
    #[arg(long, default_value_t = 5_000_000)]
    allocs: usize,
    /// Where traces and dhat profiles go.
    #[arg(long, default_value = "target/overhead")]
    out_dir: PathBuf,
}

/// Time of one run.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall_ns: f64,
    cpu_ns: f64,
    events: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// CPU time of finished children so far (user + system), ns.
fn children_cpu_ns() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 * 1e9 + t.tv_usec as f64 * 1e3;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn run(bin: &Path, threads: usize, allocs: usize, mix: &str, out: &Path) -> Sample {
    let _ = std::fs::remove_file(out);
    let cpu_before = children_cpu_ns();
    let start = Instant::now();
    let output = Command::new(bin)
        .args(["--threads", &threads.to_string(), "--allocs", &allocs.to_string(), "--mix", mix])
        .arg("--out")
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
    let wall_ns = start.elapsed().as_nanos() as f64;
    let cpu_ns = children_cpu_ns() - cpu_before;
    assert!(
        output.status.success(),
        "{} failed: {}",
        bin.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let events = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("events="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in {stdout:?}"));
    Sample { wall_ns, cpu_ns, events }
}

/// Median ratio to the System run of the same round, and ns added per event.
fn overhead(base: &[Sample], other: &[Sample], field: fn(&Sample) -> f64) -> (f64, f64) {
    let ratios: Vec<f64> = other.iter().zip(base).map(|(o, b)| field(o) / field(b)).collect();
    let ratio = median(ratios);
    let base_median = median(base.iter().map(field).collect());
    let events = base[0].events as f64;
    (ratio, (ratio - 1.0) * base_median / events)
}

fn main() {
    let args = Args::parse();
    let bin_dir =
        std::env::current_exe().expect("own path").parent().expect("bin dir").to_path_buf();
    let bin = |name: &str| bin_dir.join(name);
    std::fs::create_dir_all(&args.out_dir).expect("creating the output directory");
    println!(
        "| mix | threads | events | System ns/event (wall) | memscope +ns/event wall (cpu) | memscope / System | trace bytes/event | dhat-rs +ns/event wall (cpu) | dhat-rs / System |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for mix in ["small", "default"] {
        for threads in [1usize, 2] {
            let allocs = args.allocs / threads;
            let (mut system, mut memscope, mut dhat) = (Vec::new(), Vec::new(), Vec::new());
            let trace = args.out_dir.join(format!("memscope-{mix}-{threads}t.trace"));
            let mut trace_bytes = 0;
            // One warm-up round of each, not counted.
            for round in 0..=args.runs {
                let s = run(
                    &bin("allocbench-system"),
                    threads,
                    allocs,
                    mix,
                    &args.out_dir.join("none"),
                );
                let m = run(&bin("allocbench-memscope"), threads, allocs, mix, &trace);
                trace_bytes = std::fs::metadata(&trace).map(|m| m.len()).unwrap_or(0);
                let d = (round <= args.dhat_runs).then(|| {
                    run(
                        &bin("allocbench-dhat"),
                        threads,
                        allocs,
                        mix,
                        &args.out_dir.join(format!("dhat-{mix}-{threads}t.json")),
                    )
                });
                if round > 0 {
                    system.push(s);
                    memscope.push(m);
                    dhat.extend(d);
                }
            }
            let wall = |s: &Sample| s.wall_ns;
            let cpu = |s: &Sample| s.cpu_ns;
            let events = system[0].events;
            let base_ns = median(system.iter().map(wall).collect()) / events as f64;
            let (m_ratio, m_ns) = overhead(&system, &memscope, wall);
            let (_, m_cpu) = overhead(&system, &memscope, cpu);
            let dhat_cell = if dhat.is_empty() {
                ("–".to_string(), "–".to_string())
            } else {
                let (d_ratio, d_ns) = overhead(&system[..dhat.len()], &dhat, wall);
                let (_, d_cpu) = overhead(&system[..dhat.len()], &dhat, cpu);
                (format!("{d_ns:.1} ({d_cpu:.1})"), format!("{d_ratio:.2}"))
            };
            println!(
                "| {mix} | {threads} | {events} | {base_ns:.1} | {m_ns:.1} ({m_cpu:.1}) | {m_ratio:.3} | {:.1} | {} | {} |",
                trace_bytes as f64 / memscope[0].events as f64,
                dhat_cell.0,
                dhat_cell.1
            );
        }
    }
}
