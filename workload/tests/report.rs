//! Reports on the bundled workload: `diff` finds a known change between two
//! recordings, a baseline budget fails on it, and the HTML report renders in
//! headless Chromium with no console message and no network request.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use memscope_analyzer::report::budget::Budget;
use memscope_analyzer::report::render::{Format, render};
use memscope_analyzer::report::{self, Report, diff};
use memscope_analyzer::{Input, flamegraph};

/// Each worker leaks 25 notes of 1000 bytes (see `leak_notes`).
const NOTES_BYTES_PER_WORKER: u64 = 25 * 1000;

fn record(dir: &Path, name: &str, threads: u32) -> PathBuf {
    let trace = dir.join(name);
    let status = Command::new(env!("CARGO_BIN_EXE_memscope-workload"))
        .args(["--docs", "400", "--threads", &threads.to_string(), "--trace"])
        .arg(&trace)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running memscope-workload");
    assert!(status.success());
    trace
}

struct Traces {
    _dir: tempfile::TempDir,
    base: PathBuf,
    new: PathBuf,
}

/// Two recordings that differ in one known way: 2 workers, then 4, so the
/// notes leaked by `leak_notes` double.
fn traces() -> Traces {
    let dir = tempfile::Builder::new().prefix("memscope-workload-report").tempdir().unwrap();
    let base = record(dir.path(), "base.trace", 2);
    let new = record(dir.path(), "new.trace", 4);
    Traces { _dir: dir, base, new }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn diff_and_baseline_budget_find_the_known_change() {
    let t = traces();
    runtime().block_on(async {
        let base = Input::open(&t.base).unwrap();
        let new = Input::open(&t.new).unwrap();
        let (base_ctx, new_ctx) = (base.session().await.unwrap(), new.session().await.unwrap());
        let changes = diff::changes(&base_ctx, &new_ctx).await.unwrap();
        let find = |by: &str, name: &str| {
            changes
                .iter()
                .find(|c| c.by == by && c.name == name)
                .unwrap_or_else(|| panic!("no change for {by} {name}: {changes:#?}"))
        };
        let notes = find("call_site", "memscope_workload::leak_notes");
        assert_eq!(notes.base_leaked_bytes, 2 * NOTES_BYTES_PER_WORKER);
        assert_eq!(notes.new_leaked_bytes, 4 * NOTES_BYTES_PER_WORKER);
        assert_eq!(notes.leaked_bytes_change(), 2 * NOTES_BYTES_PER_WORKER as i64);
        // 50 more notes, each a String and its `format!` text.
        assert_eq!(notes.allocations_change(), 100);
        let strings = find("type", "alloc::string::String");
        assert_eq!(strings.leaked_bytes_change(), 2 * NOTES_BYTES_PER_WORKER as i64);
        // The largest change of leaked bytes is that one.
        let top_leak = changes.iter().max_by_key(|c| c.leaked_bytes_change()).unwrap();
        assert_eq!(top_leak.leaked_bytes_change(), 2 * NOTES_BYTES_PER_WORKER as i64);

        let options = report::Options {
            top: 5,
            temporary: Default::default(),
            budgets: vec![
                Budget::parse(
                    r#"leaked_bytes[call_site ~ "leak_notes"] > baseline.leaked_bytes[call_site ~ "leak_notes"]"#,
                )
                .unwrap(),
                Budget::parse("leaked_bytes > baseline.leaked_bytes * 2").unwrap(),
            ],
        };
        let r = Report::compute(&new_ctx, &t.new, Some((&t.base, &base_ctx)), &options).await.unwrap();
        assert!(r.budgets[0].failed);
        assert_eq!(r.budgets[0].actual, Some((4 * NOTES_BYTES_PER_WORKER) as f64));
        assert_eq!(r.budgets[0].limit, Some((2 * NOTES_BYTES_PER_WORKER) as f64));
        assert_eq!(
            r.budgets[0].top_contributor.as_ref().map(|c| c.name.as_str()),
            Some("alloc::string::String")
        );
        // 4 × 25 000 + the 16 KiB postings cache is less than twice 2 × 25 000 + 16 KiB.
        assert!(!r.budgets[1].failed, "{}", r.budgets[1].message);
        assert_eq!(r.top_leaks_by_call_site[0].name, "memscope_workload::leak_notes");
        let baseline = r.baseline.as_ref().unwrap();
        assert_eq!(baseline.totals.leaked_bytes + 2 * NOTES_BYTES_PER_WORKER, r.totals.leaked_bytes);
    });
}

/// Chromium's own service hosts, which it contacts whatever the page (time
/// sync, sign-in): requests to them are not the page's.
const BROWSER_HOSTS: [&str; 4] = ["google.com", "gstatic.com", "googleapis.com", "gvt1.com"];

/// What a page did in headless Chromium.
struct Rendered {
    /// Console messages (any level).
    console: Vec<String>,
    /// Request lines the page sent through the recording proxy.
    requests: Vec<String>,
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|name| {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// Opens `page` in headless Chromium with every request sent to a local
/// proxy that records it, and saves a screenshot to `screenshot`.
fn open_in_chromium(browser: &Path, page: &Path, screenshot: &Path, profile: &Path) -> Rendered {
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = proxy.local_addr().unwrap().port();
    proxy.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(false));
    let recorder = {
        let (seen, done) = (seen.clone(), done.clone());
        std::thread::spawn(move || {
            // After Chromium exits, drain the connections it left queued.
            loop {
                match proxy.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                        let mut buf = [0u8; 512];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        let line = String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_string();
                        seen.lock().unwrap().push(line);
                    }
                    Err(_) if *done.lock().unwrap() => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
    };
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1100,2400",
            &format!("--proxy-server=http://127.0.0.1:{port}"),
            "--proxy-bypass-list=<-loopback>",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("running chromium");
    *done.lock().unwrap() = true;
    recorder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    let console = stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_string).collect();
    let requests = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| !BROWSER_HOSTS.iter().any(|h| l.contains(h)))
        .cloned()
        .collect();
    Rendered { console, requests }
}

#[test]
fn html_report_renders_offline_in_chromium() {
    let Some(browser) = chromium() else {
        if std::env::var_os("MEMSCOPE_REQUIRE_BROWSER").is_some() {
            panic!(
                "MEMSCOPE_REQUIRE_BROWSER is set but no chromium is on PATH (apt install chromium)"
            );
        }
        eprintln!(
            "skipped: no chromium on PATH; scripts/test.sh installs it (apt install chromium)"
        );
        return;
    };
    let t = traces();
    let dir = t.new.parent().unwrap().to_path_buf();
    let html = runtime().block_on(async {
        let input = Input::open(&t.new).unwrap();
        let ctx = input.session().await.unwrap();
        let options = report::Options {
            top: 10,
            temporary: Default::default(),
            budgets: vec![Budget::parse("leaked_bytes > 0").unwrap()],
        };
        let r = Report::compute(&ctx, &t.new, None, &options).await.unwrap();
        let lines = flamegraph::folded(&ctx, flamegraph::Metric::Bytes).await.unwrap();
        let svg = flamegraph::svg(&lines, flamegraph::Metric::Bytes, "allocated bytes").unwrap();
        render(&r, Format::Html, Some(&svg)).unwrap()
    });
    let page = dir.join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.join("report.png");
    let rendered = open_in_chromium(&browser, &page, &shot, &dir.join("profile-report"));
    assert_eq!(rendered.console, Vec::<String>::new(), "console messages");
    assert_eq!(rendered.requests, Vec::<String>::new(), "network requests");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a screenshot with content");

    // The same checks catch a page that logs and fetches.
    let bad = dir.join("bad.html");
    std::fs::write(
        &bad,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>bad</title></head><body>\
         <img src=\"http://example.invalid/x.png\"><script>console.error(\"boom\")</script></body></html>",
    )
    .unwrap();
    let rendered = open_in_chromium(&browser, &bad, &dir.join("bad.png"), &dir.join("profile-bad"));
    assert!(rendered.console.iter().any(|l| l.contains("boom")), "{:?}", rendered.console);
    assert!(
        rendered.requests.iter().any(|l| l.contains("example.invalid")),
        "{:?}",
        rendered.requests
    );
}
