//! The bundled workload: a multi-threaded text indexer that records its own
//! heap activity with memscope.
//!
//! It generates a corpus of documents from a Zipf-distributed vocabulary,
//! tokenizes the documents on several worker threads, builds per-thread
//! inverted indexes, merges them, serializes the index to JSON and answers a
//! few queries. On purpose it leaks a known amount, so that
//! `queries/leaks.sql` has something to find:
//!
//! * each worker leaks its `LEAKED_NOTES_PER_WORKER` "notes" (`String`s of
//!   `NOTE_CAPACITY` bytes, tagged `notes`), and
//! * the main thread leaks a cache of the most frequent terms' postings
//!   (`Vec<Posting>` with room for `HOT_POSTINGS` entries, tagged
//!   `hot_postings`).
//!
//! It prints what it leaked, so the analyzer's answer can be checked.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use clap::Parser;
use memscope_recorder::{Config, TrackingAllocator, track_var};
use serde::Serialize;

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

/// Strings each worker leaks.
const LEAKED_NOTES_PER_WORKER: usize = 25;
/// Capacity of each leaked note, in bytes.
const NOTE_CAPACITY: usize = 1000;
/// Terms kept in the vocabulary.
const VOCABULARY_SLOTS: usize = 512;
/// Capacity of the leaked postings cache, in postings.
const HOT_POSTINGS: usize = 2048;

/// Index a generated text corpus on several threads while recording every
/// allocation with memscope.
#[derive(Debug, Parser)]
struct Args {
    /// Trace file (default: $MEMSCOPE_TRACE, else memscope-<pid>.trace).
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Documents to generate.
    #[arg(long, default_value_t = 4000)]
    docs: usize,
    /// Words per document.
    #[arg(long, default_value_t = 150)]
    words: usize,
    /// Worker threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Seed of the corpus generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// One entry of the vocabulary: a term and how many documents contain it.
#[derive(Clone, Debug, Serialize)]
struct Term {
    text: String,
    document_frequency: u32,
}

/// A posting: the document and the term's count in it.
#[derive(Clone, Copy, Debug, Serialize)]
struct Posting {
    doc: u32,
    count: u32,
}

/// A pronounceable pseudo-word for vocabulary rank `rank`.
fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "xa", "yo", "ze", "bri", "cho",
        "dra", "fle",
    ];
    let mut w = String::new();
    let mut r = rank + 1;
    while r > 0 {
        w.push_str(SYLLABLES[r % SYLLABLES.len()]);
        r /= SYLLABLES.len();
    }
    w
}

/// The corpus: documents of words drawn from a Zipf(1.1) vocabulary, with
/// capitalization and punctuation for the tokenizer to undo.
fn generate_corpus(docs: usize, words: usize, seed: u64) -> Vec<String> {
    let vocabulary: Vec<String> = (0..20_000).map(word).collect();
    // Cumulative Zipf weights for inverse-transform sampling.
    let mut cdf = Vec::with_capacity(vocabulary.len());
    let mut total = 0.0;
    for rank in 1..=vocabulary.len() {
        total += 1.0 / (rank as f64).powf(1.1);
        cdf.push(total);
    }
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..docs)
        .map(|_| {
            let mut doc = String::new();
            for i in 0..words {
                let x = rng.f64() * total;
                let rank = cdf.partition_point(|&c| c < x).min(vocabulary.len() - 1);
                if i > 0 {
                    doc.push(' ');
                }
                if rng.u32(..9) == 0 {
                    let mut capital = vocabulary[rank].clone();
                    capital[..1].make_ascii_uppercase();
                    doc.push_str(&capital);
                } else {
                    doc.push_str(&vocabulary[rank]);
                }
                if rng.u32(..13) == 0 {
                    doc.push(',');
                }
            }
            doc.push('.');
            doc
        })
        .collect()
}

