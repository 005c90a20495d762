//! cargo-fuzz target: see `fuzz/checks.rs` (resume_token) for the properties.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::resume_token(data);
});
