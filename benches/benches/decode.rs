//! Analyzer throughput on a synthetic 1-million-event trace: decoding the
//! blocks (parallel), merging and pairing, pairing alone, building the
//! Arrow tables, writing the Parquet dataset, and the whole `--sql leaks`
//! path.
//!
//! Run: `cargo bench -p memscope-benches --bench decode`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use memscope_analyzer::decode::TraceFile;
use memscope_analyzer::model::TraceData;
use memscope_analyzer::query::{self, SqlSource};
use memscope_analyzer::{Input, load, tables};
use memscope_analyzer::{convert, pairing};
use memscope_benches::synthetic_trace;

const EVENTS: usize = 1_000_000;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.trace");
    let bytes = synthetic_trace(EVENTS, 4);
    std::fs::write(&path, &bytes).unwrap();
    let file = TraceFile::open(&path).unwrap();
    let events = file.decode().unwrap().iter().map(|b| b.len()).sum::<usize>() as u64;

    let mut g = c.benchmark_group("analyzer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(events));
    g.bench_function("decode_blocks", |b| b.iter(|| file.decode().unwrap()));
    g.bench_function("decode_merge_pair", |b| {
        b.iter(|| {
            TraceData::build(file.header().clone(), file.decode().unwrap(), bytes.len() as u64)
        })
    });
    let data = TraceData::build(file.header().clone(), file.decode().unwrap(), bytes.len() as u64);
    g.bench_function("pair", |b| b.iter(|| pairing::pair(&data.events)));
    g.bench_function("decode_to_arrow_tables", |b| {
        b.iter(|| tables::build(&load(&path).unwrap().data).unwrap())
    });
    let tables = tables::build(&data).unwrap();
    let out = dir.path().join("dataset");
    g.bench_function("write_parquet_dataset", |b| {
        b.iter(|| convert::write_dataset(&data, &tables, &out, true).unwrap())
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leaks = SqlSource::resolve("leaks", 1).unwrap();
    g.bench_function("leaks_query_from_trace", |b| {
        b.iter(|| {
            rt.block_on(async {
                let input = Input::open(&path).unwrap();
                let ctx = input.session().await.unwrap();
                query::run(&ctx, &leaks).await.unwrap()
            })
        })
    });
    g.finish();
}

criterion_group!(analyzer, benches);
criterion_main!(analyzer);
