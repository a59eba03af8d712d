/*!
Records every heap allocation of a Rust program into a memory-mapped
memscope trace, for `memscope-analyze` to answer "what leaked, what is hot,
why is memory so high?" afterwards.

# Use

```no_run
use memscope_recorder::TrackingAllocator;
use std::alloc::System;

#[global_allocator]
static GLOBAL: TrackingAllocator<System> = TrackingAllocator::new(System);

fn main() {
    memscope_recorder::init(); // records to $MEMSCOPE_TRACE, default ./memscope-<pid>.trace
    let v: Vec<u64> = (0..1000).collect();
    memscope_recorder::track_var!(v); // tags v's heap block with its type and "v"
    let s = memscope_recorder::stats();
    println!("{} bytes live, peak {}", s.active_bytes, s.peak_bytes);
    memscope_recorder::finish(); // optional: normal exit finishes the trace too
}
```

Then `memscope-analyze memscope-<pid>.trace --sql queries/leaks.sql`.

# What is recorded

After [`init`], every allocation, deallocation and reallocation made through
the global allocator, on every thread, with its address, size, alignment,
thread and a timestamp in nanoseconds since `init` (from the time-stamp
counter where it is invariant, else `CLOCK_MONOTONIC`); the call stack of
each allocation and reallocation, as raw return addresses (each distinct
stack written once per thread while it stays in the thread's cache); the
module map (executable and shared libraries with their load addresses and
build ids), so the analyzer can symbolize later, anywhere; type tags from [`track_var!`]; thread names; RSS
samples; and at the end, totals.

# Call stacks

Stacks are walked through frame pointers: a few nanoseconds per frame, no
unwind tables, no locks. The standard library keeps frame pointers; build
your program with `RUSTFLAGS="-C force-frame-pointers=yes"` for complete
stacks (without it, frames of functions that omit them are skipped or the
stack is cut short; the walk never reads outside the thread's stack). Add
`-C symbol-mangling-version=v0` so that the analyzer can name the type of
untagged allocations from generic frames such as `Vec<myapp::Order>::push`. Allocations made
before `init` are not recorded; if they are freed later, those frees show in
the analyzer as deallocations of unknown blocks.

# Cost

The hot path does not allocate, lock or make a system call: it reads the
clock, walks the frame pointers of the allocating call (when stacks are on),
looks the stack up in the thread's own cache, writes 8 to 32 bytes into the
thread's own block of the mapped file (plus the stack's addresses, the
first time the thread sees it) and updates the thread's own counters. A thread takes a new 64 KiB block
with one atomic addition; the file grows by 16 MiB segments
(`posix_fallocate` + `mmap`), once per segment.

# Failure behaviour

* The trace lives in a `MAP_SHARED` mapping: every completed event is in the
  page cache as soon as it is written and survives a crash, `abort`, a
  panic with `panic = "abort"` or `SIGKILL` of the program. Only `finish`
  (called by you or at normal exit) marks the trace finished; the analyzer
  reads unfinished traces and warns.
* If the file cannot grow or be mapped (a full disk), recording stops with
  one message on stderr and a flag in the header; the program continues
  untraced and the trace keeps every earlier event.
* Allocations made by the recorder itself (at `init`, or when a thread
  registers its exit hook) are not recorded.
* After `fork()`, the child inherits the parent's recording state but
  writes nothing sensible: do not record across `fork` (the parent's trace
  stays correct as long as the child does not allocate through the
  recorder; a child that `exec`s at once is fine).

# Environment

* `MEMSCOPE_TRACE`: trace path for [`init`]; `%p` is replaced by the process
  id. Default `./memscope-<pid>.trace`. An existing file at that path is
  replaced.
* `MEMSCOPE_STACKS`: deepest call stack captured per allocation, in
  frames; `0` turns stacks off. Default 64, at most 256.
* `MEMSCOPE_CLOCK=monotonic`: use `CLOCK_MONOTONIC` even where the
  time-stamp counter is usable.
*/

