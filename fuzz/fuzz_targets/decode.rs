//! Fuzzes the trace decoder: any bytes, as a trace file.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| checks::decode(bytes));
