//! cargo-fuzz target: see `fuzz/checks.rs` (wire_frame) for the properties.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::wire_frame(data);
});
