//! What grew or shrank between two traces, by call site and by type.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use serde::Serialize;

use super::budget::Column;
use super::{Group, groups};
use crate::error::{Error, Result};
use crate::query::QueryResult;

/// How one call site or type changed from the base trace to the new one.
/// Figures are weighted (estimates under sampling); `*_change` is new minus
/// base.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Change {
    /// `call_site` or `type`.
    pub by: &'static str,
    /// The call site or type; `(unknown)` when not known.
    pub name: String,
    /// Allocations in the base trace.
    pub base_allocations: u64,
    /// Allocations in the new trace.
    pub new_allocations: u64,
    /// Bytes allocated in the base trace.
    pub base_bytes: u64,
    /// Bytes allocated in the new trace.
    pub new_bytes: u64,
    /// Leaked bytes in the base trace.
    pub base_leaked_bytes: u64,
    /// Leaked bytes in the new trace.
    pub new_leaked_bytes: u64,
    /// Bytes live at the base trace's peak.
    pub base_peak_bytes: u64,
    /// Bytes live at the new trace's peak.
    pub new_peak_bytes: u64,
}

impl Change {
    /// New minus base allocations.
    pub fn allocations_change(&self) -> i64 {
        self.new_allocations as i64 - self.base_allocations as i64
    }

    /// New minus base bytes allocated.
    pub fn bytes_change(&self) -> i64 {
        self.new_bytes as i64 - self.base_bytes as i64
    }

    /// New minus base leaked bytes.
    pub fn leaked_bytes_change(&self) -> i64 {
        self.new_leaked_bytes as i64 - self.base_leaked_bytes as i64
    }

    /// New minus base peak contribution.
    pub fn peak_bytes_change(&self) -> i64 {
        self.new_peak_bytes as i64 - self.base_peak_bytes as i64
    }

    /// How much it changed, for ordering: the largest absolute change of
    /// leaked, peak or allocated bytes.
    fn magnitude(&self) -> u64 {
        [self.leaked_bytes_change(), self.peak_bytes_change(), self.bytes_change()]
            .into_iter()
            .map(i64::unsigned_abs)
            .max()
            .unwrap_or(0)
    }
}

/// Every call site and type that changed, largest change first: by the
/// largest absolute change of leaked, peak or allocated bytes, then of
/// allocations, then call sites before types, then by name.
///
/// # Errors
///
/// [`Error::Sql`] when a query over either trace fails.
pub async fn changes(base: &SessionContext, new: &SessionContext) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    for (by, name) in [(Column::CallSite, "call_site"), (Column::Type, "type")] {
        let mut merged: BTreeMap<String, (Option<Group>, Option<Group>)> = BTreeMap::new();
        for g in groups(base, by).await? {
            let name = g.name.clone();
            merged.entry(name).or_default().0 = Some(g);
        }
        for g in groups(new, by).await? {
            let name = g.name.clone();
            merged.entry(name).or_default().1 = Some(g);
        }
        for (key, (b, n)) in merged {
            let field = |g: &Option<Group>, f: fn(&Group) -> u64| g.as_ref().map_or(0, f);
            let c = Change {
                by: name,
                name: key,
                base_allocations: field(&b, |g| g.allocations),
                new_allocations: field(&n, |g| g.allocations),
                base_bytes: field(&b, |g| g.bytes),
                new_bytes: field(&n, |g| g.bytes),
                base_leaked_bytes: field(&b, |g| g.leaked_bytes),
                new_leaked_bytes: field(&n, |g| g.leaked_bytes),
                base_peak_bytes: field(&b, |g| g.peak_bytes),
                new_peak_bytes: field(&n, |g| g.peak_bytes),
            };
            if c.magnitude() > 0 || c.allocations_change() != 0 {
                out.push(c);
            }
        }
    }
    out.sort_by(|a, b| {
        b.magnitude()
            .cmp(&a.magnitude())
            .then_with(|| {
                b.allocations_change().unsigned_abs().cmp(&a.allocations_change().unsigned_abs())
            })
            .then_with(|| a.by.cmp(b.by))
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// `changes` as a result set named `diff`, with one column per figure and
/// its change, for the `diff` command's output formats.
///
/// # Errors
///
/// [`Error::Engine`] if Arrow rejects the batch (it cannot: the columns
/// are built to the schema).
pub fn to_result(changes: &[Change]) -> Result<QueryResult> {
    let u = |f: fn(&Change) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(changes.iter().map(f)))
    };
    let i = |f: fn(&Change) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(changes.iter().map(f)))
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("by", Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.by)))),
        ("name", Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.name.as_str())))),
        ("leaked_bytes_change", i(Change::leaked_bytes_change)),
        ("peak_bytes_change", i(Change::peak_bytes_change)),
        ("bytes_change", i(Change::bytes_change)),
        ("allocations_change", i(Change::allocations_change)),
        ("base_leaked_bytes", u(|c| c.base_leaked_bytes)),
        ("new_leaked_bytes", u(|c| c.new_leaked_bytes)),
        ("base_peak_bytes", u(|c| c.base_peak_bytes)),
        ("new_peak_bytes", u(|c| c.new_peak_bytes)),
        ("base_bytes", u(|c| c.base_bytes)),
        ("new_bytes", u(|c| c.new_bytes)),
        ("base_allocations", u(|c| c.base_allocations)),
        ("new_allocations", u(|c| c.new_allocations)),
    ];
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), false))
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| Error::engine("building the diff", e))?;
    Ok(QueryResult { name: "diff".into(), schema, batches: vec![batch] })
}
