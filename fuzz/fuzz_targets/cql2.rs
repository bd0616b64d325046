//! Fuzz target `cql2`: see `aq_fuzz::cql2` and docs/fuzzing.md.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aq_fuzz::cql2(data));
