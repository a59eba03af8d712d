//! Call stacks end to end: a traced program whose allocation sites are
//! known, checked through the analyzer binary. Leaks appear under the
//! function and source line that allocated them, `Vec<Order>` under its type
//! without any tag, flamegraphs account for every leaked byte, and a stripped
//! copy of the program still yields module+offset call sites.
//!
//! This file is both the traced program (when `MEMSCOPE_TEST_CHILD` is set)
//! and the test that runs it.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;

use memscope_recorder::TrackingAllocator;

#[global_allocator]
static GLOBAL: TrackingAllocator<std::alloc::System> = TrackingAllocator::new(std::alloc::System);

#[derive(Clone, Debug)]
#[allow(dead_code)]
struct Order {
    id: u64,
    price: f64,
    quantity: u32,
}

/// Leaks one `Vec<Order>` buffer of 128 orders (3072 bytes).
#[inline(never)]
fn leak_orders() {
    let mut orders: Vec<Order> = Vec::new();
    for id in 0..100 {
        orders.push(black_box(Order { id, price: 1.5, quantity: 3 })); // leak site: orders
    }
    std::mem::forget(orders);
}

/// Leaks five boxed slices of 1000 bytes.
#[inline(never)]
fn leak_boxes() {
    for _ in 0..5 {
        let b: Box<[u8]> = black_box(vec![7u8; 1000]).into_boxed_slice(); // leak site: boxes
        Box::leak(b);
    }
}

/// Allocates and frees, leaking nothing.
#[inline(never)]
fn churn() {
    for i in 0..1000 {
        drop(black_box(vec![0u64; 1 + i % 7]));
    }
}

fn traced() {
    memscope_recorder::init();
    leak_orders();
    leak_boxes();
    churn();
    memscope_recorder::finish();
}

const ORDERS: u64 = 128 * std::mem::size_of::<Order>() as u64;

fn main() {
    if std::env::var("MEMSCOPE_TEST_CHILD").as_deref() == Ok("stacks") {
        return traced();
    }
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("stacks.trace");
    let exe = std::env::current_exe().unwrap();
    record(&exe, &trace, &[]);
    for (name, test) in [
        (
            "leaks_appear_under_their_function_and_line",
            leaks_appear_under_their_function_and_line as fn(&Path),
        ),
        ("vec_of_orders_is_typed_without_a_tag", vec_of_orders_is_typed_without_a_tag),
        ("flamegraph_accounts_for_every_leaked_byte", flamegraph_accounts_for_every_leaked_byte),
        ("stack_tables_are_consistent", stack_tables_are_consistent),
    ] {
        test(&trace);
        println!("test {name} ... ok");
    }
    stacks_can_be_turned_off(dir.path());
    println!("test stacks_can_be_turned_off ... ok");
    stripped_binary_yields_module_offsets(dir.path());
    println!("test stripped_binary_yields_module_offsets ... ok");
}

fn record(exe: &Path, trace: &Path, env: &[(&str, &str)]) {
    let status = Command::new(exe)
        .env("MEMSCOPE_TEST_CHILD", "stacks")
        .env("MEMSCOPE_TRACE", trace)
        .envs(env.iter().copied())
        .status()
        .unwrap();
    assert!(status.success(), "traced child failed: {status}");
}

fn analyze(args: &[&str]) -> (String, String, Option<i32>) {
    let out = Command::new(env!("CARGO_BIN_EXE_memscope-analyze")).args(args).output().unwrap();
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
        out.status.code(),
    )
}

fn sql(trace: &Path, sql: &str) -> String {
    let (out, err, code) =
        analyze(&[trace.to_str().unwrap(), "--sql", sql, "--format", "csv", "-q"]);
    assert_eq!(code, Some(0), "{err}");
    out
}

/// The line of this file holding `marker`.
fn line_of(marker: &str) -> u32 {
    let source = include_str!("stacks.rs");
    let needle = format!("// leak site: {marker}");
    source.lines().position(|l| l.ends_with(&needle)).expect("marker present") as u32 + 1
}