mod alloc;
mod background;
mod clock;
mod intern;
mod modules;
mod sink;
mod stack;
mod state;
mod stats;
mod tag;
mod thread;

use std::fmt;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use memscope_schema::format::{
    DEFAULT_BLOCK_LEN, FLAG_ARGS_TRUNCATED, FORMAT_MAJOR, FORMAT_MINOR, FileHeader,
    HEADER_FIXED_LEN, MAX_BLOCK_LEN, MAX_STACK_DEPTH, MIN_BLOCK_LEN, PAGE_SIZE,
};
use memscope_schema::{Record, Totals};

pub use crate::alloc::TrackingAllocator;
pub use crate::tag::{Trackable, track_value};

use crate::sink::SINK;
use crate::state::{FINISHING, OFF, ON, STARTING, STATE, STOPPED};

/// Largest header the recorder writes (64 KiB); longer argument lists are
/// cut and flagged.
const MAX_HEADER_LEN: usize = 64 << 10;

/// Block length in use, in bytes (set once by `init`).
static BLOCK_LEN: AtomicU32 = AtomicU32::new(DEFAULT_BLOCK_LEN);
static AT_EXIT_REGISTERED: AtomicBool = AtomicBool::new(false);

pub(crate) fn block_len() -> usize {
    BLOCK_LEN.load(Ordering::Relaxed) as usize
}

/// How to record. Build one with [`Config::default`] or [`Config::from_env`]
/// and pass it to [`init_with`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Trace file path; `%p` is replaced by the process id. Default
    /// `memscope-%p.trace` in the current directory. An existing file is
    /// replaced.
    pub path: PathBuf,
    /// Bytes per block, a power of two from 4 KiB to 16 MiB; default 64 KiB.
    /// Each thread that allocates holds one block at a time, so a program
    /// with many short-lived threads may want smaller blocks.
    pub block_len: u32,
    /// How often the background thread samples the resident set size
    /// (RSS); default 10 ms; zero turns sampling off.
    pub rss_interval: Duration,
    /// Poisson sampling by bytes: each allocated byte is recorded with
    /// probability `1 / sample_rate`, so an allocation of `size` bytes is
    /// recorded with probability `1 - exp(-size / sample_rate)` (always at
    /// or above the rate); deallocations are always recorded, and the
    /// analyzer weighs each recorded allocation by the inverse of its
    /// probability. Default 0: every allocation is recorded. `stats()` stays
    /// exact either way.
    pub sample_rate: u64,
    /// Deepest call stack captured per allocation and reallocation, in
    /// frames (at most 256); 0 captures none. Default 64. Only return
    /// addresses are captured, by walking frame pointers; symbolization
    /// happens in the analyzer.
    pub stack_depth: u32,
}

/// Default interval of RSS samples.
pub const DEFAULT_RSS_INTERVAL: Duration = Duration::from_millis(10);

impl Default for Config {
    fn default() -> Config {
        Config {
            path: PathBuf::from("memscope-%p.trace"),
            block_len: DEFAULT_BLOCK_LEN,
            rss_interval: DEFAULT_RSS_INTERVAL,
            sample_rate: 0,
            stack_depth: stack::DEFAULT_STACK_DEPTH,
        }
    }
}

impl Config {
    /// The default configuration, changed by the environment:
    /// `MEMSCOPE_TRACE` (path), `MEMSCOPE_RSS_INTERVAL_MS` (0 = off),
    /// `MEMSCOPE_SAMPLE_RATE` (bytes, 0 = off) and `MEMSCOPE_STACKS` (frames,
    /// 0 = no stacks). A value that does not parse is reported on stderr and
    /// ignored.
    pub fn from_env() -> Config {
        let mut config = Config::default();
        if let Some(path) = std::env::var_os("MEMSCOPE_TRACE").filter(|p| !p.is_empty()) {
            config.path = PathBuf::from(path);
        }
        if let Some(ms) = env_number("MEMSCOPE_RSS_INTERVAL_MS") {
            config.rss_interval = Duration::from_millis(ms);
        }
        if let Some(rate) = env_number("MEMSCOPE_SAMPLE_RATE") {
            config.sample_rate = rate;
        }
        if let Some(depth) = env_number("MEMSCOPE_STACKS") {
            config.stack_depth = depth.min(MAX_STACK_DEPTH as u64) as u32;
        }
        config
    }

