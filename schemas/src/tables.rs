//! The analyzer's tables: names, columns, types, units and meanings.
//!
//! These definitions are the contract that SQL files, notebooks and the
//! Parquet output are written against. The analyzer builds its Arrow
//! batches from them (with the `arrow` feature, [`Table::schema`]), the
//! `tables` command prints them, and a test checks that README.md documents
//! every column.

/// The logical type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// Unsigned 64-bit integer (addresses, sizes, ids, counts).
    UInt64,
    /// Unsigned 32-bit integer (thread ids).
    UInt32,
    /// Signed 64-bit integer (nanoseconds since the trace origin).
    Int64,
    /// 64-bit float (weights).
    Float64,
    /// Boolean.
    Boolean,
    /// UTF-8 string.
    Utf8,
    /// UTF-8 string, dictionary-encoded with `Int32` keys (repeated values
    /// such as type names and event kinds).
    DictUtf8,
    /// Wall-clock timestamp, nanoseconds since the Unix epoch, UTC.
    TimestampNsUtc,
}

impl ColumnType {
    /// The SQL-facing name of the type, as `tables` prints it.
    pub const fn name(self) -> &'static str {
        match self {
            ColumnType::UInt64 => "UInt64",
            ColumnType::UInt32 => "UInt32",
            ColumnType::Int64 => "Int64",
            ColumnType::Float64 => "Float64",
            ColumnType::Boolean => "Boolean",
            ColumnType::Utf8 => "Utf8",
            ColumnType::DictUtf8 => "Dictionary(Int32, Utf8)",
            ColumnType::TimestampNsUtc => "Timestamp(ns, UTC)",
        }
    }
}

/// One column of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name, as used in SQL.
    pub name: &'static str,
    /// Logical type.
    pub ty: ColumnType,
    /// Whether the column can hold NULL.
    pub nullable: bool,
    /// Unit of the values (`bytes`, `ns`), if they have one.
    pub unit: Option<&'static str>,
    /// What the column means, including when it is NULL.
    pub doc: &'static str,
}

/// One table the analyzer registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Table name, as used in SQL and as the Parquet file stem.
    pub name: &'static str,
    /// What one row is.
    pub doc: &'static str,
    /// Columns, in order.
    pub columns: &'static [Column],
}

const fn col(
    name: &'static str,
    ty: ColumnType,
    nullable: bool,
    unit: Option<&'static str>,
    doc: &'static str,
) -> Column {
    Column { name, ty, nullable, unit, doc }
}

use ColumnType::*;

const BYTES: Option<&str> = Some("bytes");
const NS: Option<&str> = Some("ns");

/// Kind names used in `events.kind`.
pub mod event_kind {
    /// An allocation (`alloc` or `alloc_zeroed`).
    pub const ALLOCATION: &str = "allocation";
    /// A deallocation (`dealloc`).
    pub const DEALLOCATION: &str = "deallocation";
    /// A reallocation (`realloc`): ends one allocation and starts another.
    pub const REALLOCATION: &str = "reallocation";
    /// A type tag (`track_var!`).
    pub const TAG: &str = "tag";
    /// Every kind, in the order of their dictionary keys.
    pub const ALL: [&str; 4] = [ALLOCATION, DEALLOCATION, REALLOCATION, TAG];
}

/// `events`: one row per allocation, deallocation, reallocation or tag.
pub const EVENTS: Table = Table {
    name: "events",
    doc: "One row per recorded event (allocation, deallocation, reallocation, tag), in time order.",
    columns: &[
        col(
            "event_id",
            UInt64,
            false,
            None,
            "Position of the event in time order, from 0. Ties in time keep each thread's order.",
        ),
        col(
            "ts_ns",
            Int64,
            false,
            NS,
            "Time of the event since the trace origin (init()), from a monotonic clock.",
        ),
        col("thread_id", UInt32, false, None, "Recorder thread id (join with threads.thread_id)."),
        col(
            "kind",
            DictUtf8,
            false,
            None,
            "'allocation', 'deallocation', 'reallocation' or 'tag'.",
        ),
        col(
            "address",
            UInt64,
            false,
            None,
            "Block address: the allocated or freed block; for a reallocation the new address; for a tag the tagged address.",
        ),
        col(
            "size",
            UInt64,
            true,
            BYTES,
            "Requested size (allocation, reallocation: the new size); size of the freed block (deallocation; NULL when its allocation was not recorded); NULL for tags.",
        ),
        col("align", UInt64, true, BYTES, "Requested alignment; NULL for deallocations and tags."),
        col(
            "old_address",
            UInt64,
            false,
            None,
            "For a reallocation, the address before it; 0 for every other kind.",
        ),
        col(
            "alloc_id",
            UInt64,
            true,
            None,
            "The allocation this event starts (allocation, reallocation), ends (deallocation) or tags; NULL when it cannot be matched (join with allocations.alloc_id).",
        ),
    ],
};