fn leaks_appear_under_their_function_and_line(trace: &Path) {
    let (out, err, code) =
        analyze(&[trace.to_str().unwrap(), "--sql", "leaks_by_call_site", "--format", "csv"]);
    assert_eq!(code, Some(0), "{err}");
    let rows: Vec<Vec<&str>> = out.lines().skip(1).map(|l| l.split(',').collect()).collect();
    let find = |function: &str| {
        rows.iter()
            .find(|r| r[0] == format!("stacks::{function}"))
            .unwrap_or_else(|| panic!("no leak row for {function} in\n{out}"))
    };
    let orders = find("leak_orders");
    assert!(orders[1].ends_with("tests/stacks.rs"), "{orders:?}");
    assert_eq!(orders[2], line_of("orders").to_string(), "{orders:?}");
    assert_eq!((orders[4], orders[5]), ("1", ORDERS.to_string().as_str()), "{orders:?}");
    let boxes = find("leak_boxes");
    assert!(boxes[1].ends_with("tests/stacks.rs"), "{boxes:?}");
    assert_eq!(boxes[2], line_of("boxes").to_string(), "{boxes:?}");
    assert_eq!((boxes[4], boxes[5]), ("5", "5000"), "{boxes:?}");
    assert!(!out.contains("stacks::churn"), "churn leaks nothing:\n{out}");
}

fn vec_of_orders_is_typed_without_a_tag(trace: &Path) {
    let out = sql(
        trace,
        "SELECT DISTINCT type_name, type_source FROM allocations \
         WHERE call_site = 'stacks::leak_orders' ORDER BY type_name",
    );
    assert_eq!(out, "type_name,type_source\nalloc::vec::Vec<stacks::Order>,frame\n");
    let out = sql(trace, "type_hotspots");
    let row = out
        .lines()
        .find(|l| l.starts_with("alloc::vec::Vec<stacks::Order>,"))
        .unwrap_or_else(|| panic!("type_hotspots has no Vec<Order> row:\n{out}"));
    assert!(row.ends_with(&format!(",{ORDERS}")), "its leaked_bytes: {row}");
}

fn flamegraph_accounts_for_every_leaked_byte(trace: &Path) {
    let dir = trace.parent().unwrap();
    let folded = dir.join("leaked.folded");
    let t = trace.to_str().unwrap();
    let (_, err, code) = analyze(&[
        "flamegraph",
        t,
        "--metric",
        "leaked_bytes",
        "--folded",
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{err}");
    let text = std::fs::read_to_string(&folded).unwrap();
    let total: u64 =
        text.lines().map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap()).sum();
    let expected = sql(trace, "SELECT sum(size) AS s FROM allocations WHERE free_ts_ns IS NULL");
    assert_eq!(format!("s\n{total}\n"), expected);
    let orders = text
        .lines()
        .find(|l| l.contains("stacks::leak_orders;"))
        .unwrap_or_else(|| panic!("no leak_orders stack in\n{text}"));
    assert!(orders.ends_with(&format!(" {ORDERS}")), "{orders}");
    assert!(!text.contains("memscope_recorder::"), "the recorder's frames are left out:\n{text}");

    let svg = dir.join("leaked.svg");
    let s = svg.to_str().unwrap();
    let (_, err, code) = analyze(&["flamegraph", t, "--metric", "leaked_bytes", "-o", s]);
    assert_eq!(code, Some(0), "{err}");
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.starts_with("<?xml") && drawn.contains("stacks::leak_orders"),
        "{}",
        &drawn[..200]
    );
    let (_, err, code) = analyze(&["flamegraph", t, "-o", s]);
    assert_eq!(code, Some(73), "an existing output is kept without --force: {err}");
    assert_eq!(std::fs::read_to_string(&svg).unwrap(), drawn);
}