    /// Sets the RSS sampling interval (zero: off).
    pub fn rss_interval(mut self, interval: Duration) -> Config {
        self.rss_interval = interval;
        self
    }

    /// Sets the sampling rate in bytes (zero: record every allocation).
    pub fn sample_rate(mut self, bytes: u64) -> Config {
        self.sample_rate = bytes;
        self
    }

    /// Sets the deepest call stack captured, in frames (0: no stacks; at
    /// most 256).
    pub fn stack_depth(mut self, frames: u32) -> Config {
        self.stack_depth = frames;
        self
    }

    /// Sets the trace path.
    pub fn path(mut self, path: impl Into<PathBuf>) -> Config {
        self.path = path.into();
        self
    }

    /// Sets the block length in bytes.
    pub fn block_len(mut self, block_len: u32) -> Config {
        self.block_len = block_len;
        self
    }

    /// The path with `%p` replaced by this process's id.
    pub fn resolved_path(&self) -> PathBuf {
        let s = self.path.to_string_lossy();
        if s.contains("%p") {
            PathBuf::from(s.replace("%p", &std::process::id().to_string()))
        } else {
            self.path.clone()
        }
    }
}

/// A whole number from the environment variable `name`, if set and valid.
fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|v| !v.trim().is_empty())?;
    match value.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("memscope: ignoring {name}={value:?}: not a whole number");
            None
        }
    }
}

/// Why [`init_with`] could not start recording.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// The trace file could not be created or set up.
    File {
        /// The trace path.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    Config(String),
    /// This process already recorded its trace (finished, or stopped after a
    /// file error); a process records one trace.
    AlreadyFinished,
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::File { path, source } => {
                write!(f, "cannot record to {}: {source}", path.display())
            }
            InitError::Config(msg) => write!(f, "invalid memscope configuration: {msg}"),
            InitError::AlreadyFinished => {
                write!(f, "this process already finished its memscope trace")
            }
        }
    }
}

impl std::error::Error for InitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            InitError::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Starts recording with [`Config::from_env`]. On failure prints one line to
/// stderr and leaves the program running untraced. Calling it again, from
/// any thread, does nothing.
pub fn init() {
    if let Err(e) = init_with(Config::from_env()) {
        eprintln!("memscope: {e}");
    }
}

/// Starts recording with `config`.
///
/// Returns `Ok(())` at once if recording is already on (a second call, or a
/// race between threads: one of them sets up the file and the others wait
/// for it).
///
/// # Errors
///
/// [`InitError::File`] when the trace file cannot be created, sized or
/// mapped; [`InitError::Config`] for an invalid block length;
/// [`InitError::AlreadyFinished`] after [`finish`].
pub fn init_with(config: Config) -> Result<(), InitError> {
    loop {
        match STATE.compare_exchange(OFF, STARTING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => break,
            Err(STARTING) => std::thread::yield_now(),
            Err(ON) => return Ok(()),
            Err(_) => return Err(InitError::AlreadyFinished),
        }
    }
    match thread::untracked(|| start(&config)) {
        Ok(()) => {
            STATE.store(ON, Ordering::Release);
            Ok(())
        }
        Err(e) => {
            STATE.store(OFF, Ordering::Release);
            Err(e)
        }
    }
}

