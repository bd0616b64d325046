//! Fuzz target `cloudevent_decode`: see `aq_fuzz::cloudevent_decode` and docs/fuzzing.md.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aq_fuzz::cloudevent_decode(data));
