//! `memscope-analyze`: SQL over memscope traces.
//!
//! Exit codes: 0 success; 1 a budget failed; 2 usage error or failing SQL;
//! 65 malformed or unsupported trace; 66 missing input; 70 internal error;
//! 73 output exists (use `--force`); 74 I/O error; 130 interrupted.

mod cli;

use std::process::ExitCode;

use clap::Parser;
use memscope_analyzer::error::Error;
use memscope_analyzer::{output, progress};

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // A panic is a bug, here or in a library (DataFusion's SQL planner has
    // had some): report it as an internal error, exit 70 like any other,
    // and leave no partial output behind.
    std::panic::set_hook(Box::new(|info| {
        output::remove_partial_outputs();
        progress::abandon();
        eprintln!(
            "memscope-analyze: internal error (a bug; please report it with the command line): {info}"
        );
        std::process::exit(70);
    }));
    // Ctrl-C (or SIGTERM) stops a long query or conversion at once, without
    // leaving a partial output file or its temporary file behind.
    let interrupted = ctrlc::set_handler(|| {
        output::remove_partial_outputs();
        progress::abandon();
        eprintln!("memscope-analyze: interrupted");
        std::process::exit(130);
    });
    if let Err(e) = interrupted {
        eprintln!("memscope-analyze: warning: Ctrl-C will not clean up partial outputs: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("memscope-analyze: error: cannot start the query runtime: {e}");
            return ExitCode::from(70);
        }
    };
    let result = runtime.block_on(cli::run(args));
    progress::clear();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed pipe (`| head`) is not a failure.
            if let Some(Error::Io { source, .. }) = err.downcast_ref::<Error>()
                && source.kind() == std::io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            match err.downcast_ref::<Error>() {
                // Our errors already name their cause.
                Some(e) => {
                    eprintln!("memscope-analyze: error: {e}");
                    ExitCode::from(e.exit_code())
                }
                None => {
                    eprintln!("memscope-analyze: error: {err:#}");
                    ExitCode::from(70)
                }
            }
        }
    }
}
