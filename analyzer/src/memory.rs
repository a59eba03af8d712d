//! How much memory the analyzer may use (`--memory-limit`), and how that is
//! shared out.
//!
//! * Decoding and pairing hold what is live in the trace, never the whole
//!   trace ([`crate::stream`]).
//! * A trace is queried from memory while what the SQL reads of its tables
//!   fits in [`MemoryLimit::tables_bytes`]; once it outgrows that, it is
//!   written as a Parquet dataset into a temporary directory (as `convert`
//!   would), row group by row group, and queried from there.
//! * DataFusion's operators (sorts, aggregations, joins) share a pool of
//!   [`MemoryLimit::query_bytes`] and spill to temporary files when it is
//!   full.

use std::sync::Arc;

use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};

use crate::error::{Error, Result};

/// The analyzer's memory limit, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit, in bytes.
    pub bytes: u64,
}

impl Default for MemoryLimit {
    fn default() -> MemoryLimit {
        MemoryLimit { bytes: MemoryLimit::DEFAULT }
    }
}

impl MemoryLimit {
    /// The default: 2 GiB.
    pub const DEFAULT: u64 = 2 << 30;
    /// The smallest limit accepted: 64 MiB.
    pub const MIN: u64 = 64 << 20;

    /// Parses a size such as `2GiB`, `512MiB`, `1.5GB` or `1073741824`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] for anything else, or for less than [`MemoryLimit::MIN`].
    pub fn parse(text: &str) -> Result<MemoryLimit> {
        let bad = || {
            Error::Usage(format!(
                "--memory-limit {text:?}: give a size such as 2GiB, 512MiB or 4GB (at least 64MiB)"
            ))
        };
        let t = text.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = t.split_at(split);
        let number: f64 = number.parse().map_err(|_| bad())?;
        // The byte units of budgets (`64MiB`), not their times or `%`.
        let factor = match unit.trim() {
            "" => Some(1.0),
            "ns" | "us" | "ms" | "s" | "%" => None,
            unit => crate::report::budget::unit_factor(unit),
        }
        .ok_or_else(bad)?;
        let bytes = number * factor;
        if !bytes.is_finite() || bytes < MemoryLimit::MIN as f64 || bytes > u64::MAX as f64 {
            return Err(bad());
        }
        Ok(MemoryLimit { bytes: bytes as u64 })
    }

    /// Memory the in-memory tables of a trace may take: two fifths of the
    /// limit.
    pub fn tables_bytes(&self) -> u64 {
        self.bytes / 5 * 2
    }

    /// Memory DataFusion's operators may take before they spill: two
    /// fifths of the limit. The last fifth is left for what decoding and
    /// pairing hold (the live allocations; not counted against the limit)
    /// and the process itself.
    pub fn query_bytes(&self) -> u64 {
        self.bytes / 5 * 2
    }

    /// A DataFusion runtime whose operators share a pool of
    /// [`MemoryLimit::query_bytes`] and spill to the system's temporary
    /// directory.
    ///
    /// # Errors
    ///
    /// [`Error::Engine`] when the runtime cannot be made.
    pub fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let pool = FairSpillPool::new(self.query_bytes() as usize);
        RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(pool))
            .build_arc()
            .map_err(|e| Error::engine("setting up the query engine's memory pool", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_their_units() {
        let bytes = |t| MemoryLimit::parse(t).map(|l| l.bytes).ok();
        assert_eq!(bytes("2GiB"), Some(2 << 30));
        assert_eq!(bytes("512MiB"), Some(512 << 20));
        assert_eq!(bytes("1.5GB"), Some(1_500_000_000));
        assert_eq!(bytes("100000000"), Some(100_000_000));
        assert_eq!(bytes("1MiB"), None, "below the minimum");
        assert_eq!(bytes("2 parsecs"), None);
        assert_eq!(bytes(""), None);
        assert_eq!(bytes("-2GiB"), None);
    }

    #[test]
    fn the_limit_is_shared_out() {
        let l = MemoryLimit { bytes: 1000 << 20 };
        assert_eq!(l.tables_bytes() + l.query_bytes(), 800 << 20);
    }
}
