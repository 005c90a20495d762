//! cargo-fuzz target: see `fuzz/checks.rs` (nvlist_unpack) for the properties.

#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::nvlist_unpack(data);
});
