//! cargo-fuzz target: see `fuzz/checks.rs` (zpar_parse) for the properties.
//! The counting allocator bounds every single allocation the parser makes.

#![no_main]

#[path = "../checks.rs"]
mod checks;

#[global_allocator]
static ALLOC: checks::BoundedAlloc = checks::BoundedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::zpar_parse(data);
});
