//! The event clock: the time-stamp counter where it is invariant, else
//! `CLOCK_MONOTONIC`.
//!
//! `rdtsc` costs about 6 ns on the reference machine against 26 ns for
//! `clock_gettime` (see `../shared/research/perf-anchors.md`), which is why
//! the counter is preferred. Ticks become nanoseconds in the analyzer, from
//! calibration points written to the header: the origin, a point about one
//! millisecond later, and the end of the trace.

use std::sync::atomic::Ordering;

use memscope_schema::ClockSource;

use crate::state::HOT;

/// Quantum for the time-stamp counter: 16 ticks, about 6 ns at 2.5 GHz, so
/// that the 12-bit delta of a record spans about 26 µs.
const TSC_SHIFT: u32 = 4;
/// Quantum for `CLOCK_MONOTONIC`: 8 ns; a record delta spans about 32 µs.
const MONOTONIC_SHIFT: u32 = 3;

/// Chooses the clock for this process and returns it with its time shift.
pub(crate) fn select() -> (ClockSource, u8) {
    let source = if tsc_is_invariant() { ClockSource::Tsc } else { ClockSource::Monotonic };
    let shift = if source == ClockSource::Tsc { TSC_SHIFT } else { MONOTONIC_SHIFT };
    HOT.use_tsc.store(source == ClockSource::Tsc, Ordering::Relaxed);
    HOT.shift.store(shift as u8, Ordering::Relaxed);
    (source, shift as u8)
}

/// Raw ticks of the selected clock.
#[inline(always)]
pub(crate) fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    if HOT.use_tsc.load(Ordering::Relaxed) {
        // SAFETY: `rdtsc` has no preconditions; `select` only enables this
        // path after cpuid reported an invariant counter.
        return unsafe { core::arch::x86_64::_rdtsc() };
    }
    monotonic_ns()
}

/// Quantized timestamp: [`ticks`] shifted by the selected quantum.
#[inline(always)]
pub(crate) fn now_q() -> u64 {
    ticks() >> HOT.shift.load(Ordering::Relaxed)
}

/// `CLOCK_MONOTONIC` in nanoseconds (vDSO; no allocation, normally no
/// system call).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on the platforms we build for.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).wrapping_mul(1_000_000_000).wrapping_add(ts.tv_nsec as u64)
}

/// A (ticks, monotonic nanoseconds) pair read as close together as
/// possible: the pair with the shortest bracketing interval of three tries.
pub(crate) fn calibration_point() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..3 {
        let a = ticks();
        let ns = monotonic_ns();
        let b = ticks();
        if b.wrapping_sub(a) < best.0 {
            best = (b.wrapping_sub(a), a / 2 + b / 2, ns);
        }
    }
    (best.1, best.2)
}

#[cfg(target_arch = "x86_64")]
fn tsc_is_invariant() -> bool {
    if std::env::var_os("MEMSCOPE_CLOCK").is_some_and(|v| v == "monotonic") {
        return false;
    }
    // Where the kernel has judged the counter (unstable across sockets, or
    // a VM that does not pass it through), trust its judgement.
    if let Ok(source) =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        && source.trim() != "tsc"
    {
        return false;
    }
    let max_ext = core::arch::x86_64::__cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_0007 {
        return false;
    }
    // Leaf 0x8000_0007 exists, checked above; EDX bit 8 is "invariant TSC".
    let edx = core::arch::x86_64::__cpuid(0x8000_0007).edx;
    edx & (1 << 8) != 0
}

#[cfg(not(target_arch = "x86_64"))]
fn tsc_is_invariant() -> bool {
    false
}
