//! What the fuzz targets check, shared with the test that replays their
//! saved inputs (`analyzer/tests/fuzz_replay.rs`). A check fails by
//! panicking.

#![allow(dead_code)] // each fuzz target uses one half

use std::path::Path;
use std::time::Duration;

use memscope_analyzer::datafusion::arrow::compute::concat_batches;
use memscope_analyzer::decode::decode_blocks;
use memscope_analyzer::query::{self, Origin, SqlSource};
use memscope_analyzer::scan::TraceIndex;
use memscope_analyzer::stream;
use memscope_analyzer::tables::{MemorySink, TableData};
use memscope_schema::format::FileHeader;
use memscope_schema::reader::BlockLayout;
use memscope_schema::{DecodeError, DecodeErrorKind, Record, Trace};

/// Decodes `bytes` as a trace twice, with the analyzer's parallel decoder
/// and with the sequential reference reader. Both must give the same error,
/// or the same events; a trace that decodes must pair and build its tables,
/// the same tables whatever the number of blocks the second pass decodes
/// at once and the number of partitions it pairs in.
pub fn decode(bytes: &[u8]) {
    let reference = Trace::read(bytes);
    let ours = FileHeader::decode(bytes).and_then(|header| {
        let layout = BlockLayout::of(&header, bytes.len() as u64)?;
        decode_blocks(bytes, &layout).map(|blocks| (header, blocks))
    });
    let (header, blocks) = match (reference, ours) {
        (Err(r), Err(o)) => {
            assert_eq!(r, o, "the decoders disagree on the error");
            return;
        }
        (Ok(_), Err(o)) => {
            // Only the analyzer bounds the sum of sizes.
            assert!(is_too_many_bytes(&o), "only the analyzer's decoder failed: {o}");
            return;
        }
        (Err(r), Ok(_)) => panic!("only the reference decoder failed: {r}"),
        (Ok(r), Ok(ours)) => {
            let events = |rec: &Record<'_>| {
                matches!(
                    rec,
                    Record::Alloc { .. }
                        | Record::Free { .. }
                        | Record::Realloc { .. }
                        | Record::Tag { .. }
                )
            };
            let expected: usize =
                r.blocks.iter().map(|b| b.records.iter().filter(|r| events(r)).count()).sum();
            let decoded: usize = ours.1.iter().map(|b| b.len()).sum();
            assert_eq!(expected, decoded, "the decoders disagree on the events");
            assert_eq!(r.blocks.len(), ours.1.len(), "the decoders disagree on the blocks");
            ours
        }
    };
    drop(blocks);
    let layout = BlockLayout::of(&header, bytes.len() as u64).expect("checked above");
    let one_block = tables(&header, bytes, &layout, 1, 1);
    let many = tables(&header, bytes, &layout, stream::CHUNK_BLOCKS, 3);
    for (a, b) in one_block.iter().zip(&many) {
        let whole = |t: &TableData| concat_batches(&t.schema, &t.batches).expect("one schema");
        assert_eq!(
            whole(a),
            whole(b),
            "table {} depends on the chunk size or the pairing partitions",
            a.table.name
        );
    }
}

/// The tables of a trace that decodes, with the second pass decoding
/// `chunk_blocks` blocks at once and pairing in `partitions`.
fn tables(
    header: &FileHeader,
    bytes: &[u8],
    layout: &BlockLayout,
    chunk_blocks: usize,
    partitions: usize,
) -> Vec<TableData> {
    let index =
        TraceIndex::build(bytes, layout).expect("the first pass decodes what decode_blocks does");
    let mut sink = MemorySink::new();
    let options = stream::Options {
        chunk_blocks,
        pairing_partitions: partitions,
        ..stream::Options::default()
    };
    let data = match stream::run(header.clone(), bytes, layout, index, &mut sink, options) {
        Ok(data) => data,
        Err(e) => panic!("a decoded trace must give tables: {e:?}"),
    };
    let tables = sink.finish();
    let rows = |name: &str| tables.iter().find(|t| t.table.name == name).unwrap().num_rows() as u64;
    assert_eq!(rows("events"), data.event_count);
    assert_eq!(rows("allocations"), data.allocation_count);
    tables
}

fn is_too_many_bytes(e: &DecodeError) -> bool {
    matches!(e.kind, DecodeErrorKind::TooManyBytes { .. })
}

/// A DataFusion session over the tables of the reference trace of the bad
/// corpus, and a runtime to run queries on.
pub struct SqlHarness {
    runtime: tokio::runtime::Runtime,
    ctx: memscope_analyzer::datafusion::prelude::SessionContext,
}

impl SqlHarness {
    /// Loads `testdata/bad/reference.trace` from the workspace at `root`.
    pub fn new(root: &Path) -> SqlHarness {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let trace = root.join("testdata/bad/reference.trace");
        let input = memscope_analyzer::Input::open(&trace).expect("the reference trace loads");
        let ctx = runtime.block_on(input.session()).expect("its tables register");
        SqlHarness { runtime, ctx }
    }

    /// Runs `text` as `--sql` text. Errors are fine; panics are not. A query
    /// still running after two seconds is dropped (an unbounded query is
    /// the user's to stop, with Ctrl-C).
    pub fn run(&self, text: &str) {
        let source =
            SqlSource { name: "fuzz".into(), origin: Origin::Inline(1), text: text.to_string() };
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), query::run(&self.ctx, &source)).await
        });
    }
}