fn stack_tables_are_consistent(trace: &Path) {
    // Every allocation after init has a stack, every stack row a frame, and
    // the executable's frames were symbolized from DWARF.
    let out = sql(
        trace,
        "SELECT count(*) AS allocations, count(stack_id) AS with_stack FROM allocations \
         WHERE call_site LIKE 'stacks::%'",
    );
    let counts: Vec<&str> = out.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(counts[0], counts[1], "{out}");
    assert!(counts[0].parse::<u64>().unwrap() >= 1000 + 5 + 6, "{out}");
    let out = sql(
        trace,
        "SELECT count(*) AS orphans FROM stacks s LEFT JOIN frames f ON s.frame_id = f.frame_id \
         WHERE f.frame_id IS NULL",
    );
    assert_eq!(out, "orphans\n0\n");
    let exe = std::env::current_exe().unwrap();
    let out = sql(
        trace,
        &format!(
            "SELECT symbols, build_id IS NOT NULL AS has_build_id FROM modules WHERE path = '{}'",
            exe.display()
        ),
    );
    assert_eq!(out, "symbols,has_build_id\ndwarf,true\n");
}

fn stacks_can_be_turned_off(dir: &Path) {
    let trace = dir.join("nostacks.trace");
    record(&std::env::current_exe().unwrap(), &trace, &[("MEMSCOPE_STACKS", "0")]);
    let out = sql(
        &trace,
        "SELECT count(*) > 1000 AS many, count(stack_id) AS with_stack FROM allocations",
    );
    assert_eq!(out, "many,with_stack\ntrue,0\n");
}

/// `modules.symbols` of the module recorded at `module`, as CSV through the
/// binary, with its stderr and exit code.
fn module_symbols(trace: &Path, module: &Path) -> (String, String, Option<i32>) {
    analyze(&[
        trace.to_str().unwrap(),
        "--sql",
        &format!("SELECT symbols FROM modules WHERE path = '{}'", module.display()),
        "--format",
        "csv",
    ])
}

fn stripped_binary_yields_module_offsets(dir: &Path) {
    let stripped = dir.join("stacks-stripped");
    let strip = Command::new("objcopy")
        .arg("--strip-all")
        .arg(std::env::current_exe().unwrap())
        .arg(&stripped)
        .status();
    match strip {
        Ok(s) if s.success() => {}
        other => {
            println!(
                "skipped stripped_binary_yields_module_offsets: objcopy unavailable ({other:?})"
            );
            return;
        }
    }
    let trace = dir.join("stripped.trace");
    record(&stripped, &trace, &[]);
    let out = sql(
        &trace,
        "SELECT count(*) AS leaks FROM allocations \
         WHERE free_ts_ns IS NULL AND call_site LIKE 'stacks-stripped+0x%'",
    );
    let leaks: u64 = out.lines().nth(1).unwrap().parse().unwrap();
    assert!(leaks >= 6, "leaked blocks have module+offset call sites: {out}");
    let out =
        sql(&trace, &format!("SELECT symbols FROM modules WHERE path = '{}'", stripped.display()));
    assert_eq!(out, "symbols\nnone\n");

    // Analyzed where the program is gone: module+offset, and a warning.
    std::fs::remove_file(&stripped).unwrap();
    let (out, err, code) = module_symbols(&trace, &stripped);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "symbols\nmissing\n");
    assert!(
        err.contains(
            "stack frames show as module+offset: their module files are not at their recorded paths"
        ) && err.contains("stacks-stripped"),
        "{err}"
    );

    // Another program at the recorded path (a rebuild): its build id
    // differs, so it is not used to name the frames.
    std::fs::copy(env!("CARGO_BIN_EXE_memscope-analyze"), &stripped).unwrap();
    let (out, err, code) = module_symbols(&trace, &stripped);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "symbols\nmissing\n");
    assert!(err.contains("has another build id than when it was recorded"), "{err}");
    std::fs::remove_file(&stripped).unwrap();

    // With the unstripped program found through MEMSCOPE_SYMBOL_PATH, the
    // same trace names its call sites and lines.
    let symbols = dir.join("symbols");
    std::fs::create_dir_all(&symbols).unwrap();
    std::fs::copy(std::env::current_exe().unwrap(), symbols.join("stacks-stripped")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_memscope-analyze"))
        .env("MEMSCOPE_SYMBOL_PATH", format!("/nonexistent:{}", symbols.display()))
        .args([trace.to_str().unwrap(), "--sql", "leaks_by_call_site", "--format", "csv", "-q"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = line_of("orders").to_string();
    assert!(
        text.lines()
            .any(|l| l.starts_with("stacks::leak_orders,") && l.contains(&format!(",{line},"))),
        "{text}"
    );
}
