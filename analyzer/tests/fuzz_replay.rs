//! Replays what the fuzzers keep: the inputs of the `decode` and `sql` fuzz
//! targets that once failed (committed under `fuzz/artifacts/`), with the
//! bad-trace corpus and the query files, through the same checks the fuzz
//! targets run. With `MEMSCOPE_REPLAY_CORPUS=1` it also replays the local
//! corpora the fuzzers grew (`fuzz/corpus/`, not committed; thousands of
//! inputs). See the README's "Fuzzing" section.

mod common;

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

/// The files directly inside each of `dirs` that exist, sorted.
fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && !p.ends_with("README.md"))
        .collect();
    out.sort();
    out
}

fn fuzz_dirs(target: &str) -> Vec<PathBuf> {
    let fuzz = common::root().join("fuzz");
    let mut dirs = vec![fuzz.join("artifacts").join(target)];
    if std::env::var_os("MEMSCOPE_REPLAY_CORPUS").is_some() {
        dirs.push(fuzz.join("corpus").join(target));
    }
    dirs
}

#[test]
fn decode_inputs_replay() {
    let mut dirs = fuzz_dirs("decode");
    dirs.push(common::root().join("testdata/bad"));
    let inputs = files(&dirs);
    assert!(inputs.len() >= 27, "the bad corpus alone has 27 traces: {inputs:?}");
    for path in inputs {
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| checks::decode(&bytes));
        assert!(outcome.is_ok(), "{} fails the decode check", path.display());
    }
}

#[test]
fn sql_inputs_replay() {
    let harness = checks::SqlHarness::new(&common::root());
    let mut dirs = fuzz_dirs("sql");
    dirs.push(common::root().join("queries"));
    let inputs = files(&dirs);
    assert!(inputs.iter().any(|p| p.ends_with("leaks.sql")), "{inputs:?}");
    for path in inputs {
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| harness.run(&text)));
        assert!(outcome.is_ok(), "{} fails the sql check", path.display());
    }
}
