//! Progress of long work on stderr: a bar while a trace is decoded, then a
//! spinner naming each stage (pairing, symbolizing, building tables,
//! running a query, writing a file).
//!
//! Off unless the command line turns it on with [`enable`], which it does
//! only when stderr is a terminal and `--quiet` is not given; library users
//! and tests see nothing. Every function here is a no-op while off.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// The bar or spinner on screen, if any.
static CURRENT: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Turns progress on for the rest of the process, if stderr is a terminal.
pub fn enable() {
    if !ProgressDrawTarget::stderr().is_hidden() {
        ENABLED.store(true, Ordering::Relaxed);
    }
}

/// Replaces what is on screen by `bar`, when progress is on.
fn show(make: impl FnOnce() -> ProgressBar) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let bar = make();
    let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
    // The old line goes first, so two bars never draw at once.
    if let Some(old) = current.take() {
        old.finish_and_clear();
    }
    // Drawn at once, so that even a short stage shows what is being done.
    bar.tick();
    bar.enable_steady_tick(Duration::from_millis(120));
    *current = Some(bar);
}

/// Starts a stage measured in bytes, `total` of them: a bar with a rate
/// and the time left.
pub fn bytes(message: impl Into<String>, total: u64) {
    show(|| {
        let style = ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta} left)",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(message.into())
    });
}

/// Advances the current bar by `n` bytes.
#[inline]
pub fn advance(n: u64) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    // A clone (a reference count), so the lock is not held while drawing.
    let bar = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(bar) = bar {
        bar.inc(n);
    }
}

/// Starts a stage of unknown length: a spinner with `message` and the
/// time spent so far.
pub fn stage(message: impl Into<String>) {
    show(|| {
        let style =
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a valid template");
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(message.into())
    });
}

/// Erases the progress line, before something else is printed on the
/// terminal or when the work is done.
pub fn clear() {
    if let Some(bar) = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take() {
        bar.finish_and_clear();
    }
}

/// Erases the progress line if no other thread is drawing it: for a panic
/// hook or a signal handler, which must not wait for a lock the panicking
/// or interrupted thread may hold.
pub fn abandon() {
    if let Ok(mut current) = CURRENT.try_lock()
        && let Some(bar) = current.take()
    {
        bar.finish_and_clear();
    }
}
