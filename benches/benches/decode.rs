//! Analyzer throughput on a synthetic 1-million-event trace: decoding the
//! blocks (parallel), the first pass, merging alone, pairing alone (and
//! the leaks query's pairing in one and two partitions), both passes into Arrow
//! tables in memory, both passes into a Parquet dataset, and the whole
//! `--sql leaks` path (planning what the query reads, building only that,
//! and running it, as `memscope-analyze TRACE --sql leaks` does).
//!
//! Run: `cargo bench -p memscope-benches --bench decode`

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use memscope_analyzer::decode::{BlockEvents, TraceFile};
use memscope_analyzer::memory::MemoryLimit;
use memscope_analyzer::merge::{Events, Merger};
use memscope_analyzer::pairing::{Pairer, Rows, Wanted};
use memscope_analyzer::query::{self, SqlSource};
use memscope_analyzer::reads;
use memscope_analyzer::scan::TraceIndex;
use memscope_analyzer::{Input, convert, load, stream_trace};
use memscope_benches::synthetic_trace;
use memscope_schema::TimeScale;

const EVENTS: usize = 1_000_000;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.trace");
    let bytes = synthetic_trace(EVENTS, 4);
    std::fs::write(&path, &bytes).unwrap();
    let file = TraceFile::open(&path).unwrap();
    let blocks = file.decode().unwrap();
    let events = blocks.iter().map(|b| b.len()).sum::<usize>() as u64;

    let mut g = c.benchmark_group("analyzer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events));
    g.bench_function("decode_blocks", |b| b.iter(|| file.decode().unwrap()));
    g.bench_function("index_first_pass", |b| {
        b.iter(|| TraceIndex::build(file.bytes(), file.layout()).unwrap())
    });
    let scale = TimeScale::new(file.header());
    let merger_of = |blocks: &[BlockEvents]| {
        let mut merger = Merger::new(scale);
        for block in blocks {
            merger.push(block.clone());
        }
        merger
    };
    g.bench_function("merge", |b| {
        b.iter_batched(
            || merger_of(&blocks),
            |mut merger| {
                let mut merged = Events::default();
                merger.drain(None, &mut merged);
                merged
            },
            BatchSize::LargeInput,
        )
    });
    let mut merged = Events::default();
    merger_of(&blocks).drain(None, &mut merged);
    g.bench_function("pair", |b| {
        b.iter(|| {
            let mut rows = Rows::default();
            let mut pairer = Pairer::new(true);
            pairer.pair(&merged, true, &mut rows);
            pairer.finish(&mut rows);
            rows
        })
    });
    // The leaks query's pairing (only leaked rows made), in one
    // partition and in two at once: the ratio is what partitioning gains.
    for partitions in [1, 2] {
        let name = format!("pair_leaked_{partitions}_partitions");
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut rows = Rows { allocations_wanted: Wanted::Leaked, ..Rows::default() };
                let mut pairer = Pairer::partitioned(false, partitions);
                pairer.pair(&merged, true, &mut rows);
                pairer.finish(&mut rows);
                rows
            })
        });
    }
    g.bench_function("decode_to_arrow_tables", |b| b.iter(|| load(&path).unwrap()));
    let out = dir.path().join("dataset");
    g.bench_function("write_parquet_dataset", |b| {
        b.iter(|| {
            let (data, _, sink) =
                stream_trace(&path, |_| convert::ParquetSink::create(&out, true)).unwrap();
            sink.finish(&data).unwrap()
        })
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leaks = SqlSource::resolve("leaks", 1).unwrap();
    g.bench_function("leaks_query_from_trace", |b| {
        b.iter(|| {
            rt.block_on(async {
                let reads = reads::plan(std::slice::from_ref(&leaks)).await.unwrap();
                let input = Input::open_within(&path, MemoryLimit::default(), reads).unwrap();
                let ctx = input.session().await.unwrap();
                query::run(&ctx, &leaks).await.unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(analyzer, benches);
criterion_main!(analyzer);