fn start(config: &Config) -> Result<(), InitError> {
    if !config.block_len.is_power_of_two()
        || !(MIN_BLOCK_LEN..=MAX_BLOCK_LEN).contains(&config.block_len)
    {
        return Err(InitError::Config(format!(
            "block_len {} is not a power of two between {MIN_BLOCK_LEN} and {MAX_BLOCK_LEN}",
            config.block_len
        )));
    }
    if config.stack_depth as usize > MAX_STACK_DEPTH {
        return Err(InitError::Config(format!(
            "stack_depth {} is above {MAX_STACK_DEPTH}",
            config.stack_depth
        )));
    }
    let path = config.resolved_path();
    let file_error = |source| InitError::File { path: path.clone(), source };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(file_error)?;

    let (clock, time_shift) = clock::select();
    let (start_ticks, start_mono_ns) = clock::calibration_point();
    let start_unix_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let program =
        std::env::current_exe().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut args: Vec<String> =
        std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
    let mut flags = 0;
    let mut header = FileHeader {
        major: FORMAT_MAJOR,
        minor: FORMAT_MINOR,
        header_len: 0,
        block_len: config.block_len,
        time_shift,
        clock,
        pid: std::process::id(),
        flags,
        start_unix_ns,
        start_ticks,
        start_mono_ns,
        cal_ticks: 0,
        cal_mono_ns: 0,
        end_ticks: 0,
        end_mono_ns: 0,
        blocks_used: 0,
        sample_rate: config.sample_rate,
        stack_depth: config.stack_depth,
        program,
        args: Vec::new(),
    };
    let budget = MAX_HEADER_LEN - HEADER_FIXED_LEN;
    header.program.truncate(floor_char_boundary(&header.program, budget / 2));
    let mut room = budget - header.program.len();
    for a in args.iter_mut() {
        let need = a.len() + 1;
        if need > room {
            a.truncate(floor_char_boundary(a, room.saturating_sub(1)));
            flags |= FLAG_ARGS_TRUNCATED;
        }
        room = room.saturating_sub(a.len() + 1);
        header.args.push(std::mem::take(a));
        if room == 0 {
            break;
        }
    }
    header.flags = flags;
    header.header_len = header.encoded_len().div_ceil(PAGE_SIZE).max(1) as u32 * PAGE_SIZE as u32;
    let mut bytes = vec![0u8; header.header_len as usize];
    header.encode(&mut bytes);

    BLOCK_LEN.store(config.block_len, Ordering::Relaxed);
    SINK.open(file, &bytes, config.block_len)
        .map_err(|e| file_error(std::io::Error::from_raw_os_error(e.errno)))?;

    // A second calibration point about a millisecond later lets the
    // analyzer convert ticks even when the trace is never finished.
    if clock == memscope_schema::ClockSource::Tsc {
        while clock::monotonic_ns().saturating_sub(start_mono_ns) < 1_000_000 {
            std::hint::spin_loop();
        }
    }
    let (cal_ticks, cal_mono_ns) = clock::calibration_point();
    SINK.write_calibration(cal_ticks, cal_mono_ns);

    thread::set_sample_rate(config.sample_rate);
    state::HOT.stack_depth.store(config.stack_depth, Ordering::Relaxed);
    if !AT_EXIT_REGISTERED.swap(true, Ordering::Relaxed) {
        // SAFETY: registers plain `extern "C" fn()`s that never unwind.
        unsafe {
            libc::atexit(finish_at_exit);
            libc::pthread_atfork(None, None, Some(stop_in_forked_child));
        }
    }
    if let Err(e) = background::start(config.rss_interval) {
        eprintln!(
            "memscope: cannot start the background thread ({e}): no RSS samples, and files grow on the allocating threads"
        );
    }
    Ok(())
}

