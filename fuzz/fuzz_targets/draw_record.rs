#![no_main]
//! cargo fuzz run draw_record (see fuzz/README.md); the same target runs as a bounded smoke test in
//! `cargo test -p spotcheck-collector --lib fuzz_smoke`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spotcheck_collector::fuzz_targets::draw_record(data);
});
