//! Fuzz target `fixture_import`: see `aq_fuzz::fixture_import` and docs/fuzzing.md.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aq_fuzz::fixture_import(data));
