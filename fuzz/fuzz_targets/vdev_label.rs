//! cargo-fuzz target: see `fuzz/checks.rs` (vdev_label) for the properties.
//! The counting allocator bounds every single allocation the label parser
//! and the XDR decoder make.

#![no_main]

#[path = "../checks.rs"]
mod checks;

#[global_allocator]
static ALLOC: checks::BoundedAlloc = checks::BoundedAlloc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::vdev_label(data);
});