/// `allocations`: one row per allocation, paired with its end.
pub const ALLOCATIONS: Table = Table {
    name: "allocations",
    doc: "One row per allocation, from the event that started it (allocation or reallocation) to the one that ended it (deallocation or reallocation). A block never freed before the trace ended is leaked.",
    columns: &[
        col(
            "alloc_id",
            UInt64,
            false,
            None,
            "Id of the allocation: the event_id of the event that started it.",
        ),
        col("address", UInt64, false, None, "Start address of the block."),
        col("size", UInt64, false, BYTES, "Requested size."),
        col("align", UInt64, false, BYTES, "Requested alignment."),
        col(
            "alloc_ts_ns",
            Int64,
            false,
            NS,
            "Time the allocation started, since the trace origin.",
        ),
        col(
            "free_ts_ns",
            Int64,
            true,
            NS,
            "Time it ended (deallocation or reallocation); NULL when leaked.",
        ),
        col("lifetime_ns", Int64, true, NS, "free_ts_ns - alloc_ts_ns; NULL when leaked."),
        col(
            "alloc_thread_id",
            UInt32,
            false,
            None,
            "Thread that allocated (join with threads.thread_id).",
        ),
        col(
            "free_thread_id",
            UInt32,
            true,
            None,
            "Thread that deallocated or reallocated it; NULL when leaked.",
        ),
        col(
            "type_name",
            DictUtf8,
            true,
            None,
            "Type of the value in the block: from track_var! (carried along the block's reallocation chain), else from the generic frames of its stack (see type_source); NULL when unknown.",
        ),
        col(
            "var_name",
            DictUtf8,
            true,
            None,
            "Variable name given to track_var!; NULL when untagged.",
        ),
        col(
            "realloc_from",
            UInt64,
            true,
            None,
            "alloc_id of the allocation this one continues when a reallocation started it; NULL otherwise.",
        ),
        col(
            "realloc_to",
            UInt64,
            true,
            None,
            "alloc_id of the allocation that continues this one when a reallocation ended it; NULL otherwise.",
        ),
        col(
            "zeroed",
            Boolean,
            false,
            None,
            "Whether the block was requested zero-filled (alloc_zeroed).",
        ),
        col(
            "weight",
            Float64,
            false,
            None,
            "Allocations this row stands for: 1 without sampling; under sampling (trace.sample_rate_bytes > 0) the inverse of the probability that it was recorded, 1 / (1 - exp(-size / rate)), so that SUM(weight) and SUM(size * weight) estimate counts and bytes.",
        ),
        col(
            "stack_id",
            UInt32,
            true,
            None,
            "Call stack of the allocating call (join with stacks.stack_id); NULL when stacks were not recorded or could not be walked.",
        ),
        col(
            "call_site",
            DictUtf8,
            true,
            None,
            "The first frame of the stack outside the allocator, the standard library (alloc, core, std, hashbrown) and memscope: the program's function that allocated, or module+0xoffset when it could not be symbolized; NULL without a stack.",
        ),
        col(
            "call_site_file",
            DictUtf8,
            true,
            None,
            "Source file of the call_site frame's call; NULL without debug information.",
        ),
        col(
            "call_site_line",
            UInt32,
            true,
            None,
            "Source line of the call_site frame's call; NULL without debug information.",
        ),
        col(
            "type_source",
            DictUtf8,
            false,
            None,
            "Where type_name comes from: 'tag' (track_var!), 'frame' (a generic frame of the stack, such as Vec<myapp::Order>::push, when the program was built with -C symbol-mangling-version=v0) or 'unknown'.",
        ),
    ],
};

/// `stacks`: one row per frame of each distinct call stack.
pub const STACKS: Table = Table {
    name: "stacks",
    doc: "One row per frame of each distinct call stack, innermost (the allocator) first. An inlined function is a frame of its own, before the function it was inlined into.",
    columns: &[
        col("stack_id", UInt32, false, None, "Stack id, from 1 (allocations.stack_id)."),
        col("depth", UInt32, false, None, "Position in the stack: 0 is the innermost frame."),
        col("frame_id", UInt32, false, None, "The frame (join with frames.frame_id)."),
    ],
};

