//! The recorder's background thread: samples the resident set size, keeps
//! the file grown and its pages faulted in ahead of the allocating threads,
//! writes the module map when it changes, and refreshes the clock
//! calibration in the header.
//!
//! It is the only thread the recorder starts. Its own allocations are never
//! recorded; it writes `RSS` records into blocks of its own, under the
//! thread name `memscope`. It stops at `finish` (and does not exist in the
//! child of a `fork`).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memscope_schema::Record;

use crate::clock;
use crate::modules;
use crate::sink::SINK;
use crate::state::{self, STARTING, STATE};
use crate::thread;

static STOP: AtomicBool = AtomicBool::new(false);
/// Set by the thread once it is marked internal.
static READY: AtomicBool = AtomicBool::new(false);

/// The thread's tick: how often it checks the file's growth.
const TICK: Duration = Duration::from_millis(10);
/// How often the header's calibration point is moved forward.
const CALIBRATE_EVERY: Duration = Duration::from_secs(1);

/// Starts the thread. RSS is sampled every `rss_interval` (zero: never).
///
/// Called by `init` before recording is on; returns once the new thread has
/// marked itself internal, so that nothing it allocates (its start-up
/// included) is ever recorded.
pub(crate) fn start(rss_interval: Duration) -> std::io::Result<()> {
    STOP.store(false, Ordering::Relaxed);
    READY.store(false, Ordering::Relaxed);
    std::thread::Builder::new().name("memscope".into()).spawn(move || run(rss_interval))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !READY.load(Ordering::Acquire) && Instant::now() < deadline {
        std::thread::yield_now();
    }
    Ok(())
}

/// Asks the thread to stop at its next tick.
pub(crate) fn stop() {
    STOP.store(true, Ordering::Relaxed);
}

fn run(rss_interval: Duration) {
    // Nothing this thread allocates is recorded.
    thread::mark_internal();
    // The module map is in the trace before `init` returns. The loader's
    // counters are read first, so a library loaded meanwhile is written at
    // the next tick.
    let mut generation = modules::generation();
    modules::write_map();
    READY.store(true, Ordering::Release);
    while STATE.load(Ordering::Acquire) == STARTING {
        std::thread::sleep(Duration::from_millis(1));
    }
    let statm = File::open("/proc/self/statm").ok();
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let tick = if rss_interval.is_zero() { TICK } else { rss_interval.min(TICK) };
    let (mut next_rss, mut next_calibration) = (Instant::now(), Instant::now() + CALIBRATE_EVERY);
    while !STOP.load(Ordering::Relaxed) && state::recording() {
        SINK.grow_ahead();
        let loaded = modules::generation();
        if loaded != generation {
            generation = loaded;
            modules::write_map();
        }
        let now = Instant::now();
        if !rss_interval.is_zero() && now >= next_rss {
            if let Some(rss_bytes) = statm.as_ref().and_then(resident_pages).map(|p| p * page_size)
            {
                thread::write_internal(&Record::Rss { q: clock::now_q(), rss_bytes });
            }
            next_rss += rss_interval;
            if next_rss < now {
                next_rss = now + rss_interval;
            }
        }
        if now >= next_calibration {
            let (ticks, mono_ns) = clock::calibration_point();
            SINK.write_calibration(ticks, mono_ns);
            next_calibration = now + CALIBRATE_EVERY;
        }
        std::thread::sleep(tick);
    }
}

/// Resident pages from `/proc/self/statm` (its second field), read without
/// allocating.
fn resident_pages(statm: &File) -> Option<u64> {
    let mut buf = [0u8; 128];
    // SAFETY: reads at most `buf.len()` bytes into our buffer.
    let n = unsafe { libc::pread(statm.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n <= 0 {
        return None;
    }
    let text = std::str::from_utf8(&buf[..n as usize]).ok()?;
    text.split_ascii_whitespace().nth(1)?.parse().ok()
}
