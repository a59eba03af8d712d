//! Fuzzes the SQL entry point over the built-in tables of a small trace.

#![no_main]

use std::sync::LazyLock;

#[path = "../checks.rs"]
mod checks;

static HARNESS: LazyLock<checks::SqlHarness> = LazyLock::new(|| {
    checks::SqlHarness::new(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
});

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    if let Ok(text) = std::str::from_utf8(bytes) {
        HARNESS.run(text);
    }
});