/// `frames`: one row per symbolized frame.
pub const FRAMES: Table = Table {
    name: "frames",
    doc: "One row per distinct frame: a return address, or a function inlined at it. Symbolized offline from the module files (DWARF, else the symbol table).",
    columns: &[
        col("frame_id", UInt32, false, None, "Frame id, from 0."),
        col(
            "address",
            UInt64,
            false,
            None,
            "Return address as recorded (the instruction after the call), in the traced process.",
        ),
        col(
            "module_id",
            UInt32,
            true,
            None,
            "Module containing the address (join with modules.module_id); NULL when none does.",
        ),
        col(
            "module_offset",
            UInt64,
            true,
            None,
            "The address in the module file (address - modules.load_bias), for symbolizing elsewhere; NULL without a module.",
        ),
        col(
            "function",
            Utf8,
            true,
            None,
            "Demangled function name, without hashes; NULL when the module could not be symbolized.",
        ),
        col("file", Utf8, true, None, "Source file of the call; NULL without debug information."),
        col("line", UInt32, true, None, "Source line of the call; NULL without debug information."),
        col(
            "inlined",
            Boolean,
            false,
            None,
            "Whether this function was inlined into the next frame of the stack (same address).",
        ),
        col(
            "name",
            Utf8,
            false,
            None,
            "function, or module+0xoffset (or the bare address) when it is NULL: a label that is never NULL.",
        ),
    ],
};

/// `modules`: one row per loaded module.
pub const MODULES: Table = Table {
    name: "modules",
    doc: "One row per module (the executable and each shared library) mapped in the traced process, from the module map the recorder writes at start and whenever a library is loaded or unloaded.",
    columns: &[
        col("module_id", UInt32, false, None, "Module id, from 0."),
        col("path", Utf8, false, None, "Path of the module file in the traced process."),
        col(
            "build_id",
            Utf8,
            true,
            None,
            "GNU build id, lowercase hex, to find the matching file or debug info elsewhere; NULL when the module has none.",
        ),
        col("start_address", UInt64, false, None, "Lowest address of its loaded segments."),
        col(
            "end_address",
            UInt64,
            false,
            None,
            "One past the highest address of its loaded segments.",
        ),
        col("load_bias", UInt64, false, None, "Run-time address minus address in the file."),
        col(
            "symbols",
            Utf8,
            false,
            None,
            "What the analyzer symbolized its frames from: 'dwarf', 'symbol_table', 'none' (the file names none of its frames: stripped, or no frame in it) or 'missing' (no readable file with the recorded build id: not at its path, unreadable, or rebuilt since recording).",
        ),
        col(
            "symbol_file",
            Utf8,
            true,
            None,
            "The file its frames were symbolized from: one found through MEMSCOPE_SYMBOL_PATH (a separate debug file by build id, or a file of the same name), else the recorded path; NULL when none could be read.",
        ),
    ],
};

/// `threads`: one row per recorded thread.
pub const THREADS: Table = Table {
    name: "threads",
    doc: "One row per thread that recorded at least one event.",
    columns: &[
        col(
            "thread_id",
            UInt32,
            false,
            None,
            "Recorder thread id, from 1 in order of first event.",
        ),
        col("os_tid", UInt32, false, None, "Operating-system thread id (gettid)."),
        col(
            "name",
            DictUtf8,
            true,
            None,
            "Thread name ('main' for the main thread; the OS name, at most 15 bytes, otherwise); NULL when unnamed.",
        ),
        col(
            "start_ts_ns",
            Int64,
            false,
            NS,
            "Time of the thread's first block, since the trace origin.",
        ),
        col(
            "exit_ts_ns",
            Int64,
            true,
            NS,
            "Time the thread began to exit; NULL when it was still running at the end of the trace.",
        ),
        col(
            "allocations",
            UInt64,
            false,
            None,
            "Allocations the thread made (reallocations included).",
        ),
        col(
            "allocated_bytes",
            UInt64,
            false,
            BYTES,
            "Bytes the thread allocated (reallocations count their new size).",
        ),
    ],
};

