//! `overhead`: runs the allocation workload under plain `System`,
//! memscope's `TrackingAllocator<System>` (recording to a file) and
//! dhat-rs, in turn, and prints the time each tracker adds per event.
//!
//! Whole-process wall time (start-up, file growth, page faults and the
//! flush at exit included) is measured for each run. Runs alternate
//! System, memscope without stacks, memscope with 64-frame stacks, heaptrack,
//! dhat, System, … so that drift on a shared machine
//! hits all variants alike; a tracker's ratio is the median over runs of
//! its time divided by the System run of the same round, and the time it
//! adds per event is `(ratio - 1) × median System time / events`. CPU time
//! (user + system, all threads) is reported the same way.
//!
//! When `heaptrack` is on the `PATH` (Debian: `apt install heaptrack`), it
//! is measured too, on the System binary through `LD_PRELOAD` as usual.
//! The driver also times `rdtsc` itself, since it is the floor of a
//! recorder that timestamps every event with it.
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
    /// Rounds that include heaptrack, when it is installed.
    #[arg(long, default_value_t = 3)]
    heaptrack_runs: usize,
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

/// How a variant is started.
enum Launch<'a> {
    /// Run the binary; `--out` gets the trace or profile path.
    Direct(&'a Path),
    /// Run the binary under `heaptrack -o OUT`.
    Heaptrack(&'a Path),
}

fn run(
    launch: Launch<'_>,
    env: &[(&str, &str)],
    threads: usize,
    allocs: usize,
    mix: &str,
    out: &Path,
) -> Sample {
    let _ = std::fs::remove_file(out);
    let args = ["--threads", &threads.to_string(), "--allocs", &allocs.to_string(), "--mix", mix];
    let (mut cmd, bin) = match launch {
        Launch::Direct(bin) => {
            let mut c = Command::new(bin);
            c.args(args).arg("--out").arg(out);
            (c, bin)
        }
        Launch::Heaptrack(bin) => {
            let mut c = Command::new("heaptrack");
            c.arg("-o").arg(out).arg(bin).args(args);
            (c, bin)
        }
    };
    cmd.envs(env.iter().copied());
    let cpu_before = children_cpu_ns();
    let start = Instant::now();
    let output = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", bin.display()));
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

/// Nanoseconds per `rdtsc`, back to back (0 off x86-64).
fn rdtsc_ns() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let n = 20_000_000u64;
        let start = Instant::now();
        let mut acc = 0u64;
        for _ in 0..n {
            // SAFETY: rdtsc has no preconditions.
            acc = acc.wrapping_add(unsafe { core::arch::x86_64::_rdtsc() });
        }
        std::hint::black_box(acc);
        start.elapsed().as_nanos() as f64 / n as f64
    }
    #[cfg(not(target_arch = "x86_64"))]
    0.0
}

/// The size of a file, or of the first file that starts with its name
/// (heaptrack appends `.zst` or `.gz`).
fn output_bytes(path: &Path) -> u64 {
    if let Ok(m) = std::fs::metadata(path) {
        return m.len();
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return 0 };
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with(&*name.to_string_lossy()))
        .and_then(|e| e.metadata().ok())
        .map_or(0, |m| m.len())
}

fn heaptrack_installed() -> bool {
    Command::new("heaptrack").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// One tracker's cells: +ns/event wall (cpu), ratio, output bytes/event.
fn cells(system: &[Sample], tracker: &[Sample], bytes: u64) -> String {
    if tracker.is_empty() {
        return "– | – | –".into();
    }
    let wall = |s: &Sample| s.wall_ns;
    let cpu = |s: &Sample| s.cpu_ns;
    let base = &system[..tracker.len()];
    let (ratio, ns) = overhead(base, tracker, wall);
    let (_, cpu_ns) = overhead(base, tracker, cpu);
    format!("{ns:.1} ({cpu_ns:.1}) | {ratio:.2} | {:.2}", bytes as f64 / tracker[0].events as f64)
}

fn main() {
    let args = Args::parse();
    let bin_dir =
        std::env::current_exe().expect("own path").parent().expect("bin dir").to_path_buf();
    let bin = |name: &str| bin_dir.join(name);
    std::fs::create_dir_all(&args.out_dir).expect("creating the output directory");
    let heaptrack_runs = if heaptrack_installed() { args.heaptrack_runs } else { 0 };
    println!("rdtsc on this machine: {:.1} ns each (back to back)", rdtsc_ns());
    if heaptrack_runs == 0 {
        println!("heaptrack: not measured (install it with `apt install heaptrack` to compare)");
    }
    println!();
    println!("Tracker columns: +ns/event wall (cpu) | time ÷ System | output bytes/event.");
    println!();
    println!(
        "| mix | threads | events | System ns/event | memscope +ns (cpu) | ÷ System | B/event \
         | memscope + stacks +ns (cpu) | ÷ System | B/event \
         | heaptrack +ns (cpu) | ÷ System | B/event | dhat-rs +ns (cpu) | ÷ System | B/event |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for mix in ["small", "default"] {
        for threads in [1usize, 2] {
            let allocs = args.allocs / threads;
            let (mut system, mut memscope, mut stacks, mut heaptrack, mut dhat) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let trace = args.out_dir.join(format!("memscope-{mix}-{threads}t.trace"));
            let stacks_trace = args.out_dir.join(format!("memscope-stacks-{mix}-{threads}t.trace"));
            let ht_out = args.out_dir.join(format!("heaptrack-{mix}-{threads}t"));
            let dhat_out = args.out_dir.join(format!("dhat-{mix}-{threads}t.json"));
            // Round 0 warms the page cache and is not counted.
            for round in 0..=args.runs {
                let s = run(
                    Launch::Direct(&bin("allocbench-system")),
                    &[],
                    threads,
                    allocs,
                    mix,
                    &args.out_dir.join("none"),
                );
                let memscope_bin = bin("allocbench-memscope");
                let m = run(
                    Launch::Direct(&memscope_bin),
                    &[("MEMSCOPE_STACKS", "0")],
                    threads,
                    allocs,
                    mix,
                    &trace,
                );
                let st = run(
                    Launch::Direct(&memscope_bin),
                    &[("MEMSCOPE_STACKS", "64")],
                    threads,
                    allocs,
                    mix,
                    &stacks_trace,
                );
                let h = (round <= heaptrack_runs).then(|| {
                    let system_bin = bin("allocbench-system");
                    run(Launch::Heaptrack(&system_bin), &[], threads, allocs, mix, &ht_out)
                });
                let d = (round <= args.dhat_runs).then(|| {
                    run(
                        Launch::Direct(&bin("allocbench-dhat")),
                        &[],
                        threads,
                        allocs,
                        mix,
                        &dhat_out,
                    )
                });
                if round > 0 {
                    system.push(s);
                    memscope.push(m);
                    stacks.push(st);
                    heaptrack.extend(h);
                    dhat.extend(d);
                }
            }
            let events = system[0].events;
            let base_ns = median(system.iter().map(|s| s.wall_ns).collect()) / events as f64;
            println!(
                "| {mix} | {threads} | {events} | {base_ns:.1} | {} | {} | {} | {} |",
                cells(&system, &memscope, output_bytes(&trace)),
                cells(&system, &stacks, output_bytes(&stacks_trace)),
                cells(&system, &heaptrack, output_bytes(&ht_out)),
                cells(&system, &dhat, output_bytes(&dhat_out)),
            );
        }
    }
}