/// In the child of `fork()`: stop recording. The child shares the parent's
/// mapping of the trace file, so any record it wrote would land in the
/// parent's blocks; it writes nothing, and its exit does not finish the
/// parent's trace.
extern "C" fn stop_in_forked_child() {
    STATE.store(STOPPED, Ordering::Release);
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

extern "C" fn finish_at_exit() {
    finish();
}

/// Ends the trace: writes the end marker with totals, completes the header
/// and trims the file. Events after it are not recorded. Safe to call more
/// than once and from any thread; normal process exit (returning from
/// `main` or `std::process::exit`) calls it too.
///
/// Values still alive when `finish` runs count as leaked in the analysis;
/// to leave out the locals of `main`, skip the call and let exit finish.
pub fn finish() {
    if STATE.compare_exchange(ON, FINISHING, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return;
    }
    thread::untracked(|| {
        let s = stats::sums();
        let totals = Totals {
            events: s[0] + s[1] - s[2] + s[5],
            allocations: s[0],
            deallocations: s[1],
            reallocations: s[2],
            dropped: s[6],
        };
        // The guard is set by `untracked`; write the marker directly.
        thread::write_end(totals);
        STATE.store(STOPPED, Ordering::Release);
        background::stop();
        let (end_ticks, end_mono_ns) = clock::calibration_point();
        SINK.finish(end_ticks, end_mono_ns);
    });
}

/// Live counters of the recorder, since [`init`].
///
/// Counts are exact (up to events in flight on other threads). A
/// reallocation counts as one deallocation and one allocation.
/// `peak_bytes` may read low by at most 16 KiB per thread allocating at the
/// time of the peak; the analyzer's peak, from the trace, is exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations, reallocations included.
    pub total_allocations: u64,
    /// Deallocations, reallocations included.
    pub total_deallocations: u64,
    /// Reallocations.
    pub total_reallocations: u64,
    /// Bytes allocated in total.
    pub total_bytes: u64,
    /// `total_allocations - total_deallocations`.
    pub active_allocations: u64,
    /// Bytes allocated and not yet freed.
    pub active_bytes: u64,
    /// Highest value `active_bytes` reached (see above for its precision).
    pub peak_bytes: u64,
}

/// The recorder's live counters. All zero before [`init`].
///
/// Blocks allocated before `init` and freed after it count as
/// deallocations, so `active_allocations` can read low; `active_bytes`
/// never goes below zero, which absorbs most of their bytes.
pub fn stats() -> Stats {
    let s = stats::sums();
    let active_bytes = stats::active_bytes();
    Stats {
        total_allocations: s[0],
        total_deallocations: s[1],
        total_reallocations: s[2],
        total_bytes: s[3],
        active_allocations: s[0].saturating_sub(s[1]),
        active_bytes,
        peak_bytes: stats::peak_with(active_bytes),
    }
}

/// Tags the heap block of a variable with its type name and the variable's
/// name, so the analyzer's `allocations.type_name` and `var_name` show them.
///
/// Works for every type implementing [`Trackable`] (`Vec`, `String`, `Box`,
/// `Rc`, `Arc`, `VecDeque`, `HashMap`, …); values without a heap block (an
/// empty `Vec`) are not tagged. The tag names the block as it is now; the
/// analyzer carries it along the block's reallocation chain, before and
/// after, since those blocks held the same value.
///
/// ```no_run
/// let names: Vec<String> = vec!["a".into()];
/// memscope_recorder::track_var!(names);
/// ```
#[macro_export]
macro_rules! track_var {
    ($var:ident) => {
        $crate::track_value(&$var, ::core::stringify!($var))
    };
    ($value:expr, $name:expr) => {
        $crate::track_value(&$value, $name)
    };
}

#[doc(hidden)]
pub fn _tag_address(address: u64, type_name: &'static str, var_name: &'static str) {
    if !state::recording() {
        return;
    }
    thread::with_thread(|t| {
        let type_id = t.intern(type_name);
        let var_id = t.intern(var_name);
        if type_id == 0 {
            return;
        }
        if t.record(clock::now_q(), None, |q| Record::Tag {
            q,
            address,
            type_name: type_id,
            var_name: var_id,
        }) {
            t.count_tag();
        }
    });
}
