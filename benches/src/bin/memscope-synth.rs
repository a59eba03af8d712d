//! Writes a synthetic trace in the recorder's format, for scale
//! measurements (`scripts/measure-scale.sh`).
//!
//! Usage: `memscope-synth EVENTS THREADS OUT`. The event mix is that of
//! [`memscope_benches::synthetic_trace`]; the trace is built in memory
//! (about 13 bytes per event) and then written to `OUT.partial`, which is
//! renamed to `OUT` once complete, so `OUT` is never partial.

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
    let trace = memscope_benches::synthetic_writer(events, threads);
    let tmp = format!("{out}.partial");
    let written = std::fs::File::create(&tmp).and_then(|file| {
        let mut file = std::io::BufWriter::new(file);
        trace.write_to(&mut file)?;
        file.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, out)) {
        eprintln!("memscope-synth: {out}: {e}");
        let _ = std::fs::remove_file(&tmp);
        return ExitCode::from(74);
    }
    ExitCode::SUCCESS
}
