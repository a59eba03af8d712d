//! Writes a synthetic trace in the recorder's format, for scale
//! measurements (`scripts/measure-scale.sh`).
//!
//! Usage: `memscope-synth EVENTS THREADS OUT`. The event mix is that of
//! [`memscope_benches::synthetic_trace`]; the trace is built in memory
//! (about 14 bytes per event) and then written, so `OUT` is never partial.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [events, threads, out] = args.as_slice() else {
        eprintln!("usage: memscope-synth EVENTS THREADS OUT");
        return ExitCode::from(2);
    };
    let (Ok(events), Ok(threads)) = (events.parse::<usize>(), threads.parse::<u32>()) else {
        eprintln!("memscope-synth: EVENTS and THREADS must be whole numbers");
        return ExitCode::from(2);
    };
    if threads == 0 {
        eprintln!("memscope-synth: THREADS must be at least 1");
        return ExitCode::from(2);
    }
    let bytes = memscope_benches::synthetic_trace(events, threads);
    let tmp = format!("{out}.partial");
    if let Err(e) = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, out)) {
        eprintln!("memscope-synth: {out}: {e}");
        let _ = std::fs::remove_file(&tmp);
        return ExitCode::from(74);
    }
    ExitCode::SUCCESS
}