/// `trace`: one row describing the traced run.
pub const TRACE: Table = Table {
    name: "trace",
    doc: "One row describing the traced run (from the trace header and end marker).",
    columns: &[
        col("program", Utf8, false, None, "Path of the traced program."),
        col(
            "command_line",
            Utf8,
            false,
            None,
            "Its arguments, program name first, joined by spaces.",
        ),
        col("pid", UInt32, false, None, "Process id of the traced program."),
        col("start_time", TimestampNsUtc, false, None, "Wall-clock time of the trace origin, UTC."),
        col(
            "duration_ns",
            Int64,
            false,
            NS,
            "Time from the origin to the end marker, or to the last event of an unfinished trace.",
        ),
        col(
            "finished",
            Boolean,
            false,
            None,
            "Whether the recorder wrote the end marker (false after a crash or kill).",
        ),
        col(
            "recording_failed",
            Boolean,
            false,
            None,
            "Whether recording stopped early because the file could not grow.",
        ),
        col("format_version", Utf8, false, None, "Trace format version, major.minor."),
        col("clock_source", Utf8, false, None, "'tsc' or 'monotonic'."),
        col("events", UInt64, false, None, "Rows of the events table."),
        col("threads", UInt64, false, None, "Rows of the threads table."),
        col("file_bytes", UInt64, false, BYTES, "Size of the trace file (header and every block)."),
        col(
            "sample_rate_bytes",
            UInt64,
            false,
            BYTES,
            "Poisson sampling rate: allocations were recorded with probability 1 - exp(-size / rate); 0 when every allocation was recorded. Weighted sums are estimates when it is not 0.",
        ),
    ],
};

/// `rss`: resident set size samples.
pub const RSS: Table = Table {
    name: "rss",
    doc: "One row per resident-set-size sample taken by the recorder's background thread (every 10 ms by default).",
    columns: &[
        col("ts_ns", Int64, false, NS, "Time of the sample since the trace origin."),
        col(
            "rss_bytes",
            UInt64,
            false,
            BYTES,
            "Resident set size of the process (from /proc/self/statm): heap, code, stacks and mapped files, the trace's own pages included.",
        ),
    ],
};

/// `anomalies`: events that a well-behaved program does not produce.
pub const ANOMALIES: Table = Table {
    name: "anomalies",
    doc: "One row per event that pairing could not match as a well-behaved program's: data about the traced program (or about events lost before recording began), not errors of the trace.",
    columns: &[
        col("event_id", UInt64, false, None, "The event (join with events.event_id)."),
        col("ts_ns", Int64, false, NS, "Time of the event since the trace origin."),
        col("thread_id", UInt32, false, None, "Thread of the event (join with threads.thread_id)."),
        col(
            "kind",
            DictUtf8,
            false,
            None,
            "'double_deallocation' (a block deallocated again), 'unknown_deallocation' (an address not allocated in the trace, usually allocated before recording began, or whose block was freed 262 144 or more events before), 'unknown_reallocation' (a reallocation of such an address), 'overlapping_allocation' (an allocation at a live address: its deallocation is missing) or 'unmatched_tag' (a tag of no live block).",
        ),
        col(
            "address",
            UInt64,
            false,
            None,
            "The address at fault: for unknown_reallocation the old address.",
        ),
        col(
            "alloc_id",
            UInt64,
            true,
            None,
            "The allocation involved: for double_deallocation the one already deallocated, for overlapping_allocation the one it ended; NULL otherwise.",
        ),
    ],
};

/// Every table, in the order `tables` lists them.
pub const TABLES: [&Table; 9] =
    [&ALLOCATIONS, &ANOMALIES, &EVENTS, &FRAMES, &MODULES, &RSS, &STACKS, &THREADS, &TRACE];

impl Table {
    /// The table with this name, if any.
    pub fn by_name(name: &str) -> Option<&'static Table> {
        TABLES.iter().copied().find(|t| t.name == name)
    }

    /// Index of the column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }

    /// The Arrow schema of this table. Field metadata carries `unit` and
    /// `doc` for readers that keep it.
    #[cfg(feature = "arrow")]
    pub fn schema(&self) -> arrow_schema::Schema {
        use arrow_schema::{DataType, Field, Schema, TimeUnit};
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| {
                let ty = match c.ty {
                    UInt64 => DataType::UInt64,
                    UInt32 => DataType::UInt32,
                    Int64 => DataType::Int64,
                    Float64 => DataType::Float64,
                    Boolean => DataType::Boolean,
                    Utf8 => DataType::Utf8,
                    DictUtf8 => {
                        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
                    }
                    TimestampNsUtc => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                };
                let mut meta = std::collections::HashMap::new();
                meta.insert("doc".to_string(), c.doc.to_string());
                if let Some(unit) = c.unit {
                    meta.insert("unit".to_string(), unit.to_string());
                }
                Field::new(c.name, ty, c.nullable).with_metadata(meta)
            })
            .collect();
        Schema::new(fields)
    }
}
