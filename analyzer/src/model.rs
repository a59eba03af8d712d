//! What a decoded trace is, apart from its big tables (`events`,
//! `allocations`, `anomalies`, which [`crate::stream`] hands to a sink as
//! they are made): its header, threads, strings, call stacks, RSS samples
//! and counts.

use std::collections::HashMap;

use memscope_schema::Totals;
use memscope_schema::format::FileHeader;

use crate::pairing::Anomalies;
use crate::stacks::Stacks;

/// One recorded thread.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// Recorder thread id.
    pub thread_id: u32,
    /// OS thread id.
    pub os_tid: u32,
    /// Last recorded name.
    pub name: Option<String>,
    /// Time of the first block, ns since origin.
    pub start_ts_ns: i64,
    /// Time the thread began to exit, ns since origin.
    pub exit_ts_ns: Option<i64>,
    /// Allocations made (reallocations included).
    pub allocations: u64,
    /// Bytes allocated.
    pub allocated_bytes: u64,
}

/// Events whose timestamp goes back from the one before them in the same
/// thread: they can only come from a broken clock or a corrupt trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeReversals {
    /// Events moved forward to their predecessor's time.
    pub events: u64,
    /// Threads with at least one such event.
    pub threads: u64,
    /// The largest step back, in nanoseconds.
    pub largest_ns: i64,
}

/// A decoded, paired trace, apart from its big tables.
#[derive(Clone, Debug)]
pub struct TraceData {
    /// The file header.
    pub header: FileHeader,
    /// Number of events (rows of `events`).
    pub event_count: u64,
    /// Number of allocations (rows of `allocations`).
    pub allocation_count: u64,
    /// What pairing could not match, counted (rows of `anomalies`).
    pub anomalies: Anomalies,
    /// Threads by thread id.
    pub threads: Vec<Thread>,
    /// String definitions by id.
    pub strings: HashMap<u32, String>,
    /// The end marker's time (ns since origin) and totals, when finished.
    pub end: Option<(i64, Totals)>,
    /// Time of the last event or marker, ns since origin.
    pub last_ts_ns: i64,
    /// Extended records of unknown subkinds that were skipped.
    pub skipped_records: u64,
    /// Events stamped earlier than the event before them in their own
    /// thread; they keep their order in the file and take that earlier
    /// event's time.
    pub time_reversals: TimeReversals,
    /// Allocations and reallocations that refer to a stack id their thread
    /// never defines (they show without a stack).
    pub undefined_stack_refs: u64,
    /// Tags that name a string id the trace never defines (the name shows
    /// as `<unknown string ID>`).
    pub undefined_string_refs: u64,
    /// Size of the trace file in bytes.
    pub file_bytes: u64,
    /// Resident-set-size samples (ns since origin, bytes), in time order.
    pub rss: Vec<(i64, u64)>,
    /// Call stacks, their symbolized frames and the modules they lie in.
    pub stacks: Stacks,
}

impl TraceData {
    /// Duration of the trace: to the end marker, or to the last record of an
    /// unfinished trace (ns).
    pub fn duration_ns(&self) -> i64 {
        self.end.map_or(self.last_ts_ns, |(ts, _)| ts.max(self.last_ts_ns)).max(0)
    }
}