/// Lowercased tokens of a document (one `String` per token, as a naive
/// tokenizer would make).
fn tokenize(doc: &str) -> Vec<String> {
    doc.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Indexes documents `first..` of `docs` on one worker.
fn index_shard(first: usize, docs: &[String]) -> HashMap<String, Vec<Posting>> {
    let mut index: HashMap<String, Vec<Posting>> = HashMap::new();
    for (i, doc) in docs.iter().enumerate() {
        let mut counts: HashMap<String, u32> = HashMap::new();
        for token in tokenize(doc) {
            *counts.entry(token).or_insert(0) += 1;
        }
        for (term, count) in counts {
            index.entry(term).or_default().push(Posting { doc: (first + i) as u32, count });
        }
    }
    track_var!(index);
    index
}

/// Notes a worker keeps about its shard and never frees: the planted leak.
fn leak_notes(worker: usize) {
    for n in 0..LEAKED_NOTES_PER_WORKER {
        let mut notes = String::with_capacity(NOTE_CAPACITY);
        notes.push_str(&format!("worker {worker} note {n}"));
        track_var!(notes);
        std::mem::forget(notes);
    }
}

fn main() {
    let args = Args::parse();
    let mut config = Config::from_env();
    if let Some(path) = &args.trace {
        config = config.path(path);
    }
    let trace_path = config.resolved_path();
    if let Err(e) = memscope_recorder::init_with(config) {
        eprintln!("memscope-workload: {e}");
        std::process::exit(1);
    }

    let corpus = generate_corpus(args.docs, args.words, args.seed);
    track_var!(corpus);

    // Tokenize and index shards on worker threads; merge as results arrive.
    let threads = args.threads.max(1);
    let shard_len = corpus.len().div_ceil(threads).max(1);
    let (tx, rx) = mpsc::channel();
    let mut merged: HashMap<String, Vec<Posting>> = HashMap::new();
    thread::scope(|s| {
        for (w, shard) in corpus.chunks(shard_len).enumerate() {
            let tx = tx.clone();
            thread::Builder::new()
                .name(format!("indexer-{w}"))
                .spawn_scoped(s, move || {
                    let index = index_shard(w * shard_len, shard);
                    leak_notes(w);
                    tx.send(index).expect("the main thread receives until all workers finish");
                })
                .expect("spawning a worker thread");
        }
        drop(tx);
        for shard in rx {
            for (term, mut postings) in shard {
                merged.entry(term).or_default().append(&mut postings);
            }
        }
    });
    for postings in merged.values_mut() {
        postings.sort_unstable_by_key(|p| p.doc);
    }
    track_var!(merged);

    // The vocabulary by document frequency.
    let mut vocabulary: Vec<Term> = Vec::with_capacity(VOCABULARY_SLOTS);
    track_var!(vocabulary);
    let mut by_frequency: Vec<(&String, &Vec<Posting>)> = merged.iter().collect();
    by_frequency.sort_unstable_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(b.0)));
    for (term, postings) in by_frequency.iter().take(VOCABULARY_SLOTS) {
        vocabulary.push(Term { text: (*term).clone(), document_frequency: postings.len() as u32 });
    }

    // Serialize the index, as a service would before shipping it.
    let json = serde_json::to_vec(&merged).expect("the index serializes");
    track_var!(json);

    // Answer a few conjunctive queries.
    let mut hits = 0;
    for pair in vocabulary[..20].windows(2) {
        let (a, b) = (&merged[&pair[0].text], &merged[&pair[1].text]);
        let docs_a: std::collections::HashSet<u32> = a.iter().map(|p| p.doc).collect();
        hits += b.iter().filter(|p| docs_a.contains(&p.doc)).count();
    }

    // A cache of the hottest postings, leaked on purpose.
    let mut hot_postings: Vec<Posting> = Vec::with_capacity(HOT_POSTINGS);
    track_var!(hot_postings);
    for term in &vocabulary {
        let room = HOT_POSTINGS - hot_postings.len();
        hot_postings.extend(merged[&term.text].iter().take(room));
    }
    std::mem::forget(hot_postings);

    let stats = memscope_recorder::stats();
    let workers = corpus.chunks(shard_len).len();
    let leaked_bytes =
        workers * LEAKED_NOTES_PER_WORKER * NOTE_CAPACITY + HOT_POSTINGS * size_of::<Posting>();
    println!(
        "indexed {} documents ({} terms, {} bytes of JSON) on {threads} threads; {hits} query hits",
        corpus.len(),
        merged.len(),
        json.len()
    );
    println!(
        "leaked on purpose: {} Strings of {NOTE_CAPACITY} bytes and a Vec<Posting> of {} bytes, {leaked_bytes} bytes in all",
        workers * LEAKED_NOTES_PER_WORKER,
        HOT_POSTINGS * size_of::<Posting>()
    );
    println!(
        "recorder: {} allocations, {} deallocations, peak {} bytes live; trace: {}",
        stats.total_allocations,
        stats.total_deallocations,
        stats.peak_bytes,
        trace_path.display()
    );
}
