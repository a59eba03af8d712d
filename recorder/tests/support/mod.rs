//! Runs a test binary as its own traced child process and reads the trace.
//!
//! Each test file installs `TrackingAllocator` as its global allocator and
//! has `harness = false`: its `main` is either the parent (runs scenarios
//! as children, checks their traces) or, when `MEMSCOPE_TEST_CHILD` is set,
//! the child that runs one scenario.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use memscope_schema::{Record, Trace};

/// The scenario to run when this process is a child, if any.
pub fn child_scenario() -> Option<String> {
    std::env::var("MEMSCOPE_TEST_CHILD").ok()
}

/// A temporary directory for traces, removed at the end of the test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("memscope-recorder-test")
        .tempdir()
        .expect("creating a temp dir")
}

/// A command that runs this test binary as a child for `scenario`,
/// recording to `trace`.
pub fn child_command(scenario: &str, trace: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("the test binary's path"));
    cmd.env("MEMSCOPE_TEST_CHILD", scenario).env("MEMSCOPE_TRACE", trace).stdin(Stdio::null());
    cmd
}

/// Runs `scenario` in a child to completion; returns its status and trace.
pub fn run_child(scenario: &str, dir: &Path) -> (ExitStatus, Vec<u8>, PathBuf) {
    let trace = dir.join(format!("{scenario}.trace"));
    let out = child_command(scenario, &trace).output().expect("spawning the child");
    if !out.stderr.is_empty() {
        eprintln!("child {scenario} stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    let bytes =
        std::fs::read(&trace).unwrap_or_else(|e| panic!("reading {}: {e}", trace.display()));
    (out.status, bytes, trace)
}

/// Spawns `scenario` with piped stdout.
pub fn spawn_child(scenario: &str, trace: &Path) -> Child {
    child_command(scenario, trace).stdout(Stdio::piped()).spawn().expect("spawning the child")
}

/// The records of each thread, in order, keyed by thread name (the last
/// name recorded for the thread).
pub fn records_by_thread<'a>(trace: &Trace<'a>) -> HashMap<String, Vec<Record<'a>>> {
    /// A thread's last name and its blocks' records by block sequence.
    type Blocks<'a> = (Option<String>, Vec<(u32, Vec<Record<'a>>)>);
    let mut by_id: HashMap<u32, Blocks<'a>> = HashMap::new();
    for b in &trace.blocks {
        let entry = by_id.entry(b.header.thread_id).or_default();
        for r in &b.records {
            if let Record::ThreadName { name, .. } = r {
                entry.0 = Some(String::from_utf8_lossy(name).into_owned());
            }
        }
        entry.1.push((b.header.seq, b.records.clone()));
    }
    by_id
        .into_iter()
        .map(|(id, (name, mut blocks))| {
            blocks.sort_by_key(|(seq, _)| *seq);
            (
                name.unwrap_or_else(|| format!("thread-{id}")),
                blocks.into_iter().flat_map(|(_, r)| r).collect(),
            )
        })
        .collect()
}

/// Runs the named checks as tests (with libtest's filtering and output).
pub fn run_checks(checks: Vec<(&'static str, fn())>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    let trials = checks
        .into_iter()
        .map(|(name, check)| {
            libtest_mimic::Trial::test(name, move || {
                check();
                Ok(())
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit()
}
